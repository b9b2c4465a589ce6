"""The one path from words to tags: encode -> batches -> backend -> word log-probabilities -> decode.

Evaluation, error analysis, the trainer's reports, the tagger (and so the server) and the benches all
predict here, so a tag is the same tag whichever of them asked for it.
"""

from __future__ import annotations

import copy
import itertools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..batching import Collator, make_batches
from ..decoding import decode_flat
from ..encoding import Encoder, Feature
from ..folder import ModelFolder, ModelMeta
from ..schemes import split_tag
from .backends import Backend, TorchBackend, choose, default_device, open_backend
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
                 budget: Budget = CORPUS_BUDGET, description: str = "", backend_name: str = "torch"):
        self.backend, self.tokenizer, self.meta = backend, tokenizer, meta
        self.backend_name = backend_name  # torch, onnx or onnx-int8: what runs (after 'auto' chose)
        self.labels: list[str] = list(meta.labels)
        self.entity_types: list[str] = sorted({t for t in (split_tag(lab)[1] for lab in self.labels) if t})
        self.constrained = meta.constrained if constrained is None else constrained
        self.encoder = Encoder.from_meta(tokenizer, meta)
        self.budget = budget
        self.description = description
        self._names = np.array(self.labels, dtype=object)

    @classmethod
    def from_dir(cls, model_dir: str | os.PathLike | ModelFolder, backend: str = "torch",
                 device: str | None = None, constrained: bool | None = None,
                 budget: Budget = CORPUS_BUDGET, lanes: int = 0) -> Predictor:
        """backend: torch, onnx or onnx-int8 (the files `nerkit export` writes), or auto (int8 where the
        folder has a checked int8 export and the model runs on the CPU, else torch). device (torch only):
        cpu, cuda, ...; default cuda when available. lanes (onnx only): model calls at once, sharing the
        threads; 0: backends.AUTO_LANES."""
        folder = model_dir if isinstance(model_dir, ModelFolder) else ModelFolder(model_dir)
        backend = choose(folder, backend, device)  # an unknown name fails here, before the folder check
        folder.check(backend)  # a missing file or broken folder fails before the weights load
        run = open_backend(folder, backend, device, lanes)
        budget = budget.for_backend(run)  # an ONNX graph's own measured call cost
        return cls(run, folder.tokenizer, folder.meta, constrained, budget, f"{folder.path}, {backend}", backend)

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
        lengths = np.array([len(s) for doc in documents for s in doc], dtype=np.int64)
        flat = self._flat_log_probs(self.encoder.encode(documents), lengths, batch_size, progress)
        ids = decode_flat(flat, lengths, self.labels, self.constrained)
        probs = np.exp(flat[np.arange(len(ids)), ids])
        names = self._names[ids].tolist()
        ends = np.cumsum(lengths).tolist()
        tags = [names[a:b] for a, b in zip([0, *ends[:-1]], ends)]
        return Prediction(tags, _per_sentence(probs, lengths))

    def log_probs(self, features: list[Feature], sentence_lengths: list[int], batch_size: int | None = None,
                  progress: Callable[[int, int], None] | None = None) -> list[np.ndarray]:
        """Per sentence, a (words, labels) array of log-probabilities, each word taken from the window
        that owns it. Every word of every sentence gets a row."""
        lengths = np.array(sentence_lengths, dtype=np.int64)
        return _per_sentence(self._flat_log_probs(features, lengths, batch_size, progress), lengths)

    def _flat_log_probs(self, features: list[Feature], lengths: np.ndarray, batch_size: int | None,
                        progress: Callable[[int, int], None] | None) -> np.ndarray:
        """All sentences' word log-probabilities, one row per word, sentences one after another. Batches run
        in the backend's lanes (calls at once); each writes only the rows its windows own, so lanes never
        touch the same row and the result does not depend on their order."""
        b = self.budget
        out = np.zeros((int(lengths.sum()), self.backend.num_labels), dtype=np.float32)
        raw = np.zeros(len(out), dtype=bool)  # rows that hold logits still, not log-probabilities
        slots = _Slots(features, np.cumsum(lengths) - lengths)
        collate = Collator(self.tokenizer.pad_token_id, with_shapes=self.backend.with_shapes)
        batches = make_batches([len(f) for f in features], batch_size=batch_size or b.batch_size,
                               max_tokens=b.max_tokens, call_cost=b.call_cost)

        @torch.inference_mode()  # per thread: a lane's thread is not under the caller's mode
        def run(idx: list[int]) -> int:
            batch = collate([features[i] for i in idx])
            batch.pop("labels")
            logits = self.backend.logits(batch)
            rows, cols, dest = slots.owned(idx)  # only the rows that are kept: no padding, no repeated words
            if not isinstance(logits, torch.Tensor):
                out[dest] = logits[rows, cols]
                raw[dest] = True
            elif logits.device.type == "cpu":
                out[dest] = logits[torch.from_numpy(rows), torch.from_numpy(cols)].float().numpy()
                raw[dest] = True
            else:
                picked = logits[torch.from_numpy(rows), torch.from_numpy(cols)].float()
                out[dest] = torch.log_softmax(picked, dim=-1).cpu().numpy()
            return len(idx)

        lanes = min(getattr(self.backend, "lanes", 1), len(batches))
        with ThreadPoolExecutor(lanes, thread_name_prefix="nerkit-lane") if lanes > 1 else nullcontext() as pool:
            for done in (pool.map(run, batches) if pool else map(run, batches)):
                if progress:
                    progress(done, len(features))
        # Log-softmax once over all CPU rows: per batch, torch would wake its thread pool every call, and
        # on few cores those threads wait on onnxruntime's. Rows are independent, so the values are the same.
        if raw.any():
            with torch.inference_mode():
                out[raw] = torch.log_softmax(torch.from_numpy(out[raw]), dim=-1).numpy()
        return out


def _per_sentence(flat: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    return np.split(flat, np.cumsum(lengths)[:-1]) if len(lengths) else []


class _Slots:
    """Every word slot of every feature, flat: its token position, its output row (flat word index) and
    whether its window owns it; read once, so that each batch only gathers."""

    def __init__(self, features: list[Feature], first: np.ndarray):
        chain = itertools.chain.from_iterable
        self.sizes = np.fromiter(map(len, (f.positions for f in features)), dtype=np.int64, count=len(features))
        total = int(self.sizes.sum())
        self.begin = np.cumsum(self.sizes) - self.sizes
        self.own = np.fromiter(chain(f.owned for f in features), dtype=bool, count=total)
        self.pos = np.fromiter(chain(f.positions for f in features), dtype=np.int64, count=total)
        sids = np.fromiter(chain(f.sentence_ids for f in features), dtype=np.int64, count=total)
        self.dest = first[sids] + np.fromiter(chain(f.word_indices for f in features), dtype=np.int64, count=total)

    def owned(self, idx: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For the words these features (a batch, in this order) own: batch row, token position, output row."""
        sizes = self.sizes[idx]
        # the slots of feature idx[k] are begin[idx[k]] ... + sizes[k] - 1
        at = np.repeat(self.begin[idx] - (np.cumsum(sizes) - sizes), sizes) + np.arange(int(sizes.sum()))
        rows = np.repeat(np.arange(len(idx)), sizes)
        keep = self.own[at]
        return rows[keep], self.pos[at][keep], self.dest[at][keep]
