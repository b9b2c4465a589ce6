"""The raw-text word splitter: CoNLL-style words, offsets that always round-trip, sentence breaks."""

from __future__ import annotations

import random

import pytest

from nerkit.words import split_sentences, split_words


def texts(text: str) -> list[str]:
    return [t.text for t in split_words(text)]


@pytest.mark.parametrize("text, expected", [
    ("Hewlett-Packard Co. said on Monday it won't buy U.S. firm AT&T.",
     ["Hewlett-Packard", "Co.", "said", "on", "Monday", "it", "wo", "n't", "buy", "U.S.", "firm", "AT&T", "."]),
    ("Clinton's aide (Mr. Smith) met O'Neill.",
     ["Clinton", "'s", "aide", "(", "Mr.", "Smith", ")", "met", "O'Neill", "."]),
    ("Paris,London: 1,000.5 million at 12:30, 2-1 win...",
     ["Paris", ",", "London", ":", "1,000.5", "million", "at", "12:30", ",", "2-1", "win", "..."]),
    ('He said "no!" -- and left', ["He", "said", '"', "no", "!", '"', "--", "and", "left"]),
    ("1. Goran Ivanisevic ( Croatia ) 3", ["1.", "Goran", "Ivanisevic", "(", "Croatia", ")", "3"]),
    ("He scored 3. Then", ["He", "scored", "3", ".", "Then"]),
    ("mail a@b.com or www.x.org/p?q=1.", ["mail", "a@b.com", "or", "www.x.org/p?q=1", "."]),
])
def test_conll_style_words(text, expected):
    words = split_words(text)
    assert [w.text for w in words] == expected
    for w in words:  # split, joined or given a period, every word still points at itself in the text
        assert text[w.start : w.end] == w.text, w


def test_offsets_hand_worked():
    text = "Mr. Li won't go.  U.S. firms"
    assert split_words(text) == [("Mr.", 0, 3), ("Li", 4, 6), ("wo", 7, 9), ("n't", 9, 12), ("go", 13, 15),
                                 (".", 15, 16), ("U.S.", 18, 22), ("firms", 23, 28)]


def test_unicode_words_stay_whole():
    decomposed = "cafe\u0301 Ko\u0308ln"  # combining accents must not split a word
    assert texts(decomposed) == ["cafe\u0301", "Ko\u0308ln"]
    assert texts("नमस्ते दुनिया") == ["नमस्ते", "दुनिया"]
    assert texts("Zoë Saldaña-Nazario") == ["Zoë", "Saldaña-Nazario"]


def test_separators_are_skipped_not_rewritten():
    text = "ab\x00cd\ud800ef\u200bgh\tij\u3000kl"
    assert texts(text) == ["ab", "cd", "ef", "gh", "ij", "kl"]
    assert split_words("") == [] and split_words(" \n\x01 ") == []


_ALPHABET = (list("abcXYZ019 .,;:-'\"()&/@+\n\t") + ["\u0301", "\u00e9", "\u4e2d", "\U0001f600", "\u200b",
             "\u200d", "\x00", "\x1f", "\ud800", "\udfff", "\u2019", "\u2026", "\ufeff", "\u00ad", "\u0915"])


@pytest.mark.parametrize("seed", range(5))
def test_offsets_round_trip_on_any_unicode(seed):
    rng = random.Random(seed)
    text = "".join(rng.choice(_ALPHABET) for _ in range(3000))
    words = split_words(text)
    assert words, "random text must yield words"
    prev = 0
    for w in words:
        assert text[w.start : w.end] == w.text and w.text
        assert w.start >= prev  # in order, no overlap
        prev = w.end
        assert not any(c in w.text for c in " \n\t\x00\ud800\udfff\u200b\ufeff")
    covered = set()
    for w in words:
        covered.update(range(w.start, w.end))
    left_out = {text[i] for i in range(len(text)) if i not in covered}
    assert left_out <= set(" \n\t\x00\x1f\ud800\udfff\u200b\ufeff"), left_out  # only separators are skipped


def test_sentences():
    sents = split_sentences('Mr. Smith lives in New York. He said "Hello!" She left.\n\nnext paragraph')
    assert [[w.text for w in s] for s in sents] == [
        ["Mr.", "Smith", "lives", "in", "New", "York", "."],
        ["He", "said", '"', "Hello", "!", '"'],
        ["She", "left", "."],
        ["next", "paragraph"],
    ]
    assert split_sentences("") == []
    assert len(split_sentences("it rained in the U.S. all week . and then")) == 1


def test_sentence_words_keep_text_offsets():
    """Sentences only group the words: offsets stay relative to the whole text, not to the sentence."""
    text = "Anna left.\n\n  Then Olga Chen (Mr. Li's aide) came! Rain."
    sents = split_sentences(text)
    assert [[w.text for w in s] for s in sents] == [
        ["Anna", "left", "."], ["Then", "Olga", "Chen", "(", "Mr.", "Li", "'s", "aide", ")", "came", "!"],
        ["Rain", "."]]
    assert [w for s in sents for w in s] == split_words(text)
    assert sents[1][0] == ("Then", 14, 18) and sents[2][0] == ("Rain", 51, 55)
    for s in sents:
        for w in s:
            assert text[w.start : w.end] == w.text


def test_matches_conll_tokenisation(conll_dir):
    """Re-splitting CoNLL test sentences joined by spaces gives back the CoNLL words almost always."""
    from nerkit.corpus import read_conll

    sents = read_conll(conll_dir / "eng.testb").sentences
    same = sum(texts(" ".join(s.words)) == s.words for s in sents)
    assert same / len(sents) > 0.98
