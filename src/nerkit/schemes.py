"""Tag schemes as data: parse tags, convert any scheme to IOB2, read spans, list legal transitions.

Everything inside nerkit speaks IOB2 (B- starts every entity). Files in IOB1, IOBES/BILOU or IO are
converted once, when they are read.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import NerkitError

OUTSIDE = "O"
_TAG = re.compile(r"^([BIESLU])-(\S+)$")


@dataclass(frozen=True)
class Scheme:
    name: str
    prefixes: frozenset[str]  # prefixes that may appear in a file of this scheme


SCHEMES: dict[str, Scheme] = {
    "iob1": Scheme("iob1", frozenset("BI")),
    "iob2": Scheme("iob2", frozenset("BI")),
    "iobes": Scheme("iobes", frozenset("BIES")),
    "bilou": Scheme("bilou", frozenset("BILU")),
    "io": Scheme("io", frozenset("I")),
}


class TagError(NerkitError):
    """A tag that does not fit the scheme; the caller adds file and line from `index`."""

    def __init__(self, message: str, index: int = 0):
        super().__init__(message)
        self.index = index


def split_tag(tag: str) -> tuple[str, str | None]:
    """'B-PER' -> ('B', 'PER'); 'O' -> ('O', None). Raises TagError on anything else."""
    if tag == OUTSIDE:
        return OUTSIDE, None
    m = _TAG.match(tag)
    if not m:
        raise TagError(f"tag {tag!r} is not 'O' or PREFIX-TYPE")
    return m.group(1), m.group(2)


def detect_scheme(tag_sequences: list[list[str]]) -> str:
    """Guess the scheme of a file from its tags (used when the config says scheme = "auto")."""
    prefixes: set[str] = set()
    iob1_evidence = False
    for tags in tag_sequences:
        prev_type: str | None = None
        for tag in tags:
            p, t = split_tag(tag)
            prefixes.add(p)
            if p == "I" and t != prev_type:
                iob1_evidence = True  # an entity opened by I-: IOB1 (or IO)
            prev_type = t
    if prefixes & set("LU"):
        return "bilou"
    if prefixes & set("ES"):
        return "iobes"
    if "B" not in prefixes:
        return "io"
    return "iob1" if iob1_evidence else "iob2"


def to_iob2(tags: list[str], scheme: str) -> list[str]:
    """Convert one sentence's tags from `scheme` to IOB2. Raises TagError (with the token index)."""
    allowed = SCHEMES[scheme].prefixes
    out: list[str] = []
    prev_type: str | None = None
    for i, tag in enumerate(tags):
        try:
            p, t = split_tag(tag)
        except TagError as e:
            raise TagError(str(e), i) from None
        if p != OUTSIDE and p not in allowed:
            raise TagError(f"tag {tag!r} is not valid in scheme {scheme.upper()}", i)
        if p == OUTSIDE:
            out.append(OUTSIDE)
        elif p in ("B", "S", "U"):
            out.append(f"B-{t}")
        elif p in ("I", "E", "L"):
            # In IOB1/IO an I- after O or another type opens an entity; IOB2/IOBES would call it an error,
            # but conlleval reads it the same lenient way, so we do too.
            out.append(f"I-{t}" if prev_type == t else f"B-{t}")
        prev_type = t
        if p in ("E", "S", "L", "U"):
            prev_type = None  # the entity is closed; an I- after it starts a new one
    return out


@dataclass(frozen=True)
class Entity:
    type: str
    start: int  # first word index
    end: int  # one past the last word index


def spans(tags: list[str], strict: bool = False) -> list[Entity]:
    """Entities in an IOB2 sequence.

    Lenient (conlleval): an I-X after O or another type starts an entity. Strict: such a run is not an
    entity at all, as in seqeval's strict IOB2 mode.
    """
    result: list[Entity] = []
    cur_type: str | None = None
    cur_start = 0
    valid = True
    for i, tag in enumerate(list(tags) + [OUTSIDE]):
        p, t = split_tag(tag)
        starts = p == "B" or (p == "I" and t != cur_type)
        if cur_type is not None and (p == OUTSIDE or starts):
            if valid or not strict:
                result.append(Entity(cur_type, cur_start, i))
            cur_type = None
        if starts:
            cur_type, cur_start, valid = t, i, p == "B"
    return result


def flat_spans(tags: Sequence[str], lengths: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The lenient spans() of many sentences at once: tags of all words, sentences one after another,
    `lengths` words each. Returns each entity's type and its first and one-past-last word (flat indices),
    in order. Each distinct tag is parsed once; the rest is numpy."""
    distinct = list(dict.fromkeys(tags))
    parsed = [split_tag(t) for t in distinct]
    types = sorted({t for _, t in parsed if t is not None})
    code = {t: i for i, t in enumerate(distinct)}
    c = np.fromiter(map(code.__getitem__, tags), dtype=np.int64, count=len(tags))
    typ = np.array([types.index(t) if t is not None else -1 for _, t in parsed], dtype=np.int64)[c]  # -1: O
    inside = np.array([p == "I" for p, _ in parsed], dtype=bool)[c]
    opens = np.zeros(len(tags), dtype=bool)  # the first word of each sentence
    opens[(np.cumsum(lengths) - lengths)[lengths > 0]] = True
    # I-X goes on with the entity of the word before when that is of type X too (B-X or I-X)
    goes_on = inside & ~opens & (typ == np.concatenate([[-1], typ[:-1]]))
    first = np.flatnonzero((typ >= 0) & ~goes_on)
    stops = np.append(np.flatnonzero(~goes_on), len(tags))
    end = stops[np.searchsorted(stops, first, "right")]
    return [types[i] for i in typ[first].tolist()], first, end


def label_list(entity_types: list[str]) -> list[str]:
    """The IOB2 label inventory for these types: O first, then B-/I- per type in sorted order."""
    labels = [OUTSIDE]
    for t in sorted(set(entity_types)):
        labels += [f"B-{t}", f"I-{t}"]
    return labels


def transition_mask(labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Legal IOB2 moves: allowed[i, j] says label j may follow label i; start[j] says j may open a sentence.

    I-X may only follow B-X or I-X; everything else is free.
    """
    n = len(labels)
    parsed = [split_tag(lab) for lab in labels]
    allowed = np.ones((n, n), dtype=bool)
    start = np.ones(n, dtype=bool)
    for j, (pj, tj) in enumerate(parsed):
        if pj == "I":
            start[j] = False
            for i, (_pi, ti) in enumerate(parsed):
                allowed[i, j] = ti == tj
    return allowed, start
