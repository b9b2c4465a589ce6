"""Run a model over features: length-sorted batches under inference_mode, results back in input order."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .batching import Collator, make_batches
from .encoding import Feature


@dataclass
class Backend:
    """What word_log_probs needs from a model, so that onnxruntime can stand in for torch: the label
    count, whether it takes shape_ids, and a call from a padded batch to (batch, tokens, labels) logits."""

    num_labels: int
    with_shapes: bool
    run: Callable[[dict[str, torch.Tensor]], torch.Tensor | np.ndarray]


def torch_backend(model, device: torch.device | str = "cpu") -> Backend:
    def run(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(**{k: v.to(device) for k, v in batch.items()}).logits

    return Backend(model.config.num_labels, getattr(model, "shape_embedding", None) is not None, run)


@torch.inference_mode()
def word_log_probs(
    model,
    features: list[Feature],
    sentence_lengths: list[int],
    pad_token_id: int,
    device: torch.device | str = "cpu",
    max_tokens: int = 16384,
    batch_size: int = 256,
    progress: Callable[[int], None] | None = None,
    call_cost: int = 0,
) -> list[np.ndarray]:
    """Per sentence, a (words, labels) array of log-probabilities, each word taken from the window
    that owns it. Every word of every sentence gets a row.

    `model` is a NerModel (run on `device`) or a `Backend`. call_cost: see `make_batches`."""
    backend = model if isinstance(model, Backend) else torch_backend(model, device)
    out = [np.zeros((n, backend.num_labels), dtype=np.float32) for n in sentence_lengths]
    collate = Collator(pad_token_id, with_shapes=backend.with_shapes)
    batches = make_batches([len(f) for f in features], batch_size=batch_size, max_tokens=max_tokens,
                           call_cost=call_cost)
    was_training = getattr(model, "training", False)
    if was_training:
        model.eval()
    for idx in batches:
        feats = [features[i] for i in idx]
        batch = collate(feats)
        batch.pop("labels")
        logits = torch.as_tensor(backend.run(batch)).float()
        logp = torch.log_softmax(logits, dim=-1).cpu().numpy()
        for row, f in zip(logp, feats):
            for pos, s, w, own in zip(f.positions, f.sentence_ids, f.word_indices, f.owned):
                if own:
                    out[s][w] = row[pos]
        if progress:
            progress(len(idx))
    if was_training:
        model.train()
    return out
