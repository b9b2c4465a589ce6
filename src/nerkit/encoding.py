"""Words + tokenizer -> model features: sub-word ids, first-sub-word labels, windows, word shapes.

One mechanism serves both modes. A *stream* of words (one sentence, or one whole document when document
context is on) is cut into windows that fit the model. Windows prefer sentence boundaries, overlap at
evaluation time, and every word takes its prediction from the window where it sits most centrally, so
nothing is truncated and no word is predicted twice.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

IGNORE = -100

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
    offsets = [0]
    for c in counts:
        offsets.append(offsets[-1] + c)

    def word_windows(ws: int, we: int) -> list[tuple[int, int]]:
        out, a = [], ws
        while True:
            b = a
            while b < we and offsets[b + 1] - offsets[a] <= budget:
                b += 1
            b = max(b, a + 1)  # a single over-long word still gets its window (clipped later)
            out.append((a, b))
            if b >= we:
                return out
            nxt = a + 1
            if overlap:
                while nxt < b and offsets[nxt] - offsets[a] < (offsets[b] - offsets[a]) // 2:
                    nxt += 1
            else:
                nxt = b
            a = nxt

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


def _owners(windows: list[tuple[int, int]], bounds: list[tuple[int, int]], counts: list[int]) -> list[int]:
    """The window each word takes its prediction from: the one where its sentence (or, when the sentence
    does not fit, the word itself) is farthest from either edge; the first such window on a tie."""
    if len(windows) == 1:
        return [0] * len(counts)  # the common case: one window owns everything
    offsets = [0]
    for c in counts:
        offsets.append(offsets[-1] + c)
    sent_of_word = [0] * len(counts)
    for k, (a, b) in enumerate(bounds):
        for w in range(a, b):
            sent_of_word[w] = k
    best: list[tuple[int, int]] = [(-1, -1)] * len(counts)  # (score, window) per word
    for wi, (a, b) in enumerate(windows):
        lo, hi = offsets[a], offsets[b]
        for w in range(a, b):
            sa, sb = bounds[sent_of_word[w]]
            ua, ub = (sa, sb) if sa >= a and sb <= b else (w, w + 1)  # whole sentence if it fits
            score = min(offsets[ua] - lo, hi - offsets[ub])
            if score > best[w][0]:
                best[w] = (score, wi)
    return [wi for _, wi in best]


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

    @classmethod
    def from_meta(cls, tokenizer, meta) -> Encoder:
        """The encoder a saved model was trained with (meta: model.ModelMeta)."""
        return cls(tokenizer, meta.labels, meta.max_length, meta.context, meta.shapes)

    def _subwords(self, streams: list[list[str]]) -> list[list[list[int]]]:
        """Sub-word ids per word per stream. A word the tokenizer erases (e.g. a lone control
        character) becomes the unknown token, so every word keeps a position."""
        if not streams:
            return []
        out = []
        for words, (ids, wids) in zip(streams, self._tokenize(streams)):
            bounds = np.searchsorted(wids, np.arange(len(words) + 1)).tolist()  # word ids ascend
            per_word = [ids[a:b][: self.budget] for a, b in zip(bounds, bounds[1:])]
            out.append([p if p else [self.unk] for p in per_word])
        return out

    def _tokenize(self, streams: list[list[str]]) -> list[tuple[list[int], np.ndarray]]:
        """(sub-word ids, word index of each) per stream, no special tokens. The Rust tokenizer is called
        once for the whole batch, directly when it holds no truncation or padding state of its own."""
        rust = getattr(self.tokenizer, "backend_tokenizer", None)
        if rust is not None and rust.truncation is None and rust.padding is None:
            encs = rust.encode_batch(streams, is_pretokenized=True, add_special_tokens=False)
            return [(e.ids, np.asarray(e.word_ids, dtype=np.int64)) for e in encs]
        enc = self.tokenizer(streams, is_split_into_words=True, add_special_tokens=False, verbose=False)
        return [(enc["input_ids"][k], np.asarray([-1 if w is None else w for w in enc.word_ids(k)], dtype=np.int64))
                for k in range(len(streams))]

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
        stream_refs: list[list[tuple[int, int]]] = []  # (sentence id, word index) per word
        stream_tags: list[list[str]] = []
        sid = 0
        for d, doc in enumerate(documents):
            groups = [doc] if self.context else [[s] for s in doc]
            for gi, group in enumerate(groups):
                words: list[str] = []
                bounds: list[tuple[int, int]] = []
                refs: list[tuple[int, int]] = []
                gtags: list[str] = []
                for si, sent in enumerate(group):
                    bounds.append((len(words), len(words) + len(sent)))
                    words += sent
                    refs += [(sid, w) for w in range(len(sent))]
                    if tags is not None:
                        gtags += tags[d][gi + si]  # one of gi, si is always 0
                    sid += 1
                if words:
                    streams.append(words)
                    stream_sents.append(bounds)
                    stream_refs.append(refs)
                    stream_tags.append(gtags)
        features: list[Feature] = []
        for words, sub, bounds, refs, gtags in zip(
            streams, self._subwords(streams), stream_sents, stream_refs, stream_tags
        ):
            lead = jitter.randrange(self.budget // 2) if jitter is not None and self.context else 0
            features += self._stream_features(words, sub, bounds, refs, gtags, train, lead)
        return features

    def _stream_features(self, words, sub, bounds, refs, gtags, train, lead=0) -> list[Feature]:
        counts = [len(s) for s in sub]
        windows = plan_windows(counts, bounds, self.budget, overlap=not train, lead=lead)
        owner = _owners(windows, bounds, counts)
        feats = []
        for wi, (a, b) in enumerate(windows):
            ids, labels, shapes = list(self.prefix), [IGNORE] * len(self.prefix), [0] * len(self.prefix)
            positions = []
            for w in range(a, b):
                positions.append(len(ids))
                n = len(sub[w])
                ids += sub[w]
                labels += [self.label2id[gtags[w]] if gtags else IGNORE] + [IGNORE] * (n - 1)
                shapes += [word_shape(words[w]) if self.shapes else 0] * n
            ids += self.suffix
            labels += [IGNORE] * len(self.suffix)
            shapes += [0] * len(self.suffix)
            span = refs[a:b]
            feats.append(Feature(ids, labels, shapes, positions, [r[0] for r in span], [r[1] for r in span],
                                 [o == wi for o in owner[a:b]]))
        return feats

    def encode_corpus(self, corpus, train: bool = False, jitter: random.Random | None = None) -> list[Feature]:
        docs = [[s.words for s in d.sentences] for d in corpus.documents]
        tags = [[s.tags for s in d.sentences] for d in corpus.documents]
        return self.encode(docs, tags, train=train, jitter=jitter)
