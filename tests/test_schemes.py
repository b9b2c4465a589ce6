"""Tag parsing, scheme conversion to IOB2, scheme detection, spans and the IOB2 transition mask."""

from __future__ import annotations

import numpy as np
import pytest

from nerkit.schemes import (
    Entity,
    TagError,
    detect_scheme,
    label_list,
    spans,
    split_tag,
    to_iob2,
    transition_mask,
)


def test_split_tag():
    assert split_tag("O") == ("O", None)
    assert split_tag("B-PER") == ("B", "PER")
    assert split_tag("I-creative-work") == ("I", "creative-work")
    assert split_tag("S-LOC") == ("S", "LOC")
    for bad in ["X-PER", "B-", "B", "b-per", "PER", "", "o", "B PER", "-PER"]:
        with pytest.raises(TagError):
            split_tag(bad)


@pytest.mark.parametrize(
    "scheme, tags, expected",
    [
        # IOB1: I- opens an entity; B- only separates two adjacent entities of the same type.
        ("iob1", "I-PER I-PER B-PER O I-LOC", "B-PER I-PER B-PER O B-LOC"),
        ("iob1", "I-PER I-PER B-PER I-PER I-ORG", "B-PER I-PER B-PER I-PER B-ORG"),
        ("iob1", "O I-MISC I-LOC I-LOC", "O B-MISC B-LOC I-LOC"),
        # IOB2 passes through (a stray I- after O is read leniently, as conlleval does).
        ("iob2", "B-PER I-PER O B-LOC B-LOC", "B-PER I-PER O B-LOC B-LOC"),
        ("iob2", "O I-ORG I-ORG", "O B-ORG I-ORG"),
        # IOBES: S- is a one-word entity, E- ends one; an I- after E-/S- starts a new one.
        ("iobes", "S-PER B-LOC I-LOC E-LOC S-LOC O", "B-PER B-LOC I-LOC I-LOC B-LOC O"),
        ("iobes", "B-ORG E-ORG S-ORG", "B-ORG I-ORG B-ORG"),
        ("iobes", "S-PER I-PER E-PER", "B-PER B-PER I-PER"),
        ("iobes", "B-PER E-PER E-PER", "B-PER I-PER B-PER"),
        # S- always opens an entity, even right after an unclosed one of the same type
        ("iobes", "B-PER I-PER S-PER E-PER", "B-PER I-PER B-PER B-PER"),
        # BILOU: U- is one word, L- is last.
        ("bilou", "U-PER B-LOC I-LOC L-LOC U-LOC", "B-PER B-LOC I-LOC I-LOC B-LOC"),
        ("bilou", "B-ORG L-ORG O U-MISC", "B-ORG I-ORG O B-MISC"),
        ("bilou", "B-LOC U-LOC I-LOC", "B-LOC B-LOC B-LOC"),
        # IO: adjacent same-type tokens merge into one entity, a type change splits.
        ("io", "I-PER I-PER I-LOC O I-LOC I-LOC", "B-PER I-PER B-LOC O B-LOC I-LOC"),
        ("io", "O O", "O O"),
    ],
)
def test_to_iob2(scheme: str, tags: str, expected: str):
    assert to_iob2(tags.split(), scheme) == expected.split()


def test_to_iob2_empty():
    assert to_iob2([], "iob1") == []


@pytest.mark.parametrize(
    "scheme, tags, index",
    [
        ("iob2", ["O", "E-PER"], 1),
        ("iob2", ["B-PER", "S-PER"], 1),
        ("iob1", ["O", "O", "L-LOC"], 2),
        ("io", ["B-PER"], 0),
        ("iobes", ["U-PER"], 0),
        ("bilou", ["E-PER"], 0),
        ("iob2", ["O", "X-PER"], 1),
        ("iob2", ["B-"], 0),
        ("iob2", ["O", "O", "O", "PER"], 3),
    ],
)
def test_to_iob2_rejects_tags_outside_scheme(scheme: str, tags: list[str], index: int):
    with pytest.raises(TagError) as ei:
        to_iob2(tags, scheme)
    assert ei.value.index == index
    assert tags[index] in str(ei.value)


