"""Error analysis: each kind of mistake is classified as a person would, and the confusion matrix adds up."""

from nerkit.analysis import NONE, confusion_counts, find_errors, summary


def test_error_kinds_worked_by_hand():
    words = [["John", "Smith", "visited", "New", "York", "and", "Acme", "."]]
    gold = [["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O", "B-ORG", "O"]]
    pred = [["B-PER", "O", "O", "B-ORG", "I-ORG", "O", "O", "B-MISC"]]
    errors = find_errors(words, gold, pred)
    kinds = sorted((e.kind, e.boundary) for e in errors)
    # John Smith cut short: a boundary miss plus a boundary false positive; New York typed ORG;
    # Acme missed cleanly; "." invented.
    assert kinds == [("false_negative", False), ("false_negative", True), ("false_positive", False),
                     ("false_positive", True), ("type_confusion", False)]
    confusion = next(e for e in errors if e.kind == "type_confusion")
    assert (confusion.gold.type, confusion.pred.type) == ("LOC", "ORG")
    assert "[New York]{LOC -> ORG}" in confusion.context
    assert summary(errors) == {"false_negative": 2, "false_positive": 2, "type_confusion": 1, "boundary": 2}


def test_confusion_matrix_counts():
    gold = [["B-PER", "O", "B-LOC"], ["B-ORG", "I-ORG"]]
    pred = [["B-PER", "O", "B-ORG"], ["O", "B-MISC"]]
    types, m = confusion_counts(gold, pred)
    assert types == ["LOC", "MISC", "ORG", "PER", NONE]
    cell = {(r, c): m[i][j] for i, r in enumerate(types) for j, c in enumerate(types)}
    assert cell[("PER", "PER")] == 1
    assert cell[("LOC", "ORG")] == 1
    assert cell[("ORG", NONE)] == 1  # missed
    assert cell[(NONE, "MISC")] == 1  # spurious
    assert sum(map(sum, m)) == 4


def test_errors_command(trained_model_dir, synthetic_dir, tmp_path, capsys):
    from nerkit.cli import main

    png = tmp_path / "confusion.png"
    rc = main(["errors", str(trained_model_dir), "--data", str(synthetic_dir / "test.txt"), "--png", str(png),
               "--quiet", "--limit", "2"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "confusion (rows gold" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
