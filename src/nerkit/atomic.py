"""Write files and folders so that a stopped or killed run never leaves one half-written.

A file is written beside its target, synced, renamed over it, and the rename synced. A folder is built
beside its target and swapped in by renames that are each synced before the next:

    .NAME.tmp-PID  being written       (incomplete: removed by recover_dir)
    .NAME.new-PID  complete, synced    (recover_dir promotes it to NAME)
    .NAME.old-PID  the previous NAME   (recover_dir brings it back when NAME is missing)

so that after a kill at any point recover_dir finds the complete new copy or the complete old one.

NERKIT_FAULT=NAME:EVENT:N (tests only) SIGKILLs the process right after the N-th EVENT of NAME: "file"
written or "sync" of a file into the folder NAME, "rename" of it, "step" of training (NAME "train"), to
prove the above with real kills.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

FAULT_ENV = "NERKIT_FAULT"
_events: Counter[tuple[str, str]] = Counter()


def fault_point(name: str, event: str) -> None:
    """Count an event; SIGKILL this process when NERKIT_FAULT names it and its count is reached."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    _events[name, event] += 1
    want_name, want_event, n = (spec.split(":") + ["", "", "0"])[:3]
    if (want_name, want_event) == (name, event) and n.isdigit() and _events[name, event] == int(n):
        os.kill(os.getpid(), signal.SIGKILL)


def file_mode() -> int:
    """0666 less the umask: what open() would give a new file (mkstemp alone gives 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def sync_dir(path: str | os.PathLike) -> None:
    """Make the entries of a folder (a rename, a new file) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def writer(path: str | os.PathLike, binary: bool = False, errors: str = "strict") -> Iterator[IO]:
    """A file written beside `path` and renamed over it only when the block ends without an error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, file_mode())
        with (os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", errors=errors)) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        sync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with writer(path, binary=True) as f:
        f.write(data)


def temp_dir(dst: Path, tag: str | int | None = None) -> Path:
    """An empty folder beside dst to build its next version in (tag: the process id unless given)."""
    tmp = dst.parent / f".{dst.name}.tmp-{os.getpid() if tag is None else tag}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def sync_tree(folder: Path, name: str) -> None:
    """fsync every file under folder, then every folder, deepest first."""
    for root, _dirs, files in os.walk(folder, topdown=False):
        for f in sorted(files):
            fd = os.open(os.path.join(root, f), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            fault_point(name, "sync")
        sync_dir(root)


def _rename(src: Path, dst: Path, name: str) -> None:
    os.replace(src, dst)
    sync_dir(dst.parent)
    fault_point(name, "rename")


def replace_dir(src: Path, dst: Path) -> None:
    """Swap the complete folder src in as dst (see the module's docstring for the steps)."""
    sync_tree(src, dst.name)
    new = dst.parent / f".{dst.name}.new-{os.getpid()}"
    old = dst.parent / f".{dst.name}.old-{os.getpid()}"
    shutil.rmtree(new, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    _rename(src, new, dst.name)
    if dst.exists():
        _rename(dst, old, dst.name)
    _rename(new, dst, dst.name)
    shutil.rmtree(old, ignore_errors=True)


def recover_dir(dst: Path) -> None:
    """After a kill: dst is the newest complete copy there is, and no temp or old copy is left beside it.
    Only one writer may run at a time (the trainer holds the run folder's lock)."""
    parent = dst.parent
    if not parent.is_dir():
        return

    def leftovers(kind: str) -> list[Path]:
        return sorted(parent.glob(f".{dst.name}.{kind}-*"), key=lambda p: p.stat().st_mtime)

    new, old = leftovers("new"), leftovers("old")
    if new:  # complete and newer than dst: a kill came between its renames
        shutil.rmtree(dst, ignore_errors=True)
        os.replace(new[-1], dst)
        sync_dir(parent)
    elif old and not dst.exists():
        os.replace(old[-1], dst)
        sync_dir(parent)
    for stale in leftovers("new") + leftovers("old") + leftovers("tmp"):
        shutil.rmtree(stale, ignore_errors=True)
