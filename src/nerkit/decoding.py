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

    The argmax and its legality are checked for every word in one pass; only the sentences whose argmax
    breaks a constraint are searched, all of them together."""
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
    k = np.flatnonzero(bad)
    if len(k):
        _search_many(log_probs, starts[k], lengths[k], trans, start, ids)
    return ids


def _search_many(log_probs: np.ndarray, starts: np.ndarray, lengths: np.ndarray, trans: np.ndarray,
                 start: np.ndarray, out: np.ndarray) -> None:
    """_search over many sentences at once (log_probs[starts[k]:starts[k] + lengths[k]], each non-empty),
    writing each best path into `out` at the sentence's rows. The same float operations as _search, so
    the same paths: sentences are sorted longest first, so that step t runs on the first rows only."""
    order = np.argsort(-lengths, kind="stable")
    starts, lengths = starts[order], lengths[order]
    score = log_probs[starts] + start  # (sentences, labels)
    back = []
    for t in range(1, int(lengths[0])):
        k = int(np.searchsorted(-lengths, -t))  # sentences longer than t
        cand = score[:k, :, None] + trans  # (sentence, from, to)
        back.append(cand.argmax(1))
        score[:k] = cand.max(1) + log_probs[starts[:k] + t]
    path = score.argmax(1)
    out[starts + lengths - 1] = path
    for t in range(int(lengths[0]) - 1, 0, -1):  # follow the pointers back, each sentence from its end
        k = len(back[t - 1])
        path[:k] = back[t - 1][np.arange(k), path[:k]]
        out[starts[:k] + t - 1] = path[:k]
