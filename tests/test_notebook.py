"""The notebook runs top to bottom on a tiny config (as a user would run it, but in seconds)."""

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "train_model.ipynb"


@pytest.mark.e2e
def test_notebook_runs(conll_dir, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("NERKIT_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("NERKIT_DATA_ROOT", str(conll_dir.parent))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "micro avg" in outputs
    assert "false_negative" in outputs or "false_positive" in outputs or "type_confusion" in outputs
