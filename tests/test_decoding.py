"""Constrained (Viterbi) decoding: always legal IOB2, argmax when that is legal, optimal by brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from nerkit.decoding import _masks, _search, decode, decode_flat, log_softmax, viterbi
from nerkit.schemes import spans, transition_mask

LABELS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


def _legal(path: list[int], labels: list[str]) -> bool:
    allowed, start = transition_mask(labels)
    if not path:
        return True
    return bool(start[path[0]]) and all(allowed[a, b] for a, b in zip(path, path[1:]))


def _random_log_probs(rng: np.random.Generator, n: int, k: int, sharp: float = 3.0) -> np.ndarray:
    return log_softmax(rng.normal(size=(n, k)) * sharp)


def test_never_illegal():
    rng = np.random.default_rng(0)
    for _ in range(500):
        n = int(rng.integers(1, 20))
        path = viterbi(_random_log_probs(rng, n, len(LABELS)), LABELS)
        assert len(path) == n and _legal(path, LABELS)
        tags = [LABELS[i] for i in path]
        assert spans(tags) == spans(tags, strict=True)  # every entity is well formed


def test_equals_argmax_when_legal():
    rng = np.random.default_rng(1)
    hits = 0
    for _ in range(500):
        lp = _random_log_probs(rng, int(rng.integers(1, 8)), len(LABELS))
        am = lp.argmax(-1).tolist()
        if _legal(am, LABELS):
            hits += 1
            assert viterbi(lp, LABELS) == am
            assert _search(lp, *_masks(tuple(LABELS))) == am  # the shortcut agrees with the full search
    assert hits > 50  # the case was really exercised


def test_matches_brute_force():
    rng = np.random.default_rng(2)
    k = len(LABELS)
    for _ in range(150):
        n = int(rng.integers(1, 6))
        lp = _random_log_probs(rng, n, k)
        best, best_score = None, -np.inf
        for cand in itertools.product(range(k), repeat=n):
            if _legal(list(cand), LABELS):
                score = lp[np.arange(n), list(cand)].sum()
                if score > best_score:
                    best, best_score = list(cand), score
        got = viterbi(lp, LABELS)
        assert lp[np.arange(n), got].sum() == pytest.approx(best_score)
        assert got == best


def test_fixes_illegal_argmax():
    # argmax: O I-PER I-PER -> illegal; the best legal path promotes the first I-PER to B-PER
    lp = np.log(np.array([[0.9, 0.02, 0.02, 0.03, 0.03],
                          [0.1, 0.0001, 0.0001, 0.4, 0.4998],
                          [0.1, 0.0001, 0.0001, 0.1, 0.7998]]))
    assert decode(lp, LABELS, constrained=False) == ["O", "I-PER", "I-PER"]
    assert decode(lp, LABELS) == ["O", "B-PER", "I-PER"]


def test_empty_and_single_label():
    assert viterbi(np.zeros((0, 5)), LABELS) == []
    assert decode(np.zeros((0, 5)), LABELS) == []
    assert decode(np.zeros((3, 1)), ["O"]) == ["O", "O", "O"]


def test_log_softmax():
    x = np.array([[1.0, 2.0, 3.0], [1000.0, 1000.0, 0.0]])
    out = log_softmax(x)
    np.testing.assert_allclose(np.exp(out).sum(-1), 1.0)
    assert np.isfinite(out).all()


@pytest.mark.parametrize("constrained", [True, False])
def test_decode_flat_equals_sentence_by_sentence(constrained: bool):
    """The batched decoder gives each sentence exactly the ids of decoding it alone, whatever the mix of
    legal and illegal argmaxes, and with empty sentences anywhere (first, last, in a row)."""
    rng = np.random.default_rng(5)
    for _ in range(40):
        lengths = rng.integers(0, 9, size=int(rng.integers(1, 30)))
        lengths[rng.random(len(lengths)) < 0.15] = 0
        sents = [_random_log_probs(rng, int(n), len(LABELS), sharp=1.0) for n in lengths]
        flat = np.concatenate(sents) if sents else np.zeros((0, len(LABELS)))
        got = decode_flat(flat, lengths, LABELS, constrained).tolist()
        want = [LABELS.index(t) for lp in sents for t in decode(lp, LABELS, constrained)]
        assert got == want
    assert decode_flat(np.zeros((0, len(LABELS))), np.zeros(0, dtype=np.int64), LABELS).tolist() == []
