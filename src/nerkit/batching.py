"""Features -> padded batches. Length-bucketed batches and dynamic padding keep padding, and so time and
memory, low."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .encoding import IGNORE, Feature


def make_batches(
    lengths: Sequence[int],
    batch_size: int = 32,
    max_tokens: int = 0,
    pad_to_multiple_of: int = 1,
    seed: int | None = None,
    call_cost: int = 0,
) -> list[list[int]]:
    """Group indices of similar length into batches.

    With max_tokens > 0 a batch grows while (items x padded length) stays within the budget, padding
    included, and batch_size caps the count; otherwise batches hold batch_size items. With a seed, ties
    in length are broken at random and the order of the batches is shuffled; without one, batches come
    longest first (fails fast on memory) in a fixed order.

    call_cost > 0 (inference): the fixed cost of one model call, in tokens. The sorted items are then cut
    where the sum of call_cost + items x padded length is least, so a few texts of mixed length become
    several near-unpadded calls rather than one mostly padded one.
    """
    order = list(range(len(lengths)))
    rng = random.Random(seed) if seed is not None else None
    if rng:
        rng.shuffle(order)  # sort is stable: equal lengths keep this random order
    order.sort(key=lambda i: -lengths[i])
    if call_cost > 0:
        batches = _cheapest_cuts(order, [_round_up(lengths[i], pad_to_multiple_of) for i in order],
                                 batch_size, max_tokens, call_cost)
    else:
        batches = _greedy_cuts(order, lengths, batch_size, max_tokens, pad_to_multiple_of)
    if rng:
        rng.shuffle(batches)
    return batches


def _greedy_cuts(order: list[int], lengths: Sequence[int], batch_size: int, max_tokens: int,
                 pad_to_multiple_of: int) -> list[list[int]]:
    batches: list[list[int]] = []
    cur: list[int] = []
    cur_len = 0
    for i in order:
        padded = _round_up(max(cur_len, lengths[i]), pad_to_multiple_of)
        full = len(cur) >= batch_size or (max_tokens > 0 and padded * (len(cur) + 1) > max_tokens)
        if cur and full:
            batches.append(cur)
            cur, cur_len = [], 0
        cur.append(i)
        cur_len = max(cur_len, lengths[i])
    if cur:
        batches.append(cur)
    return batches


def _cheapest_cuts(order: list[int], padded: list[int], batch_size: int, max_tokens: int,
                   call_cost: int) -> list[list[int]]:
    """Split `order` (sorted longest first, padded[k] the length of order[k]) into contiguous batches of
    least total cost by dynamic programming; a batch starting at k is padded to padded[k]."""
    n = len(order)
    best = [0] + [float("inf")] * n  # best[j]: cost of the first j items
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(j - 1, max(-1, j - 1 - batch_size), -1):  # batch = items i..j-1
            size = j - i
            if max_tokens > 0 and size > 1 and padded[i] * size > max_tokens:
                break
            cost = best[i] + call_cost + padded[i] * size
            if cost < best[j]:
                best[j], cut[j] = cost, i
    batches, j = [], n
    while j > 0:
        batches.append(order[cut[j] : j])
        j = cut[j]
    return batches[::-1]


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple if multiple > 1 else n


class LengthBucketSampler:
    """A batch sampler: new length buckets and a new bucket order every epoch, same for a given seed.

    Call set_epoch(e) before each epoch (the trainer does), as with DistributedSampler.
    """

    # Batches vary in size. Accelerate's BatchSamplerShard (2+ processes) reads `batch_size`: when it is
    # set, it drops every pair of batches whose second one is not exactly that size and refills the last
    # one from flattened indices. None makes it pass whole batches through.
    batch_size = None

    def __init__(self, lengths: Sequence[int], batch_size: int = 32, max_tokens: int = 0,
                 pad_to_multiple_of: int = 1, seed: int = 0):
        self.lengths = list(lengths)
        self.max_batch_size, self.max_tokens = batch_size, max_tokens
        self.pad_to_multiple_of, self.seed = pad_to_multiple_of, seed
        self.epoch = 0
        self._batches = self._make()

    def set_lengths(self, lengths: Sequence[int]) -> None:
        """New items (training windows re-cut for this epoch); batches are re-made."""
        self.lengths = list(lengths)
        self._batches = self._make()

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch = epoch
            self._batches = self._make()

    def _make(self) -> list[list[int]]:
        return make_batches(self.lengths, self.max_batch_size, self.max_tokens, self.pad_to_multiple_of,
                            seed=self.seed * 100_003 + self.epoch)

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches)

    def __len__(self) -> int:
        return len(self._batches)


@dataclass
class Collator:
    """Pads a list of features to the longest in the batch (rounded up to pad_to_multiple_of)."""

    pad_token_id: int
    pad_to_multiple_of: int = 1
    with_shapes: bool = False

    def __call__(self, features: list[Feature]) -> dict[str, torch.Tensor]:
        # One scatter per field over the whole batch: the real slots of a row-major (batch, width) mask
        # come in the order of the features' values laid end to end.
        lengths = np.fromiter((len(f) for f in features), dtype=np.int64, count=len(features))
        width = _round_up(int(lengths.max()), self.pad_to_multiple_of)
        real = np.arange(width) < lengths[:, None]

        def field(values: list[list[int]], fill: int) -> torch.Tensor:
            out = np.full(real.shape, fill, dtype=np.int64)
            out[real] = np.concatenate(values) if len(values) > 1 else values[0]
            return torch.from_numpy(out)

        batch = {"input_ids": field([f.input_ids for f in features], self.pad_token_id),
                 "attention_mask": torch.from_numpy(real.astype(np.int64)),
                 "labels": field([f.labels for f in features], IGNORE)}
        if self.with_shapes:
            batch["shape_ids"] = field([f.shape_ids for f in features], 0)
        return batch


def token_counts(batch: dict[str, torch.Tensor]) -> tuple[int, int]:
    """(real tokens, padded slots) of a collated batch."""
    real = int(batch["attention_mask"].sum())
    return real, batch["attention_mask"].numel()
