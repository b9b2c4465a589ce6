"""Text with character spans (doccano, spaCy/Prodigy, Label Studio) <-> documents of words with IOB2 tags.

Words come from the tagger's own splitter (nerkit.words), or from the record's `tokens` when it has them
(spaCy/Prodigy), so a model meets at training the words it will be given at inference. A span whose edge
falls inside a word follows the misalignment policy:
  split   cut the word at the span's edge ("Paris" + "-based"), so no span is lost (the default)
  expand  grow the span to the whole words it touches
  drop    leave the span out
  error   stop, naming file:line and the span
One record is one document; its sentences are found by the tagger's sentence splitter, and a newline
always ends a sentence (nerkit's own files say `"sentence_split": "lines"`: newlines alone).
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from ..atomic import writer
from ..corpus import Corpus, Document, Sentence, read_utf8
from ..errors import CorpusError
from ..schemes import spans as entity_spans
from ..words import Token, split_sentences, split_words
from .base import AlignmentReport, DocSource, Loaded, Misaligned, json_records
from .dialects import DIALECTS, EXPECTED, RawSpan, Record, parse_record

Policy = Literal["split", "expand", "drop", "error"]
POLICIES = ("split", "expand", "drop", "error")


def _check_overlap(spans: list[RawSpan], text: str, where: str, after: str = "") -> None:
    for a, b in zip(spans, spans[1:]):
        if b.start < a.end:
            raise CorpusError(
                f"{where}: spans overlap{after}: {a.field} {a.label} [{a.start}, {a.end}) {text[a.start:a.end]!r} "
                f"and {b.field} {b.label} [{b.start}, {b.end}) {text[b.start:b.end]!r}")


def align(rec: Record, policy: Policy, where: str, report: AlignmentReport) -> tuple[list[Token], list[str]]:
    """The record's words (cut at span edges under `split`) and their IOB2 tags."""
    text = rec.text
    words = rec.tokens if rec.tokens is not None else split_words(text)
    uniq = {(s.start, s.end, s.label): s for s in reversed(rec.spans)}  # exact duplicates count once
    spans = sorted(uniq.values(), key=lambda s: (s.start, s.end))
    report.spans += len(spans)
    _check_overlap(spans, text, where)
    starts = [w.start for w in words]
    cuts: set[int] = set()
    kept: list[RawSpan] = []

    def inside(pos: int) -> Token | None:  # the word that `pos` falls strictly inside
        k = bisect.bisect_right(starts, pos) - 1
        return words[k] if k >= 0 and words[k].start < pos < words[k].end else None

    for s in spans:
        j = bisect.bisect_left(starts, s.end)  # words[j - 1] is the last one starting before the end
        touched = j > 0 and words[j - 1].end > s.start
        cut = [w for w in (inside(s.start), inside(s.end)) if w is not None]
        if touched and not cut:
            kept.append(s)
            continue
        action = policy if touched else ("error" if policy == "error" else "drop")
        shown = " ".join(dict.fromkeys(w.text for w in cut)) if cut else "no word"
        case = Misaligned(where, s.field, s.label, s.start, s.end, text[s.start:s.end], shown, action)
        if action == "error":
            raise CorpusError(f"{where}: {s.field} {s.label} [{s.start}, {s.end}) {case.text!r} does not fall on "
                              f"word boundaries (it cuts {shown!r}); set data.misaligned to split, expand or drop")
        report.cases.append(case)
        if action == "split":
            cuts.update(p for p in (s.start, s.end) if inside(p) is not None)
            kept.append(s)
        elif action == "expand":
            a, b = inside(s.start), inside(s.end)
            kept.append(RawSpan(a.start if a else s.start, b.end if b else s.end, s.label, s.field))
    if policy == "expand":
        _check_overlap(kept, text, where, " after expanding to whole words")
    if cuts:
        words = _cut(words, cuts)
        starts = [w.start for w in words]
    tags = ["O"] * len(words)
    for s in kept:
        first = bisect.bisect_left(starts, s.start)
        n = 0
        for k in range(first, len(words)):
            if words[k].end > s.end:
                break
            tags[k] = ("B-" if n == 0 else "I-") + s.label
            n += 1
    return words, tags


def _cut(words: list[Token], cuts: set[int]) -> list[Token]:
    out = []
    for w in words:
        edges = sorted(c for c in cuts if w.start < c < w.end)
        prev = w.start
        for c in [*edges, w.end]:
            out.append(Token(w.text[prev - w.start : c - w.start], prev, c))
            prev = c
    return out


def sentence_starts(rec: Record, words: list[Token], tags: list[str]) -> list[int]:
    """Indices of the words that open a sentence: the tagger's splitter (unless the file says lines
    only), and every newline. A sentence break the splitter finds inside an entity is not taken."""
    text = rec.text
    breaks: list[int] = []
    if not rec.lines_only:
        breaks = [sent[0].start for sent in split_sentences(text)[1:]]
    out, b = [0], 0
    for k in range(1, len(words)):
        prev, w = words[k - 1], words[k]
        while b < len(breaks) and breaks[b] <= prev.start:
            b += 1
        newline = "\n" in text[prev.end : w.start]
        split = b < len(breaks) and breaks[b] <= w.start and not tags[k].startswith("I-")
        if newline or split:
            out.append(k)
            if tags[k].startswith("I-"):  # an entity across a line break: two entities
                tags[k] = "B-" + tags[k][2:]
    return out


