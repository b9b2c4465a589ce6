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


# --- fusions, the F1 check, fp32 nodes chosen by measurement, call costs --------------------------------------

def _info(d) -> dict:
    return json.loads((d / ONNX_DIR / "export.json").read_text())


def _ops(path) -> set[str]:
    import onnx

    return {n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node}


def _copy(src, tmp_path):
    d = tmp_path / "model"
    shutil.copytree(src, d, ignore=shutil.ignore_patterns(ONNX_DIR))
    return d


def _corrupting_quantizer(monkeypatch, target: str, always: bool = False):
    """nerkit.export.quantize, but with the int8 weight scales of node `target` times -10 (its weights too, when
    it was kept fp32 and `always`): a node made sensitive on purpose."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    import nerkit.export

    real = nerkit.export.quantize

    def quantize(src, dst, exclude=()):
        real(src, dst, exclude)
        if target in exclude and not always:
            return
        weight = next(n for n in onnx.load(str(src)).graph.node if n.name == target).input[1]
        model = onnx.load(str(dst))
        for init in model.graph.initializer:
            if init.name in (f"{weight}_scale", weight):
                init.CopyFrom(numpy_helper.from_array(-10 * numpy_helper.to_array(init).astype(np.float32), init.name))
        onnx.save(model, str(dst))

    monkeypatch.setattr(nerkit.export, "quantize", quantize)


def test_fused_graph_passes_the_fp32_check_and_records_what_it_fused(exported, capsys):
    info = _info(exported)
    assert info["fusions"] == {"Attention": 2, "BiasGelu": 2, "LayerNormalization": 1, "SkipLayerNormalization": 4}
    assert info["fusion_note"] is None and info["max_abs_logit_diff"] <= 1e-3
    assert {"Attention", "SkipLayerNormalization", "BiasGelu"} <= _ops(exported / ONNX_DIR / FP32_FILE)
    assert "QAttention" in _ops(exported / ONNX_DIR / INT8_FILE)  # the fused attention is quantized too
    assert info["f1"]["torch"] > 90 and info["f1"]["onnx"] == info["f1"]["torch"]
    assert info["f1"]["torch"] - info["f1"]["onnx-int8"] <= info["f1_max_drop"] == 0.5
    assert info["int8_fp32_nodes"] == [] and info["int8_quantizable_nodes"] == 9  # 2 x (Attention + 3 MatMul) + head


def test_export_prints_the_f1s_fusions_and_call_costs(capsys, tmp_path, trained_model_dir):
    d = _copy(trained_model_dir, tmp_path)
    assert main(["export", str(d), "--onnx"]) == 0
    out = capsys.readouterr().out
    assert "fused operators: Attention 2, BiasGelu 2" in out
    assert "validation F1 (" in out and "torch 100.00, onnx 100.00" in out
    assert "call cost, in tokens, measured: model.onnx " in out


def test_plain_export_without_a_validation_set_checks_the_logits_only(capsys, tmp_path, trained_model_dir):
    d = _copy(trained_model_dir, tmp_path)
    meta = json.loads((d / "nerkit.json").read_text())
    meta["train_config"]["data"]["dir"] = str(tmp_path / "gone")
    (d / "nerkit.json").write_text(json.dumps(meta))
    assert main(["export", str(d), "--onnx"]) == 0
    assert "validation F1: not checked" in capsys.readouterr().out
    assert _info(d)["f1"] == {}


def test_f1_check_fails_a_graph_made_wrong_on_purpose(capsys, monkeypatch, tmp_path, trained_model_dir):
    """A quantizer that wrecks the classifier whether or not it stays fp32: the rounds run out, exit 1."""
    d = _copy(trained_model_dir, tmp_path)
    _corrupting_quantizer(monkeypatch, "/model/hf/classifier/MatMul", always=True)
    assert main(["export", str(d), "--onnx", "--int8"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "model.int8.onnx: validation F1" in err
    assert "below the torch model's 100.00, more than the 0.5 allowed" in err
    assert "4 of 9 quantizable nodes kept fp32 after 4 quantize+evaluate rounds" in err  # half at most
    assert not (d / ONNX_DIR / "export.json").exists()


def test_f1_threshold_fails_the_fp32_graph(capsys, monkeypatch, tmp_path, trained_model_dir):
    import nerkit.export

    d = _copy(trained_model_dir, tmp_path)
    monkeypatch.setattr(nerkit.export, "F1_MAX_DROP", -1.0)
    assert main(["export", str(d), "--onnx"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "model.onnx: validation F1 100.00 on" in err, err


def test_the_node_that_costs_most_is_the_one_kept_fp32(monkeypatch, tmp_path, trained_model_dir):
    """One middle node made sensitive: measured worst, kept fp32 alone, and the second round passes."""
    d = _copy(trained_model_dir, tmp_path)
    target = "/model/hf/bert/encoder/layer.0/intermediate/dense/MatMul"
    _corrupting_quantizer(monkeypatch, target)
    assert main(["export", str(d), "--onnx", "--int8"]) == 0
    info = _info(d)
    assert info["int8_fp32_nodes"] == [target] and info["int8_rounds"] == 1
    assert info["int8_fp32_node_errors"][target] > 5  # weights times -10: a relative error of about 11 added
    assert info["f1"]["onnx-int8"] >= info["f1"]["torch"] - 0.5


@pytest.mark.parametrize("aim, rounds", [(None, 0), ("0.2", 1)])
def test_int8_aim_keeps_nodes_fp32_until_the_loss_is_that_small(capsys, monkeypatch, tmp_path, trained_model_dir,
                                                                aim, rounds):
    """An int8 graph that loses 0.3 points while nothing is kept fp32: the default (0.5) takes it as it is;
    --int8-aim 0.2 keeps the worst node fp32 and records the aim."""
    import nerkit.evaluation
    import nerkit.export

    d = _copy(trained_model_dir, tmp_path)
    excluded: list[list[str]] = []
    real_quantize, real_evaluate = nerkit.export.quantize, nerkit.evaluation.evaluate

    def quantize(src, dst, exclude=()):
        excluded.append(list(exclude))
        real_quantize(src, dst, exclude)

    def evaluate(predictor, corpus, desc=None):
        ev = real_evaluate(predictor, corpus, desc)
        if excluded and not excluded[-1]:  # the fully quantized graph
            ev.conlleval.micro.f1 -= 0.003
        return ev

    monkeypatch.setattr(nerkit.export, "quantize", quantize)
    monkeypatch.setattr(nerkit.evaluation, "evaluate", evaluate)
    assert main(["export", str(d), "--onnx", "--int8", *(["--int8-aim", aim] if aim else [])]) == 0
    info = _info(d)
    assert info["int8_rounds"] == rounds and len(info["int8_fp32_nodes"]) == rounds
    assert info["int8_aim"] == (float(aim) if aim else 0.5)
    assert info["f1"]["torch"] - info["f1"]["onnx-int8"] == pytest.approx(0.3 if rounds == 0 else 0.0, abs=1e-6)


def test_int8_aim_out_of_range_is_a_usage_error(capsys, exported):
    for argv in (["--int8", "--int8-aim", "0.7"], ["--int8", "--int8-aim", "-1"], ["--int8-aim", "0.2"]):
        assert main(["export", str(exported), "--onnx", *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("nerkit: error: ") and "int8" in err[0], err


def test_node_errors_rank_the_sensitive_node_first(tmp_path, exported):
    import nerkit.export as ex
    from nerkit.folder import ModelFolder

    folder = ModelFolder(exported)
    fp32, int8 = exported / ONNX_DIR / FP32_FILE, exported / ONNX_DIR / INT8_FILE
    nodes = ex.quantizable_nodes(fp32)
    probe = ex._probe_windows(ex._validation_set(folder, None), folder.tokenizer, folder.meta)
    clean = ex.node_errors(fp32, int8, nodes, probe)
    assert set(clean) == set(nodes) and max(clean.values()) < 0.05  # int8 adds a few % at most per node
    assert ex.node_errors(fp32, fp32, nodes, probe) == dict.fromkeys(nodes, 0.0)


@pytest.mark.parametrize("how", ["fusion raises", "not a transformer"])
def test_a_model_without_fusions_still_exports(capsys, monkeypatch, tmp_path, trained_model_dir, how):
    import nerkit.export

    d = _copy(trained_model_dir, tmp_path)
    if how == "fusion raises":
        def broken(*_):
            raise RuntimeError("no pattern matched\nsecond line")

        monkeypatch.setattr(nerkit.export, "fuse", broken)
    else:
        monkeypatch.setattr(nerkit.export, "FUSED_TYPES", frozenset())
    assert main(["export", str(d), "--onnx", "--int8"]) == 0
    info = _info(d)
    assert info["fusions"] == {}
    assert ("fusion failed, graph left unfused: no pattern matched" if how == "fusion raises"
            else "model_type 'bert': no transformer fusions") == info["fusion_note"]
    assert "Attention" not in _ops(d / ONNX_DIR / FP32_FILE) and "fused operators: none (" in capsys.readouterr().out
    assert info["f1"]["onnx"] == info["f1"]["torch"] and info["int8_label_agreement"] >= 0.99
    assert list(nerkit.load(str(d), backend="onnx-int8").pipe(TEXTS[:1]))[0]


@pytest.mark.parametrize("kind", ["conv", "lstm"])
def test_a_conv_student_exports_unfused(tmp_path, trained_model_dir, kind):
    students = pytest.importorskip("nerkit.students")
    from nerkit.folder import ModelFolder
    from nerkit.model import load_model, save_model

    folder = ModelFolder(trained_model_dir)
    student = students.STUDENTS[kind](load_model(folder), layers=2, width=32, kernel=3)
    d = tmp_path / "conv"
    save_model(student, folder.tokenizer, d, folder.meta)
    assert main(["export", str(d), "--onnx"]) == 0
    info = _info(d)
    assert info["fusions"] == {} and "'nerkit-conv': no transformer fusions" in info["fusion_note"]
    assert info["f1"]["onnx"] == info["f1"]["torch"] and isinstance(info["call_cost"]["model.onnx"], int)
    if kind == "lstm":  # its recurrences are quantized too (an untrained student's labels are near ties, so
        # the graph is checked here, not export's agreement check)
        import onnx

        from nerkit.export import quantizable_nodes, quantize

        fp32, int8 = d / ONNX_DIR / FP32_FILE, d / ONNX_DIR / INT8_FILE
        lstms = {n.name for n in onnx.load(str(fp32), load_external_data=False).graph.node if n.op_type == "LSTM"}
        assert len(lstms) == 4 and lstms <= set(quantizable_nodes(fp32))  # 2 blocks, 2 directions
        quantize(fp32, int8)
        assert "DynamicQuantizeLSTM" in _ops(int8) and "LSTM" not in _ops(int8)


def test_call_cost_measured_recorded_and_used(tmp_path, exported):
    from nerkit.engine.backends import open_backend
    from nerkit.engine.budget import CORPUS_BUDGET, TEXT_BUDGET
    from nerkit.folder import ModelFolder

    info = _info(exported)
    for name in (FP32_FILE, INT8_FILE):
        assert 1 <= info["call_cost"][name] <= 4096 and info["call_cost_fit"][name]["us_per_token"] > 0
    backend = open_backend(ModelFolder(exported), "onnx-int8")
    assert backend.call_cost == info["call_cost"][INT8_FILE]
    assert TEXT_BUDGET.for_backend(backend).call_cost == info["call_cost"][INT8_FILE]
    assert CORPUS_BUDGET.for_backend(backend) == CORPUS_BUDGET  # an unpriced budget stays unpriced
    assert TEXT_BUDGET.for_backend(open_backend(ModelFolder(exported), "torch")) == TEXT_BUDGET
    d = tmp_path / "model"
    shutil.copytree(exported, d)
    f = d / ONNX_DIR / "export.json"
    f.write_text(json.dumps(info | {"call_cost": {FP32_FILE: 999}}))
    assert open_backend(ModelFolder(d), "onnx").call_cost == 999
    assert open_backend(ModelFolder(d), "onnx-int8").call_cost is None  # not recorded: the default stands
    assert TEXT_BUDGET.for_backend(open_backend(ModelFolder(d), "onnx-int8")) == TEXT_BUDGET


def test_onnx_threads_are_deliberate(monkeypatch):
    import os

    import torch

    from nerkit.engine.backends import _threads

    cpus = len(os.sched_getaffinity(0))
    monkeypatch.setenv("NERKIT_THREADS", "1")
    assert _threads() == 1
    monkeypatch.setenv("NERKIT_THREADS", "999")
    assert _threads() == cpus  # never more than the CPUs the process may use
    monkeypatch.delenv("NERKIT_THREADS")
    assert _threads() == min(torch.get_num_threads(), cpus)
