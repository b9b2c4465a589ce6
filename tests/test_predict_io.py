"""`nerkit predict` in one process: JSON Lines and Parquet in, JSON Lines and Parquet out, carried fields,
and the block plan that one process and `--ray` share."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import synthetic_sentences
from nerkit.cli import main

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def texts(n: int, seed: int = 5) -> list[str]:
    return [" ".join(w for w, _ in s) for s in synthetic_sentences(n, seed=seed)]


def jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def tagger(trained_model_dir):
    import nerkit

    return nerkit.load(str(trained_model_dir), device="cpu")


def test_jsonl_in_carries_fields_and_reports_bad_records(tmp_path, capsys, trained_model_dir, tagger):
    t = texts(6)
    src = jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": t[0], "meta": {"n": 1}}, {"text": t[1], "id": "b"}, "",
                                         "{not json", {"id": "c"}, {"id": "d", "text": 7},
                                         {"id": "e", "text": t[2], "spans": []}, {"id": "f", "text": t[3]}])
    out = tmp_path / "out.jsonl"
    assert main(["predict", str(trained_model_dir), "-i", str(src), "-o", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [f"{src}:4: not JSON (Expecting property name enclosed in double quotes at column 2); line skipped",
                   f"{src}:5: no field 'text' (--text-field); record skipped",
                   f"{src}:6: field 'text' is int, not text; record skipped",
                   f"{src}:7: field 'spans' would be overwritten by nerkit's output; record skipped"]
    got = records(out)
    want = [[s.to_dict() for s in spans] for spans in tagger.pipe([t[0], t[1], t[3]])]
    assert [r["spans"] for r in got] == want and any(want)
    # the carried fields first, in their order, then today's record; the text itself is not repeated
    assert [list(r) for r in got] == [["id", "meta", "source", "line", "spans"], ["id", "source", "line", "spans"],
                                      ["id", "source", "line", "spans"]]
    assert [(r["id"], r["line"], r["source"]) for r in got] == [("a", 1, str(src)), ("b", 2, str(src)), ("f", 8, str(src))]
    assert got[0]["meta"] == {"n": 1}


def test_parquet_in_and_out_match_jsonl(tmp_path, trained_model_dir):
    t = texts(23, seed=6)
    rows = [{"doc_id": i, "body": x} for i, x in enumerate(t)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in.parquet", row_group_size=5)
    jsonl(tmp_path / "in.jsonl", rows)
    model = str(trained_model_dir)
    assert main(["predict", model, "-i", str(tmp_path / "in.parquet"), "--text-field", "body",
                 "-o", str(tmp_path / "a.jsonl"), "--block-rows", "7", "--quiet"]) == 0
    assert main(["predict", model, "-i", str(tmp_path / "in.jsonl"), "--text-field", "body", "-f", "parquet",
                 "-o", str(tmp_path / "b.parquet"), "--block-rows", "7", "--quiet"]) == 0
    a = records(tmp_path / "a.jsonl")
    b = pq.read_table(tmp_path / "b.parquet").to_pylist()
    assert [r["doc_id"] for r in a] == list(range(23)) and [r["line"] for r in a] == list(range(1, 24))
    for r in a + b:
        r.pop("source")
    assert a == b and any(r["spans"] for r in a)
    schema = pq.read_schema(tmp_path / "b.parquet")
    assert schema.names == ["doc_id", "source", "line", "spans"]
    assert str(schema.field("spans").type) == \
        "list<element: struct<label: string, start: int64, end: int64, text: string, score: double>>"


def test_parquet_needs_a_file_and_a_text_column(tmp_path, capsys, trained_model_dir):
    pq.write_table(pa.Table.from_pylist([{"x": "a"}]), tmp_path / "in.parquet")
    assert main(["predict", str(trained_model_dir), "-i", str(tmp_path / "in.parquet"), "--quiet"]) == 2
    assert "no column 'text' (--text-field); it has x" in capsys.readouterr().err
    assert main(["predict", str(trained_model_dir), "some text", "-f", "parquet"]) == 2
    assert "-f parquet writes a file: give -o OUTPUT" in capsys.readouterr().err


def test_blocks_cover_every_record_once_with_its_line(tmp_path):
    from nerkit.bulk.blocks import plan, read_block
    from nerkit.bulk.files import list_inputs

    lines = ["first", "", "third\r", "é fourth", "fifth", "sixth", "seventh"]
    (tmp_path / "a.txt").write_bytes(("\n".join(lines)).encode("utf-8"))  # no final newline
    (tmp_path / "b.txt").write_bytes(b"one\ntwo\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.txt").write_bytes(b"x\xffy\nz\n")
    (tmp_path / ".hidden").write_text("never read")
    files = list_inputs([str(tmp_path)])
    assert [f.source for f in files] == [str(tmp_path / n) for n in ("a.txt", "b.txt", "sub/c.txt")]
    for rows in (1, 2, 3, 7, 100):
        blocks = plan(files, "auto", "line", rows)
        assert [b.index for b in blocks] == list(range(len(blocks)))
        failures: list[str] = []
        docs = [d for b in blocks for d in read_block(b, "text", failures)]
        assert [(Path(d.source).name, d.line, d.text) for d in docs] == \
            [("a.txt", i, t.rstrip("\r")) for i, t in enumerate(lines, 1)] + \
            [("b.txt", 1, "one"), ("b.txt", 2, "two"), ("c.txt", 2, "z")]
        assert failures == [f"{tmp_path / 'sub' / 'c.txt'}:1: not UTF-8 (invalid start byte at byte 1); line skipped"]
        assert all(0 < sum(1 for _ in read_block(b, "text", [])) <= rows for b in blocks[:2])
    whole = plan(files, "auto", "file", 2)
    assert [b.kind for b in whole] == ["files", "files"] and [len(b.uris) for b in whole] == [2, 1]
    docs = [d for b in whole for d in read_block(b, "text", [])]
    assert [d.text for d in docs] == ["\n".join(lines), "one\ntwo\n", "\nz\n"] and {d.line for d in docs} == {None}


def test_parquet_blocks_are_whole_row_groups(tmp_path):
    from nerkit.bulk.blocks import plan, read_block
    from nerkit.bulk.files import list_inputs

    pq.write_table(pa.Table.from_pylist([{"text": str(i)} for i in range(10)]), tmp_path / "p.parquet",
                   row_group_size=3)
    blocks = plan(list_inputs([str(tmp_path / "p.parquet")]), "auto", "line", 5)
    assert [(b.first, b.start, b.stop) for b in blocks] == [(1, 0, 2), (7, 2, 4)]
    docs = [d for b in blocks for d in read_block(b, "text", [])]
    assert [(d.line, d.text) for d in docs] == [(i + 1, str(i)) for i in range(10)]


def test_jsonl_from_standard_input(tmp_path, monkeypatch, capsys, trained_model_dir, tagger):
    import io
    import sys

    t = texts(2, seed=8)
    stdin = io.TextIOWrapper(io.BytesIO("".join(json.dumps({"k": i, "text": x}) + "\n" for i, x in enumerate(t)).encode()))
    monkeypatch.setattr(sys, "stdin", stdin)
    assert main(["predict", str(trained_model_dir), "--input-format", "jsonl", "--quiet"]) == 0
    got = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [(r["k"], r["source"], r["line"]) for r in got] == [(0, "<stdin>", 1), (1, "<stdin>", 2)]
    assert [r["spans"] for r in got] == [[s.to_dict() for s in spans] for spans in tagger.pipe(t)]
