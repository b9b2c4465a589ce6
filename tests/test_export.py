"""ONNX export, int8 quantization and the onnxruntime backend."""

from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("onnxruntime")

import nerkit  # noqa: E402
from nerkit.cli import main  # noqa: E402
from nerkit.errors import ModelError  # noqa: E402
from nerkit.folder import FP32_FILE, INT8_FILE, ONNX_DIR  # noqa: E402

TEXTS = [
    "John Smith works for Acme Corp in New York. Mary Jones lives in Paris.",
    "Shares of Toyota rose 3 percent in Tokyo trading .",
    "",
    "The German team beat FIFA 2-1 . " * 40,  # longer than one window of the tiny model
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, trained_model_dir):
    """A copy of the tiny model, exported with `nerkit export --onnx --int8`."""
    d = tmp_path_factory.mktemp("export") / "model"
    shutil.copytree(trained_model_dir, d)
    assert main(["export", str(d), "--onnx", "--int8"]) == 0
    return d


def test_files_written(exported):
    assert (exported / ONNX_DIR / FP32_FILE).stat().st_size > 10_000
    assert (exported / ONNX_DIR / INT8_FILE).stat().st_size < (exported / ONNX_DIR / FP32_FILE).stat().st_size
    info = json.loads((exported / ONNX_DIR / "export.json").read_text())
    assert info["shapes"] is True and info["max_abs_logit_diff"] < 1e-3


def test_onnx_gives_the_torch_spans(exported):
    torch_tagger = nerkit.load(str(exported), backend="torch", device="cpu")
    onnx_tagger = nerkit.load(str(exported), backend="onnx")
    want = list(torch_tagger.pipe(TEXTS))
    got = list(onnx_tagger.pipe(TEXTS))
    assert [[(s.label, s.start, s.end) for s in d] for d in got] == [[(s.label, s.start, s.end) for s in d] for d in want]
    for a, b in zip(got, want):
        for x, y in zip(a, b):
            assert x.score == pytest.approx(y.score, abs=1e-3)
    assert sum(len(d) for d in want) > 50


def test_int8_backend_still_tags(exported):
    t = nerkit.load(str(exported), backend="onnx-int8")
    assert [(s.label, s.text) for s in t("Mary Jones lives in Paris.")] == [("PER", "Mary Jones"), ("LOC", "Paris")]


def test_shape_ids_are_a_graph_input(exported):
    import onnx

    graph = onnx.load(str(exported / ONNX_DIR / FP32_FILE), load_external_data=False).graph
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask", "shape_ids"]


def test_missing_or_corrupt_onnx(tmp_path, exported):
    d = tmp_path / "model"
    shutil.copytree(exported, d)
    (d / ONNX_DIR / INT8_FILE).unlink()
    with pytest.raises(ModelError, match="nerkit export"):
        nerkit.load(str(d), backend="onnx-int8")
    f = d / ONNX_DIR / FP32_FILE
    f.write_bytes(f.read_bytes()[:2000])
    with pytest.raises(ModelError, match="cannot load the ONNX model") as err:
        nerkit.load(str(d), backend="onnx")
    assert "\n" not in str(err.value)


def test_export_usage_error(capsys, exported):
    assert main(["export", str(exported)]) == 2
    assert "pass --onnx" in capsys.readouterr().err


@pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
def test_evaluate_an_exported_model(capsys, exported, synthetic_dir, backend):
    """`nerkit evaluate --backend onnx|onnx-int8` scores the exported file through the same Predictor."""
    args = ["evaluate", str(exported), "--data", str(synthetic_dir / "test.txt"), "--json", "--quiet"]
    assert main(args) == 0
    want = json.loads(capsys.readouterr().out)["test.txt"]["conlleval"]["micro"]["f1"]
    assert main([*args, "--backend", backend]) == 0
    got = json.loads(capsys.readouterr().out)["test.txt"]["conlleval"]["micro"]["f1"]
    assert want > 0.9
    assert got == pytest.approx(want, abs=0.0 if backend == "onnx" else 0.02)
