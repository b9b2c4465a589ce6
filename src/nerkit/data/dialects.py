"""One record of a span file -> its text, character spans and (if given) tokens, in each dialect:
doccano `label: [[start, end, LABEL]]`, spaCy/Prodigy `spans: [{start, end, label}]` (with `tokens`), and a
Label Studio task `annotations[].result[].value{start, end, labels}`. Every problem is a one-line CorpusError
naming the record and the field."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..errors import CorpusError
from ..words import Token

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
