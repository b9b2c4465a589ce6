"""The one path from words to tags: encode -> batches -> backend -> word log-probabilities -> decode.

Evaluation, error analysis, the trainer's reports, the tagger (and so the server) and the benches all
predict here, so a tag is the same tag whichever of them asked for it.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..batching import Collator, make_batches
from ..decoding import decode
from ..encoding import Encoder, Feature
from ..folder import ModelFolder, ModelMeta
from ..schemes import split_tag
from .backends import Backend, TorchBackend, check_name, default_device, open_backend
from .budget import CORPUS_BUDGET, TEXT_BUDGET, Budget

__all__ = ["CORPUS_BUDGET", "TEXT_BUDGET", "Budget", "Prediction", "Predictor"]

Documents = list[list[list[str]]]  # documents[d][s][w]: words


@dataclass
class Prediction:
    tags: list[list[str]]  # IOB2 tags per sentence, over all documents in order
    probs: list[np.ndarray]  # per sentence, the probability of each chosen tag


class Predictor:
    """A model ready to predict: its backend, encoder, labels, decoding choice and budget.

    Build it with `Predictor.from_dir(MODEL_DIR, backend=..., device=...)`, or around a model in memory
    with `Predictor.from_model` (the trainer does)."""

    def __init__(self, backend: Backend, tokenizer, meta: ModelMeta, constrained: bool | None = None,
                 budget: Budget = CORPUS_BUDGET, description: str = ""):
        self.backend, self.tokenizer, self.meta = backend, tokenizer, meta
        self.labels: list[str] = list(meta.labels)
        self.entity_types: list[str] = sorted({t for t in (split_tag(lab)[1] for lab in self.labels) if t})
        self.constrained = meta.constrained if constrained is None else constrained
        self.encoder = Encoder.from_meta(tokenizer, meta)
        self.budget = budget
        self.description = description
        self._index = {lab: i for i, lab in enumerate(self.labels)}

    @classmethod
    def from_dir(cls, model_dir: str | os.PathLike | ModelFolder, backend: str = "torch",
                 device: str | None = None, constrained: bool | None = None,
                 budget: Budget = CORPUS_BUDGET) -> Predictor:
        """backend: torch, onnx or onnx-int8 (the files `nerkit export` writes). device (torch only):
        cpu, cuda, ...; default cuda when available."""
        folder = model_dir if isinstance(model_dir, ModelFolder) else ModelFolder(model_dir)
        check_name(backend)
        folder.check(backend)  # a missing file or broken folder fails before the weights load
        run = open_backend(folder, backend, device)
        return cls(run, folder.tokenizer, folder.meta, constrained, budget, f"{folder.path}, {backend}")

    @classmethod
    def from_model(cls, model, tokenizer, meta: ModelMeta, device: torch.device | str | None = None,
                   constrained: bool | None = None, budget: Budget = CORPUS_BUDGET) -> Predictor:
        return cls(TorchBackend(model, device or default_device()), tokenizer, meta, constrained, budget)

    def with_budget(self, **changes: int) -> Predictor:
        """The same model under another budget (nothing is loaded again)."""
        other = copy.copy(self)
        other.budget = replace(self.budget, **changes)
        return other

    def __repr__(self) -> str:
        return f"Predictor({self.description or 'model'}, labels={self.entity_types}, constrained={self.constrained})"

    def predict(self, documents: Documents, batch_size: int | None = None,
                progress: Callable[[int, int], None] | None = None) -> Prediction:
        """documents[d][s][w] words -> tags and their probabilities per sentence, all documents in order.
        Sentences of a document share windows when the model was trained with document context.
        progress(k, total) is called after each model call with the windows it ran and the total."""
        lengths = [len(s) for doc in documents for s in doc]
        logps = self.log_probs(self.encoder.encode(documents), lengths, batch_size, progress)
        tags, probs = [], []
        for lp in logps:
            t = decode(lp, self.labels, self.constrained)
            ids = [self._index[lab] for lab in t]
            tags.append(t)
            probs.append(np.exp(lp[np.arange(len(ids)), ids]) if ids else np.zeros(0))
        return Prediction(tags, probs)

    @torch.inference_mode()
    def log_probs(self, features: list[Feature], sentence_lengths: list[int], batch_size: int | None = None,
                  progress: Callable[[int, int], None] | None = None) -> list[np.ndarray]:
        """Per sentence, a (words, labels) array of log-probabilities, each word taken from the window
        that owns it. Every word of every sentence gets a row."""
        b = self.budget
        out = [np.zeros((n, self.backend.num_labels), dtype=np.float32) for n in sentence_lengths]
        collate = Collator(self.tokenizer.pad_token_id, with_shapes=self.backend.with_shapes)
        batches = make_batches([len(f) for f in features], batch_size=batch_size or b.batch_size,
                               max_tokens=b.max_tokens, call_cost=b.call_cost)
        for idx in batches:
            feats = [features[i] for i in idx]
            batch = collate(feats)
            batch.pop("labels")
            logits = torch.as_tensor(self.backend.logits(batch)).float()
            logp = torch.log_softmax(logits, dim=-1).cpu().numpy()
            for row, f in zip(logp, feats):
                for pos, s, w, own in zip(f.positions, f.sentence_ids, f.word_indices, f.owned):
                    if own:
                        out[s][w] = row[pos]
            if progress:
                progress(len(idx), len(features))
        return out
