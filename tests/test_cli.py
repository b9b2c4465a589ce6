"""The `nerkit` command: help, one-line usage errors (exit 2), evaluate, the model folder, --resume."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, stop_after_epoch, training_callbacks
from nerkit.cli import build_parser, main


def _commands() -> list[str]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(sub.choices)


def _usage_error(capsys, argv: list[str]) -> str:
    """Run in-process; expect exit 2 and a single 'nerkit: error:' line on stderr."""
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) >= 1 and lines[-1].startswith("nerkit: error: "), err
    assert len([ln for ln in lines if ln.startswith("nerkit: error")]) == 1
    return lines[-1]


def _train_args(tiny_base: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--data", str(data), "--output", str(out), "--model.name", str(tiny_base),
            "--batch_size", "16", "--lr", "3e-3", "--progress", "false", *extra]


# ---------------------------------------------------------------------------------------------- help


def test_help_of_every_command(capsys):
    commands = _commands()
    assert {"train", "evaluate"} <= set(commands)
    for cmd in [None, *commands]:
        with pytest.raises(SystemExit) as ei:
            main([cmd, "--help"] if cmd else ["--help"])
        assert ei.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith("usage: nerkit")


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "usage: nerkit" in capsys.readouterr().out


# ------------------------------------------------------------------------------------- usage errors


def _subprocess(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": str(REPO / "src")}
    return subprocess.run([sys.executable, "-m", "nerkit.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_subprocess_missing_data_folder(tmp_path):
    r = _subprocess(["train", "--data", str(tmp_path / "nope"), "--output", str(tmp_path / "run")], tmp_path)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith("nerkit: error: --data:") and "does not exist" in lines[-1]


def test_subprocess_bad_config_key(tmp_path):
    r = _subprocess(["train", "--train.lrr", "1e-4"], tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == ["nerkit: error: option: unknown key 'train.lrr' "
                                             "(did you mean 'train.lr'?)"]


def test_bad_config_value_and_file(capsys, tmp_path):
    assert "expected a number" in _usage_error(capsys, ["train", "--epochs", "two"])
    assert "does not exist" in _usage_error(capsys, ["train", "--config", str(tmp_path / "none.toml")])
    assert "--section.key" in _usage_error(capsys, ["train", "lr", "1"])


def test_evaluate_model_path_missing(capsys, tmp_path, synthetic_dir):
    msg = _usage_error(capsys, ["evaluate", str(tmp_path / "nope"), "--data", str(synthetic_dir / "test.txt")])
    assert "MODEL_DIR" in msg and "does not exist" in msg
    (tmp_path / "empty_model").mkdir()
    msg = _usage_error(capsys, ["evaluate", str(tmp_path / "empty_model"), "--data", str(synthetic_dir)])
    assert "config.json" in msg


def test_train_model_path_missing(capsys, tmp_path, synthetic_dir):
    msg = _usage_error(capsys, ["train", "--data", str(synthetic_dir), "--output", str(tmp_path / "r"),
                                "--model.name", str(tmp_path / "no_such_model"), "--progress", "false"])
    assert "model.name" in msg


def test_empty_data_file(capsys, tmp_path, trained_model_dir):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    msg = _usage_error(capsys, ["evaluate", str(trained_model_dir), "--data", str(empty), "--quiet"])
    assert str(empty) in msg and "empty" in msg
    d = tmp_path / "data"
    d.mkdir()
    (d / "train.txt").write_text("\n\n")
    msg = _usage_error(capsys, ["train", "--data", str(d), "--output", str(tmp_path / "r"), "--progress", "false"])
    assert "train.txt" in msg and "empty" in msg


def test_evaluate_data_missing(capsys, tmp_path, trained_model_dir):
    msg = _usage_error(capsys, ["evaluate", str(trained_model_dir), "--data", str(tmp_path / "x.txt")])
    assert "--data" in msg


def test_evaluate_unknown_label(capsys, tmp_path, trained_model_dir):
    f = tmp_path / "t.txt"
    f.write_text("Acme B-COMPANY\n")
    msg = _usage_error(capsys, ["evaluate", str(trained_model_dir), "--data", str(f), "--quiet"])
    assert f"{f}:1:" in msg and "COMPANY" in msg


# ------------------------------------------------------------------------------------------ evaluate


def test_evaluate_report_and_predictions(capsys, tmp_path, synthetic_dir, trained_model_dir, trained_run):
    test_file = synthetic_dir / "test.txt"
    preds = tmp_path / "pred.conll"
    assert main(["evaluate", str(trained_model_dir), "--data", str(test_file), "--predictions", str(preds),
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "micro avg" in out and "strict IOB2" in out
    for t in ("LOC", "MISC", "ORG", "PER"):
        assert any(line.split()[:1] == [t] for line in out.splitlines())
    from nerkit.corpus import read_conll

    gold = read_conll(test_file).sentences
    blocks = preds.read_text().rstrip("\n").split("\n\n")
    assert len(blocks) == len(gold)
    labels = set(json.loads((trained_model_dir / "nerkit.json").read_text())["labels"])
    for block, sent in zip(blocks, gold):
        rows = [line.split(" ") for line in block.split("\n")]
        assert [r[0] for r in rows] == sent.words
        assert [r[1] for r in rows] == sent.tags
        assert all(len(r) == 3 and r[2] in labels for r in rows)
    # the synthetic corpus is easy: the trained tiny model must have learnt something
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert metrics["test"]["conlleval"]["micro"]["f1"] > 0.5


def test_evaluate_run_folder_json(capsys, synthetic_dir, trained_run):
    assert main(["evaluate", str(trained_run), "--data", str(synthetic_dir), "--json", "--quiet"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert set(res) == {"validation", "test"}
    saved = json.loads((trained_run / "metrics.json").read_text())
    assert res["test"]["conlleval"]["micro"]["f1"] == pytest.approx(saved["test"]["conlleval"]["micro"]["f1"])


def test_run_folder_layout(trained_run):
    for name in ("model/config.json", "model/nerkit.json", "metrics.json", "config.yaml",
                 "predictions/validation.conll", "predictions/test.conll", "train.log"):
        assert (trained_run / name).is_file(), name
    assert not (trained_run / "checkpoint").exists()
    m = json.loads((trained_run / "metrics.json").read_text())
    assert [h["epoch"] for h in m["history"]] == [1, 2, 3, 4] and m["processes"] == 1


def test_model_folder_loads_in_transformers_pipeline(trained_model_dir):
    from transformers import pipeline

    nlp = pipeline("token-classification", model=str(trained_model_dir), device="cpu")
    out = nlp("John Smith lives in Paris .")
    labels = set(json.loads((trained_model_dir / "config.json").read_text())["id2label"].values())
    assert isinstance(out, list)
    assert all(e["entity"] in labels and e["entity"] != "O" for e in out)


# -------------------------------------------------------------------------------------------- resume


def test_resume_continues_run(capsys, monkeypatch, tmp_path, tiny_base, small_data):
    out = tmp_path / "run"
    with training_callbacks(monkeypatch, stop_after_epoch(1)):  # killed right after epoch 1's checkpoint
        assert main(_train_args(tiny_base, small_data, out, "--epochs", "2")) == 130
    assert (out / "checkpoint" / "trainer_state.json").is_file()
    assert not (out / "metrics.json").exists()

    assert main(_train_args(tiny_base, small_data, out, "--epochs", "2", "--resume")) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert [h["epoch"] for h in m["history"]] == [1, 2]
    assert m["history"][1]["step"] == 2 * m["history"][0]["step"]
    assert not (out / "checkpoint").exists()
    assert "resumed from" in (out / "train.log").read_text()


def test_jitter_recuts_training_windows_every_epoch(capsys, monkeypatch, tmp_path, tiny_base, small_data):
    from nerkit.encoding import Encoder

    cuts = []
    real = Encoder.encode_corpus

    def spy(self, corpus, train=False, jitter=None):
        feats = real(self, corpus, train, jitter)
        if train:
            cuts.append(tuple(f.sentence_ids[0] for f in feats))
        return feats

    monkeypatch.setattr(Encoder, "encode_corpus", spy)
    args = ["--epochs", "3", "--data.context", "64", "--data.jitter", "true"]
    assert main(_train_args(tiny_base, small_data, tmp_path / "on", *args)) == 0
    assert len(cuts) == 3 and len(set(cuts)) > 1  # one cut per epoch, and they differ
    cuts.clear()
    assert main(_train_args(tiny_base, small_data, tmp_path / "off", "--data.jitter", "true")) == 0
    assert len(cuts) == 1
    assert "context is off: ignored" in (tmp_path / "off" / "train.log").read_text()


def test_resume_without_checkpoint(capsys, tmp_path, tiny_base, small_data):
    msg = _usage_error(capsys, _train_args(tiny_base, small_data, tmp_path / "fresh", "--resume"))
    assert "--resume" in msg and "checkpoint" in msg
