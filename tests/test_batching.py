"""Length-bucketed batches, the epoch-aware sampler and the dynamic-padding collator."""

from __future__ import annotations

import random

import pytest
import torch

from nerkit.batching import Collator, LengthBucketSampler, _round_up, make_batches, token_counts
from nerkit.encoding import IGNORE, Feature


def _lengths(n: int = 500, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(3, 120) for _ in range(n)]


def _padded(lengths: list[int], batch: list[int], mult: int = 1) -> int:
    return _round_up(max(lengths[i] for i in batch), mult) * len(batch)


@pytest.mark.parametrize("seed", [None, 0, 5])
@pytest.mark.parametrize("batch_size, max_tokens, mult", [(32, 0, 1), (7, 0, 1), (64, 1000, 1), (64, 1000, 8),
                                                          (1, 0, 1), (1000, 300, 8)])
def test_make_batches_cover_and_respect_limits(seed, batch_size, max_tokens, mult):
    lengths = _lengths()
    batches = make_batches(lengths, batch_size, max_tokens, mult, seed=seed)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))  # every index exactly once
    for b in batches:
        assert 1 <= len(b) <= batch_size
        if max_tokens and len(b) > 1:
            assert _padded(lengths, b, mult) <= max_tokens


def _fits(lengths: list[int], batch: list[int], batch_size: int, max_tokens: int, mult: int) -> bool:
    return len(batch) <= batch_size and (len(batch) == 1 or not max_tokens
                                         or _padded(lengths, batch, mult) <= max_tokens)


