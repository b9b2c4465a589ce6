"""A corpus and a model -> predicted tags -> entity-level reports."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .corpus import Corpus
from .decoding import decode
from .encoding import Encoder
from .inference import word_log_probs
from .metrics import Report, entity_report


@dataclass
class Evaluation:
    predictions: list[list[str]]  # IOB2 tags per sentence, in corpus order
    conlleval: Report  # the headline: conlleval / seqeval default counting
    strict: Report  # strict IOB2 entities only

    def to_dict(self) -> dict:
        return {"conlleval": self.conlleval.to_dict(), "strict": self.strict.to_dict()}


def predict_corpus(model, encoder: Encoder, corpus: Corpus, constrained: bool = True,
                   device: torch.device | str = "cpu", max_tokens: int = 16384,
                   desc: str | None = None) -> list[list[str]]:
    feats = encoder.encode_corpus(corpus, train=False)
    sents = corpus.sentences
    bar = tqdm(total=len(feats), desc=desc, unit="win", leave=False, disable=desc is None or not sys.stderr.isatty())
    logps = word_log_probs(model, feats, [len(s.words) for s in sents], encoder.tokenizer.pad_token_id,
                           device=device, max_tokens=max_tokens, progress=bar.update)
    bar.close()
    labels = model.labels
    return [decode(lp, labels, constrained) for lp in logps]


def evaluate_corpus(model, encoder: Encoder, corpus: Corpus, constrained: bool = True,
                    device: torch.device | str = "cpu", max_tokens: int = 16384,
                    desc: str | None = None) -> Evaluation:
    pred = predict_corpus(model, encoder, corpus, constrained, device, max_tokens, desc)
    gold = [s.tags for s in corpus.sentences]
    return Evaluation(pred, entity_report(gold, pred), entity_report(gold, pred, strict=True))
