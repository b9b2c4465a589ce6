"""ONNX export, int8 quantization and the onnxruntime backend."""

from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("onnxruntime")

import nerkit  # noqa: E402
from nerkit.atomic import file_mode  # noqa: E402
from nerkit.cli import main  # noqa: E402
from nerkit.errors import ModelError  # noqa: E402
from nerkit.folder import (  # noqa: E402
    FP32_FILE,
    INT8_FILE,
    ONNX_DIR,
    weights_sha256,  # noqa: E402
)

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
    assert info["shapes"] is True and info["max_abs_logit_diff"] <= info["fp32_tolerance"] == 1e-3
    assert 0.99 <= info["int8_label_agreement"] <= 1 and info["weights_sha256"] == weights_sha256(exported)
    assert (exported / ONNX_DIR / "export.json").stat().st_mode & 0o777 == file_mode()  # the umask's, not 0600


def test_onnx_backend_refuses_an_export_of_other_weights(tmp_path, exported):
    d = tmp_path / "model"
    shutil.copytree(exported, d)
    info = d / ONNX_DIR / "export.json"
    info.write_text(json.dumps(json.loads(info.read_text()) | {"weights_sha256": "0" * 64}))
    for backend in ("onnx", "onnx-int8"):
        with pytest.raises(ModelError, match="exported from other weights") as err:
            nerkit.load(str(d), backend=backend)
        assert "\n" not in str(err.value)
    info.unlink()
    with pytest.raises(ModelError, match="export.json: missing"):
        nerkit.load(str(d), backend="onnx")


def test_auto_backend_is_int8_only_where_a_checked_export_runs(tmp_path, exported, trained_model_dir):
    """'auto' (the server's default) takes the int8 file where it exists, matches the weights and runs on the
    CPU; else torch, never an error."""
    from nerkit.engine.backends import choose
    from nerkit.folder import ModelFolder

    assert choose(ModelFolder(exported), "auto", "cpu") == "onnx-int8"
    assert nerkit.load(str(exported), backend="auto", device="cpu").predictor.backend_name == "onnx-int8"
    assert choose(ModelFolder(exported), "auto", "cuda") == "torch"  # onnxruntime here runs on the CPU only
    assert choose(ModelFolder(trained_model_dir), "auto", "cpu") == "torch"  # never exported
    d = tmp_path / "model"
    shutil.copytree(exported, d)
    info = d / ONNX_DIR / "export.json"
    info.write_text(json.dumps(json.loads(info.read_text()) | {"weights_sha256": "0" * 64}))
    assert choose(ModelFolder(d), "auto", "cpu") == "torch"  # stale export: torch, not the old weights
    assert nerkit.load(str(d), backend="auto", device="cpu").predictor.backend_name == "torch"
    assert choose(ModelFolder(exported), "onnx", "cpu") == "onnx"
    with pytest.raises(ModelError, match="is not one of"):
        choose(ModelFolder(exported), "tensorrt", "cpu")


@pytest.mark.parametrize("knob, value, args, said", [
    ("FP32_TOLERANCE", -1.0, ["--onnx"], "logits differ from torch's by up to"),
    ("INT8_MIN_AGREEMENT", 1.01, ["--onnx", "--int8"], "words as the fp32 model does, under the 101% required"),
])
def test_export_that_fails_its_check_exits_1(capsys, monkeypatch, tmp_path, exported, knob, value, args, said):
    import nerkit.export

    d = tmp_path / "model"
    shutil.copytree(exported, d)
    monkeypatch.setattr(nerkit.export, knob, value)
    assert main(["export", str(d), *args]) == 1
    err = capsys.readouterr().err.strip()
    assert said in err and len(err.splitlines()) == 1, err
    assert not (d / ONNX_DIR / "export.json").exists()  # so no backend takes the failed export
    with pytest.raises(ModelError, match="export.json: missing"):
        nerkit.load(str(d), backend="onnx")


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
