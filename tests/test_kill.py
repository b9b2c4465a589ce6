"""Training that survives a kill: real `nerkit train` processes SIGKILLed mid-epoch, in the middle of a
checkpoint write and in the middle of the model save (NERKIT_FAULT, atomic.py), each then resumed; the
run that ends after all that has the same weights and prediction files, byte for byte, as one that was
never stopped. Also SIGTERM (a checkpoint, then exit 130), two runs giving identical bytes, and what
resume refuses.

The runs: small_data's sentences with document context and jitter (4 batches an epoch, so 12 steps),
the moving average on, a checkpoint every 2 steps, no validation split (model/ is the last epoch's).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import training_callbacks
from nerkit.cli import main
from nerkit.train import Callback

STEPS = 12  # 3 epochs of 4 batches


def _args(tiny_base: Path, data: Path, out: Path, *more: str) -> list[str]:
    return ["train", "--model.name", str(tiny_base), "--data", str(data), "--output", str(out), "--epochs", "3",
            "--lr", "3e-3", "--batch-size", "8", "--ema", "0.9", "--data.context", "32", "--data.jitter", "true",
            "--save-every", "2", "--progress", "false", *more]


def _killed(args: list[str], fault: str) -> None:
    """Run `nerkit` in a subprocess that SIGKILLs itself at the fault point; it must die there."""
    env = dict(os.environ, NERKIT_FAULT=fault)
    p = subprocess.run([sys.executable, "-m", "nerkit.cli", *args], env=env, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == -signal.SIGKILL, (fault, p.returncode, p.stderr[-2000:])


def _digests(out: Path) -> dict[str, str]:
    files = sorted((out / "model").glob("*.safetensors")) + sorted((out / "predictions").glob("*.conll"))
    assert len(files) == 3, files  # weights, shape embedding, test predictions
    return {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.rglob(".*") if p.name != ".lock")


def _state(out: Path) -> dict:
    return json.loads((out / "checkpoint" / "trainer_state.json").read_text())


@pytest.fixture(scope="module")
def data(tmp_path_factory, small_data) -> Path:
    """small_data's sentences with no validation split, so that model/ is the last epoch's (not the best
    one's, which may be an early epoch) and every step shows in the bytes compared; the test split gives
    the prediction file."""
    d = tmp_path_factory.mktemp("kill_data")
    shutil.copy(small_data / "train.txt", d / "train.txt")
    shutil.copy(small_data / "dev.txt", d / "test.txt")
    return d


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_base, data) -> dict[str, str]:
    """An uninterrupted run's digests."""
    out = tmp_path_factory.mktemp("reference") / "run"
    assert main(_args(tiny_base, data, out)) == 0
    return _digests(out)


def test_two_runs_give_identical_bytes(reference, tmp_path, tiny_base, data):
    assert main(_args(tiny_base, data, tmp_path / "again")) == 0
    assert _digests(tmp_path / "again") == reference


def test_killed_three_times_then_resumed_gives_identical_bytes(capsys, reference, tmp_path, tiny_base, data):
    out = tmp_path / "run"
    data = shutil.copytree(data, tmp_path / "data")
    args = _args(tiny_base, data, out)
    _killed(args, "train:step:3")  # (a) mid-epoch 1, after the checkpoint of step 2
    assert (_state(out)["step"], _state(out)["batch"], _state(out)["epoch"]) == (2, 2, 0)
    config = (out / "config.yaml").stat().st_mtime_ns

    assert main(args) == 2  # a fresh run into the folder of an unfinished one
    assert "--resume" in capsys.readouterr().err
    assert main([*args, "--lr", "1e-3", "--resume"]) == 2  # other settings than the checkpoint's
    err = capsys.readouterr().err
    assert "train.lr (0.003 in the checkpoint, 0.001 now)" in err and len(err.strip().splitlines()) == 1
    test = (data / "test.txt").read_text()
    (data / "test.txt").write_text(test + "\nLima NN O B-LOC\n")
    assert main([*args, "--resume"]) == 2  # other data
    assert "data (test split) differs" in capsys.readouterr().err.strip().splitlines()[-1]
    (data / "test.txt").write_text(test)

    _killed([*args, "--resume"], "checkpoint:file:4")  # (b) writing step 4's checkpoint
    assert ".checkpoint.tmp-train" in _leftovers(out) and _state(out)["step"] == 2
    _killed([*args, "--resume"], "model:rename:1")  # (c) in the swap of epoch 1's model save
    assert not (out / "model").exists() and any(n.startswith(".model.new-") for n in _leftovers(out))
    assert (_state(out)["step"], _state(out)["batch"]) == (4, 4)  # resumes after all of epoch 1's batches

    assert main([*args, "--resume"]) == 0
    assert _digests(out) == reference
    assert _leftovers(out) == [] and not (out / "checkpoint").exists()
    assert (out / "config.yaml").stat().st_mtime_ns == config  # resume kept the run's config.yaml


class _Term(Callback):
    """Sends this process SIGTERM once, after step 5."""

    def on_step_end(self, t) -> None:
        if t.state.step == 5:
            os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_checkpoints_then_resume_gives_identical_bytes(capsys, monkeypatch, reference, tmp_path, tiny_base,
                                                               data):
    out = tmp_path / "run"
    before = signal.getsignal(signal.SIGTERM)  # SIG_DFL, or another library's (Ray installs one)
    with training_callbacks(monkeypatch, _Term()):
        assert main(_args(tiny_base, data, out, "--save-every", "0")) == 130
    assert (_state(out)["step"], _state(out)["batch"]) == (6, 2)  # saved at the next step, mid-epoch 2
    assert signal.getsignal(signal.SIGTERM) is before  # the handler given back
    assert main(_args(tiny_base, data, out, "--save-every", "0", "--resume")) == 0
    assert _digests(out) == reference
