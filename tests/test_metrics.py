"""Entity-level P/R/F1: hand-worked cases, agreement with seqeval, the conlleval prediction file."""

from __future__ import annotations

import random

import pytest

from nerkit.metrics import Score, conll_lines, entity_report, write_predictions


def test_hand_worked_report():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O", "B-LOC", "I-LOC"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "O", "B-LOC", "O"]]
    # gold: PER(0,2) LOC(3,4) | ORG(0,1) LOC(2,4)  -> 4
    # pred: PER(0,2) ORG(3,4) | ORG(0,1) LOC(2,3)  -> 4; correct: PER, ORG(s2) -> 2
    r = entity_report(gold, pred)
    assert (r.micro.correct, r.micro.predicted, r.micro.support) == (2, 4, 4)
    assert r.micro.precision == pytest.approx(0.5) and r.micro.recall == pytest.approx(0.5)
    assert r.micro.f1 == pytest.approx(0.5)
    assert set(r.per_type) == {"LOC", "ORG", "PER"}
    assert r.per_type["PER"] == Score(1.0, 1.0, 1.0, 1, 1, 1)
    assert r.per_type["LOC"] == Score(0.0, 0.0, 0.0, 2, 1, 0)
    org = r.per_type["ORG"]
    assert (org.precision, org.recall, org.support, org.predicted) == (0.5, 1.0, 1, 2)
    assert org.f1 == pytest.approx(2 / 3)


def test_uneven_precision_recall():
    gold = [["B-X", "O", "B-X", "O", "B-X"]]
    pred = [["B-X", "O", "B-X", "I-X", "O"]]  # 1 of 2 predicted right; 1 of 3 gold found
    m = entity_report(gold, pred).micro
    assert m.precision == pytest.approx(1 / 2) and m.recall == pytest.approx(1 / 3)
    assert m.f1 == pytest.approx(2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3))


def test_lenient_vs_strict():
    gold = [["B-PER", "I-PER", "O"]]
    pred = [["I-PER", "I-PER", "O"]]  # conlleval reads I-PER I-PER as one PER entity
    assert entity_report(gold, pred).micro.f1 == 1.0
    strict = entity_report(gold, pred, strict=True)
    assert strict.strict and strict.micro.predicted == 0 and strict.micro.f1 == 0.0
    assert strict.to_dict()["mode"] == "strict-iob2"


def test_no_entities_and_errors():
    r = entity_report([["O", "O"]], [["O", "O"]])
    assert r.micro == Score(0.0, 0.0, 0.0, 0, 0, 0) and r.per_type == {}
    with pytest.raises(ValueError, match="sentences"):
        entity_report([["O"]], [])
    with pytest.raises(ValueError, match="sentence 0"):
        entity_report([["O", "O"]], [["O"]])


def test_table_and_dict():
    r = entity_report([["B-PER", "O"]], [["B-PER", "B-LOC"]])
    d = r.to_dict()
    assert d["mode"] == "conlleval" and d["micro"]["support"] == 1 and d["per_type"]["LOC"]["predicted"] == 1
    lines = r.table("test").splitlines()
    assert lines[0].split() == ["test", "precision", "recall", "f1", "support"]
    assert lines[1].split() == ["LOC", "0.00", "0.00", "0.00", "0"]
    assert lines[-1].split() == ["micro", "avg", "50.00", "100.00", "66.67", "1"]


# ------------------------------------------------------------------------------ differential: seqeval

TAGS = ["O", "O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]


def _random_pair(rng: random.Random) -> tuple[list[list[str]], list[list[str]]]:
    gold, pred = [], []
    for _ in range(rng.randint(1, 12)):
        n = rng.randint(1, 15)
        g = [rng.choice(TAGS) for _ in range(n)]
        p = [t if rng.random() < 0.6 else rng.choice(TAGS) for t in g]
        gold.append(g)
        pred.append(p)
    return gold, pred


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # seqeval averages over no types
@pytest.mark.parametrize("strict", [False, True])
def test_matches_seqeval(strict: bool):
    from seqeval.metrics import classification_report, f1_score
    from seqeval.scheme import IOB2

    kw = {"mode": "strict", "scheme": IOB2} if strict else {}
    rng = random.Random(int(strict))
    for _ in range(300):
        gold, pred = _random_pair(rng)
        ours = entity_report(gold, pred, strict=strict)
        assert ours.micro.f1 == pytest.approx(f1_score(gold, pred, zero_division=0, **kw))
        ref = classification_report(gold, pred, output_dict=True, zero_division=0, **kw)
        ref_types = {k for k in ref if not k.endswith(" avg")}
        # seqeval lists types seen in either gold or predictions (strict mode: only valid entities)
        assert {t for t, s in ours.per_type.items() if s.support or s.predicted} == ref_types
        for t in ref_types:
            s = ours.per_type[t]
            assert s.precision == pytest.approx(ref[t]["precision"]), (t, gold, pred)
            assert s.recall == pytest.approx(ref[t]["recall"])
            assert s.f1 == pytest.approx(ref[t]["f1-score"])
            assert s.support == ref[t]["support"]
        if ref_types:
            micro = ref["micro avg"]
            assert ours.micro.precision == pytest.approx(micro["precision"])
            assert ours.micro.recall == pytest.approx(micro["recall"])
            assert ours.micro.support == micro["support"]


# ---------------------------------------------------------------------------------- prediction file


def test_conll_lines_format(tmp_path):
    words = [["John", "lives"], ["Paris"]]
    gold = [["B-PER", "O"], ["B-LOC"]]
    pred = [["B-PER", "O"], ["O"]]
    text = conll_lines(words, gold, pred)
    assert text == "John B-PER B-PER\nlives O O\n\nParis B-LOC O\n\n"
    path = tmp_path / "sub" / "p.conll"
    write_predictions(path, words, gold, pred)
    assert path.read_text() == text
    # the file reads back as a CoNLL file with the prediction in the last column
    from nerkit.corpus import read_conll

    back = read_conll(path)
    assert [s.tags for s in back.sentences] == pred and [s.words for s in back.sentences] == words
