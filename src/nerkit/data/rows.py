"""Rows of `tokens` and `ner_tags` (the shape of token-classification datasets on the Hugging Face hub) in
JSON Lines, a JSON array or Parquet <-> documents of sentences.

One row is one sentence. Tags are strings in any scheme, or integers whose names come from data.label_names
or the dataset's features (dataset_info.json / dataset_infos.json beside the file, or the `huggingface`
metadata a hub Parquet file carries). Documents: a row whose only token is -DOCSTART- opens one (as in
CoNLL), and consecutive rows that share a `doc_id` (or `document_id`) form one; otherwise every row
stands alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..atomic import writer
from ..corpus import Corpus, Document, Sentence, read_utf8
from ..errors import CorpusError
from ..schemes import TagError, detect_scheme, to_iob2
from .base import Loaded, json_records

EXPECTED = "rows with 'tokens' and 'ner_tags'"
DOC_KEYS = ("doc_id", "document_id")
FEATURE_FILES = ("dataset_info.json", "dataset_infos.json", "info.json")
PARQUET_HINT = 'reading and writing Parquet needs pyarrow: pip install "nerkit[parquet]"'


def _pyarrow():
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet as pq
    except ImportError:
        raise CorpusError(PARQUET_HINT) from None
    return pq


def _parquet_rows(path: Path) -> tuple[Iterator[tuple[int, Any]], list[str] | None]:
    pq = _pyarrow()
    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises its own kinds for a broken file
        raise CorpusError(f"{path}: cannot read as Parquet: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    names = None
    meta = (table.schema.metadata or {}).get(b"huggingface")
    if meta:
        try:
            names = _names_in(json.loads(meta))
        except json.JSONDecodeError:
            names = None
    return ((i, row) for i, row in enumerate(table.to_pylist(), start=1)), names


def _names_in(obj: Any) -> list[str] | None:
    """The ClassLabel names of `ner_tags` anywhere in a datasets features description."""
    if isinstance(obj, dict):
        tags = obj.get("ner_tags")
        if isinstance(tags, dict):
            for cand in (tags.get("feature"), tags):
                if isinstance(cand, dict) and isinstance(cand.get("names"), list):
                    return [str(n) for n in cand["names"]]
        for v in obj.values():
            found = _names_in(v)
            if found:
                return found
    elif isinstance(obj, list) and obj and isinstance(obj[0], dict) and "ner_tags" in obj[0]:
        return _names_in(obj[0])
    return None


def feature_names(path: Path) -> tuple[list[str] | None, str]:
    """Label names from a features file beside the data file, and which file."""
    for name in FEATURE_FILES:
        f = path.parent / name
        if f.is_file():
            try:
                names = _names_in(json.loads(f.read_text(encoding="utf-8")))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise CorpusError(f"{f}: not valid JSON ({type(e).__name__}), expected dataset features") from None
            if names:
                return names, str(f)
    return None, ""


def _rows(path: Path) -> tuple[Iterable[tuple[int, Any]], list[str] | None, str]:
    if path.suffix.lower() == ".parquet":
        rows, names = _parquet_rows(path)
        return rows, names, "parquet"
    text = read_utf8(path, f"JSON {EXPECTED}")
    kind = "json" if text.lstrip().startswith("[") else "jsonl"
    return json_records(path, text), None, kind


def read_rows(path: str | Path, scheme: str = "auto", label_names: list[str] | None = None) -> Loaded:
    path = Path(path)
    rows, embedded, kind = _rows(path)
    names, names_from = (label_names, "data.label_names") if label_names else (embedded, "the Parquet metadata")
    unit = "row" if kind == "parquet" else "line"
    raw: list[tuple[int, list[str], list[Any], Any]] = []
    for line, row in rows:
        where = f"{path}:{line}" if unit == "line" else f"{path}: row {line}"
        if not isinstance(row, dict):
            raise CorpusError(f"{where}: expected an object with 'tokens' and 'ner_tags', got {type(row).__name__}")
        for key in ("tokens", "ner_tags"):
            if key not in row:
                raise CorpusError(f"{where}: missing field {key!r}, expected {EXPECTED}")
            if not isinstance(row[key], list):
                raise CorpusError(f"{where}: field {key!r} is {type(row[key]).__name__}, expected a list")
        toks, tags = row["tokens"], row["ner_tags"]
        if len(toks) != len(tags):
            raise CorpusError(f"{where}: {len(toks)} tokens but {len(tags)} ner_tags")
        for i, t in enumerate(toks):
            if not isinstance(t, str) or not t or any(c.isspace() for c in t):
                raise CorpusError(f"{where}: tokens[{i}]: expected a word without spaces, got {json.dumps(t)}")
        raw.append((line, toks, tags, next((row[k] for k in DOC_KEYS if k in row), None)))
    if not raw:
        raise CorpusError(f"{path}: no rows found, expected {EXPECTED}")

    def where_of(line: int) -> str:
        return f"{path}:{line}" if unit == "line" else f"{path}: row {line}"

    if any(isinstance(t, int) and not isinstance(t, bool) for _, _, tags, _ in raw for t in tags):
        if not names:
            names, names_from = feature_names(path)
        if not names:
            raise CorpusError(f"{path}: ner_tags are label ids and no label names were found; set "
                              f"data.label_names (O,B-PER,I-PER,...) or put dataset_info.json beside the file")
    decoded: list[tuple[int, list[str], list[str], Any]] = []
    for line, toks, tags, doc in raw:
        out = []
        for i, t in enumerate(tags):
            if isinstance(t, bool) or not isinstance(t, int | str):
                raise CorpusError(f"{where_of(line)}: ner_tags[{i}]: expected a tag or a label id, got {json.dumps(t)}")
            if isinstance(t, int):
                assert names is not None
                if not 0 <= t < len(names):
                    raise CorpusError(f"{where_of(line)}: ner_tags[{i}]: unknown label id {t} (ids 0..{len(names) - 1} "
                                      f"from {names_from})")
                t = names[t]
            out.append(t)
        decoded.append((line, toks, out, doc))
    return Loaded(_corpus(path, decoded, scheme, where_of), "rows", dialect=kind)


def _corpus(path: Path, rows, scheme: str, where_of) -> Corpus:
    sents = [(line, toks, tags) for line, toks, tags, _ in rows if toks and toks != ["-DOCSTART-"]]
    try:
        file_scheme = detect_scheme([t for _, _, t in sents]) if scheme == "auto" else scheme
    except TagError:
        file_scheme = "iob2"  # the loop below names the row
    docs: list[Document] = [Document()]
    marked = False
    prev_doc: Any = None
    for line, toks, tags, doc in rows:
        if toks == ["-DOCSTART-"]:
            marked = True
            if docs[-1].sentences:
                docs.append(Document())
            continue
        if not toks:
            continue
        if doc is not None:
            marked = True
            if doc != prev_doc and docs[-1].sentences:
                docs.append(Document())
            prev_doc = doc
        try:
            docs[-1].sentences.append(Sentence(list(toks), to_iob2(tags, file_scheme), line))
        except TagError as e:
            raise CorpusError(f"{where_of(line)}: ner_tags[{e.index}]: {e}") from None
    documents = [d for d in docs if d.sentences]
    if not documents:
        raise CorpusError(f"{path}: no sentences found, expected {EXPECTED}")
    if not marked:
        documents = [Document([s]) for d in documents for s in d.sentences]
    return Corpus(str(path), documents, marked, file_scheme)


def row_dicts(corpus: Corpus, tags: list[list[str]] | None = None) -> Iterator[dict]:
    """One row per sentence, with the document's number in doc_id when the corpus has documents."""
    k = 0
    for d, doc in enumerate(corpus.documents):
        for s in doc.sentences:
            row: dict = {"tokens": s.words, "ner_tags": tags[k] if tags is not None else s.tags}
            if corpus.has_documents:
                row["doc_id"] = d
            k += 1
            yield row


def write_rows(path: str | Path, corpus: Corpus, tags: list[list[str]] | None = None) -> None:
    """Parquet for .parquet, a JSON array for .json, JSON Lines otherwise."""
    path = Path(path)
    rows = list(row_dicts(corpus, tags))
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        pq = _pyarrow()
        import pyarrow as pa

        with writer(path, binary=True) as f:
            pq.write_table(pa.Table.from_pylist(rows), f)
        return
    with writer(path) as f:
        if suffix == ".json":
            f.write("[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n]\n")
        else:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
