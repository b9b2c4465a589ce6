"""Run a model over features: length-sorted batches under inference_mode, results back in input order."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .batching import Collator, make_batches
from .encoding import Feature


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
) -> list[np.ndarray]:
    """Per sentence, a (words, labels) array of log-probabilities, each word taken from the window
    that owns it. Every word of every sentence gets a row."""
    num_labels = model.config.num_labels
    out = [np.zeros((n, num_labels), dtype=np.float32) for n in sentence_lengths]
    collate = Collator(pad_token_id, with_shapes=getattr(model, "shape_embedding", None) is not None)
    batches = make_batches([len(f) for f in features], batch_size=batch_size, max_tokens=max_tokens)
    was_training = model.training
    model.eval()
    for idx in batches:
        feats = [features[i] for i in idx]
        batch = collate(feats)
        batch.pop("labels")
        batch = {k: v.to(device) for k, v in batch.items()}
        logits = model(**batch).logits.float()
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
