"""Tag raw text: the Python API behind `nerkit.load`, `nerkit predict` and the server.

text -> words with offsets (words.py) -> windows (encoding.py) -> log-probs (inference.py, torch or
onnxruntime) -> IOB2 labels (decoding.py) -> entities (schemes.py) -> character spans. Every step but the
first and the last is the one training and evaluation use, so tags here are the tags `nerkit evaluate`
scores.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import regex

from .decoding import decode
from .encoding import Encoder
from .inference import Backend, word_log_probs
from .model import ModelMeta
from .schemes import spans as iob2_spans
from .schemes import split_tag
from .words import Token, split_sentences

BACKENDS = ("torch", "onnx", "onnx-int8")
# Windows per model call. Bigger batches are faster on a CPU but hold more memory: bench/predict_speed.py
# measured 1.90-1.96x the HF pipeline at 32 with 0.86-0.92x its peak RSS, and 2.38x at 256 with 1.14x.
DEFAULT_BATCH = 32
# One model call costs about as much as this many more tokens in a batch (measured: MiniLM on a 2-core
# CPU, where a call streams all weights from memory). Cutting a few mixed-length texts into batches at this
# price beats padding them all to the longest: bench/call_cost.py, 1.35-1.6x on groups of 10-20.
CALL_COST_TOKENS = 64
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

    def __init__(self, backend: Backend, tokenizer, meta: ModelMeta, constrained: bool | None = None,
                 max_tokens: int = 2048, description: str = "", call_cost: int = CALL_COST_TOKENS):
        self.backend = backend
        self.tokenizer = tokenizer
        self.meta = meta
        self.labels: list[str] = list(meta.labels)
        self.entity_types: list[str] = sorted({t for t in (split_tag(lab)[1] for lab in self.labels) if t})
        self.constrained = meta.constrained if constrained is None else constrained
        self.encoder = Encoder.from_meta(tokenizer, meta)
        self.max_tokens = max_tokens
        self.call_cost = call_cost
        self.description = description

    def __repr__(self) -> str:
        return f"Tagger({self.description or 'model'}, labels={self.entity_types}, constrained={self.constrained})"

    # ------------------------------------------------------------------------------------- raw text
    def __call__(self, text: str) -> list[Span]:
        return self.tag_texts([text])[0].spans

    def pipe(self, texts: Iterable[str], batch_size: int = DEFAULT_BATCH) -> Iterator[list[Span]]:
        """Spans for each text, in input order, reading the input lazily.

        batch_size is the most windows per model call. The tagger reads ahead 16 batches' worth of texts
        and sorts their windows by length, so that batches carry little padding."""
        for tagged in self.pipe_tagged(texts, batch_size):
            yield tagged.spans

    def pipe_tagged(self, texts: Iterable[str], batch_size: int = DEFAULT_BATCH,
                    read_ahead: int | None = None) -> Iterator[TaggedText]:
        """As pipe(), with the words and tags too. read_ahead: texts gathered before tagging (default
        16 x batch_size); 1 answers each text as soon as it arrives (an interactive stream)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        it = iter(texts)
        while chunk := list(itertools.islice(it, read_ahead or 16 * batch_size)):
            yield from self.tag_texts(chunk, batch_size)

    def tag_texts(self, texts: Sequence[str], batch_size: int = DEFAULT_BATCH) -> list[TaggedText]:
        """Tag a list of texts together (one length-sorted pass over all their windows)."""
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"text {i}: expected str, got {type(t).__name__}")
        sentences = [split_sentences(t) for t in texts]
        docs = [[[w.text for w in s] for s in sents] for sents in sentences]
        tags, probs = self._tag_documents(docs, batch_size)
        out, k = [], 0
        for text, sents in zip(texts, sentences):
            n = len(sents)
            doc_tags, doc_probs = tags[k : k + n], probs[k : k + n]
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
            return self.tag_documents([[list(words)]])[0][0]
        if all(isinstance(s, list | tuple) and all(isinstance(w, str) for w in s) for s in words):
            return [d[0] for d in self.tag_documents([[list(s)] for s in words])]
        raise TypeError("tag_words expects a list of words (str) or a list of such lists")

    def tag_documents(self, documents: list[list[list[str]]], batch_size: int = DEFAULT_BATCH) -> list[list[list[str]]]:
        """documents[d][s][w] words -> the same shape of IOB2 tags (documents share context windows
        when the model uses document context)."""
        tags, _ = self._tag_documents(documents, batch_size)
        out, k = [], 0
        for doc in documents:
            out.append(tags[k : k + len(doc)])
            k += len(doc)
        return out

    def _tag_documents(self, documents: list[list[list[str]]], batch_size: int = DEFAULT_BATCH
                       ) -> tuple[list[list[str]], list[np.ndarray]]:
        """Tags and the probability of each chosen tag, per sentence over all documents."""
        documents = [[[_clean(w) for w in s] for s in doc] for doc in documents]
        lengths = [len(s) for doc in documents for s in doc]
        features = self.encoder.encode(documents)
        logps = word_log_probs(self.backend, features, lengths, self.tokenizer.pad_token_id,
                               max_tokens=self.max_tokens, batch_size=batch_size, call_cost=self.call_cost)
        tags, probs = [], []
        index = {lab: i for i, lab in enumerate(self.labels)}
        for lp in logps:
            t = decode(lp, self.labels, self.constrained)
            ids = [index[lab] for lab in t]
            tags.append(t)
            probs.append(np.exp(lp[np.arange(len(ids)), ids]) if ids else np.zeros(0))
        return tags, probs


def _clean(word: str) -> str:
    """A Rust tokenizer cannot take lone surrogates: they become U+FFFD (only in what the model sees)."""
    return _SURROGATE.sub("\ufffd", word) if not word.isascii() else word


def _char_spans(text: str, words: list[Token], tags: list[str], probs: np.ndarray) -> list[Span]:
    out = []
    for e in iob2_spans(tags):
        start, end = words[e.start].start, words[e.end - 1].end
        out.append(Span(e.type, start, end, text[start:end], round(float(probs[e.start : e.end].mean()), 4)))
    return out


def load(model_dir: str, backend: str = "torch", device: str | None = None,
         constrained: bool | None = None) -> Tagger:
    """Load a model folder for tagging.

    backend: "torch"; "onnx" (onnx/model.onnx, written by `nerkit export --onnx`); "onnx-int8"
    (onnx/model.int8.onnx, from `--int8`). device: for torch, "cpu", "cuda", ... (default: cuda when
    available). constrained: Viterbi decoding under IOB2 constraints (default: the model's setting);
    False gives the plain argmax.
    """
    import torch

    from .model import ModelError, find_model_dir, load_model, load_tokenizer_and_meta

    if backend not in BACKENDS:
        raise ModelError(f"backend: {backend!r} is not one of {', '.join(BACKENDS)}")
    if backend == "torch":
        from .inference import torch_backend

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        model, tokenizer, meta = load_model(model_dir, device=device)
        return Tagger(torch_backend(model, device), tokenizer, meta, constrained, description=f"{model_dir}, torch")
    from .export import onnx_backend, onnx_file

    folder = find_model_dir(model_dir)
    path = onnx_file(folder, int8=backend == "onnx-int8")  # fails before the slow load when missing
    _, tokenizer, _, meta = load_tokenizer_and_meta(folder)  # the weights are in the ONNX file
    return Tagger(onnx_backend(path, meta), tokenizer, meta, constrained, description=f"{model_dir}, {backend}")
