"""Word scores -> IOB2 labels -> entities. The one place where labels are chosen: training's evaluation,
the tagger, the CLI and the server all decode here."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .schemes import transition_mask


@lru_cache(maxsize=16)
def _masks(labels: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    allowed, start = transition_mask(list(labels))
    return np.where(allowed, 0.0, -np.inf), np.where(start, 0.0, -np.inf)


def viterbi(log_probs: np.ndarray, labels: list[str]) -> list[int]:
    """Best label path under IOB2 constraints (no O -> I-X, no B-X -> I-Y, no I-X at the start).

    log_probs: (words, labels). Scores are the sum of per-word log-probabilities, so the result only
    differs from the argmax where the argmax is illegal.
    """
    n = len(log_probs)
    if n == 0:
        return []
    trans, start = _masks(tuple(labels))
    best = log_probs.argmax(-1)
    if start[best[0]] == 0 and not np.isinf(trans[best[:-1], best[1:]]).any():
        return best.tolist()  # a legal argmax is the best path: most sentences skip the search
    return _search(log_probs, trans, start)


def _search(log_probs: np.ndarray, trans: np.ndarray, start: np.ndarray) -> list[int]:
    n = len(log_probs)
    score = log_probs[0] + start
    back = np.zeros(log_probs.shape, dtype=np.int64)
    for t in range(1, n):
        cand = score[:, None] + trans  # (from, to)
        back[t] = cand.argmax(0)
        score = cand.max(0) + log_probs[t]
    path = [int(score.argmax())]
    for t in range(n - 1, 0, -1):
        path.append(int(back[t, path[-1]]))
    return path[::-1]


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def decode(log_probs: np.ndarray, labels: list[str], constrained: bool = True) -> list[str]:
    """One sentence's word log-probabilities -> IOB2 labels."""
    if len(log_probs) == 0:
        return []
    ids = viterbi(log_probs, labels) if constrained else log_probs.argmax(-1).tolist()
    return [labels[i] for i in ids]
