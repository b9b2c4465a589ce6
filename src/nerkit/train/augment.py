"""Mention replacement: more training text for a student, made from the gold set itself.

Each copy of the training documents has every gold name swapped for another name of the same type (the
same name gets the same swap throughout a document, so a document still repeats its names as real news
does). The gold labels carry over exactly (B-/I- of the type over the new words), and the teachers label
the copies like any other text: the student sees names in contexts it has not seen, which it cannot learn
by heart, and the teachers' distributions on them.

Where the new names come from is a choice (SWAPS, `distill.swap`):
  names  a whole name of the type from the training set
  words  a name rebuilt word by word: as long as a name of the type drawn from the training set, its first
         word drawn from the type's first words, its last from the type's last words, the ones between from
         its middle words ("Bayern United", "Pete Smith"): mostly names the training set never had, which is
         what the test set is full of
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from ..corpus import Corpus, Document, Sentence
from ..schemes import spans

Name = tuple[str, ...]


def mention_inventory(corpus: Corpus) -> dict[str, list[Name]]:
    """Per entity type, its distinct names in the corpus (word tuples), in first-seen order."""
    seen: dict[str, dict[Name, None]] = defaultdict(dict)
    for s in corpus.sentences:
        for e in spans(s.tags):
            seen[e.type][tuple(s.words[e.start:e.end])] = None
    return {t: list(names) for t, names in seen.items()}


@dataclass
class WordPools:
    """A type's name words by position: single-word names, and the first, middle and last words of longer
    ones (each word once per position, in first-seen order)."""

    single: list[str] = field(default_factory=list)
    first: list[str] = field(default_factory=list)
    middle: list[str] = field(default_factory=list)
    last: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, names: list[Name]) -> WordPools:
        pools: dict[str, dict[str, None]] = defaultdict(dict)
        for name in names:
            if len(name) == 1:
                pools["single"][name[0]] = None
                continue
            pools["first"][name[0]] = None
            pools["last"][name[-1]] = None
            for w in name[1:-1]:
                pools["middle"][w] = None
        return cls(**{k: list(v) for k, v in pools.items()})


def whole_name(names: list[Name], pools: WordPools, rng: random.Random) -> Name:
    return rng.choice(names)


def word_by_word(names: list[Name], pools: WordPools, rng: random.Random) -> Name:
    n = len(rng.choice(names))  # the length of a real name of the type
    if n == 1:
        return (rng.choice(pools.single),)
    middle = [rng.choice(pools.middle) for _ in range(n - 2)]  # n > 2 only when some name has middle words
    return (rng.choice(pools.first), *middle, rng.choice(pools.last))


# How a new name is drawn: (the type's names, its word pools, the copy's random stream) -> the name.
SWAPS: dict[str, Callable[[list[Name], WordPools, random.Random], Name]] = {
    "names": whole_name, "words": word_by_word}


def _swap(sentence: Sentence, draw: Callable[[str], Name], chosen: dict[tuple[str, Name], Name]) -> Sentence:
    words: list[str] = []
    tags: list[str] = []
    at = 0
    for e in spans(sentence.tags):
        words += sentence.words[at:e.start]
        tags += sentence.tags[at:e.start]
        key = (e.type, tuple(sentence.words[e.start:e.end]))
        if key not in chosen:
            chosen[key] = draw(e.type)
        new = chosen[key]
        words += new
        tags += [f"B-{e.type}"] + [f"I-{e.type}"] * (len(new) - 1)
        at = e.end
    words += sentence.words[at:]
    tags += sentence.tags[at:]
    return Sentence(words, tags)


def replace_mentions(corpus: Corpus, copies: int, seed: int, swap: str = "names") -> list[Document]:
    """`copies` copies of the corpus's documents with their names swapped, new names drawn by SWAPS[swap]
    (module docstring); seeded, so a resumed run rebuilds the same text."""
    names = mention_inventory(corpus)
    pools = {t: WordPools.of(ns) for t, ns in names.items()}
    rng = random.Random(seed)
    pick = SWAPS[swap]

    def draw(etype: str) -> Name:
        return pick(names[etype], pools[etype], rng)

    out: list[Document] = []
    for _ in range(copies):
        for doc in corpus.documents:
            chosen: dict[tuple[str, Name], Name] = {}
            out.append(Document([_swap(s, draw, chosen) for s in doc.sentences]))
    return out
