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


def decode_flat(log_probs: np.ndarray, lengths: np.ndarray, labels: list[str], constrained: bool = True) -> np.ndarray:
    """Many sentences at once: log_probs (all words, labels) holds the sentences one after another,
    `lengths` words each. Returns a label id per word, the same ids `viterbi` gives sentence by sentence.

    The argmax and its legality are checked for every word in one pass, so only the (few) sentences
    whose argmax breaks a constraint cost Python time."""
    ids = log_probs.argmax(-1) if len(log_probs) else np.zeros(0, dtype=np.int64)
    if not constrained or len(ids) == 0:
        return ids
    trans, start = _masks(tuple(labels))
    ends = np.cumsum(lengths)
    starts = ends - lengths
    sentence = np.repeat(np.arange(len(lengths)), lengths)  # sentence of each word
    bad = np.zeros(len(lengths), dtype=bool)
    nonempty = lengths > 0
    bad[nonempty] = np.isinf(start[ids[starts[nonempty]]])
    inside = sentence[1:] == sentence[:-1]  # word pairs within one sentence
    illegal = np.isinf(trans[ids[:-1], ids[1:]]) & inside
    bad[sentence[1:][illegal]] = True
    for k in np.flatnonzero(bad):
        a, b = starts[k], ends[k]
        ids[a:b] = _search(log_probs[a:b], trans, start)
    return ids
