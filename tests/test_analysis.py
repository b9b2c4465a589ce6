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
    from nerkit.corpus import read_conll
    from nerkit.schemes import spans

    def matrix(out: str) -> dict[str, list[int]]:
        lines = out.split("confusion (rows gold")[1].splitlines()[2:7]
        return {ln.split()[0]: [int(x) for x in ln.split()[1:]] for ln in lines}

    test = synthetic_dir / "test.txt"
    n = {t: sum(e.type == t for s in read_conll(test).sentences for e in spans(s.tags))
         for t in ("LOC", "MISC", "ORG", "PER")}
    assert n == {"LOC": 73, "MISC": 19, "ORG": 56, "PER": 49}

    # The tiny model tags the test split perfectly (measured): no errors, all on the diagonal.
    png = tmp_path / "confusion.png"
    rc = main(["errors", str(trained_model_dir), "--data", str(test), "--png", str(png), "--quiet", "--limit", "2"])
    out = capsys.readouterr().out
    assert rc == 0
    for kind in ("type confusions", "false negatives", "false positives"):
        assert f"== {kind}: 0\n" in out
    assert matrix(out) == {"LOC": [n["LOC"], 0, 0, 0, 0], "MISC": [0, n["MISC"], 0, 0, 0],
                           "ORG": [0, 0, n["ORG"], 0, 0], "PER": [0, 0, 0, n["PER"], 0], "(none)": [0] * 5}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Gold relabelled MISC -> LOC: every MISC the model finds is now a type confusion, 2 of them listed.
    relabelled = tmp_path / "relabelled.txt"
    relabelled.write_text(test.read_text().replace(" B-MISC\n", " B-LOC\n"))
    assert main(["errors", str(trained_model_dir), "--data", str(relabelled), "--quiet", "--limit", "2"]) == 0
    out = capsys.readouterr().out
    listed = out.split("== type confusions: ")[1].split("== false negatives")[0].splitlines()
    assert listed[0] == str(n["MISC"]) and len(listed) == 4
    assert all(f"{relabelled.name}:" in ln and "{LOC -> MISC}" in ln for ln in listed[1:3])
    assert listed[3].strip() == f"... {n['MISC'] - 2} more (--limit, or --json for all)"
    assert "== false negatives: 0\n" in out and "== false positives: 0\n" in out
    assert matrix(out)["LOC"] == [n["LOC"], n["MISC"], 0, 0, 0]
