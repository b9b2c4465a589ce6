"""Which reader or writer a file takes: from data.format, else from its extension and its first record.

  conll  one token per line, the tag in the last column (corpus.read_conll)
  spans  text with character spans: doccano, spaCy/Prodigy, Label Studio (data/spans.py)
  rows   tokens + ner_tags rows: JSON Lines, JSON, Parquet (data/rows.py)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from ..atomic import writer
from ..corpus import Corpus, check_labels, read_conll
from ..errors import CorpusError
from .base import Loaded
from .dialects import dialect_of
from .rows import read_rows, write_rows
from .spans import Policy, read_spans, write_spans

FormatName = Literal["auto", "conll", "spans", "rows"]
FORMATS = ("conll", "spans", "rows")
JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")


def _first_record(path: Path) -> object | None:
    """The first JSON value of the file (its first line, or the first element of an array), or None."""
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as f:
            head = f.read(1 << 16)
    except OSError:
        return None
    head = head.lstrip()
    if head[:1] not in ("{", "["):
        return None
    if head.startswith("["):
        head = head[1:].lstrip()
    try:
        obj, _ = json.JSONDecoder().raw_decode(head)
    except json.JSONDecodeError:
        first = head.split("\n", 1)[0]
        try:
            obj = json.loads(first)
        except json.JSONDecodeError:
            return None
    return obj


def detect_format(path: str | Path) -> str:
    """conll, spans or rows, from the extension and the first record."""
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        return "rows"
    rec = _first_record(path)
    if isinstance(rec, dict):
        if "tokens" in rec and "ner_tags" in rec:
            return "rows"
        if dialect_of(rec) is not None:
            return "spans"
        if path.suffix.lower() in JSON_SUFFIXES:
            keys = ", ".join(map(repr, list(rec)[:6]))
            raise CorpusError(f"{path}:1: a record with {keys}: neither rows ('tokens', 'ner_tags') nor text "
                              f"with spans ('text' with 'label' or 'spans', or Label Studio's 'data'); set data.format")
    elif path.suffix.lower() in JSON_SUFFIXES:
        raise CorpusError(f"{path}:1: expected a JSON object per line or a JSON array of objects")
    return "conll"


def read(path: str | Path, format: str = "auto", scheme: str = "auto", misaligned: Policy = "split",
         label_names: list[str] | None = None) -> Loaded:
    """Any supported file as a Corpus of documents of sentences (IOB2), with what writing it back needs."""
    path = Path(path)
    if not path.exists():
        raise CorpusError(f"file {str(path)!r} does not exist")
    fmt = detect_format(path) if format == "auto" else format
    if fmt == "conll":
        return Loaded(read_conll(path, scheme), "conll")
    if fmt == "spans":
        return read_spans(path, misaligned)
    if fmt == "rows":
        return read_rows(path, scheme, label_names)
    raise CorpusError(f"{format!r} is not one of auto, {', '.join(FORMATS)}", field="data.format")


def read_corpus(path: str | Path, format: str = "auto", scheme: str = "auto", misaligned: Policy = "split",
                label_names: list[str] | None = None) -> Corpus:
    """read(), its alignment report logged (a warning per misaligned span)."""
    loaded = read(path, format, scheme, misaligned, label_names)
    if loaded.report is not None:
        loaded.report.log()
    return loaded.corpus


def output_format(path: str | Path, to: str = "auto") -> str:
    if to != "auto":
        return to
    suffix = Path(path).suffix.lower()
    if suffix == ".parquet":
        return "rows"
    return "spans" if suffix in JSON_SUFFIXES else "conll"


def write_conll(path: str | Path, corpus: Corpus, tags: list[list[str]] | None = None) -> None:
    """'word tag' lines, a blank line after each sentence, -DOCSTART- before each document when the
    corpus has documents."""
    k = 0
    with writer(path) as f:
        for doc in corpus.documents:
            if corpus.has_documents:
                f.write("-DOCSTART- O\n\n")
            for s in doc.sentences:
                ts = tags[k] if tags is not None else s.tags
                k += 1
                f.write("".join(f"{w} {t}\n" for w, t in zip(s.words, ts)) + "\n")


def write(path: str | Path, corpus: Corpus, format: str, dialect: str = "spacy") -> None:
    """The corpus in `format` (conll, spans, rows); spans in `dialect` (spacy, doccano, labelstudio)."""
    if format == "conll":
        write_conll(path, corpus)
    elif format == "spans":
        write_spans(path, corpus, dialect)
    elif format == "rows":
        write_rows(path, corpus)
    else:
        raise CorpusError(f"{format!r} is not one of {', '.join(FORMATS)}", field="to")


def write_predictions(path: str | Path, loaded: Loaded, tags: list[list[str]]) -> None:
    """Predicted tags in the input's own format: CoNLL as 'token gold predicted' lines (what conlleval
    reads), span files as the same records with the predicted spans, rows with the predicted ner_tags."""
    from ..metrics import write_predictions as conll_predictions

    corpus = loaded.corpus
    if loaded.format == "spans":
        write_spans(path, corpus, loaded.dialect, loaded.sources, tags)
    elif loaded.format == "rows":
        write_rows(path, corpus, tags)
    else:
        sents = corpus.sentences
        conll_predictions(path, [s.words for s in sents], [s.tags for s in sents], tags)


def check_corpus_labels(loaded: Loaded, labels: list[str], split: str) -> None:
    """corpus.check_labels, with the record's line for files where a whole sentence sits on one line."""
    if loaded.format == "conll":
        check_labels(loaded.corpus, labels, split)
        return
    known = set(labels)
    for s in loaded.corpus.sentences:
        for t in s.tags:
            if t not in known:
                types = sorted({lab[2:] for lab in labels if lab != "O"})
                raise CorpusError(f"{loaded.corpus.path}:{s.line}: entity type {t[2:]!r} in the {split} split never "
                                  f"occurs in the training split (types: {', '.join(types)})")