def _fewest_batches(lengths: list[int], batch_size: int, max_tokens: int, mult: int) -> int:
    """Least number of contiguous batches of the longest-first order that respect the limits (by DP)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    best = [0] + [len(order) + 1] * len(order)  # best[j]: fewest batches for the first j items
    for j in range(1, len(order) + 1):
        for i in range(j):
            if _fits(lengths, order[i:j], batch_size, max_tokens, mult):
                best[j] = min(best[j], best[i] + 1)
    return best[-1]


@pytest.mark.parametrize("batch_size, max_tokens, mult", [(64, 1000, 1), (64, 1000, 8), (1000, 300, 8), (5, 400, 1),
                                                          (8, 0, 1), (3, 50, 4)])
def test_make_batches_are_full_under_a_budget(batch_size, max_tokens, mult):
    """Greedy filling: in longest-first order each batch takes items until the next one would break
    batch_size or max_tokens, so no batch could take the first item of the next one, and there are
    as few batches as any contiguous cut of that order allows."""
    lengths = _lengths(200, seed=3)
    batches = make_batches(lengths, batch_size, max_tokens, mult)
    assert any(len(b) > 1 for b in batches)  # the budget really lets batches hold several items
    for b, nxt in zip(batches, batches[1:]):
        assert _fits(lengths, b, batch_size, max_tokens, mult)
        assert not _fits(lengths, b + nxt[:1], batch_size, max_tokens, mult), (b, nxt)
    fewest = _fewest_batches(lengths, batch_size, max_tokens, mult)
    assert len(batches) == fewest
    profile = sorted(sorted(lengths[i] for i in b) for b in batches)
    for seed in (0, 5):  # a seed breaks ties and shuffles the batches, but cuts the same lengths
        shuffled = make_batches(lengths, batch_size, max_tokens, mult, seed=seed)
        assert sorted(sorted(lengths[i] for i in b) for b in shuffled) == profile


def test_make_batches_budget_hand_worked():
    # longest first: 50 40 | 30 30 30 | 10 10 10 10 10 ; budget 100 tokens, at most 5 items
    lengths = [10, 30, 50, 10, 30, 10, 40, 10, 30, 10]
    assert [[lengths[i] for i in b] for b in make_batches(lengths, batch_size=5, max_tokens=100)] == [
        [50, 40], [30, 30, 30], [10, 10, 10, 10, 10]]
    assert make_batches(lengths, batch_size=5, max_tokens=100) == [[2, 6], [1, 4, 8], [0, 3, 5, 7, 9]]
    # padded to multiples of 16: 64 x 2 > 100; 48 x 2 = 96 fits, 48 x 3 does not; 32 x 3 = 96 fits
    batches = make_batches(lengths, batch_size=5, max_tokens=100, pad_to_multiple_of=16)
    assert [[lengths[i] for i in b] for b in batches] == [[50], [40, 30], [30, 30, 10], [10, 10, 10, 10]]


def test_make_batches_single_long_item_gets_own_batch():
    batches = make_batches([500, 10, 10], batch_size=8, max_tokens=100)
    assert [0] in batches and sorted(i for b in batches for i in b) == [0, 1, 2]


def test_make_batches_without_seed_longest_first():
    lengths = _lengths()
    batches = make_batches(lengths, batch_size=16)
    maxes = [max(lengths[i] for i in b) for b in batches]
    assert maxes == sorted(maxes, reverse=True)
    assert make_batches(lengths, batch_size=16) == batches


def test_make_batches_seed_reproducible_and_shuffled():
    lengths = _lengths()
    a = make_batches(lengths, batch_size=16, seed=1)
    assert a == make_batches(lengths, batch_size=16, seed=1)
    b = make_batches(lengths, batch_size=16, seed=2)
    assert a != b
    maxes = [max(lengths[i] for i in x) for x in a]
    assert maxes != sorted(maxes, reverse=True)  # batch order is shuffled


def test_make_batches_empty():
    assert make_batches([], batch_size=4) == []


def test_sampler_set_epoch():
    lengths = _lengths()
    s = LengthBucketSampler(lengths, batch_size=16, seed=3)
    e0 = list(s)
    assert len(s) == len(e0) == -(-len(lengths) // 16)
    s.set_epoch(0)
    assert list(s) == e0
    s.set_epoch(1)
    e1 = list(s)
    assert e1 != e0 and sorted(i for b in e1 for i in b) == list(range(len(lengths)))
    s.set_epoch(0)
    assert list(s) == e0  # an epoch's order depends only on (seed, epoch): resumable
    other = LengthBucketSampler(lengths, batch_size=16, seed=3)
    other.set_epoch(1)
    assert list(other) == e1
    assert list(LengthBucketSampler(lengths, batch_size=16, seed=4)) != e0


@pytest.mark.parametrize("max_tokens", [0, 700])
def test_sampler_sharded_by_accelerate_keeps_every_batch(max_tokens):
    """Two processes: Accelerate's BatchSamplerShard must hand out whole batches, none dropped or refilled
    from other lengths (regression: a `batch_size` attribute made it drop uneven batches)."""
    from accelerate.data_loader import BatchSamplerShard

    lengths = _lengths(301)
    s = LengthBucketSampler(lengths, batch_size=16, max_tokens=max_tokens, seed=0)
    original = list(s)
    shards = [list(BatchSamplerShard(s, num_processes=2, process_index=k)) for k in range(2)]
    assert len(shards[0]) == len(shards[1]) == len(BatchSamplerShard(s, 2, 0))
    got = [b for pair in zip(*shards) for b in pair]
    assert got[: len(original)] == original
    assert all(b in original for b in got)  # the padding batches are whole batches too


def _feature(n: int, shape: int = 1) -> Feature:
    return Feature(list(range(10, 10 + n)), [IGNORE] + [1] * (n - 2) + [IGNORE], [0] + [shape] * (n - 2) + [0],
                   list(range(1, n - 1)), [0] * (n - 2), list(range(n - 2)), [True] * (n - 2))


def test_collator_dynamic_padding():
    feats = [_feature(5), _feature(3)]
    batch = Collator(pad_token_id=0)(feats)
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert batch["input_ids"].shape == (2, 5)
    assert batch["input_ids"][1].tolist() == [10, 11, 12, 0, 0]
    assert batch["attention_mask"].tolist() == [[1] * 5, [1, 1, 1, 0, 0]]
    assert batch["labels"][1].tolist() == [IGNORE, 1, IGNORE, IGNORE, IGNORE]
    assert all(t.dtype == torch.long for t in batch.values())
    assert token_counts(batch) == (8, 10)


def test_collator_pad_to_multiple_and_shapes():
    batch = Collator(pad_token_id=7, pad_to_multiple_of=8, with_shapes=True)([_feature(9, 3), _feature(4, 2)])
    assert batch["input_ids"].shape == (2, 16)
    assert batch["input_ids"][0, 9:].tolist() == [7] * 7
    assert (batch["labels"][:, 9:] == IGNORE).all()
    assert batch["shape_ids"][1].tolist() == [0, 2, 2, 0] + [0] * 12
    exact = Collator(pad_token_id=0, pad_to_multiple_of=8)([_feature(8)])
    assert exact["input_ids"].shape == (1, 8)


def test_padding_fraction_on_conll(conll_dir):
    from nerkit.corpus import read_conll

    lengths = [len(s.words) + 2 for s in read_conll(conll_dir / "eng.train").sentences]

    def padding(batches: list[list[int]]) -> float:
        real = sum(lengths[i] for b in batches for i in b)
        slots = sum(_padded(lengths, b) for b in batches)
        return 1 - real / slots

    sorted_pad = padding(make_batches(lengths, batch_size=32, seed=0))
    order = list(range(len(lengths)))
    random.Random(0).shuffle(order)
    random_pad = padding([order[i : i + 32] for i in range(0, len(order), 32)])
    assert sorted_pad < 0.05
    assert random_pad > 0.4 and random_pad > 10 * sorted_pad


def _cost(batches, lengths, call_cost):
    return sum(call_cost + len(b) * max(lengths[i] for i in b) for b in batches)


def _brute_min(lengths, batch_size, max_tokens, call_cost):
    """Least cost over every way to cut the longest-first order into contiguous batches."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    best = float("inf")
    for mask in range(1 << max(0, len(order) - 1)):
        batches, cur = [], [order[0]]
        for k in range(1, len(order)):
            if mask >> (k - 1) & 1:
                batches.append(cur)
                cur = []
            cur.append(order[k])
        batches.append(cur)
        if all(len(b) <= batch_size and (len(b) == 1 or max_tokens == 0
               or len(b) * max(lengths[i] for i in b) <= max_tokens) for b in batches):
            best = min(best, _cost(batches, lengths, call_cost))
    return best


@pytest.mark.parametrize("seed", range(30))
def test_call_cost_cuts_are_optimal_and_valid(seed):
    rng = random.Random(seed)
    lengths = [rng.randint(1, 60) for _ in range(rng.randint(1, 10))]
    batch_size, max_tokens, call_cost = rng.choice([2, 4, 32]), rng.choice([0, 120]), rng.choice([1, 16, 64, 500])
    batches = make_batches(lengths, batch_size=batch_size, max_tokens=max_tokens, call_cost=call_cost)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(len(b) <= batch_size for b in batches)
    assert all(len(b) == 1 or max_tokens == 0 or len(b) * max(lengths[i] for i in b) <= max_tokens for b in batches)
    assert _cost(batches, lengths, call_cost) == _brute_min(lengths, batch_size, max_tokens, call_cost)


def test_call_cost_splits_mixed_lengths_but_keeps_similar_ones_together():
    assert len(make_batches([50, 49, 5, 4, 3], batch_size=32, call_cost=20)) == 2
    assert len(make_batches([10, 10, 9, 9, 8], batch_size=32, call_cost=20)) == 1
