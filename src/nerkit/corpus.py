"""CoNLL column files -> documents of sentences with IOB2 tags. Knows nothing about tokenizers."""

from __future__ import annotations

import codecs
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import CorpusError
from .schemes import SCHEMES, TagError, detect_scheme, label_list, split_tag, to_iob2

__all__ = ["Corpus", "CorpusError", "Document", "Sentence", "load_splits", "read_conll", "resolve_data_dir"]


@dataclass
class Sentence:
    words: list[str]
    tags: list[str]  # IOB2; all "O" when the input has no gold tags
    line: int = 0  # 1-based line of the first token (token i sits on line + i)


@dataclass
class Document:
    sentences: list[Sentence] = field(default_factory=list)


@dataclass
class Corpus:
    path: str
    documents: list[Document]
    has_documents: bool  # False when the file has no -DOCSTART- lines: each sentence is its own document
    scheme: str  # the scheme the file was written in

    @property
    def sentences(self) -> list[Sentence]:
        return [s for d in self.documents for s in d.sentences]

    def entity_types(self) -> set[str]:
        return {typ for s in self.sentences for t in s.tags if (typ := split_tag(t)[1]) is not None}


def read_utf8(path: Path, expected: str) -> str:
    """A text file's content, a leading BOM dropped; a one-line CorpusError naming the file (and the line
    and byte, counted in the file as it is) when it is missing, a folder, empty, binary or not UTF-8.
    Every reader (CoNLL here, the formats of data/) starts here."""
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise CorpusError(f"{path}: is a folder, expected {expected}") from None
    except OSError as e:
        raise CorpusError(f"{path}: cannot read: {e.strerror}") from None
    if not raw.strip():
        raise CorpusError(f"{path}: the file is empty, expected {expected}")
    skip = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
    body = raw[skip:]  # offsets into body, so that a leading BOM does not shift them
    if b"\x00" in body:
        at = body.index(b"\x00")
        raise CorpusError(f"{path}:{_line_at(body, at)}: binary data (NUL byte), expected a UTF-8 text file")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorpusError(f"{path}:{_line_at(body, e.start)}: invalid UTF-8 (byte 0x{body[e.start]:02x} at byte "
                          f"{skip + e.start} of the file, from 0), expected UTF-8 text") from None


def _lines(path: Path) -> Iterable[tuple[int, str]]:
    text = read_utf8(path, "CoNLL columns 'token ... tag'")
    for i, row in enumerate(_BREAK.split(text), start=1):
        yield i, row.removeprefix("\ufeff")  # a BOM that starts a line: files joined end to end


# Lines end in \n, \r\n or a lone \r (old Mac files); columns are split on spaces and tabs only, so that
# a Unicode space (U+00A0, U+3000, ...) stays inside its token.
_BREAK = re.compile(r"\r\n|\r|\n")
_BREAK_BYTES = re.compile(rb"\r\n|\r|\n")
_COLUMNS = re.compile(r"[ \t]+")


def _line_at(body: bytes, offset: int) -> int:
    return len(_BREAK_BYTES.findall(body, 0, offset)) + 1


def read_conll(path: str | os.PathLike, scheme: str = "auto") -> Corpus:
    """Read a CoNLL file: one token per line, any number of columns, the tag in the last one."""
    path = Path(path)
    if scheme != "auto" and scheme not in SCHEMES:
        raise CorpusError(f"{scheme!r} is not one of auto, {', '.join(SCHEMES)}", field="scheme")
    docs: list[list[tuple[int, list[str], list[str]]]] = [[]]
    words: list[str] = []
    tags: list[str] = []
    first_line = 0
    ncols = 0
    ncols_line = 0
    has_docstart = False

    def close_sentence() -> None:
        nonlocal words, tags
        if words:
            docs[-1].append((first_line, words, tags))
            words, tags = [], []

    for lineno, line in _lines(path):
        if not line.strip():
            close_sentence()
            continue
        line = line.strip(" \t")
        if line.startswith("-DOCSTART-"):  # also indented
            close_sentence()
            has_docstart = True
            if docs[-1]:
                docs.append([])
            continue
        cols = _COLUMNS.split(line)
        if len(cols) < 2:
            raise CorpusError(f"{path}:{lineno}: line has no tag, expected columns 'token ... tag'")
        if not ncols:
            ncols, ncols_line = len(cols), lineno
        elif len(cols) != ncols:
            raise CorpusError(
                f"{path}:{lineno}: found {len(cols)} columns, expected {ncols} as on line {ncols_line}"
            )
        if not words:
            first_line = lineno
        words.append(cols[0])
        tags.append(cols[-1])
    close_sentence()
    raw_docs = [d for d in docs if d]
    if not raw_docs:
        raise CorpusError(f"{path}: no sentences found, expected CoNLL columns 'token ... tag'")

    all_tags = [t for d in raw_docs for (_, _, t) in d]
    try:
        file_scheme = detect_scheme(all_tags) if scheme == "auto" else scheme
    except TagError:
        file_scheme = "iob2"  # the loop below reports the exact line
    documents: list[Document] = []
    for d in raw_docs:
        doc = Document()
        for line0, ws, ts in d:
            try:
                doc.sentences.append(Sentence(ws, to_iob2(ts, file_scheme), line0))
            except TagError as e:
                raise CorpusError(f"{path}:{line0 + e.index}: {e}") from None
        documents.append(doc)
    if not has_docstart:  # no document structure: every sentence stands alone
        documents = [Document([s]) for doc in documents for s in doc.sentences]
    return Corpus(str(path), documents, has_docstart, file_scheme)


# ---------------------------------------------------------------------------------------------- splits

