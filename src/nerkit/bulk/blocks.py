"""Input cut into blocks, each a stable (block, row) range: block_rows lines of a text or JSON Lines file,
whole Parquet row groups up to block_rows rows, or block_rows whole files. One process and the Ray actors tag
the same blocks, each block as one stream through the tagger, so both give the same records; a block is also
the unit of output files, skipping and redoing."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import IO, Any

from ..errors import UsageError
from .files import InputFile, input_kind, need_pyarrow, open_input
from .records import OWN_FIELDS, Doc


@dataclass(frozen=True)
class Block:
    """A stable slice of the input. Line kinds: bytes [start, stop) of `uris[0]`, whose first line is
    `first`. Parquet: row groups [start, stop), whose first row is `first`. unit=file: `uris`, one
    document each. `sources` name the files in records."""

    index: int
    kind: str  # text | jsonl | parquet | files
    uris: tuple[str, ...]
    sources: tuple[str, ...]
    first: int
    start: int
    stop: int
    bytes: int

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, s: str) -> Block:
        d = json.loads(s)
        return cls(**{**d, "uris": tuple(d["uris"]), "sources": tuple(d["sources"])})


# ------------------------------------------------------------------------------------------- planning

def plan(files: list[InputFile], kind_setting: str, unit: str, block_rows: int,
         text_field: str | None = None) -> list[Block]:
    """The blocks of the input, in input order. Line kinds are scanned once for line starts (Parquet
    needs only its footer, which also shows whether it has the `text_field` column), so that every
    block knows the number of its first line."""
    blocks: list[Block] = []
    whole: list[InputFile] = []  # unit=file: text files, grouped block_rows at a time

    def add(kind: str, group: list[InputFile], first: int, start: int, stop: int, size: int) -> None:
        blocks.append(Block(len(blocks), kind, tuple(f.uri for f in group), tuple(f.source for f in group),
                            first, start, stop, size))

    def flush_whole() -> None:
        for i in range(0, len(whole), block_rows):
            group = whole[i : i + block_rows]
            add("files", group, 1, 0, len(group), sum(f.size for f in group))
        whole.clear()

    for file in files:
        kind = input_kind(file.source, kind_setting)
        if kind == "text" and unit == "file":
            whole.append(file)
            continue
        flush_whole()
        if kind == "parquet":
            need_pyarrow(f"reading {file.source}")
            import pyarrow.parquet as pq

            with open_input(file.uri) as f:
                try:
                    pf = pq.ParquetFile(f)
                except Exception as e:
                    raise UsageError(f"{file.source}: not a Parquet file ({str(e).splitlines()[0]})",
                                     field="input") from None
                meta = pf.metadata
                if text_field is not None:
                    _check_column(pf, file.source, text_field)
            first = g0 = rows = 0
            for g in range(meta.num_row_groups):
                rows += meta.row_group(g).num_rows
                if rows >= block_rows or g == meta.num_row_groups - 1:
                    add("parquet", [file], first + 1, g0, g + 1, file.size * (g + 1 - g0) // meta.num_row_groups)
                    first, g0, rows = first + rows, g + 1, 0
        else:
            starts = _line_starts(file.uri, block_rows)
            for n, (lo, hi) in enumerate(zip(starts, starts[1:] + [file.size])):
                if hi > lo:
                    add(kind, [file], n * block_rows + 1, lo, hi, hi - lo)
    flush_whole()
    return blocks


def _line_starts(uri: str, every: int) -> list[int]:
    """Byte offsets of lines 1, every+1, 2*every+1, ...; one pass, newlines found by numpy."""
    import numpy as np

    starts, lines, pos = [0], 0, 0
    with open_input(uri) as f:
        while chunk := f.read(1 << 24):
            nl = np.flatnonzero(np.frombuffer(chunk, np.uint8) == 10)
            # line (lines + i + 1) starts after newline i; a block starts after every `every`-th line
            first = (every - lines % every) - 1
            starts += [pos + int(p) + 1 for p in nl[first::every]]
            lines += len(nl)
            pos += len(chunk)
    return starts


# -------------------------------------------------------------------------------------------- reading

def read_block(block: Block, text_field: str, failures: list[str],
               progress: Callable[[int], object] = lambda n: None) -> Iterator[Doc]:
    """The documents of one block, in order. Records that cannot be read are reported in `failures` as
    FILE:LINE: why, and left out."""
    if block.kind == "files":
        for uri, source in zip(block.uris, block.sources):
            with open_input(uri) as f:
                data = io.BytesIO(f.read())
            yield from iter_line_docs(data, source, "text", text_field, 1, failures, progress, whole=True)
        return
    if block.kind == "parquet":
        yield from _parquet_docs(block.uris[0], block.sources[0], block, text_field, failures, progress)
        return
    with open_input(block.uris[0]) as f:  # a block is block_rows lines: read at once
        f.seek(block.start)
        data = io.BytesIO(f.read(block.stop - block.start))
    yield from iter_line_docs(data, block.sources[0], block.kind, text_field, block.first, failures, progress)


def iter_line_docs(stream: IO[bytes] | Any, name: str, kind: str, text_field: str, first_line: int,
                   failures: list[str], progress: Callable[[int], object] = lambda n: None,
                   whole: bool = False) -> Iterator[Doc]:
    """Documents from lines: a text line each (or the whole stream as one, whole=True), or a JSON Lines
    record each (blank lines skipped). A line that is not UTF-8 is reported and left out (in a whole
    file it becomes an empty line, so later line numbers stay right)."""
    kept: list[str] = []
    for n, raw in enumerate(stream, first_line):
        progress(len(raw))
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            failures.append(f"{name}:{n}: not UTF-8 ({e.reason} at byte {e.start}); line skipped")
            if whole:
                kept.append("\n" if raw.endswith(b"\n") else "")
            continue
        if whole:
            kept.append(line)
        elif kind == "text":
            yield Doc(name, n, line.rstrip("\r\n"))
        elif line.strip():
            doc = _json_doc(line, name, n, text_field, failures)
            if doc is not None:
                yield doc
    if whole:
        yield Doc(name, None, "".join(kept))


def _json_doc(line: str, name: str, n: int, text_field: str, failures: list[str]) -> Doc | None:
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as e:
        failures.append(f"{name}:{n}: not JSON ({e.msg} at column {e.colno}); line skipped")
        return None
    if not isinstance(rec, dict):
        failures.append(f"{name}:{n}: expected a JSON object, got {type(rec).__name__}; line skipped")
        return None
    return _record_doc(rec, name, n, text_field, failures)


def _record_doc(rec: dict, name: str, n: int, text_field: str, failures: list[str]) -> Doc | None:
    text = rec.pop(text_field, None)
    if not isinstance(text, str):
        why = f"no field {text_field!r} (--text-field)" if text is None else \
            f"field {text_field!r} is {type(text).__name__}, not text"
        failures.append(f"{name}:{n}: {why}; record skipped")
        return None
    if clash := [k for k in OWN_FIELDS if k in rec]:
        failures.append(f"{name}:{n}: field {clash[0]!r} would be overwritten by nerkit's output; record skipped")
        return None
    return Doc(name, n, text, rec)


def _parquet_docs(uri: str, name: str, block: Block, text_field: str, failures: list[str],
                  progress: Callable[[int], object]) -> Iterator[Doc]:
    import pyarrow.parquet as pq

    with open_input(uri) as f:
        pf = pq.ParquetFile(f)
        _check_column(pf, name, text_field)
        n = block.first
        for batch in pf.iter_batches(batch_size=1024, row_groups=range(block.start, block.stop)):
            progress(block.bytes * batch.num_rows // max(1, _rows(pf, block)))
            for rec in batch.to_pylist():
                doc = _record_doc(rec, name, n, text_field, failures)
                n += 1
                if doc is not None:
                    yield doc


def _check_column(pf, name: str, text_field: str) -> None:
    if text_field not in pf.schema_arrow.names:
        raise UsageError(f"{name}: no column {text_field!r} (--text-field); it has "
                         f"{', '.join(pf.schema_arrow.names)}", field="text_field")


def _rows(pf, block: Block) -> int:
    return sum(pf.metadata.row_group(g).num_rows for g in range(block.start, block.stop))
