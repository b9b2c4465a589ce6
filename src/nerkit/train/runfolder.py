"""The run folder before training touches it: one trainer at a time (a lock), a kill's leftovers put
right, and no silent overwrite of an unfinished run."""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..atomic import recover_dir, write_text
from ..config import dump_yaml
from ..errors import UsageError
from ..settings import Config
from .callbacks import Checkpoint
from .checkpoint import fingerprint

LOCK_FILE = ".lock"


@contextmanager
def run_folder(cfg: Config, resume: bool, overwrite: bool) -> Iterator[Path]:
    """Hold OUT/.lock for the block. Before it: model/ and checkpoint/ recovered from any kill (atomic.py),
    stale temp files removed; --resume needs a checkpoint, and a fresh run refuses one unless overwrite
    (which removes it). A fresh run writes config.yaml; a resumed one keeps the one it started with.
    Processes other than the main one (RANK > 0) only wait for it in setup()."""
    out = Path(cfg.output)
    if int(os.environ.get("RANK", "0")) > 0:
        yield out
        return
    out.mkdir(parents=True, exist_ok=True)
    fd = _lock(out)
    try:
        _tidy(out)
        ckpt = out / "checkpoint"
        if resume and not Checkpoint.exists(ckpt):
            raise UsageError(f"no checkpoint in {str(ckpt)!r}; start without --resume", field="resume")
        if resume:  # the settings now, before any work; the data once it is read (Checkpoint)
            Checkpoint.check_fingerprint(ckpt, fingerprint(cfg.to_dict(), {}), sections=("config",))
        if not resume and ckpt.exists():
            if not overwrite:
                raise UsageError(f"{str(ckpt)!r} holds the checkpoint of an unfinished run: continue it with "
                                 "--resume, or start over with --overwrite", field="output")
            shutil.rmtree(ckpt)
        if not resume:
            write_text(out / "config.yaml", dump_yaml(cfg))
        yield out
    finally:
        os.close(fd)  # closing drops the lock; a killed process's lock goes with it


def _lock(out: Path) -> int:
    path = out / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise UsageError(f"another trainer (process {holder}) is using {str(out)!r}; wait for it to finish, "
                         "or train into another folder", field="output") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _tidy(out: Path) -> None:
    """What a kill left: half-swapped folders put right, temp files of atomic writes removed."""
    for name in ("model", "checkpoint"):
        recover_dir(out / name)
    for folder in (out, out / "predictions"):
        for stale in folder.glob(".*.tmp") if folder.is_dir() else ():
            stale.unlink(missing_ok=True)
