"""Words + tokenizer -> model features: sub-word ids, first-sub-word labels, windows, word shapes.

One mechanism serves both modes. A *stream* of words (one sentence, or one whole document when document
context is on) is cut into windows that fit the model. Windows prefer sentence boundaries, overlap at
evaluation time, and every word takes its prediction from the window where it sits most centrally, so
nothing is truncated and no word is predicted twice.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

IGNORE = -100
_CACHE_WORDS = 1 << 17  # distinct words whose sub-words an Encoder keeps

# Word shapes for the optional casing embedding (id 0 is "no word": special tokens and padding).
SHAPES = ["none", "lower", "Title", "UPPER", "miXed", "digits", "punct", "other"]
NUM_SHAPES = len(SHAPES)


@lru_cache(maxsize=1 << 16)  # words repeat: most of a corpus's tokens are a few thousand words
def word_shape(word: str) -> int:
    letters = [c for c in word if c.isalpha() and (c.isupper() or c.islower())]  # cased letters only
    if not letters:
        if any(c.isalpha() for c in word):
            return 7  # a script without case (CJK, Arabic, ...)
        if any(c.isdigit() for c in word):
            return 5
        return 6 if word and all(not c.isalnum() for c in word) else 7
    if all(c.islower() for c in letters):
        return 1
    if all(c.isupper() for c in letters):
        return 3 if len(letters) > 1 else 2  # "A" reads as Title, "NASA" as UPPER
    if letters[0].isupper() and all(c.islower() for c in letters[1:]):
        return 2
    return 4


@dataclass
class Feature:
    """One model input window and where its words come from."""

    input_ids: list[int]
    labels: list[int]  # label id on each word's first sub-word, IGNORE elsewhere
    shape_ids: list[int]  # the word's shape on each of its sub-words, 0 on special tokens
    positions: list[int]  # token index of each word's first sub-word
    sentence_ids: list[int]  # sentence (index into the caller's flat sentence list) of each word
    word_indices: list[int]  # index of each word inside its sentence
    owned: list[bool]  # True where this window gives the word its prediction

    def __len__(self) -> int:
        return len(self.input_ids)


def _special_tokens(tokenizer) -> tuple[list[int], list[int]]:
    """The ids a tokenizer puts before and after the words ([CLS] / [SEP], <s> / </s>, ...)."""
    enc = tokenizer(["a"], is_split_into_words=True, add_special_tokens=True)
    ids, wids = enc["input_ids"], enc.word_ids()
    first = wids.index(0)
    last = len(wids) - 1 - wids[::-1].index(0)
    return ids[:first], ids[last + 1 :]


def plan_windows(
    counts: list[int], sentences: list[tuple[int, int]], budget: int, overlap: bool, lead: int = 0
) -> list[tuple[int, int]]:
    """Cut a stream into word ranges [a, b) of at most `budget` sub-words.

    Whole sentences are packed together where they fit; a sentence longer than the budget is cut at
    word boundaries. With `overlap`, each window starts about half-way into the previous one. `lead`
    shrinks the first window by that many sub-words, which moves every later cut (training jitter).
    """
    offsets = [0, *itertools.accumulate(counts)]  # non-decreasing, so cuts are found by bisection

    def word_windows(ws: int, we: int) -> list[tuple[int, int]]:
        out, a = [], ws
        while True:
            b = bisect.bisect_right(offsets, offsets[a] + budget, a, we + 1) - 1  # the most words that fit
            b = max(b, a + 1)  # a single over-long word still gets its window (clipped later)
            out.append((a, b))
            if b >= we:
                return out
            if overlap:  # the first word at or past half the window
                a = bisect.bisect_left(offsets, offsets[a] + (offsets[b] - offsets[a]) // 2, a + 1, b)
            else:
                a = b

    windows: list[tuple[int, int]] = []
    i = 0
    while i < len(sentences):
        s0, e0 = sentences[i]
        if offsets[e0] - offsets[s0] > budget:
            windows += word_windows(s0, e0)
            i += 1
            continue
        cap = budget - lead if not windows else budget
        j = i + 1
        while j < len(sentences) and offsets[sentences[j][1]] - offsets[s0] <= cap:
            j += 1
        windows.append((s0, sentences[j - 1][1]))
        if j >= len(sentences):
            break
        nxt = j
        if overlap:
            half = (offsets[sentences[j - 1][1]] - offsets[s0]) // 2
            nxt = i + 1
            while nxt < j and offsets[sentences[nxt][0]] - offsets[s0] < half:
                nxt += 1
        i = nxt
    return windows


def _owners(windows: list[tuple[int, int]], bounds: list[tuple[int, int]], counts: np.ndarray) -> np.ndarray:
    """The window each word takes its prediction from: the one where its sentence (or, when the sentence
    does not fit, the word itself) is farthest from either edge; the first such window on a tie."""
    n = len(counts)
    if len(windows) == 1:
        return np.zeros(n, dtype=np.int64)  # the common case: one window owns everything
    offsets = np.concatenate([[0], np.cumsum(counts)])
    sizes = [b - a for a, b in bounds]
    sa = np.repeat([a for a, _ in bounds], sizes)  # each word's sentence: where it starts and ends
    sb = np.repeat([b for _, b in bounds], sizes)
    best = np.full(n, -1)  # score of the best window so far
    owner = np.full(n, -1)
    for wi, (a, b) in enumerate(windows):
        w = np.arange(a, b)
        fits = (sa[a:b] >= a) & (sb[a:b] <= b)  # the whole sentence sits in this window
        ua, ub = np.where(fits, sa[a:b], w), np.where(fits, sb[a:b], w + 1)
        score = np.minimum(offsets[ua] - offsets[a], offsets[b] - offsets[ub])
        better = score > best[a:b]
        best[a:b][better] = score[better]
        owner[a:b][better] = wi
    return owner


class Encoder:
    """Turns word sequences into `Feature`s for one tokenizer and label set.

    context = 0 encodes each sentence on its own; context = N packs consecutive sentences of a document
    into windows of up to N sub-words (document context).
    """

    def __init__(
        self,
        tokenizer,
        labels: list[str],
        max_length: int = 512,
        context: int = 0,
        shapes: bool = False,
    ):
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError("nerkit needs a fast (Rust) tokenizer for word alignment")
        self.tokenizer = tokenizer
        self.label2id = {lab: i for i, lab in enumerate(labels)}
        self.prefix, self.suffix = _special_tokens(tokenizer)
        length = min(context, max_length) if context else max_length
        self.budget = length - len(self.prefix) - len(self.suffix)
        if self.budget < 8:
            raise ValueError(f"max_length {length} leaves no room for words")
        self.context = context
        self.shapes = shapes
        self.unk = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else 0
        self._cache: dict[str, list[int]] = {}  # word -> its pieces (see _pieces)

    @classmethod
    def from_meta(cls, tokenizer, meta) -> Encoder:
        """The encoder a saved model was trained with (meta: model.ModelMeta)."""
        return cls(tokenizer, meta.labels, meta.max_length, meta.context, meta.shapes)

    def _pieces(self, words: Iterable[str]) -> dict[str, list[int]]:
        """The sub-word ids of each distinct word: what the tokenizer gives it, clipped to a window; a
        word it erases (e.g. a lone control character) becomes the unknown token, so every word keeps a
        position. A tokenizer encodes each word of pre-tokenized input on its own, so a word's pieces do
        not depend on its neighbours: they are cached, and only new words go to the tokenizer, all in one
        call."""
        found: dict[str, list[int]] = {}
        new: list[str] = []
        for w in dict.fromkeys(words):
            p = self._cache.get(w)
            if p is None:
                new.append(w)
            else:
                found[w] = p
        if new:
            ids, wids = self._tokenize(new)
            bounds = np.searchsorted(wids, np.arange(len(new) + 1)).tolist()  # word ids ascend
            if len(self._cache) + len(new) > _CACHE_WORDS:
                self._cache.clear()
            for w, a, b in zip(new, bounds, bounds[1:]):
                found[w] = self._cache[w] = ids[a:b][: self.budget] or [self.unk]
        return found

    def _tokenize(self, words: list[str]) -> tuple[list[int], np.ndarray]:
        """Sub-word ids of `words` as one pre-tokenized sequence, no special tokens, and the word index of
        each (-1 for none). The Rust tokenizer is called directly when it holds no truncation or padding
        state of its own."""
        rust = getattr(self.tokenizer, "backend_tokenizer", None)
        if rust is not None and rust.truncation is None and rust.padding is None:
            enc = rust.encode(words, is_pretokenized=True, add_special_tokens=False)
            return enc.ids, np.array(enc.word_ids, dtype=np.int64)
        enc = self.tokenizer(words, is_split_into_words=True, add_special_tokens=False, verbose=False)
        return enc["input_ids"], np.array([-1 if w is None else w for w in enc.word_ids()], dtype=np.int64)

    def _subwords(self, streams: list[list[str]]) -> tuple[list[list[int]], np.ndarray]:
        """Sub-word ids per stream, words one after another, and the sub-words of each word (all streams'
        words in order)."""
        pieces = self._pieces(itertools.chain.from_iterable(streams)).__getitem__
        ids = [list(itertools.chain.from_iterable(map(pieces, s))) for s in streams]
        counts = np.fromiter(map(len, map(pieces, itertools.chain.from_iterable(streams))), dtype=np.int64,
                             count=sum(map(len, streams)))
        return ids, counts

    def encode(
        self,
        documents: list[list[list[str]]],
        tags: list[list[list[str]]] | None = None,
        train: bool = False,
        jitter: random.Random | None = None,
    ) -> list[Feature]:
        """documents[d][s][w] are words; tags alike (IOB2) or None. Sentences are numbered in order
        over all documents, and Feature.sentence_ids refer to that numbering. With `jitter` (training
        with context), each document's first window is cut short by a random amount, so a sentence
        meets other neighbours and positions from one epoch to the next."""
        streams: list[list[str]] = []
        stream_sents: list[list[tuple[int, int]]] = []  # (start, end) word range per sentence
        stream_tags: list[list[str]] = []
        for d, doc in enumerate(documents):
            groups = [doc] if self.context else [[s] for s in doc]
            for gi, group in enumerate(groups):
                words: list[str] = []
                bounds: list[tuple[int, int]] = []
                gtags: list[str] = []
                for si, sent in enumerate(group):
                    bounds.append((len(words), len(words) + len(sent)))
                    words += sent
                    if tags is not None:
                        gtags += tags[d][gi + si]  # one of gi, si is always 0
                if words:
                    streams.append(words)
                    stream_sents.append(bounds)
                    stream_tags.append(gtags)
        if not streams:
            return []
        return self._features(streams, stream_sents, stream_tags if tags is not None else None, documents,
                              train, jitter)

    def _features(self, streams: list[list[str]], stream_sents: list[list[tuple[int, int]]],
                  stream_tags: list[list[str]] | None, documents: list[list[list[str]]], train: bool,
                  jitter: random.Random | None) -> list[Feature]:
        """The windows of every stream. Per-word values (label, shape, sentence, index in it, first
        sub-word) are built for all words at once, then sliced per window."""
        ids, counts = self._subwords(streams)
        sent_lens = np.array([len(s) for doc in documents for s in doc], dtype=np.int64)
        sentence_ids = np.repeat(np.arange(len(sent_lens)), sent_lens)  # all words, in stream order
        word_indices = np.arange(len(sentence_ids)) - np.repeat(np.cumsum(sent_lens) - sent_lens, sent_lens)
        sids, widx = sentence_ids.tolist(), word_indices.tolist()
        first = np.concatenate([[0], np.cumsum(counts)])  # first sub-word of each word, over all streams
        first_l = first.tolist()
        p, q = len(self.prefix), len(self.suffix)
        labels: list[int] = []  # per sub-word, all streams
        sub_shapes: list[int] = []
        if stream_tags is not None:
            lab = np.fromiter(map(self.label2id.__getitem__, itertools.chain.from_iterable(stream_tags)),
                              dtype=np.int64, count=len(counts))
            sub_labels = np.full(int(first[-1]), IGNORE, dtype=np.int64)
            sub_labels[first[:-1]] = lab  # the label on the first sub-word
            labels = sub_labels.tolist()
        if self.shapes:
            shapes = np.fromiter(map(word_shape, itertools.chain.from_iterable(streams)), dtype=np.int64,
                                 count=len(counts))
            sub_shapes = np.repeat(shapes, counts).tolist()  # the word's shape on each sub-word
        feats = []
        w0 = 0  # first word of this stream, over all streams
        for words, sub, bounds in zip(streams, ids, stream_sents):
            n = len(words)
            lead = jitter.randrange(self.budget // 2) if jitter is not None and self.context else 0
            t0 = first_l[w0]
            if lead == 0 and len(sub) <= self.budget:
                windows = [(0, n)]  # what plan_windows gives, without its work
            else:
                windows = plan_windows(counts[w0 : w0 + n].tolist(), bounds, self.budget, overlap=not train,
                                       lead=lead)
            owner = _owners(windows, bounds, counts[w0 : w0 + n])
            for wi, (a, b) in enumerate(windows):
                ta, tb = first_l[w0 + a] - t0, first_l[w0 + b] - t0  # its sub-words, in the stream
                size = p + (tb - ta) + q
                feats.append(Feature(
                    input_ids=self.prefix + sub[ta:tb] + self.suffix,
                    labels=[IGNORE] * p + labels[t0 + ta : t0 + tb] + [IGNORE] * q if stream_tags is not None
                    else [IGNORE] * size,
                    shape_ids=[0] * p + sub_shapes[t0 + ta : t0 + tb] + [0] * q if self.shapes else [0] * size,
                    positions=(first[w0 + a : w0 + b] - (t0 + ta - p)).tolist(),
                    sentence_ids=sids[w0 + a : w0 + b],
                    word_indices=widx[w0 + a : w0 + b],
                    owned=[True] * (b - a) if len(windows) == 1 else (owner[a:b] == wi).tolist(),
                ))
            w0 += n
        return feats

    def encode_corpus(self, corpus, train: bool = False, jitter: random.Random | None = None) -> list[Feature]:
        docs = [[s.words for s in d.sentences] for d in corpus.documents]
        tags = [[s.tags for s in d.sentences] for d in corpus.documents]
        return self.encode(docs, tags, train=train, jitter=jitter)
