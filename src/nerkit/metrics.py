"""Entity-level precision, recall and F1. Knows nothing about models.

The headline follows conlleval (and seqeval's default mode): an I-X after O or another type opens an
entity. Strict mode (seqeval's mode="strict", IOB2) counts only well-formed B-X I-X* entities.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

from .atomic import write_text
from .schemes import spans


@dataclass
class Score:
    precision: float
    recall: float
    f1: float
    support: int  # gold entities
    predicted: int
    correct: int

    @classmethod
    def from_counts(cls, correct: int, predicted: int, gold: int) -> Score:
        p = correct / predicted if predicted else 0.0
        r = correct / gold if gold else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        return cls(p, r, f, gold, predicted, correct)


@dataclass
class Report:
    micro: Score
    per_type: dict[str, Score] = field(default_factory=dict)
    strict: bool = False

    def to_dict(self) -> dict:
        return {"micro": asdict(self.micro), "per_type": {k: asdict(v) for k, v in self.per_type.items()},
                "mode": "strict-iob2" if self.strict else "conlleval"}

    def table(self, title: str = "") -> str:
        """A fixed-width table in percent, like seqeval's classification_report."""
        rows = [f"{title:<12}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
        for name, s in [*sorted(self.per_type.items()), ("micro avg", self.micro)]:
            rows.append(f"{name:<12}{100 * s.precision:>10.2f}{100 * s.recall:>10.2f}{100 * s.f1:>10.2f}"
                        f"{s.support:>10d}")
        return "\n".join(rows)


def entity_report(gold: list[list[str]], pred: list[list[str]], strict: bool = False) -> Report:
    """Compare IOB2 tag sequences sentence by sentence."""
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold sentences but {len(pred)} predicted")
    n_gold: Counter[str] = Counter()
    n_pred: Counter[str] = Counter()
    n_ok: Counter[str] = Counter()
    for i, (g, p) in enumerate(zip(gold, pred)):
        if len(g) != len(p):
            raise ValueError(f"sentence {i}: {len(g)} gold tags but {len(p)} predicted")
        gs = {(e.type, e.start, e.end) for e in spans(g, strict)}
        ps = {(e.type, e.start, e.end) for e in spans(p, strict)}
        n_gold.update(t for t, _, _ in gs)
        n_pred.update(t for t, _, _ in ps)
        n_ok.update(t for t, _, _ in gs & ps)
    types = sorted(set(n_gold) | set(n_pred))
    per_type = {t: Score.from_counts(n_ok[t], n_pred[t], n_gold[t]) for t in types}
    micro = Score.from_counts(sum(n_ok.values()), sum(n_pred.values()), sum(n_gold.values()))
    return Report(micro, per_type, strict)


def conll_lines(words: list[list[str]], gold: list[list[str]], pred: list[list[str]]) -> str:
    """'token gold predicted' lines, a blank line after each sentence: what conlleval reads."""
    out = []
    for ws, gs, ps in zip(words, gold, pred):
        out += [f"{w} {g} {p}" for w, g, p in zip(ws, gs, ps)]
        out.append("")
    return "\n".join(out) + "\n"


def write_predictions(path, words, gold, pred) -> None:
    write_text(path, conll_lines(words, gold, pred))
