"""Checkpoint: what the folder holds after a run stopped at an epoch's end, and that --resume from it goes
on exactly as the run would have gone on had it never stopped.

Three tiny runs of 3 epochs (4 steps each, with train.ema): one straight through; one stopped right after
epoch 1's checkpoint; that one resumed.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from conftest import stop_after_epoch
from nerkit.train import Callback, TrainState
from nerkit.train.callbacks import EMA_FILE, STATE_FILE, WeightAveraging
from nerkit.train.checkpoint import load_optimizer, read_json

EPOCHS, STEPS_PER_EPOCH = 3, 4  # small_data: 64 training sentences, batches of 16


class Snapshot(Callback):
    """Copies of the live training state after every checkpoint (on_save fires after Checkpoint's), and at
    the end of training."""

    def __init__(self) -> None:
        self.saved: dict[int, dict] = {}
        self.end: dict = {}

    def on_save(self, t) -> None:
        self.saved[t.state.epoch] = _live(t)

    def on_train_end(self, t) -> None:
        self.end = _live(t)


def _live(t) -> dict:
    average = next(cb.average for cb in t.callbacks if isinstance(cb, WeightAveraging))
    return {
        "state": TrainState.from_json(t.state.to_json()),
        "weights": {n: p.detach().clone() for n, p in t.run.unwrapped.state_dict().items()},
        "optimizer": copy.deepcopy(t.run.optimizer.state_dict()),
        "scheduler": copy.deepcopy(t.run.scheduler.state_dict()),
        "lr": list(t.run.scheduler.get_last_lr()),
        "average": {n: s.detach().clone() for n, s in average.shadow.items()},
        "updates": average.updates,
    }


def _train(out: Path, tiny_base: Path, data: Path, resume: bool = False, callbacks=()) -> None:
    from nerkit.config import load_config
    from nerkit.train import train

    cfg = load_config(None, [("model.name", str(tiny_base)), ("data.dir", str(data)), ("output", str(out)),
                             ("train.epochs", str(EPOCHS)), ("train.lr", "3e-3"), ("train.batch_size", "16"),
                             ("train.ema", "0.9"), ("train.progress", "false")])
    train(cfg, resume=resume, callbacks=callbacks)


@pytest.fixture(scope="module")
def stopped(tmp_path_factory, tiny_base, small_data):
    """The run stopped after epoch 1: its snapshot, and a copy of its checkpoint folder as written."""
    root = tmp_path_factory.mktemp("checkpoint")
    snap = Snapshot()
    with pytest.raises(KeyboardInterrupt):
        _train(root / "run", tiny_base, small_data, callbacks=[snap, stop_after_epoch(1)])
    shutil.copytree(root / "run" / "checkpoint", root / "kept")  # resuming removes the folder at the end
    return SimpleNamespace(root=root, run=root / "run", folder=root / "kept", snap=snap)


@pytest.fixture(scope="module")
def runs(stopped, tiny_base, small_data):
    straight, resumed = Snapshot(), Snapshot()
    _train(stopped.root / "straight", tiny_base, small_data, callbacks=[straight])
    _train(stopped.run, tiny_base, small_data, resume=True, callbacks=[resumed])
    return SimpleNamespace(straight=straight, resumed=resumed, stopped=stopped.snap)


def _load(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def _assert_equal(a, b, where: str = "") -> None:
    """Nested dicts / lists of tensors and numbers, compared exactly."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), (where, set(a) ^ set(b))
        for k in a:
            _assert_equal(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


def test_checkpoint_holds_what_resume_needs(stopped):
    folder, live = stopped.folder, stopped.snap.saved[1]
    assert list(stopped.snap.saved) == [1]
    names = {p.name for p in folder.iterdir()}
    assert names == {STATE_FILE, EMA_FILE, "model.safetensors", "optimizer.safetensors", "optimizer.json",
                     "scheduler.json", "rng-0.safetensors", "rng-0.json", "loop.json", "progress.json",
                     "fingerprint.json"}, names  # tensors as safetensors, the rest JSON: no pickle

    state = TrainState.from_json((folder / STATE_FILE).read_text())
    assert (state.epoch, state.step) == (1, STEPS_PER_EPOCH)
    assert [(h["epoch"], h["step"]) for h in state.history] == [(1, STEPS_PER_EPOCH)]
    assert state == live["state"]

    _assert_equal(_load(folder / "model.safetensors"), live["weights"], "weights")  # the raw weights
    optimizer = load_optimizer(folder)
    assert {float(s["step"]) for s in optimizer["state"].values()} == {float(STEPS_PER_EPOCH)}
    optimizer["param_groups"] = [dict(g, betas=list(g["betas"])) for g in optimizer["param_groups"]]
    want = copy.deepcopy(live["optimizer"])
    want["param_groups"] = [dict(g, betas=list(g["betas"])) for g in want["param_groups"]]
    _assert_equal(optimizer, want, "optimizer")  # Adam's moments and step counts
    scheduler = read_json(folder / "scheduler.json")
    assert scheduler["last_epoch"] == STEPS_PER_EPOCH
    _assert_equal(scheduler, live["scheduler"], "scheduler")

    from safetensors import safe_open

    with safe_open(str(folder / EMA_FILE), "pt") as f:
        assert int(f.metadata()["updates"]) == live["updates"] == STEPS_PER_EPOCH
    shadow = _load(folder / EMA_FILE)
    _assert_equal(shadow, live["average"], "average")
    differs = [n for n, s in shadow.items() if not torch.equal(s, live["weights"][n])]
    assert differs  # the average is saved, not a copy of the raw weights


def test_resume_continues_identically(runs):
    straight, resumed = runs.straight, runs.resumed
    assert list(straight.saved) == [1, 2, 3] and list(resumed.saved) == [2, 3]  # epoch 1 is not redone
    _assert_equal(runs.stopped.saved[1]["weights"], straight.saved[1]["weights"], "before the stop")

    def progress(state: TrainState) -> list:
        return [{k: h[k] for k in ("epoch", "step", "padding_fraction", "validation_f1")} for h in state.history]

    for epoch in (2, 3):
        a, b = resumed.saved[epoch], straight.saved[epoch]
        assert (a["state"].epoch, a["state"].step) == (b["state"].epoch, b["state"].step) == (
            epoch, epoch * STEPS_PER_EPOCH)
        assert progress(a["state"]) == progress(b["state"])
        assert a["state"].losses == b["state"].losses and a["state"].best_epoch == b["state"].best_epoch
        assert a["lr"] == b["lr"]
        _assert_equal(a["weights"], b["weights"], f"weights after epoch {epoch}")
        _assert_equal(a["optimizer"], b["optimizer"], f"optimizer after epoch {epoch}")
        _assert_equal(a["scheduler"], b["scheduler"], f"scheduler after epoch {epoch}")
        _assert_equal(a["average"], b["average"], f"average after epoch {epoch}")
        assert a["updates"] == b["updates"] == epoch * STEPS_PER_EPOCH
    assert resumed.end["state"].step == straight.end["state"].step == EPOCHS * STEPS_PER_EPOCH


# ------------------------------------------------------------------------------------ crash-safe folders


class _Crash(Exception):
    pass


class _CrashAt:
    """A fault_point that raises at its n-th call, leaving the folders as a kill there would."""

    def __init__(self, n: int):
        self.n, self.calls = n, 0

    def __call__(self, name: str, event: str) -> None:
        self.calls += 1
        if self.calls == self.n:
            raise _Crash


def _folder(path: Path, text: str) -> Path:
    path.mkdir(parents=True)
    for name in ("a.json", "b.safetensors", "c.txt"):
        (path / name).write_text(f"{text} {name}")
    return path


@pytest.mark.parametrize("has_old", [True, False])
def test_a_swap_stopped_at_any_point_recovers_whole(monkeypatch, tmp_path, has_old):
    """replace_dir stopped after each of its events in turn (as a kill would stop it: no clean-up runs),
    then recover_dir: the folder is the complete old or new copy, and nothing else is left beside it."""
    import nerkit.atomic as atomic

    seen: list[tuple[str, str]] = []
    monkeypatch.setattr(atomic, "fault_point", lambda name, event: seen.append((name, event)))
    if has_old:
        _folder(tmp_path / "probe" / "ckpt", "old")
    atomic.replace_dir(_folder(tmp_path / "probe" / ".ckpt.tmp-1", "new"), tmp_path / "probe" / "ckpt")
    assert seen.count(("ckpt", "sync")) == 3 and seen.count(("ckpt", "rename")) == 2 + has_old
    for stop in range(1, len(seen) + 1):
        root = tmp_path / str(stop)
        dst = root / "ckpt"
        if has_old:
            _folder(dst, "old")
        monkeypatch.setattr(atomic, "fault_point", _CrashAt(stop))
        with pytest.raises(_Crash):
            atomic.replace_dir(_folder(root / ".ckpt.tmp-1", "new"), dst)
        atomic.recover_dir(dst)
        left = sorted(p.name for p in root.iterdir())
        texts = {p.read_text().split()[0] for p in dst.iterdir()} if dst.exists() else set()
        if dst.exists():
            assert left == ["ckpt"] and len(list(dst.iterdir())) == 3 and texts in ({"old"}, {"new"}), (stop, left)
        else:  # stopped before anything was complete, and there was nothing before
            assert not has_old and left == [], (stop, left)


def test_files_respect_the_umask(tmp_path):
    import os

    from nerkit.atomic import write_text

    old = os.umask(0o022)
    try:
        write_text(tmp_path / "a.txt", "x")
        os.umask(0o077)
        write_text(tmp_path / "b.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.txt").stat().st_mode & 0o777 == 0o600


def test_one_trainer_per_run_folder(tmp_path):
    from nerkit.config import load_config
    from nerkit.errors import UsageError
    from nerkit.train.runfolder import run_folder

    cfg = load_config(None, [("output", str(tmp_path / "run"))])
    with run_folder(cfg, resume=False, overwrite=False):
        with pytest.raises(UsageError, match=r"another trainer \(process \d+\) is using"):
            with run_folder(cfg, resume=False, overwrite=False):
                pass
    with run_folder(cfg, resume=False, overwrite=False):  # the lock went with the first
        pass


def test_overwrite_starts_over(tmp_path):
    from nerkit.config import load_config
    from nerkit.errors import UsageError
    from nerkit.train.runfolder import run_folder

    cfg = load_config(None, [("output", str(tmp_path / "run"))])
    _folder(tmp_path / "run" / "checkpoint", "x")
    (tmp_path / "run" / "checkpoint" / STATE_FILE).write_text("{}")
    (tmp_path / "run" / ".metrics.json.abc.tmp").write_text("half")
    with pytest.raises(UsageError, match="--resume, or start over with --overwrite"):
        with run_folder(cfg, resume=False, overwrite=False):
            pass
    with run_folder(cfg, resume=False, overwrite=True):
        assert not (tmp_path / "run" / "checkpoint").exists()
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".lock", "config.yaml"]