def split_documents(corpus: Corpus, fractions: list[float], seed: int) -> list[Corpus]:
    """The corpus cut by document into len(fractions) parts of about those shares, shuffled with `seed`;
    each part keeps the file's order. Every non-zero share gets at least one document when there are
    enough."""
    import random

    n = len(corpus.documents)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    sizes = [int(round(f * n)) for f in fractions]
    for i, f in enumerate(fractions):
        if f > 0 and sizes[i] == 0 and n >= sum(1 for x in fractions if x > 0):
            sizes[i] = 1
    sizes[0] = n - sum(sizes[1:])  # the training part takes what rounding leaves
    if sizes[0] <= 0:
        raise CorpusError(f"{corpus.path}: {n} documents are too few to split {fractions}", field="data.split")
    parts, at = [], 0
    for size in sizes:
        idx = sorted(order[at : at + size])
        at += size
        parts.append(Corpus(corpus.path, [corpus.documents[i] for i in idx], corpus.has_documents, corpus.scheme))
    return parts


def parse_split(text: str) -> list[float]:
    """'0.8,0.1,0.1' -> [0.8, 0.1, 0.1]; '' -> []. Two or three shares that add up to 1."""
    if not text.strip():
        return []
    try:
        parts = [float(x) for x in text.split(",")]
    except ValueError:
        raise CorpusError(f"expected shares such as 0.8,0.1,0.1, got {text!r}", field="data.split") from None
    if len(parts) not in (2, 3) or any(not 0 <= p <= 1 for p in parts) or abs(sum(parts) - 1) > 1e-6 or parts[0] <= 0:
        raise CorpusError(f"expected 2 or 3 shares (train, validation[, test]) in [0, 1] adding up to 1, got {text!r}",
                          field="data.split")
    return parts
