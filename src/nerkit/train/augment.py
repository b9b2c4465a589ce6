"""Mention replacement: more training text for a student, made from the gold set itself.

Each copy of the training documents has every gold name swapped for another name of the same type drawn
from the training set (the same name gets the same swap throughout a document, so a document still
repeats its names as real news does). The gold labels carry over exactly (B-/I- of the type over the new
words), and the teachers label the copies like any other text: the student sees the names it knows in
contexts it has not seen, which it cannot learn by heart, and the teachers' distributions on them.
"""

from __future__ import annotations

import random
from collections import defaultdict

from ..corpus import Corpus, Document, Sentence
from ..schemes import spans


def mention_inventory(corpus: Corpus) -> dict[str, list[tuple[str, ...]]]:
    """Per entity type, its distinct names in the corpus (word tuples), in first-seen order."""
    seen: dict[str, dict[tuple[str, ...], None]] = defaultdict(dict)
    for s in corpus.sentences:
        for e in spans(s.tags):
            seen[e.type][tuple(s.words[e.start:e.end])] = None
    return {t: list(names) for t, names in seen.items()}


def _swap(sentence: Sentence, names: dict[str, list[tuple[str, ...]]],
          chosen: dict[tuple[str, tuple[str, ...]], tuple[str, ...]], rng: random.Random) -> Sentence:
    words: list[str] = []
    tags: list[str] = []
    at = 0
    for e in spans(sentence.tags):
        words += sentence.words[at:e.start]
        tags += sentence.tags[at:e.start]
        key = (e.type, tuple(sentence.words[e.start:e.end]))
        if key not in chosen:
            chosen[key] = rng.choice(names[e.type])
        new = chosen[key]
        words += new
        tags += [f"B-{e.type}"] + [f"I-{e.type}"] * (len(new) - 1)
        at = e.end
    words += sentence.words[at:]
    tags += sentence.tags[at:]
    return Sentence(words, tags)


def replace_mentions(corpus: Corpus, copies: int, seed: int) -> list[Document]:
    """`copies` copies of the corpus's documents with their names swapped (module docstring); seeded, so
    a resumed run rebuilds the same text."""
    names = mention_inventory(corpus)
    rng = random.Random(seed)
    out: list[Document] = []
    for _ in range(copies):
        for doc in corpus.documents:
            chosen: dict[tuple[str, tuple[str, ...]], tuple[str, ...]] = {}
            out.append(Document([_swap(s, names, chosen, rng) for s in doc.sentences]))
    return out
