"""A Predictor and a gold corpus -> predicted tags -> entity-level reports (metrics.py stays pure)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tqdm.auto import tqdm

from .corpus import Corpus
from .engine.predictor import Predictor
from .metrics import Report, entity_report


@dataclass
class Evaluation:
    predictions: list[list[str]]  # IOB2 tags per sentence, in corpus order
    conlleval: Report  # the headline: conlleval / seqeval default counting
    strict: Report  # strict IOB2 entities only

    def to_dict(self) -> dict:
        return {"conlleval": self.conlleval.to_dict(), "strict": self.strict.to_dict()}


@contextmanager
def window_ticks(desc: str | None, on: bool = True) -> Iterator[Callable[[int, int], None]]:
    """A progress bar over a Predictor's windows, as its progress callback; shown on a terminal only."""
    bar = tqdm(desc=desc, unit="window", leave=False, disable=not on or desc is None or not sys.stderr.isatty())

    def tick(k: int, total: int) -> None:
        bar.total = total
        bar.update(k)

    try:
        yield tick
    finally:
        bar.close()


def predict_corpus(predictor: Predictor, corpus: Corpus, desc: str | None = None) -> list[list[str]]:
    """Tags for every sentence of the corpus, documents kept together. desc: a progress bar's label."""
    docs = [[s.words for s in d.sentences] for d in corpus.documents]
    with window_ticks(desc) as tick:
        return predictor.predict(docs, progress=tick).tags


def evaluate(predictor: Predictor, corpus: Corpus, desc: str | None = None) -> Evaluation:
    pred = predict_corpus(predictor, corpus, desc)
    gold = [s.tags for s in corpus.sentences]
    return Evaluation(pred, entity_report(gold, pred), entity_report(gold, pred, strict=True))