_SPLIT_NAMES = {
    "train": ["eng.train", "train.txt", "train.conll", "train.tsv", "wnut17train.conll", "train.bio"],
    "validation": ["eng.testa", "dev.txt", "valid.txt", "validation.txt", "dev.conll", "valid.conll",
                   "emerging.dev.conll", "dev.tsv", "dev.bio"],
    "test": ["eng.testb", "test.txt", "test.conll", "emerging.test.annotated", "test.tsv", "test.bio"],
}
# Span and row files (nerkit.data) by the same stems: train.jsonl, dev.json, test.parquet, ...
for _split, _stems in (("train", ["train"]), ("validation", ["dev", "valid", "validation"]), ("test", ["test"])):
    _SPLIT_NAMES[_split] += [f"{stem}{ext}" for stem in _stems for ext in (".jsonl", ".json", ".parquet")]


@dataclass
class Splits:
    train: Corpus
    validation: Corpus | None
    test: Corpus | None
    labels: list[str]  # IOB2 label inventory from the training split

    def items(self) -> list[tuple[str, Corpus]]:
        return [(n, c) for n, c in (("validation", self.validation), ("test", self.test)) if c is not None]


def find_split_file(data_dir: Path, split: str) -> Path | None:
    for name in _SPLIT_NAMES[split]:
        if (data_dir / name).is_file():
            return data_dir / name
    return None


def check_labels(corpus: Corpus, labels: list[str], split: str) -> None:
    known = set(labels)
    for s in corpus.sentences:
        for i, t in enumerate(s.tags):
            if t not in known:
                types = sorted({lab[2:] for lab in labels if lab != "O"})
                raise CorpusError(
                    f"{corpus.path}:{s.line + i}: entity type {t[2:]!r} in the {split} split never occurs in "
                    f"the training split (types: {', '.join(types)})"
                )


def load_splits(
    data_dir: str | os.PathLike,
    train: str | None = None,
    validation: str | None = None,
    test: str | None = None,
    scheme: str = "auto",
    *,
    format: str = "auto",
    misaligned: str = "split",
    label_names: list[str] | None = None,
    split: str = "",
    seed: int = 42,
) -> Splits:
    """Read train/validation/test from a folder. File names are found by convention unless given; each
    file's format (CoNLL, text with spans, token rows) from `format` or its extension and content
    (nerkit.data). split ('0.8,0.1,0.1'): cut the training file alone by document, seeded."""
    from .data import parse_split, read, split_documents
    from .data.formats import check_corpus_labels

    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise CorpusError(f"folder {str(data_dir)!r} does not exist, expected a folder of CoNLL files",
                          field="data.dir")

    def resolve(name: str | None, split: str, required: bool) -> Path | None:
        if name:
            p = Path(name) if Path(name).is_absolute() else data_dir / name
            if not p.is_file():
                raise CorpusError(f"file {str(p)!r} does not exist", field=f"data.{split}")
            return p
        found = find_split_file(data_dir, split)
        if found is None and required:
            raise CorpusError(
                f"no {split} file in {str(data_dir)!r}, expected one of {', '.join(_SPLIT_NAMES[split])} "
                f"(or set data.{split} in the config)", field="data.dir"
            )
        return found

    def load(path: Path):
        loaded = read(path, format, scheme, misaligned, label_names)  # type: ignore[arg-type]
        if loaded.report is not None:
            loaded.report.log()
        return loaded

    shares = parse_split(split)
    if shares and (validation or test):
        raise CorpusError("set either data.split or data.validation/data.test, not both", field="data.split")
    train_file = resolve(train, "train", True)
    assert train_file is not None  # required: resolve raised otherwise
    train_l = load(train_file)
    if shares:
        parts: list[Corpus | None] = [*split_documents(train_l.corpus, shares, seed), None]
        first = parts[0]
        assert first is not None  # split_documents gives one part per share
        return Splits(first, parts[1], parts[2], label_list(sorted(first.entity_types())))
    train_c = train_l.corpus
    labels = label_list(sorted(train_c.entity_types()))
    others: dict[str, Corpus | None] = {}
    for split_name, name in (("validation", validation), ("test", test)):
        found = resolve(name, split_name, False)
        loaded = load(found) if found is not None else None
        if loaded is not None:
            check_corpus_labels(loaded, labels, split_name)
        others[split_name] = loaded.corpus if loaded is not None else None
    return Splits(train_c, others["validation"], others["test"], labels)


# ------------------------------------------------------------------------------------------ data roots

DATA_ROOT_ENV = "NERKIT_DATA_ROOT"


def data_roots() -> list[Path]:
    """Where dataset names like 'conll2003' are looked up, in order."""
    roots = []
    if os.environ.get(DATA_ROOT_ENV):
        roots.append(Path(os.environ[DATA_ROOT_ENV]))
    roots.append(Path.cwd().parent / "shared" / "data")
    roots.append(Path(__file__).resolve().parents[3] / "shared" / "data")  # checkout/../shared/data
    return roots


def resolve_data_dir(name_or_path: str) -> Path:
    """A path that exists, or a dataset name under one of the data roots."""
    p = Path(name_or_path).expanduser()
    if p.is_dir():
        return p
    if not p.is_absolute() and len(p.parts) == 1:
        for root in data_roots():
            if (root / name_or_path).is_dir():
                return root / name_or_path
    looked = ", ".join(str(r) for r in data_roots())
    raise CorpusError(
        f"folder {name_or_path!r} does not exist (dataset names are looked up in {looked}); "
        f"pass --data DIR or set {DATA_ROOT_ENV}", field="data.dir"
    )
