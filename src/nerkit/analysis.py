"""Error analysis: which entities a model misses, invents, mis-types or cuts wrongly, with context."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from .schemes import Entity, spans

NONE = "(none)"  # row/column for "no entity with these boundaries"


@dataclass
class ErrorCase:
    kind: str  # "false_negative" | "false_positive" | "type_confusion"
    sentence: int
    gold: Entity | None
    pred: Entity | None
    boundary: bool  # an overlapping entity exists on the other side: a boundary error, not a clean miss
    context: str

    def to_dict(self) -> dict:
        def ent(e):
            return None if e is None else {"type": e.type, "start": e.start, "end": e.end}

        return {"kind": self.kind, "sentence": self.sentence, "gold": ent(self.gold), "pred": ent(self.pred),
                "boundary": self.boundary, "context": self.context}


def _context(words: list[str], ent: Entity, note: str, width: int = 8) -> str:
    left = words[max(0, ent.start - width) : ent.start]
    right = words[ent.end : ent.end + width]
    mid = " ".join(words[ent.start : ent.end])
    pre = "... " if ent.start > width else ""
    post = " ..." if ent.end + width < len(words) else ""
    return f"{pre}{' '.join(left)} [{mid}]{{{note}}} {' '.join(right)}{post}".replace("  ", " ").strip()


def find_errors(words: list[list[str]], gold: list[list[str]], pred: list[list[str]]) -> list[ErrorCase]:
    out: list[ErrorCase] = []
    for i, (ws, g, p) in enumerate(zip(words, gold, pred)):
        gs, ps = spans(g), spans(p)
        g_by_span = {(e.start, e.end): e for e in gs}
        p_by_span = {(e.start, e.end): e for e in ps}
        for e in gs:
            q = p_by_span.get((e.start, e.end))
            if q is None:
                overlap = any(x.start < e.end and e.start < x.end for x in ps)
                out.append(ErrorCase("false_negative", i, e, None, overlap, _context(ws, e, f"{e.type} missed")))
            elif q.type != e.type:
                out.append(ErrorCase("type_confusion", i, e, q, False, _context(ws, e, f"{e.type} -> {q.type}")))
        for e in ps:
            if (e.start, e.end) not in g_by_span:
                overlap = any(x.start < e.end and e.start < x.end for x in gs)
                out.append(ErrorCase("false_positive", i, None, e, overlap, _context(ws, e, f"spurious {e.type}")))
    return out


def confusion_counts(gold: list[list[str]], pred: list[list[str]]) -> tuple[list[str], list[list[int]]]:
    """Rows: gold type (or none), columns: predicted type (or none), matching entities by exact boundaries."""
    pairs: Counter[tuple[str, str]] = Counter()
    for g, p in zip(gold, pred):
        gmap = {(e.start, e.end): e.type for e in spans(g)}
        pmap = {(e.start, e.end): e.type for e in spans(p)}
        for k, t in gmap.items():
            pairs[(t, pmap.get(k, NONE))] += 1
        for k, t in pmap.items():
            if k not in gmap:
                pairs[(NONE, t)] += 1
    types = sorted({t for pair in pairs for t in pair} - {NONE}) + [NONE]
    matrix = [[pairs[(r, c)] for c in types] for r in types]
    return types, matrix


def summary(errors: list[ErrorCase]) -> dict[str, int]:
    c = Counter(e.kind for e in errors)
    c["boundary"] = sum(e.boundary for e in errors)
    return dict(c)
