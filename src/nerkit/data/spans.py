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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..atomic import writer
from ..corpus import Corpus, Document, Sentence
from ..errors import CorpusError
from ..schemes import spans as entity_spans
from ..words import Token, split_sentences, split_words
from .base import AlignmentReport, DocSource, Loaded, Misaligned, json_records, read_text

Policy = Literal["split", "expand", "drop", "error"]
POLICIES = ("split", "expand", "drop", "error")
DIALECTS = ("spacy", "doccano", "labelstudio")
EXPECTED = "JSON records with a text and character spans (doccano, spaCy/Prodigy or Label Studio)"


@dataclass
class RawSpan:
    start: int
    end: int
    label: str
    field: str  # where in the record: label[2], spans[0], annotations[0].result[1]


@dataclass
class Record:
    text: str
    spans: list[RawSpan]
    tokens: list[Token] | None
    lines_only: bool  # sentences end at newlines only
    dialect: str
    raw: dict


# ---------------------------------------------------------------------------------------- records

def dialect_of(obj: Any) -> str | None:
    if not isinstance(obj, dict):
        return None
    if "annotations" in obj or isinstance(obj.get("data"), dict):
        return "labelstudio"
    if "text" in obj and any(k in obj for k in ("label", "labels", "entities")):
        return "doccano"
    if "text" in obj:
        return "spacy"
    return None


def parse_record(obj: Any, where: str) -> Record:
    dialect = dialect_of(obj)
    if dialect is None:
        if isinstance(obj, dict):
            raise CorpusError(f"{where}: missing field 'text' (found {', '.join(map(repr, list(obj)[:6]))}), "
                              f"expected {EXPECTED}")
        raise CorpusError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if dialect == "labelstudio":
        text, spans = _labelstudio(obj, where)
    else:
        text = obj["text"]
        if not isinstance(text, str):
            raise CorpusError(f"{where}: field 'text' is {type(text).__name__}, expected a string")
        spans = _doccano(obj, where) if dialect == "doccano" else _spacy(obj, where)
    for s in spans:
        if s.end > len(text):
            raise CorpusError(f"{where}: {s.field}: span [{s.start}, {s.end}) ends past the text's end "
                              f"({len(text)} characters)")
    tokens = _tokens(obj, text, where) if obj.get("tokens") is not None else None
    return Record(text, spans, tokens, obj.get("sentence_split") == "lines", dialect, obj)


