"""Where corpus files are: local paths, or any filesystem pyarrow opens (s3://, gs://, hdfs://, ... as Ray
Data reads them). pyarrow is needed only for URIs and Parquet."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..errors import UsageError

_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}


def filesystem(path: str):
    """(pyarrow filesystem, path inside it): a URI through pyarrow, anything else the local disk."""
    need_pyarrow(f"reading {path}")
    import pyarrow.fs as pafs

    if is_uri(path):
        try:
            return pafs.FileSystem.from_uri(path)
        except Exception as e:  # an unknown scheme or a missing optional filesystem
            raise UsageError(f"cannot open {path!r}: {str(e).splitlines()[0]}", field="input") from None
    return pafs.LocalFileSystem(), str(Path(path.removeprefix("file://")).resolve())


def need_pyarrow(what: str) -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise UsageError(f'{what} needs pyarrow: pip install "nerkit[parquet]"') from None


def is_uri(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def open_input(uri: str) -> IO[bytes]:
    """A seekable binary file: local paths without pyarrow (it is only needed for URIs and Parquet)."""
    if not is_uri(uri):
        return open(uri.removeprefix("file://"), "rb")  # noqa: SIM115
    fs, path = filesystem(uri)
    return fs.open_input_file(path)


def is_local(fs) -> bool:
    import pyarrow.fs as pafs

    return isinstance(fs, pafs.LocalFileSystem)


@dataclass(frozen=True)
class InputFile:
    """One input file: `uri` opens it anywhere (an absolute path or a URI), `source` names it in records
    (as the user gave it, so that one process and Ray write the same)."""

    uri: str
    source: str
    size: int


def list_inputs(names: list[str]) -> list[InputFile]:
    """The files named and the non-hidden files under folders named, each folder's files sorted."""
    out: list[InputFile] = []
    for name in names:
        if is_uri(name):
            out += _list_uri(name)
            continue
        p = Path(name.removeprefix("file://"))
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file()
                           and not any(part.startswith(".") for part in f.relative_to(p).parts))
            if not found:
                raise UsageError(f"folder {name!r} holds no files", field="input")
            out += [InputFile(str(f.resolve()), str(f), f.stat().st_size) for f in found]
        elif p.is_file():
            out.append(InputFile(str(p.resolve()), name, p.stat().st_size))
        else:
            raise UsageError(f"{name!r} does not exist, expected a file or folder", field="input")
    return out


def _list_uri(name: str) -> list[InputFile]:
    import pyarrow.fs as pafs

    fs, path = filesystem(name)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.File:
        return [InputFile(name, name, info.size)]
    if info.type != pafs.FileType.Directory:
        raise UsageError(f"{name!r} does not exist, expected a file or folder", field="input")
    found = []
    for i in fs.get_file_info(pafs.FileSelector(path, recursive=True)):
        rel = i.path[len(path):].strip("/")
        if i.type == pafs.FileType.File and not any(p.startswith(".") for p in rel.split("/")):
            found.append((rel, i.size))
    if not found:
        raise UsageError(f"folder {name!r} holds no files", field="input")
    return [InputFile(f"{name.rstrip('/')}/{rel}", f"{name.rstrip('/')}/{rel}", size) for rel, size in sorted(found)]


def input_kind(path: str, setting: str) -> str:
    if setting != "auto":
        return setting
    for suffix, kind in _SUFFIXES.items():
        if path.lower().endswith(suffix):
            return kind
    return "text"
