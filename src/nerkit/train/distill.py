"""Distillation: training with one more loss term, the teachers' word-level label distributions.

Before the first step the teachers label the training text once (and any extra text, which has no gold
labels): every word gets the average of the teachers' distributions at distill.temperature, taken through
their own Predictor, so each teacher sees the text with its own tokenizer and windows. Targets are per word,
not per window, so they hold whichever windows the student's epochs cut (jitter).

The loss on a batch is (1 - alpha) x cross-entropy to the gold labels + alpha x T^2 x KL(teachers || student)
at temperature T, both over the words' first sub-words. Extra text counts only in the second term.

The student is made from the first teacher (students.py): its tokenizer, labels and shape embedding.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from ..corpus import Corpus, Document, Sentence, read_utf8
from ..encoding import IGNORE, Feature
from ..engine.predictor import CORPUS_BUDGET, Predictor
from ..errors import ConfigError, ModelError
from ..evaluation import window_ticks
from ..folder import ModelFolder
from ..settings import DistillSection

log = logging.getLogger("nerkit")


class Teachers:
    """The trained runs or model folders a student learns from; all must share one label list."""

    def __init__(self, section: DistillSection):
        try:
            self.folders = [ModelFolder(t) for t in section.teacher_list]
        except ModelError as e:
            raise ModelError(e.message, field="distill.teachers") from None
        labels = self.folders[0].labels
        for f in self.folders[1:]:
            if f.labels != labels:
                raise ConfigError(f"distill.teachers: {f.path} has labels {f.labels}, {self.folders[0].path} "
                                  f"{labels}; teachers must share one label list")
        self.labels: list[str] = labels
        self.section = section

    def digests(self) -> dict[str, str]:
        """sha256 of each teacher's weights: a resumed run must learn from the same teachers."""
        return {f"teacher {i + 1} weights": f.weights_sha256 for i, f in enumerate(self.folders)}

    def check_labels(self, data_labels: list[str], path: str) -> None:
        missing = sorted(set(data_labels) - set(self.labels))
        if missing:
            raise ConfigError(f"{path}: labels {missing} are not among the teachers' ({', '.join(self.labels)})",
                              field="data")

    def targets(self, corpus: Corpus, device: Any, progress: bool) -> np.ndarray:
        """(words, labels): per word of the corpus, in order, the teachers' mean distribution at T."""
        docs = [[s.words for s in d.sentences] for d in corpus.documents]
        lengths = [len(s.words) for s in corpus.sentences]
        total = np.zeros((sum(lengths), len(self.labels)), dtype=np.float64)
        for folder in self.folders:
            pred = Predictor.from_dir(folder, backend=self.section.teacher_backend, device=str(device),
                                      budget=CORPUS_BUDGET)
            name = folder.path.parent.name if folder.path.name == "model" else folder.path.name
            with window_ticks(f"teacher {name}", progress) as tick:
                log_p = np.concatenate(pred.log_probs(pred.encoder.encode(docs), lengths, progress=tick))
            total += _softmax(log_p / self.section.temperature)
            del pred
        return (total / len(self.folders)).astype(np.float32)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def read_extra(paths: list[str]) -> Corpus:
    """Plain-text files as one corpus without gold labels: blank lines separate documents, and sentences
    and words are split as the tagger splits raw text, so the student learns on text cut as it will see it."""
    from ..words import split_sentences

    docs = []
    for p in paths:
        text = read_utf8(Path(p), "plain text for the teachers to label")
        for block in _blocks(text):
            sents = [Sentence([t.text for t in s], ["O"] * len(s)) for s in split_sentences(block)]
            if sents:
                docs.append(Document(sents))
    if not docs:
        raise ConfigError(f"distill.extra: {', '.join(paths)} holds no words")
    return Corpus(",".join(paths), docs, True, "IOB2")


def _blocks(text: str) -> list[str]:
    import re

    return [b for b in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n").replace("\r", "\n")) if b.strip()]


@dataclass
class TeacherTargets:
    """The teachers' distribution of every training word, and which sentences have gold labels."""

    probs: np.ndarray  # (words, labels), sentences one after another as the training corpus numbers them
    first: np.ndarray  # row of each sentence's first word
    gold_sentences: int  # sentences [0, gold_sentences) are the gold set; the rest extra text

    @classmethod
    def of(cls, probs: np.ndarray, lengths: list[int], gold_sentences: int) -> TeacherTargets:
        first = np.cumsum(lengths, dtype=np.int64) - np.asarray(lengths, dtype=np.int64)
        return cls(probs, first, gold_sentences)


class DistillCollator:
    """The usual padded batch (batching.Collator), plus `teacher_probs` (batch, tokens, labels) on the
    words' first sub-words (zeros elsewhere), and no gold label on words of extra text."""

    def __init__(self, collate: Callable[[list[Feature]], dict[str, torch.Tensor]], targets: TeacherTargets):
        self.collate, self.targets = collate, targets

    def __call__(self, features: list[Feature]) -> dict[str, torch.Tensor]:
        batch = self.collate(features)
        n, width = batch["input_ids"].shape
        t = self.targets
        probs = torch.zeros((n, width, t.probs.shape[1]), dtype=torch.float32)
        rows = np.repeat(np.arange(n), [len(f.positions) for f in features])
        cols = np.concatenate([np.asarray(f.positions, dtype=np.int64) for f in features])
        sids = np.concatenate([np.asarray(f.sentence_ids, dtype=np.int64) for f in features])
        widx = np.concatenate([np.asarray(f.word_indices, dtype=np.int64) for f in features])
        probs[rows, cols] = torch.from_numpy(t.probs[t.first[sids] + widx])
        extra = sids >= t.gold_sentences
        if extra.any():
            batch["labels"][rows[extra], cols[extra]] = IGNORE
        batch["teacher_probs"] = probs
        return batch


def plain_loss(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The loss of `nerkit train`: the model's own cross-entropy to the gold labels."""
    return model(**batch).loss


@dataclass
class DistillLoss:
    """(1 - alpha) x cross-entropy to the gold labels + alpha x T^2 x KL(teachers || student) at T."""

    alpha: float
    temperature: float

    def __call__(self, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        batch = dict(batch)
        soft, labels = batch.pop("teacher_probs"), batch.pop("labels")
        logits = model(**batch).logits.float()
        flat = logits.reshape(-1, logits.shape[-1])
        gold = labels.reshape(-1) != IGNORE
        ce = F.cross_entropy(flat[gold], labels.reshape(-1)[gold]) if gold.any() else flat.sum() * 0.0
        p = soft.to(flat.device).reshape(-1, soft.shape[-1])
        has = p.sum(-1) > 0
        if not has.any():
            return ce
        t = self.temperature
        q = F.log_softmax(flat[has] / t, dim=-1)
        kl = F.kl_div(q, p[has], reduction="batchmean") * t * t
        return (1 - self.alpha) * ce + self.alpha * kl
