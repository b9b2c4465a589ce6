"""Documents in, records out: the input record (Doc), the output record (its carried fields, then source,
line and spans) as JSON Lines or Parquet, and one block tagged into its part file."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError
from .files import need_pyarrow

OWN_FIELDS = ("source", "line", "spans")  # nerkit's part of an output record


@dataclass(frozen=True)
class Doc:
    """One input record: where it came from (line or row, 1-based; None for a whole file), its text and
    the fields carried through to the output."""

    source: str
    line: int | None
    text: str
    extra: dict[str, Any] = field(default_factory=dict)


def record(doc: Doc, spans: list[dict]) -> dict:
    """The output record: the carried fields, then source, line (absent for a whole file) and spans."""
    rec = dict(doc.extra)
    rec["source"] = doc.source
    if doc.line is not None:
        rec["line"] = doc.line
    rec["spans"] = spans
    return rec


def jsonl_line(rec: dict) -> str:
    return json.dumps(rec, ensure_ascii=False, default=str) + "\n"


class ParquetRecords:
    """Records into a Parquet file, a row group per `rows` records. The carried fields' types come from
    the first row group; nerkit's own columns have fixed types."""

    def __init__(self, sink, rows: int = 4096):
        need_pyarrow("-f parquet")
        self.sink, self.rows = sink, rows
        self.pending: list[dict] = []
        self.writer: Any = None
        self.schema: Any = None

    def add(self, rec: dict) -> None:
        self.pending.append(rec)
        if len(self.pending) >= self.rows:
            self._flush()

    def close(self) -> None:
        self._flush(final=True)
        if self.writer is not None:
            self.writer.close()

    def _flush(self, final: bool = False) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self.pending and not (final and self.writer is None):
            return
        if self.schema is None:
            self.schema = output_schema(self.pending)
        try:
            table = pa.Table.from_pylist(self.pending, schema=self.schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise UsageError(f"a carried field changes type between records, which Parquet cannot hold: "
                             f"{str(e).splitlines()[0]}; write -f jsonl") from None
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.sink, self.schema)
        self.writer.write_table(table)
        self.pending = []


def output_schema(rows: list[dict]):
    import pyarrow as pa

    span = pa.struct([("label", pa.string()), ("start", pa.int64()), ("end", pa.int64()),
                      ("text", pa.string()), ("score", pa.float64())])
    carried = pa.Table.from_pylist([{k: v for k, v in r.items() if k not in OWN_FIELDS} for r in rows]).schema
    return pa.schema(list(carried) + [pa.field("source", pa.string()), pa.field("line", pa.int64()),
                                      pa.field("spans", pa.list_(span))])


def parquet_rows(path: str) -> list[dict]:
    """A Parquet output file as records, `line` dropped where it is null (as in JSON Lines)."""
    import pyarrow.parquet as pq

    rows = pq.read_table(path).to_pylist()
    for r in rows:
        if r.get("line") is None:
            r.pop("line", None)
    return rows


# -------------------------------------------------------------------------------------------- tagging

def tag_docs(tagger, docs: list[Doc]) -> Iterator[tuple[Doc, Any]]:
    """(document, TaggedText) for one block, tagged as one stream: the same batches in one process and
    in a Ray actor, so both give the same records."""
    return zip(docs, tagger.pipe_tagged([d.text for d in docs]))


def tag_block(tagger, docs: list[Doc], fmt: str) -> tuple[bytes, int]:
    """One block's part file (JSON Lines or Parquet) and the number of words tagged."""
    words = 0
    if fmt == "parquet":
        import pyarrow as pa

        out: Any = pa.BufferOutputStream()
    else:
        out = io.BytesIO()
    sink = ParquetRecords(out) if fmt == "parquet" else None
    for doc, tagged in tag_docs(tagger, docs):
        words += sum(len(s) for s in tagged.sentences)
        rec = record(doc, [s.to_dict() for s in tagged.spans])
        if sink is not None:
            sink.add(rec)
        else:
            out.write(jsonl_line(rec).encode("utf-8", "backslashreplace"))
    if sink is not None:
        sink.close()
        return out.getvalue().to_pybytes(), words
    return out.getvalue(), words
