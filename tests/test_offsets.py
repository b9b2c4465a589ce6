"""Entity spans -> character offsets into the caller's text: tagger._char_spans and the Tagger around it.

A stand-in predictor tags words from a small gazetteer, so no model is needed and every offset is exact.
"""

from __future__ import annotations

import numpy as np

from nerkit.engine.predictor import Prediction
from nerkit.tagger import Span, Tagger, _char_spans
from nerkit.words import Token, split_sentences

_TYPES = {"Anna": "PER", "Olga": "PER", "Chen": "PER", "Li": "PER", "New": "LOC", "York": "LOC", "Paris": "LOC"}


class GazetteerPredictor:
    """Tags the words of _TYPES (runs of one type are one entity); probability 0.5 + word index / 100."""

    labels = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    entity_types = ["LOC", "PER"]
    meta = None
    description = "gazetteer"
    constrained = True

    def predict(self, documents, batch_size=None) -> Prediction:
        tags, probs = [], []
        for doc in documents:
            for sent in doc:
                out: list[str] = []
                for w in sent:
                    typ = _TYPES.get(w)
                    if typ is None:
                        out.append("O")
                    else:
                        out.append(("I-" if out and out[-1][2:] == typ else "B-") + typ)
                tags.append(out)
                probs.append(np.array([0.5 + i / 100 for i in range(len(sent))]))
        return Prediction(tags, probs)


TEXT = "Anna  Chen saw New York.\n\nThen Olga Chen (Mr. Li's aide) left Paris."


def test_tagger_spans_point_into_the_whole_text():
    tagger = Tagger(GazetteerPredictor())  # type: ignore[arg-type]
    (tagged,) = tagger.tag_texts([TEXT])
    assert len(tagged.sentences) == 2  # the later entities sit in the second sentence
    assert tagged.spans == [
        Span("PER", 0, 10, "Anna  Chen", 0.505),  # two spaces inside the entity are kept
        Span("LOC", 15, 23, "New York", 0.535),
        Span("PER", 31, 40, "Olga Chen", 0.515),
        Span("PER", 46, 48, "Li", 0.55),  # "Li's": the clitic is a word of its own, not in the span
        Span("LOC", 62, 67, "Paris", 0.6),
    ]
    for s in tagged.spans:
        assert TEXT[s.start : s.end] == s.text
    assert tagger(TEXT) == tagged.spans


def test_several_texts_keep_their_own_offsets():
    texts = ["Paris.", "It rained.  Olga Chen left.", "", "Anna"]
    tagger = Tagger(GazetteerPredictor())  # type: ignore[arg-type]
    got = [t.spans for t in tagger.tag_texts(texts)]
    assert got == [[Span("LOC", 0, 5, "Paris", 0.5)], [Span("PER", 12, 21, "Olga Chen", 0.505)], [],
                   [Span("PER", 0, 4, "Anna", 0.5)]]


def test_char_spans_of_a_later_sentence():
    text = "x. Ab  Cd ef"
    words = split_sentences(text)[1]
    assert words == [Token("Ab", 3, 5), Token("Cd", 7, 9), Token("ef", 10, 12)]
    spans = _char_spans(text, words, ["B-PER", "I-PER", "B-LOC"], np.array([0.2, 0.4, 0.9]))
    assert spans == [Span("PER", 3, 9, "Ab  Cd", 0.3), Span("LOC", 10, 12, "ef", 0.9)]
    assert _char_spans(text, words, ["O", "O", "O"], np.zeros(3)) == []