@pytest.mark.parametrize(
    "seqs, expected",
    [
        ([["B-PER", "I-PER", "O"], ["B-LOC"]], "iob2"),
        ([["I-PER", "I-PER", "O"], ["I-LOC", "B-LOC"]], "iob1"),
        ([["I-PER", "O"], ["I-LOC"]], "io"),
        ([["B-PER", "E-PER"], ["S-LOC"]], "iobes"),
        ([["B-PER", "I-PER", "O"], ["S-LOC"]], "iobes"),
        ([["B-PER", "L-PER"], ["U-LOC"]], "bilou"),
        ([["U-LOC", "O"]], "bilou"),
        # B-X I-X then B-X I-X: no entity is opened by I-, so IOB2
        ([["B-PER", "I-PER", "B-PER", "I-PER"]], "iob2"),
        # an I- after a different type opens an entity: IOB1
        ([["B-PER", "I-LOC"]], "iob1"),
    ],
)
def test_detect_scheme(seqs, expected):
    assert detect_scheme(seqs) == expected


def test_detect_then_convert_iob1_matches_iob2():
    iob1 = [["I-PER", "I-PER", "B-PER", "O", "I-ORG"]]
    scheme = detect_scheme(iob1)
    assert scheme == "iob1"
    assert to_iob2(iob1[0], scheme) == ["B-PER", "I-PER", "B-PER", "O", "B-ORG"]


def test_spans_lenient_and_strict():
    tags = ["B-PER", "I-PER", "O", "I-LOC", "I-LOC", "B-ORG", "I-MISC", "B-PER", "B-PER"]
    assert spans(tags) == [
        Entity("PER", 0, 2),
        Entity("LOC", 3, 5),
        Entity("ORG", 5, 6),
        Entity("MISC", 6, 7),
        Entity("PER", 7, 8),
        Entity("PER", 8, 9),
    ]
    # strict: runs opened by I- are not entities at all
    assert spans(tags, strict=True) == [
        Entity("PER", 0, 2),
        Entity("ORG", 5, 6),
        Entity("PER", 7, 8),
        Entity("PER", 8, 9),
    ]


def test_spans_edges():
    assert spans([]) == []
    assert spans(["O", "O"]) == []
    assert spans(["B-X"]) == [Entity("X", 0, 1)]
    assert spans(["I-X"], strict=True) == []
    assert spans(["O", "B-X", "I-X"]) == [Entity("X", 1, 3)]  # entity at the end is closed
    # B-X I-Y: strict keeps B-X (it ends where I-Y begins) and drops the run I-Y
    assert spans(["B-X", "I-Y", "I-Y"], strict=True) == [Entity("X", 0, 1)]
    assert spans(["B-X", "I-Y", "I-Y"]) == [Entity("X", 0, 1), Entity("Y", 1, 3)]


def test_label_list():
    assert label_list(["PER", "LOC", "PER"]) == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    assert label_list([]) == ["O"]


def test_transition_mask():
    labels = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    allowed, start = transition_mask(labels)
    assert allowed.shape == (5, 5) and allowed.dtype == bool
    assert start.tolist() == [True, True, False, True, False]
    expected = np.array(
        [
            # to: O  B-L    I-L    B-P    I-P
            [1, 1, 0, 1, 0],  # from O
            [1, 1, 1, 1, 0],  # from B-LOC
            [1, 1, 1, 1, 0],  # from I-LOC
            [1, 1, 0, 1, 1],  # from B-PER
            [1, 1, 0, 1, 1],  # from I-PER
        ],
        dtype=bool,
    )
    np.testing.assert_array_equal(allowed, expected)