def _int(v: Any, where: str, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise CorpusError(f"{where}: {name}: expected a whole number, got {json.dumps(v)}")
    if v < 0:
        raise CorpusError(f"{where}: {name}: expected an offset of 0 or more, got {v}")
    return v


def _span(start: Any, end: Any, label: Any, where: str, name: str) -> RawSpan:
    s, e = _int(start, where, f"{name}.start"), _int(end, where, f"{name}.end")
    if not isinstance(label, str) or not label.strip() or any(c.isspace() for c in label):
        raise CorpusError(f"{where}: {name}.label: expected a label without spaces, got {json.dumps(label)}")
    if e <= s:
        raise CorpusError(f"{where}: {name}: span [{s}, {e}) is empty, expected start < end")
    return RawSpan(s, e, label, name)


def _list(obj: dict, key: str, where: str) -> list:
    v = obj.get(key)
    if v is None:
        return []
    if not isinstance(v, list):
        raise CorpusError(f"{where}: field {key!r} is {type(v).__name__}, expected a list")
    return v


def _doccano(obj: dict, where: str) -> list[RawSpan]:
    out = []
    key = next(k for k in ("label", "labels", "entities") if k in obj)
    for i, item in enumerate(_list(obj, key, where)):
        name = f"{key}[{i}]"
        if isinstance(item, dict):  # doccano's newer export: {"start_offset", "end_offset", "label"}
            for k in ("start_offset", "end_offset", "label"):
                if k not in item:
                    raise CorpusError(f"{where}: {name}: missing field {k!r}")
            out.append(_span(item["start_offset"], item["end_offset"], item["label"], where, name))
        elif isinstance(item, list) and len(item) == 3:
            out.append(_span(item[0], item[1], item[2], where, name))
        else:
            raise CorpusError(f"{where}: {name}: expected [start, end, label], got {json.dumps(item)[:60]}")
    return out


def _spacy(obj: dict, where: str) -> list[RawSpan]:
    out = []
    key = "spans" if "spans" in obj else "ents" if "ents" in obj else "spans"
    for i, item in enumerate(_list(obj, key, where)):
        name = f"{key}[{i}]"
        if not isinstance(item, dict):
            raise CorpusError(f"{where}: {name}: expected an object {{start, end, label}}")
        for k in ("start", "end", "label"):
            if k not in item:
                raise CorpusError(f"{where}: {name}: missing field {k!r}")
        out.append(_span(item["start"], item["end"], item["label"], where, name))
    return out


def _labelstudio(obj: dict, where: str) -> tuple[str, list[RawSpan]]:
    data = obj.get("data")
    if not isinstance(data, dict):
        raise CorpusError(f"{where}: missing field 'data', expected a Label Studio task {{data, annotations}}")
    text = data.get("text")
    if text is None:
        strings = [v for v in data.values() if isinstance(v, str)]
        if len(strings) != 1:
            raise CorpusError(f"{where}: missing field 'data.text'")
        text = strings[0]
    if not isinstance(text, str):
        raise CorpusError(f"{where}: field 'data.text' is {type(text).__name__}, expected a string")
    anns = [(i, a) for i, a in enumerate(_list(obj, "annotations", where))
            if isinstance(a, dict) and not a.get("was_cancelled")]
    if not anns:
        return text, []
    ai, ann = anns[0]  # the first annotation that was not cancelled
    out = []
    for j, res in enumerate(_list(ann, "result", f"{where}: annotations[{ai}]")):
        name = f"annotations[{ai}].result[{j}]"
        if not isinstance(res, dict) or res.get("type", "labels") != "labels":
            continue  # relations, choices and other result kinds carry no span
        value = res.get("value")
        if not isinstance(value, dict):
            raise CorpusError(f"{where}: {name}: missing field 'value'")
        for k in ("start", "end", "labels"):
            if k not in value:
                raise CorpusError(f"{where}: {name}.value: missing field {k!r}")
        labels = value["labels"]
        if not isinstance(labels, list) or len(labels) != 1:
            raise CorpusError(f"{where}: {name}.value.labels: expected one label, got {json.dumps(labels)[:60]}")
        out.append(_span(value["start"], value["end"], labels[0], where, f"{name}.value"))
    return text, out


def _tokens(obj: dict, text: str, where: str) -> list[Token]:
    """The record's own words (spaCy/Prodigy `tokens`); a fast pass, and the careful one to name a fault."""
    try:
        out, prev, n = [], 0, len(text)
        for t in obj["tokens"]:
            s, e = t["start"], t["end"]
            if type(s) is not int or type(e) is not int or not prev <= s < e <= n:
                break
            out.append(Token(text[s:e], s, e))
            prev = e
        else:
            return out
    except (TypeError, KeyError):
        pass
    out = []
    for i, t in enumerate(_list(obj, "tokens", where)):
        if not isinstance(t, dict) or "start" not in t or "end" not in t:
            raise CorpusError(f"{where}: tokens[{i}]: expected an object {{text, start, end}}")
        s, e = _int(t["start"], where, f"tokens[{i}].start"), _int(t["end"], where, f"tokens[{i}].end")
        if not s < e <= len(text) or (out and s < out[-1].end):
            raise CorpusError(f"{where}: tokens[{i}]: offsets [{s}, {e}) are not in order inside the text")
        out.append(Token(text[s:e], s, e))
    return out


# -------------------------------------------------------------------------------------- alignment

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
    text = read_text(path, EXPECTED)
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
