"""What every reader and writer of data/ shares: JSON records with their line numbers, where each document
came from (its text and word offsets), and the alignment report. Files are read with corpus.read_utf8."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..corpus import Corpus
from ..errors import CorpusError

log = logging.getLogger("nerkit")


def json_records(path: Path, text: str) -> Iterator[tuple[int, Any]]:
    """(line, record) for JSON Lines, or for each element of one JSON array (a Label Studio export),
    each with the line it starts on, so that errors can name it."""
    if text.lstrip().startswith("["):
        yield from _array_records(path, text)
        return
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as e:
            raise CorpusError(f"{path}:{lineno}: invalid JSON ({e.msg}, column {e.colno}), "
                              f"expected one JSON object per line") from None


def _array_records(path: Path, text: str) -> Iterator[tuple[int, Any]]:
    decoder = json.JSONDecoder()
    pos, line, counted = text.index("[") + 1, 1, 0

    def line_at(i: int) -> int:
        nonlocal line, counted
        line += text.count("\n", counted, i)
        counted = i
        return line

    def skip(i: int) -> int:
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        return i

    pos = skip(pos)
    if pos < len(text) and text[pos] == "]":
        return
    while True:
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise CorpusError(f"{path}:{e.lineno}: invalid JSON ({e.msg}, column {e.colno})") from None
        yield line_at(pos), obj
        pos = skip(end)
        if pos < len(text) and text[pos] == ",":
            pos = skip(pos + 1)
            continue
        if pos < len(text) and text[pos] == "]":
            return
        raise CorpusError(f"{path}:{line_at(min(pos, len(text)))}: invalid JSON, expected ',' or ']' "
                          f"between the array's records")


@dataclass
class DocSource:
    """Where a document read from a text-with-spans file came from: its text, each word's character
    offsets in it (per sentence, as the document's sentences), and the record itself, so that
    predictions are written back onto the user's own text."""

    text: str
    offsets: list[list[tuple[int, int]]]
    record: dict
    dialect: str


@dataclass
class Misaligned:
    where: str  # path:line
    field: str  # e.g. label[2]
    label: str
    start: int
    end: int
    text: str  # the span's text
    words: str  # the word(s) its edges cut
    action: str  # split, expand, drop

    def line(self) -> str:
        return (f"{self.where}: {self.field} {self.label} [{self.start}, {self.end}) {self.text!r} "
                f"cuts {self.words!r}: {self.action}")


@dataclass
class AlignmentReport:
    """Spans whose edges were not on word boundaries, and what the policy did with each."""

    path: str = ""
    spans: int = 0
    cases: list[Misaligned] = field(default_factory=list)

    def summary(self) -> str:
        if not self.cases:
            return f"{self.path}: all {self.spans} spans fall on word boundaries"
        by = Counter(c.action for c in self.cases)
        acts = ", ".join(f"{n} {a}" for a, n in sorted(by.items()))
        return f"{self.path}: {len(self.cases)} of {self.spans} spans not on word boundaries ({acts})"

    def lines(self, limit: int | None = None) -> list[str]:
        shown = self.cases if limit is None else self.cases[:limit]
        out = [self.summary(), *("  " + c.line() for c in shown)]
        if limit is not None and len(self.cases) > limit:
            out.append(f"  ... {len(self.cases) - limit} more")
        return out

    def log(self) -> None:
        if self.cases:
            for line in self.lines():
                log.warning("%s", line)


@dataclass
class Loaded:
    """A file read by any reader: the corpus, and what writing predictions back in its format needs."""

    corpus: Corpus
    format: str  # conll, spans, rows
    sources: list[DocSource] | None = None  # spans: one per document
    report: AlignmentReport | None = None  # spans: the misaligned spans
    dialect: str = ""  # spans: spacy, doccano, labelstudio; rows: jsonl, json, parquet