# ------------------------------------------------------------------------------------------ reading

def read_spans(path: str | Path, policy: Policy = "split") -> Loaded:
    path = Path(path)
    text = read_utf8(path, EXPECTED)
    report = AlignmentReport(str(path))
    docs: list[Document] = []
    sources: list[DocSource] = []
    dialects: set[str] = set()
    for line, obj in json_records(path, text):
        where = f"{path}:{line}"
        rec = parse_record(obj, where)
        dialects.add(rec.dialect)
        words, tags = align(rec, policy, where, report)
        starts = sentence_starts(rec, words, tags) if words else []
        doc, offs = Document(), []
        for a, b in zip(starts, [*starts[1:], len(words)]):
            doc.sentences.append(Sentence([w.text for w in words[a:b]], tags[a:b], line))
            offs.append([(w.start, w.end) for w in words[a:b]])
        docs.append(doc)
        sources.append(DocSource(rec.text, offs, rec.raw, rec.dialect))
    if not any(d.sentences for d in docs):
        raise CorpusError(f"{path}: no words found, expected {EXPECTED}")
    keep = [k for k, d in enumerate(docs) if d.sentences]  # an empty text is no document
    corpus = Corpus(str(path), [docs[k] for k in keep], True, "iob2")
    dialect = dialects.pop() if len(dialects) == 1 else "spacy"
    return Loaded(corpus, "spans", [sources[k] for k in keep], report, dialect)


# ------------------------------------------------------------------------------------------ writing

def _layout(doc: Document) -> tuple[str, list[list[tuple[int, int]]]]:
    """A document as text: words joined by spaces, one sentence per line."""
    offs, pos = [], 0
    for s in doc.sentences:
        row = []
        for w in s.words:
            row.append((pos, pos + len(w)))
            pos += len(w) + 1  # a space, or the newline that ends the sentence
        offs.append(row)
    return "\n".join(" ".join(s.words) for s in doc.sentences), offs


def _char_spans(tags: list[list[str]], offs: list[list[tuple[int, int]]]) -> list[tuple[int, int, str, int, int]]:
    """(start, end, label, first word, one past the last word) per entity, words numbered over the document."""
    out, base = [], 0
    for ts, os_ in zip(tags, offs):
        for e in entity_spans(ts):
            out.append((os_[e.start][0], os_[e.end - 1][1], e.type, base + e.start, base + e.end))
        base += len(ts)
    return out


def _record(dialect: str, text: str, offs, spans, source: DocSource | None) -> dict:
    if dialect == "doccano":
        rec = dict(source.record) if source and source.dialect == "doccano" else {"text": text}
        for k in ("labels", "entities"):
            rec.pop(k, None)
        rec["label"] = [[s, e, lab] for s, e, lab, _, _ in spans]
        return rec
    if dialect == "labelstudio":
        result = [{"from_name": "label", "to_name": "text", "type": "labels",
                   "value": {"start": s, "end": e, "text": text[s:e], "labels": [lab]}} for s, e, lab, _, _ in spans]
        if source and source.dialect == "labelstudio":  # predictions go where Label Studio imports them
            return {**source.record, "predictions": [{"model_version": "nerkit", "result": result}]}
        return {"data": {"text": text}, "annotations": [{"result": result}]}
    rec = dict(source.record) if source and source.dialect == "spacy" else {"text": text}
    if source is None:
        flat = [o for row in offs for o in row]
        rec["tokens"] = [{"text": text[s:e], "start": s, "end": e, "id": i} for i, (s, e) in enumerate(flat)]
        rec["sentence_split"] = "lines"
    rec["spans"] = [{"start": s, "end": e, "label": lab, "token_start": a, "token_end": b - 1}
                    for s, e, lab, a, b in spans]
    return rec


def span_records(corpus: Corpus, dialect: str = "spacy", sources: list[DocSource] | None = None,
                 tags: list[list[str]] | None = None) -> Iterable[dict]:
    """One record per document. sources: the documents' own texts (predictions are written onto them);
    tags: IOB2 tags per sentence in corpus order, instead of the corpus's own."""
    if sources is not None and len(sources) != len(corpus.documents):
        raise ValueError(f"{len(sources)} sources for {len(corpus.documents)} documents")
    k = 0
    for d, doc in enumerate(corpus.documents):
        n = len(doc.sentences)
        doc_tags = tags[k : k + n] if tags is not None else [s.tags for s in doc.sentences]
        k += n
        source = sources[d] if sources is not None else None
        text, offs = (source.text, source.offsets) if source is not None else _layout(doc)
        yield _record(dialect, text, offs, _char_spans(doc_tags, offs), source)


def write_spans(path: str | Path, corpus: Corpus, dialect: str = "spacy", sources: list[DocSource] | None = None,
                tags: list[list[str]] | None = None) -> None:
    """JSON Lines; one JSON array for Label Studio (what its import takes) or a .json file."""
    if dialect not in DIALECTS:
        raise CorpusError(f"{dialect!r} is not one of {', '.join(DIALECTS)}", field="dialect")
    records = span_records(corpus, dialect, sources, tags)
    with writer(path) as f:
        if dialect == "labelstudio" or Path(path).suffix.lower() == ".json":
            f.write("[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n]\n")
        else:
            for r in records:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
