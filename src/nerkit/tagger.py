"""Tag raw text: the Python API behind `nerkit.load`, `nerkit predict` and the server.

text -> words with offsets (words.py) -> the Predictor (engine/predictor.py: the same path evaluation
scores) -> entities (schemes.py) -> character spans into the caller's string.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import regex

from .engine.predictor import TEXT_BUDGET, Predictor
from .schemes import flat_spans
from .words import Split, Token, split_texts

_SURROGATE = regex.compile(r"\p{Cs}")


@dataclass(frozen=True)
class Span:
    """One entity. start/end are character offsets into the text given, so text == given[start:end].

    score is the mean, over the entity's words, of the probability the model gives the label chosen
    for that word (B-X on the first, I-X on the rest): 1.0 means every word was certain."""

    label: str
    start: int
    end: int
    text: str
    score: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TaggedText:
    """One text in full: its sentences of words, their IOB2 tags, and the entity spans."""

    text: str
    sentences: list[list[Token]]
    tags: list[list[str]]
    spans: list[Span]


class Tagger:
    """A loaded model that tags text. Build it with `nerkit.load(MODEL_DIR)`.

    A text with several sentences is one document: with a document-context model (meta.context > 0)
    its sentences are packed into shared windows, exactly as at training. Text longer than one window
    is cut into overlapping windows; each word takes its scores from the window where it sits most
    centrally, and decoding runs over the whole sentence, so no word is dropped and no entity is cut
    at a window edge.
    """

    def __init__(self, predictor: Predictor):
        self.predictor = predictor
        self.labels, self.entity_types = predictor.labels, predictor.entity_types
        self.meta = predictor.meta

    @property
    def constrained(self) -> bool:
        return self.predictor.constrained

    def __repr__(self) -> str:
        return f"Tagger({self.predictor.description or 'model'}, labels={self.entity_types}, " \
               f"constrained={self.constrained})"

    # ------------------------------------------------------------------------------------- raw text
    def __call__(self, text: str) -> list[Span]:
        return self.tag_texts([text])[0].spans

    def pipe(self, texts: Iterable[str], batch_size: int | None = None) -> Iterator[list[Span]]:
        """Spans for each text, in input order, reading the input lazily.

        batch_size is the most windows per model call (default: the predictor's budget). The tagger reads
        ahead 16 batches' worth of texts and sorts their windows by length, so that batches carry little
        padding."""
        for chunk in self._chunks(texts, batch_size, None):
            yield from self._tag(chunk, batch_size)[2]  # spans only: no Token objects are built

    def pipe_tagged(self, texts: Iterable[str], batch_size: int | None = None,
                    read_ahead: int | None = None) -> Iterator[TaggedText]:
        """As pipe(), with the words and tags too. read_ahead: texts gathered before tagging (default
        16 x batch_size); 1 answers each text as soon as it arrives (an interactive stream)."""
        for chunk in self._chunks(texts, batch_size, read_ahead):
            yield from self.tag_texts(chunk, batch_size)

    def _chunks(self, texts: Iterable[str], batch_size: int | None, read_ahead: int | None) -> Iterator[list[str]]:
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        it = iter(texts)
        while chunk := list(itertools.islice(it, read_ahead or 16 * (batch_size or self.predictor.budget.batch_size))):
            yield chunk

    def tag_texts(self, texts: Sequence[str], batch_size: int | None = None) -> list[TaggedText]:
        """Tag a list of texts together (one length-sorted pass over all their windows)."""
        split, tags, spans = self._tag(texts, batch_size)
        cuts = np.cumsum(split.text_sentences).tolist()
        return [TaggedText(text, sents, tags[a:b], sp)
                for text, sents, a, b, sp in zip(texts, split.tokens(), [0, *cuts[:-1]], cuts, spans)]

    def _tag(self, texts: Sequence[str], batch_size: int | None) -> tuple[Split, list[list[str]], list[list[Span]]]:
        """The texts' words, the tags of each sentence (all texts in order) and each text's spans."""
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"text {i}: expected str, got {type(t).__name__}")
        split = split_texts(texts)
        words = split.words
        if any(not t.isascii() and _SURROGATE.search(t) for t in texts):
            words = [_clean(w) for w in words]
        pred = self.predictor.predict(split.sentences(words), batch_size)
        flat_tags = list(itertools.chain.from_iterable(pred.tags))
        probs = np.concatenate(pred.probs) if pred.probs else np.zeros(0)
        spans = _spans(texts, split, flat_tags, probs)
        return split, pred.tags, spans

    # -------------------------------------------------------------------------------------- words
    def tag_words(self, words: list[str] | list[list[str]]) -> list[str] | list[list[str]]:
        """Pre-tokenised input -> IOB2 tags per word. A list of word lists is tagged as that many
        independent sentences (a list of lists of tags comes back)."""
        if not words:
            return []
        if all(isinstance(w, str) for w in words):
            return self.tag_documents([[list(words)]])[0][0]  # type: ignore[arg-type]
        if all(isinstance(s, list | tuple) and all(isinstance(w, str) for w in s) for s in words):
            return [d[0] for d in self.tag_documents([[list(s)] for s in words])]
        raise TypeError("tag_words expects a list of words (str) or a list of such lists")

    def tag_documents(self, documents: list[list[list[str]]], batch_size: int | None = None) -> list[list[list[str]]]:
        """documents[d][s][w] words -> the same shape of IOB2 tags (documents share context windows
        when the model uses document context)."""
        tags = self._predict(documents, batch_size).tags
        out, k = [], 0
        for doc in documents:
            out.append(tags[k : k + len(doc)])
            k += len(doc)
        return out

    def _predict(self, documents: list[list[list[str]]], batch_size: int | None):
        return self.predictor.predict([[[_clean(w) for w in s] for s in doc] for doc in documents], batch_size)


def _clean(word: str) -> str:
    """A Rust tokenizer cannot take lone surrogates: they become U+FFFD (only in what the model sees)."""
    return _SURROGATE.sub("\ufffd", word) if not word.isascii() else word


def _spans(texts: Sequence[str], split: Split, tags: list[str], probs: np.ndarray) -> list[list[Span]]:
    """Each text's entity spans, from the tags and probabilities of all its words (flat, in order)."""
    types, first, end = flat_spans(tags, split.sentence_lengths)
    starts, ends = split.starts[first].tolist(), split.ends[end - 1].tolist()
    sentence_text = np.repeat(np.arange(len(texts)), split.text_sentences)
    text_of = np.repeat(sentence_text, split.sentence_lengths)[first].tolist()
    out: list[list[Span]] = [[] for _ in texts]
    for k, t, s, e, score in zip(text_of, types, starts, ends, _mean_probs(probs, first, end).tolist()):
        out[k].append(Span(t, s, e, texts[k][s:e], round(score, 4)))
    return out


def _mean_probs(probs: np.ndarray, first: np.ndarray, end: np.ndarray) -> np.ndarray:
    """probs[first[k]:end[k]].mean() for each k, exactly: entities of one length are averaged as the rows
    of one array, which numpy sums as it sums each row on its own."""
    out = np.zeros(len(first), dtype=np.float64)
    size = end - first
    for n in np.unique(size).tolist():
        k = np.flatnonzero(size == n)
        out[k] = probs[first[k, None] + np.arange(n)].mean(axis=1)
    return out


def _char_spans(text: str, words: list[Token], tags: list[str], probs: np.ndarray) -> list[Span]:
    """One sentence's spans (words: its Tokens in `text`)."""
    split = Split([w.text for w in words], np.array([w.start for w in words], dtype=np.int64),
                  np.array([w.end for w in words], dtype=np.int64), np.array([len(words)]), np.array([1]))
    return _spans([text], split, tags, np.asarray(probs))[0]


def load(model_dir: str, backend: str = "torch", device: str | None = None, constrained: bool | None = None,
         max_tokens: int | None = None, batch_size: int | None = None, lanes: int = 0) -> Tagger:
    """Load a model folder for tagging.

    backend: "torch"; "onnx" (onnx/model.onnx, written by `nerkit export --onnx`); "onnx-int8"
    (onnx/model.int8.onnx, from `--int8`). device: for torch, "cpu", "cuda", ... (default: cuda when
    available). constrained: Viterbi decoding under IOB2 constraints (default: the model's setting);
    False gives the plain argmax. max_tokens, batch_size: the most padded tokens and windows per model
    call (default: engine.predictor.TEXT_BUDGET). lanes (onnx backends): model calls at once, sharing the
    threads (0: two where there are two threads or more; 1: one call at a time on all of them).
    """
    return Tagger(Predictor.from_dir(model_dir, backend=backend, device=device, constrained=constrained,
                                     budget=TEXT_BUDGET.limited(max_tokens, batch_size), lanes=lanes))
