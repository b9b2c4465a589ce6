"""Mention replacement for students (train/augment.py) and its place in a distillation run."""

from __future__ import annotations

import pytest

from nerkit.config import settings_from
from nerkit.corpus import Corpus, Document, Sentence
from nerkit.errors import ConfigError
from nerkit.schemes import spans
from nerkit.settings import DistillConfig
from nerkit.train.augment import WordPools, mention_inventory, replace_mentions


def _corpus() -> Corpus:
    doc1 = Document([
        Sentence(["Peter", "Blackburn", "met", "Clinton", "in", "Paris", "."],
                 ["B-PER", "I-PER", "O", "B-PER", "O", "B-LOC", "O"]),
        Sentence(["Clinton", "left", "Paris", "for", "New", "York", "City", "."],
                 ["B-PER", "O", "B-LOC", "O", "B-LOC", "I-LOC", "I-LOC", "O"]),
    ])
    doc2 = Document([Sentence(["Siemens", "hires", "Anna", "."], ["B-ORG", "O", "B-PER", "O"])])
    return Corpus("mem", [doc1, doc2], True, "IOB2")


def test_inventory_holds_each_types_distinct_names_in_order():
    assert mention_inventory(_corpus()) == {
        "PER": [("Peter", "Blackburn"), ("Clinton",), ("Anna",)],
        "LOC": [("Paris",), ("New", "York", "City")],
        "ORG": [("Siemens",)]}


def test_names_are_swapped_within_their_type_and_the_rest_stays():
    corpus = _corpus()
    names = mention_inventory(corpus)
    copies = replace_mentions(corpus, copies=3, seed=1)
    assert len(copies) == 3 * len(corpus.documents)
    changed = 0
    for i, doc in enumerate(copies):
        original = corpus.documents[i % len(corpus.documents)]
        assert len(doc.sentences) == len(original.sentences)
        swaps: dict[tuple, tuple] = {}
        for new, old in zip(doc.sentences, original.sentences):
            assert len(new.words) == len(new.tags)
            new_ents, old_ents = spans(new.tags, strict=True), spans(old.tags, strict=True)
            assert [e.type for e in new_ents] == [e.type for e in old_ents]  # every tag sequence valid IOB2
            outside_new = [w for w, t in zip(new.words, new.tags) if t == "O"]
            assert outside_new == [w for w, t in zip(old.words, old.tags) if t == "O"]
            for n, o in zip(new_ents, old_ents):
                name, was = tuple(new.words[n.start:n.end]), tuple(old.words[o.start:o.end])
                assert name in names[n.type]
                assert swaps.setdefault((o.type, was), name) == name  # one swap per name per document
                changed += name != was
    assert changed > 0


def test_word_by_word_names_take_each_word_from_its_position_in_the_type():
    corpus = _corpus()
    names = mention_inventory(corpus)
    lengths = {t: {len(n) for n in ns} for t, ns in names.items()}
    pools = {t: WordPools.of(ns) for t, ns in names.items()}
    assert pools["LOC"] == WordPools(single=["Paris"], first=["New"], middle=["York"], last=["City"])
    assert pools["PER"] == WordPools(single=["Clinton", "Anna"], first=["Peter"], last=["Blackburn"])
    seen_lengths = set()
    for doc, original in zip(replace_mentions(corpus, 20, seed=3, swap="words"), corpus.documents * 20):
        swaps: dict[tuple, tuple] = {}
        for new, old in zip(doc.sentences, original.sentences):
            new_ents, old_ents = spans(new.tags, strict=True), spans(old.tags, strict=True)
            assert [e.type for e in new_ents] == [e.type for e in old_ents]
            assert [w for w, t in zip(new.words, new.tags) if t == "O"] == \
                [w for w, t in zip(old.words, old.tags) if t == "O"]
            for n, o in zip(new_ents, old_ents):
                name, p = tuple(new.words[n.start:n.end]), pools[n.type]
                assert len(name) in lengths[n.type]
                seen_lengths.add((n.type, len(name)))
                if len(name) == 1:
                    assert name[0] in p.single
                else:
                    assert name[0] in p.first and name[-1] in p.last and set(name[1:-1]) <= set(p.middle)
                assert swaps.setdefault((o.type, tuple(old.words[o.start:o.end])), name) == name
    assert {("PER", 1), ("PER", 2), ("LOC", 1), ("LOC", 3)} <= seen_lengths  # lengths follow the names


def test_copies_are_seeded():
    corpus = _corpus()
    a, b = replace_mentions(corpus, 2, seed=7), replace_mentions(corpus, 2, seed=7)
    assert [[s.words for s in d.sentences] for d in a] == [[s.words for s in d.sentences] for d in b]
    assert replace_mentions(corpus, 0, seed=7) == []
    w = replace_mentions(corpus, 2, seed=7, swap="words")
    assert [[s.words for s in d.sentences] for d in w] == \
        [[s.words for s in d.sentences] for d in replace_mentions(corpus, 2, seed=7, swap="words")]


def test_settings_bound_augment_and_heads():
    base = [("teachers", "x")]
    with pytest.raises(ConfigError, match="data.augment: expected 0 to 20 copies"):
        settings_from(DistillConfig, None, base + [("data.augment", "21")])
    with pytest.raises(ConfigError, match=r"distill.heads: expected a divisor of distill.width \(256\)"):
        settings_from(DistillConfig, None, base + [("student", "conv"), ("heads", "3")])
    with pytest.raises(ConfigError, match="data.swap"):
        settings_from(DistillConfig, None, base + [("data.swap", "letters")])
    assert settings_from(DistillConfig, None, base + [("data.swap", "words")]).data.swap == "words"


def test_a_distillation_run_learns_on_the_copies_too(trained_run, synthetic_dir, tmp_path):
    from nerkit.train.setup import setup

    def run(augment: str, out: str):
        cfg = settings_from(DistillConfig, None, [
            ("distill.teachers", str(trained_run)), ("data.dir", str(synthetic_dir)), ("output", str(tmp_path / out)),
            ("distill.layers", "1"), ("data.augment", augment), ("train.progress", "false")])
        return setup(cfg)

    plain, doubled = run("0", "plain"), run("1", "doubled")
    n = len(plain.data.corpus.sentences)
    assert len(doubled.data.corpus.sentences) == 2 * n
    assert len(doubled.data.features) > len(plain.data.features)
    targets = doubled.data.loader.collate_fn.targets
    assert targets.gold_sentences == 2 * n  # the copies keep their gold labels
    assert targets.probs.shape[0] == sum(len(s.words) for s in doubled.data.corpus.sentences)


def test_a_training_run_learns_on_the_copies_too(tiny_base, synthetic_dir, tmp_path):
    """`nerkit train --data.augment 1 --data.swap words`: the same copies, gold labels only."""
    from nerkit.config import load_config
    from nerkit.train.setup import setup

    def run(extra: list[tuple[str, str]], out: str):
        return setup(load_config(None, [("model.name", str(tiny_base)), ("data.dir", str(synthetic_dir)),
                                        ("output", str(tmp_path / out)), ("train.progress", "false"), *extra]))

    plain = run([], "plain")
    doubled = run([("data.augment", "1"), ("data.swap", "words")], "doubled")
    n = len(plain.data.corpus.sentences)
    assert len(doubled.data.corpus.sentences) == 2 * n
    assert doubled.data.corpus.sentences[:n] == plain.data.corpus.sentences  # the text itself comes first
    assert doubled.data.corpus.sentences[n:] != plain.data.corpus.sentences
    assert len(doubled.data.features) > len(plain.data.features)
