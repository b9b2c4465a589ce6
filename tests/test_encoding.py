"""Encoder: first-sub-word labels, windows that own every word exactly once, word shapes."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from nerkit.encoding import IGNORE, SHAPES, Encoder, Feature, plan_windows, word_shape

LABELS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


@pytest.fixture(scope="module")
def tokenizer(tiny_base):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_base)


def _pieces(tokenizer, word: str) -> list[int]:
    return tokenizer(word, add_special_tokens=False)["input_ids"]


def test_first_subword_labelling(tokenizer):
    words = ["John", "Smithsonian", "lives", "in", "Paris", "."]
    tags = ["B-PER", "I-PER", "O", "O", "B-LOC", "O"]
    enc = Encoder(tokenizer, LABELS, max_length=64)
    [f] = enc.encode([[words]], [[tags]])
    pieces = [_pieces(tokenizer, w) for w in words]
    assert len(pieces[1]) > 1  # the test needs a word split into several sub-words
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    assert f.input_ids == [cls] + [t for p in pieces for t in p] + [sep]
    expected_labels = [IGNORE]
    for p, tag in zip(pieces, tags):
        expected_labels += [LABELS.index(tag)] + [IGNORE] * (len(p) - 1)
    assert f.labels == expected_labels + [IGNORE]
    assert f.positions == [1 + sum(len(p) for p in pieces[:i]) for i in range(len(words))]
    assert f.sentence_ids == [0] * 6 and f.word_indices == list(range(6)) and all(f.owned)
    assert f.shape_ids == [0] * len(f)  # shapes off


def test_no_tags_gives_ignore_labels(tokenizer):
    [f] = Encoder(tokenizer, LABELS).encode([[["a", "b"]]])
    assert set(f.labels) == {IGNORE}


def test_shape_ids(tokenizer):
    words = ["Paris", "NASA", "x", "2024"]
    [f] = Encoder(tokenizer, LABELS, shapes=True).encode([[words]])
    assert f.shape_ids[0] == 0 and f.shape_ids[-1] == 0
    ends = f.positions[1:] + [len(f) - 1]
    for w, a, b in zip(words, f.positions, ends):
        assert f.shape_ids[a:b] == [word_shape(w)] * (b - a)


@pytest.mark.parametrize(
    "word, shape",
    [
        ("paris", "lower"), ("Paris", "Title"), ("A", "Title"), ("NASA", "UPPER"), ("iPhone", "miXed"),
        ("McDonald", "miXed"), ("2024", "digits"), ("3.5", "digits"), ("1-0", "digits"), (",", "punct"),
        ("--", "punct"), ("Zürich", "Title"), ("ÉTÉ", "UPPER"), ("über", "lower"), ("", "other"),
        ("U.S.", "UPPER"), ("x86", "lower"),
    ],
)
def test_word_shape(word: str, shape: str):
    assert SHAPES[word_shape(word)] == shape


@pytest.mark.parametrize("erased", ["\u200b", "\x07", "\ufeff", "\x00"])
def test_erased_word_keeps_position(tokenizer, erased):
    assert _pieces(tokenizer, erased) == []  # the tokenizer really drops it
    words = ["John", erased, "Paris"]
    tags = ["B-PER", "O", "B-LOC"]
    [f] = Encoder(tokenizer, LABELS).encode([[words]], [[tags]])
    assert len(f.positions) == 3
    assert f.input_ids[f.positions[1]] == tokenizer.unk_token_id
    assert [f.labels[p] for p in f.positions] == [3, 0, 1]


def test_slow_tokenizer_rejected():
    class Slow:
        is_fast = False

    with pytest.raises(ValueError, match="fast"):
        Encoder(Slow(), LABELS)


def test_max_length_too_small(tokenizer):
    with pytest.raises(ValueError):
        Encoder(tokenizer, LABELS, max_length=8)


def test_long_sentence_split_into_overlapping_windows(tokenizer):
    words = [f"w{i}" for i in range(60)]
    enc = Encoder(tokenizer, LABELS, max_length=24)
    feats = enc.encode([[words]], [[["O"] * 60]], train=False)
    assert len(feats) > 2
    assert all(len(f) <= 24 for f in feats)
    seen = Counter(w for f in feats for w in f.word_indices)
    assert any(c > 1 for c in seen.values())  # windows overlap at evaluation time
    owned = Counter(w for f in feats for w, o in zip(f.word_indices, f.owned) if o)
    assert owned == Counter(range(60))
    train_feats = enc.encode([[words]], [[["O"] * 60]], train=True)  # no overlap for training
    assert sorted(w for f in train_feats for w in f.word_indices) == list(range(60))
    assert all(all(f.owned) for f in train_feats)


# ---------------------------------------------------------------------------------- property tests

_VOCAB = ["the", "a", "John", "Paris", ".", ",", "Smithsonian", "Berliners", "2-1", "NASA", "Berlin"]


def _random_docs(rng: random.Random) -> tuple[list, list]:
    docs, tags = [], []
    for _ in range(rng.randint(1, 4)):
        doc, dtags = [], []
        for _ in range(rng.randint(1, 6)):
            n = rng.choice([1, 2, 5, 12, 30, 70])
            n = rng.randint(1, n)
            words = [rng.choice(_VOCAB) for _ in range(n)]
            if rng.random() < 0.1:
                words[rng.randrange(n)] = "Smithsonian" * rng.randint(1, 9)  # up to ~60 sub-words
            doc.append(words)
            dtags.append([rng.choice(LABELS) for _ in range(n)])
        docs.append(doc)
        tags.append(dtags)
    return docs, tags


def _check(features: list[Feature], docs, tags, limit: int, tokenizer, context: bool, train: bool):
    sentences = [s for d in docs for s in d]
    sent_tags = [t for d in tags for t in d]
    doc_of = [di for di, d in enumerate(docs) for _ in d]
    owned: Counter = Counter()
    for f in features:
        assert len(f) <= limit
        assert f.input_ids[0] == tokenizer.cls_token_id and f.input_ids[-1] == tokenizer.sep_token_id
        assert len(f.labels) == len(f.shape_ids) == len(f)
        assert len(f.positions) == len(f.sentence_ids) == len(f.word_indices) == len(f.owned) > 0
        assert f.positions == sorted(set(f.positions))
        assert sum(lab != IGNORE for lab in f.labels) == len(f.positions)
        # words inside a window are consecutive in the stream
        refs = list(zip(f.sentence_ids, f.word_indices))
        for (s0, w0), (s1, w1) in zip(refs, refs[1:]):
            assert (s1 == s0 and w1 == w0 + 1) or (s1 == s0 + 1 and w1 == 0 and w0 == len(sentences[s0]) - 1)
        if context:
            assert len({doc_of[s] for s in f.sentence_ids}) == 1  # never crosses a document
        else:
            assert len(set(f.sentence_ids)) == 1
        for pos, s, w, own in zip(f.positions, f.sentence_ids, f.word_indices, f.owned):
            assert f.labels[pos] == LABELS.index(sent_tags[s][w])
            if own:
                owned[(s, w)] += 1
            if train:
                assert own
    expected = Counter((s, w) for s, sent in enumerate(sentences) for w in range(len(sent)))
    assert owned == expected  # every word owned exactly once
    if train:
        assert sum(len(f.positions) for f in features) == sum(expected.values())
    _check_most_central(features, sentences)


def _check_most_central(features: list[Feature], sentences: list[list[str]]) -> None:
    """The window that owns a word is one where it sits most centrally: the fewest sub-words on its
    nearer side is largest there. A sentence that fits whole in a window is placed as one unit."""
    margins: dict[tuple[int, int], list[tuple[int, bool]]] = {}
    for f in features:
        ends = f.positions[1:] + [len(f) - 1]  # one [CLS] before the words, one [SEP] after them
        in_window = Counter(f.sentence_ids)
        for k, (s, w) in enumerate(zip(f.sentence_ids, f.word_indices)):
            if in_window[s] == len(sentences[s]):  # the whole sentence is here: its first and last word
                first = f.sentence_ids.index(s)
                last = first + len(sentences[s]) - 1
            else:
                first = last = k
            margin = min(f.positions[first] - 1, len(f) - 1 - ends[last])
            margins.setdefault((s, w), []).append((margin, f.owned[k]))
    for word, cands in margins.items():
        owner = [m for m, own in cands if own]
        assert owner == [max(m for m, _ in cands)], (word, cands)


@pytest.mark.parametrize("context", [False, True])
@pytest.mark.parametrize("train", [False, True])
def test_every_word_owned_exactly_once(tokenizer, context: bool, train: bool):
    rng = random.Random(1000 * context + 10 * train)
    for _ in range(40):
        docs, tags = _random_docs(rng)
        length = rng.choice([10, 11, 13, 16, 24, 40, 128])
        if context:
            enc = Encoder(tokenizer, LABELS, max_length=128, context=length)
        else:
            enc = Encoder(tokenizer, LABELS, max_length=length)
        feats = enc.encode(docs, tags, train=train)
        _check(feats, docs, tags, length, tokenizer, context, train)


def test_context_packs_sentences(tokenizer):
    docs = [[["a", "b"], ["c"], ["d", "e"]], [["f"]]]
    tags = [[["O", "O"], ["O"], ["O", "O"]], [["O"]]]
    feats = Encoder(tokenizer, LABELS, context=64).encode(docs, tags)
    assert [f.sentence_ids for f in feats] == [[0, 0, 1, 2, 2], [3]]
    assert [f.word_indices for f in feats] == [[0, 1, 0, 0, 1], [0]]


def test_sentence_owned_whole_by_its_most_central_window(tokenizer):
    """Budget 8 sub-words, sentences of 4, 3, 1 and 4 one-piece words: windows [s0 s1 s2] and [s1 s2 s3].
    s1 sits 1 from the edge of the first window and 0 from the edge of the second: the first owns all of
    it (word by word its last word would go to the second); s2 sits 0 from the edge of the first, 3 in
    the second: the second owns it."""
    docs = [[["John", "lives", "in", "Paris"], ["it", "rained", "."], ["Mary"], ["it", "rained", "all", "week"]]]
    assert all(len(_pieces(tokenizer, w)) == 1 for s in docs[0] for w in s)
    feats = Encoder(tokenizer, LABELS, context=10).encode(docs)
    assert [f.sentence_ids for f in feats] == [[0, 0, 0, 0, 1, 1, 1, 2], [1, 1, 1, 2, 3, 3, 3, 3]]
    assert [f.owned for f in feats] == [[True] * 7 + [False], [False] * 3 + [True] * 5]


def test_plan_windows_respects_budget():
    rng = random.Random(7)
    for _ in range(300):
        counts = [rng.randint(1, 5) for _ in range(rng.randint(1, 60))]
        cuts = sorted(rng.sample(range(1, len(counts)), min(len(counts) - 1, rng.randint(0, 8))))
        bounds = list(zip([0, *cuts], [*cuts, len(counts)]))
        budget = rng.randint(5, 40)
        for overlap, lead in ((False, 0), (True, 0), (False, rng.randrange(budget // 2))):
            wins = plan_windows(counts, bounds, budget, overlap, lead)
            covered = set()
            for a, b in wins:
                assert a < b
                assert sum(counts[a:b]) <= budget
                covered.update(range(a, b))
            assert covered == set(range(len(counts)))
            if not overlap:
                assert sum(b - a for a, b in wins) == len(counts)
            assert wins == sorted(wins)


def test_jitter_recuts_training_windows_and_keeps_every_word_once(tokenizer):
    rng = random.Random(3)
    docs = [[[f"w{rng.randrange(50)}" for _ in range(rng.randint(2, 9))] for _ in range(30)] for _ in range(3)]
    tags = [[["O"] * len(s) for s in d] for d in docs]
    enc = Encoder(tokenizer, LABELS, context=32)
    cuts = set()
    for seed in range(6):
        feats = enc.encode(docs, tags, train=True, jitter=random.Random(seed))
        seen = Counter((sid, w) for f in feats for sid, w in zip(f.sentence_ids, f.word_indices))
        n_words = sum(len(s) for d in docs for s in d)
        assert len(seen) == n_words and set(seen.values()) == {1}  # no word dropped or repeated
        assert all(len(f) <= 32 for f in feats)
        cuts.add(tuple(f.sentence_ids[0] for f in feats))
    assert len(cuts) > 1  # the windows really move between epochs
    plain = enc.encode(docs, tags, train=True)
    assert plain == enc.encode(docs, tags, train=True, jitter=None)
