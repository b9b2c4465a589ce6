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
from .schemes import spans as iob2_spans
from .words import Token, split_sentences

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
        for tagged in self.pipe_tagged(texts, batch_size):
            yield tagged.spans

    def pipe_tagged(self, texts: Iterable[str], batch_size: int | None = None,
                    read_ahead: int | None = None) -> Iterator[TaggedText]:
        """As pipe(), with the words and tags too. read_ahead: texts gathered before tagging (default
        16 x batch_size); 1 answers each text as soon as it arrives (an interactive stream)."""
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        it = iter(texts)
        while chunk := list(itertools.islice(it, read_ahead or 16 * (batch_size or self.predictor.budget.batch_size))):
            yield from self.tag_texts(chunk, batch_size)

    def tag_texts(self, texts: Sequence[str], batch_size: int | None = None) -> list[TaggedText]:
        """Tag a list of texts together (one length-sorted pass over all their windows)."""
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"text {i}: expected str, got {type(t).__name__}")
        sentences = [split_sentences(t) for t in texts]
        docs = [[[w.text for w in s] for s in sents] for sents in sentences]
        pred = self._predict(docs, batch_size)
        out, k = [], 0
        for text, sents in zip(texts, sentences):
            n = len(sents)
            doc_tags, doc_probs = pred.tags[k : k + n], pred.probs[k : k + n]
            k += n
            spans = [sp for s, t, p in zip(sents, doc_tags, doc_probs) for sp in _char_spans(text, s, t, p)]
            out.append(TaggedText(text, sents, doc_tags, spans))
        return out

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


def _char_spans(text: str, words: list[Token], tags: list[str], probs: np.ndarray) -> list[Span]:
    out = []
    for e in iob2_spans(tags):
        start, end = words[e.start].start, words[e.end - 1].end
        out.append(Span(e.type, start, end, text[start:end], round(float(probs[e.start : e.end].mean()), 4)))
    return out


def load(model_dir: str, backend: str = "torch", device: str | None = None, constrained: bool | None = None,
         max_tokens: int | None = None, batch_size: int | None = None) -> Tagger:
    """Load a model folder for tagging.

    backend: "torch"; "onnx" (onnx/model.onnx, written by `nerkit export --onnx`); "onnx-int8"
    (onnx/model.int8.onnx, from `--int8`). device: for torch, "cpu", "cuda", ... (default: cuda when
    available). constrained: Viterbi decoding under IOB2 constraints (default: the model's setting);
    False gives the plain argmax. max_tokens, batch_size: the most padded tokens and windows per model
    call (default: engine.predictor.TEXT_BUDGET).
    """
    return Tagger(Predictor.from_dir(model_dir, backend=backend, device=device, constrained=constrained,
                                     budget=TEXT_BUDGET.limited(max_tokens, batch_size)))
