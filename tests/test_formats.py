"""nerkit.data: text with character spans (doccano, spaCy/Prodigy, Label Studio) and token rows in, the
misalignment policies, overlaps, sentences, one-file splits, bad input as one line; and a generated Label
Studio export and a doccano JSONL each training and evaluating end to end on the tiny model."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from conftest import REPO
from nerkit.cli import main
from nerkit.corpus import load_splits
from nerkit.data import detect_format, read, split_documents
from nerkit.errors import CorpusError


def _example():
    spec = importlib.util.spec_from_file_location("own_data_example", REPO / "docs" / "own_data_example.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _jsonl(path: Path, *records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _pairs(corpus):
    return [(s.words, s.tags) for s in corpus.sentences]


TEXT = "Visit the Paris-based firm Acme Corp. now"
# "Paris" ends inside "Paris-based"; "Acme Corp" ends inside "Corp." (the splitter keeps an abbreviation's period)
SPANS = [[10, 15, "LOC"], [27, 36, "ORG"]]


@pytest.mark.parametrize("policy, words, tags, actions", [
    ("split", ["Visit", "the", "Paris", "-based", "firm", "Acme", "Corp", ".", "now"],
     ["O", "O", "B-LOC", "O", "O", "B-ORG", "I-ORG", "O", "O"], ["split", "split"]),
    ("expand", ["Visit", "the", "Paris-based", "firm", "Acme", "Corp.", "now"],
     ["O", "O", "B-LOC", "O", "B-ORG", "I-ORG", "O"], ["expand", "expand"]),
    ("drop", ["Visit", "the", "Paris-based", "firm", "Acme", "Corp.", "now"], ["O"] * 7, ["drop", "drop"]),
])
def test_misaligned_policies(tmp_path, policy, words, tags, actions):
    f = _jsonl(tmp_path / "a.jsonl", {"text": TEXT, "label": SPANS})
    loaded = read(f, misaligned=policy)
    assert _pairs(loaded.corpus) == [(words, tags)]
    rep = loaded.report
    assert [c.action for c in rep.cases] == actions and rep.spans == 2
    lines = rep.lines()
    assert lines[0] == f"{f}: 2 of 2 spans not on word boundaries (2 {policy})"
    assert lines[1] == f"  {f}:1: label[0] LOC [10, 15) 'Paris' cuts 'Paris-based': {policy}"
    assert lines[2] == f"  {f}:1: label[1] ORG [27, 36) 'Acme Corp' cuts 'Corp.': {policy}"
    # the offsets of every word still index the record's own text
    src = loaded.sources[0]
    assert [TEXT[a:b] for row in src.offsets for a, b in row] == words


def test_misaligned_error_names_file_line_and_span(tmp_path):
    f = _jsonl(tmp_path / "a.jsonl", {"text": "fine", "label": []}, {"text": TEXT, "label": SPANS})
    with pytest.raises(CorpusError) as e:
        read(f, misaligned="error")
    assert str(e.value) == (f"{f}:2: label[0] LOC [10, 15) 'Paris' does not fall on word boundaries (it cuts "
                            f"'Paris-based'); set data.misaligned to split, expand or drop")


def test_aligned_spans_are_not_reported_and_whitespace_edges_are_fine(tmp_path):
    f = _jsonl(tmp_path / "a.jsonl", {"text": "Meet  John Smith  today", "spans": [{"start": 4, "end": 17, "label": "PER"}]})
    loaded = read(f, misaligned="error")
    assert _pairs(loaded.corpus) == [(["Meet", "John", "Smith", "today"], ["O", "B-PER", "I-PER", "O"])]
    assert loaded.report.cases == [] and loaded.dialect == "spacy"


@pytest.mark.parametrize("policy", ["split", "expand", "drop", "error"])
def test_overlapping_spans_are_an_error_naming_both(tmp_path, policy):
    f = _jsonl(tmp_path / "o.jsonl", {"text": "New York City is big", "label": [[0, 8, "LOC"], [4, 13, "LOC"]]})
    with pytest.raises(CorpusError) as e:
        read(f, misaligned=policy)
    assert str(e.value) == (f"{f}:1: spans overlap: label[0] LOC [0, 8) 'New York' and label[1] LOC [4, 13) "
                            f"'York City'")


def test_spans_that_overlap_once_expanded(tmp_path):
    f = _jsonl(tmp_path / "o.jsonl", {"text": "AcmeSoft rocks", "label": [[0, 4, "ORG"], [4, 8, "MISC"]]})
    assert _pairs(read(f).corpus) == [(["Acme", "Soft", "rocks"], ["B-ORG", "B-MISC", "O"])]
    with pytest.raises(CorpusError, match=r"o.jsonl:1: spans overlap after expanding to whole words: label\[0\] ORG"):
        read(f, misaligned="expand")
    assert _pairs(read(f, misaligned="drop").corpus) == [(["AcmeSoft", "rocks"], ["O", "O"])]


def test_exact_duplicate_spans_count_once(tmp_path):
    f = _jsonl(tmp_path / "d.jsonl", {"text": "John ran", "label": [[0, 4, "PER"], [0, 4, "PER"]]})
    assert _pairs(read(f).corpus) == [(["John", "ran"], ["B-PER", "O"])]


def test_one_record_is_one_document_of_sentences(tmp_path):
    text = "John Smith lives in Paris. He likes Mr. Brown.\nNo period here\n\nLast one"
    f = _jsonl(tmp_path / "s.jsonl", {"text": text, "label": [[0, 10, "PER"], [20, 25, "LOC"], [36, 45, "PER"]]},
               {"text": "Second record", "label": []})
    c = read(f).corpus
    assert [[s.words for s in d.sentences] for d in c.documents] == [
        [["John", "Smith", "lives", "in", "Paris", "."], ["He", "likes", "Mr.", "Brown", "."],
         ["No", "period", "here"], ["Last", "one"]],
        [["Second", "record"]]]
    assert [s.line for s in c.sentences] == [1, 1, 1, 1, 2] and c.has_documents


def test_an_entity_is_not_cut_by_the_sentence_splitter_but_a_newline_cuts_it(tmp_path):
    f = _jsonl(tmp_path / "e.jsonl", {"text": "Go to St. Louis. Then Yahoo! Inc. calls.\nNew\nYork", "label": [
        [22, 33, "ORG"], [41, 49, "LOC"]]})
    c = read(f).corpus
    assert _pairs(c)[-2:] == [(["New"], ["B-LOC"]), (["York"], ["B-LOC"])]
    org = next(s for s in c.sentences if "Yahoo" in s.words)
    assert org.words == ["Then", "Yahoo", "!", "Inc.", "calls", "."]
    assert org.tags == ["O", "B-ORG", "I-ORG", "I-ORG", "O", "O"]


def test_label_studio_export_and_record_lines(tmp_path):
    tasks = [
        {"id": 1, "data": {"text": "Anna met Bob"}, "annotations": [
            {"was_cancelled": True, "result": [{"type": "labels", "value": {"start": 0, "end": 4, "labels": ["X"]}}]},
            {"result": [{"type": "labels", "value": {"start": 0, "end": 4, "labels": ["PER"]}},
                        {"type": "choices", "value": {"choices": ["ok"]}},
                        {"type": "labels", "value": {"start": 9, "end": 12, "labels": ["PER"]}}]}]},
        {"id": 2, "data": {"text": "Nothing here"}, "annotations": []},
    ]
    f = tmp_path / "tasks.json"
    f.write_text(json.dumps(tasks, indent=2))
    loaded = read(f)
    assert detect_format(f) == "spans" and loaded.dialect == "labelstudio"
    assert _pairs(loaded.corpus) == [(["Anna", "met", "Bob"], ["B-PER", "O", "B-PER"]), (["Nothing", "here"], ["O", "O"])]
    lines = f.read_text().split("\n")
    assert [s.line for s in loaded.corpus.sentences] == [i + 1 for i, ln in enumerate(lines) if ln == "  {"]


def test_rows_with_string_tags_documents_and_any_scheme(tmp_path):
    f = _jsonl(tmp_path / "r.jsonl",
               {"tokens": ["-DOCSTART-"], "ner_tags": ["O"]},
               {"tokens": ["John", "Smith"], "ner_tags": ["B-PER", "E-PER"]},
               {"tokens": ["Paris"], "ner_tags": ["S-LOC"]},
               {"tokens": ["-DOCSTART-"], "ner_tags": ["O"]},
               {"tokens": ["Hi"], "ner_tags": ["O"]})
    loaded = read(f)
    c = loaded.corpus
    assert loaded.format == "rows" and c.scheme == "iobes" and c.has_documents
    assert [[(s.words, s.tags) for s in d.sentences] for d in c.documents] == [
        [(["John", "Smith"], ["B-PER", "I-PER"]), (["Paris"], ["B-LOC"])], [(["Hi"], ["O"])]]
    g = _jsonl(tmp_path / "g.jsonl", *({"tokens": ["a"], "ner_tags": ["O"], "doc_id": d} for d in (7, 7, 3)))
    assert [len(d.sentences) for d in read(g).corpus.documents] == [2, 1]


def test_rows_with_label_ids_from_features_file_option_or_parquet(tmp_path):
    names = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    d = tmp_path / "hub"
    d.mkdir()
    _jsonl(d / "train.jsonl", {"id": "0", "tokens": ["John", "Smith", "in", "Rome"], "ner_tags": [1, 2, 0, 3]})
    (d / "dataset_info.json").write_text(json.dumps({"features": {
        "tokens": {"_type": "Sequence", "feature": {"_type": "Value", "dtype": "string"}},
        "ner_tags": {"_type": "Sequence", "feature": {"_type": "ClassLabel", "names": names}}}}))
    want = [(["John", "Smith", "in", "Rome"], ["B-PER", "I-PER", "O", "B-LOC"])]
    assert _pairs(read(d / "train.jsonl").corpus) == want
    assert _pairs(read(d / "train.jsonl", label_names=["O", "B-LOC", "I-LOC", "B-PER"]).corpus)[0][1] == \
        ["B-LOC", "I-LOC", "O", "B-PER"]
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist([{"tokens": ["John", "Smith", "in", "Rome"], "ner_tags": [1, 2, 0, 3]}])
    hf = {"info": {"features": {"ner_tags": {"feature": {"names": names, "_type": "ClassLabel"}, "_type": "Sequence"}}}}
    table = table.replace_schema_metadata({"huggingface": json.dumps(hf)})
    (tmp_path / "pq").mkdir()
    pq.write_table(table, tmp_path / "pq" / "train.parquet")
    assert detect_format(tmp_path / "pq" / "train.parquet") == "rows"
    assert _pairs(read(tmp_path / "pq" / "train.parquet").corpus) == want


@pytest.mark.parametrize("record, message", [
    ({"text": "John", "label": [[0, 9, "PER"]]}, "{f}:2: label[0]: span [0, 9) ends past the text's end (4 characters)"),
    ({"text": "John", "label": [[0, 4]]}, "{f}:2: label[0]: expected [start, end, label], got [0, 4]"),
    ({"text": "John", "spans": [{"start": 0, "label": "PER"}]}, "{f}:2: spans[0]: missing field 'end'"),
    ({"txt": "John", "label": []}, "{f}:2: missing field 'text' (found 'txt', 'label'), expected JSON records with a "
                                   "text and character spans (doccano, spaCy/Prodigy or Label Studio)"),
    ({"text": "John", "label": [[0, "4", "PER"]]}, "{f}:2: label[0].end: expected a whole number, got \"4\""),
    ({"data": {"text": "John"}, "annotations": [{"result": [{"type": "labels", "value": {"end": 4, "labels": ["P"]}}]}]},
     "{f}:2: annotations[0].result[0].value: missing field 'start'"),
])
def test_bad_span_records(tmp_path, record, message):
    f = _jsonl(tmp_path / "bad.jsonl", {"text": "ok", "label": []}, record)
    with pytest.raises(CorpusError) as e:
        read(f, format="spans")
    assert str(e.value) == message.format(f=f)


@pytest.mark.parametrize("row, message", [
    ({"tokens": ["a", "b"], "ner_tags": [0, 7]}, "{f}:2: ner_tags[1]: unknown label id 7 (ids 0..2 from data.label_names)"),
    ({"tokens": ["a"]}, "{f}:2: missing field 'ner_tags', expected rows with 'tokens' and 'ner_tags'"),
    ({"tokens": ["a", "b"], "ner_tags": [0]}, "{f}:2: 2 tokens but 1 ner_tags"),
    ({"tokens": ["a"], "ner_tags": ["X-PER"]}, "{f}:2: ner_tags[0]: tag 'X-PER' is not 'O' or PREFIX-TYPE"),
])
def test_bad_rows(tmp_path, row, message):
    f = _jsonl(tmp_path / "bad.jsonl", {"tokens": ["x"], "ner_tags": [0]}, row)
    with pytest.raises(CorpusError) as e:
        read(f, label_names=["O", "B-PER", "I-PER"])
    assert str(e.value) == message.format(f=f)


def test_label_ids_without_names_and_bad_input_on_the_command_line(tmp_path, capsys):
    f = _jsonl(tmp_path / "ids.jsonl", {"tokens": ["a"], "ner_tags": [1]})
    with pytest.raises(CorpusError, match="ner_tags are label ids and no label names were found; set data.label_names"):
        read(f)
    bad = _jsonl(tmp_path / "past.jsonl", {"text": "John", "label": [[0, 9, "PER"]]})
    capsys.readouterr()
    assert main(["convert", str(bad), str(tmp_path / "out.conll")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"nerkit: error: {bad}:1: label[0]: span [0, 9) ends past the text's end (4 characters)"
    assert not (tmp_path / "out.conll").exists()


def test_detect_format(tmp_path):
    assert detect_format(_jsonl(tmp_path / "a.jsonl", {"text": "x", "label": []})) == "spans"
    assert detect_format(_jsonl(tmp_path / "b.json", {"tokens": ["x"], "ner_tags": ["O"]})) == "rows"
    (tmp_path / "c.txt").write_text("John B-PER\n")
    assert detect_format(tmp_path / "c.txt") == "conll"
    (tmp_path / "d.txt").write_text("[ O\nJohn B-PER\n] O\n")  # a CoNLL file whose first token is a bracket
    assert detect_format(tmp_path / "d.txt") == "conll"
    with pytest.raises(CorpusError, match=r"e.jsonl:1: a record with 'words': neither rows"):
        detect_format(_jsonl(tmp_path / "e.jsonl", {"words": []}))


def test_split_one_file_by_document_seeded(tmp_path):
    docs = [{"text": f"Doc {i} mentions Paris.", "label": [[len(f"Doc {i} mentions "), len(f"Doc {i} mentions Paris"), "LOC"]]}
            for i in range(50)]
    _jsonl(tmp_path / "all.jsonl", *docs)
    s = load_splits(tmp_path, train="all.jsonl", split="0.8,0.1,0.1", seed=3)
    ids = [[int(d.sentences[0].words[1]) for d in c.documents] for c in (s.train, s.validation, s.test)]
    assert [len(x) for x in ids] == [40, 5, 5]
    assert sorted(sum(ids, [])) == list(range(50)) and all(x == sorted(x) for x in ids)
    assert load_splits(tmp_path, train="all.jsonl", split="0.8,0.1,0.1", seed=3).test.documents == s.test.documents
    other = load_splits(tmp_path, train="all.jsonl", split="0.8,0.1,0.1", seed=4)
    assert other.test.documents != s.test.documents
    two = load_splits(tmp_path, train="all.jsonl", split="0.9,0.1")
    assert (len(two.train.documents), len(two.validation.documents), two.test) == (45, 5, None)
    assert s.labels == ["O", "B-LOC", "I-LOC"]
    with pytest.raises(CorpusError, match="data.split: set either data.split or data.validation"):
        load_splits(tmp_path, train="all.jsonl", validation="all.jsonl", split="0.9,0.1")
    assert [len(p.documents) for p in split_documents(s.train, [0.5, 0.25, 0.25], 0)] == [20, 10, 10]


def _train(tiny_base, data: Path, out: Path, *extra: str) -> dict:
    assert main(["train", "--data", str(data), "--output", str(out), "--model.name", str(tiny_base),
                 "--batch_size", "16", "--lr", "3e-3", "--epochs", "1", "--max_steps", "4",
                 "--progress", "false", *extra]) == 0
    return json.loads((out / "metrics.json").read_text())


def test_train_splits_one_file_from_the_command_line(tmp_path, tiny_base):
    """`nerkit train --data.split` reaches the reader: one doccano file becomes train, validation and test."""
    src = _example().write_example(tmp_path / "gen", docs=30, seed=3)["doccano"]
    metrics = _train(tiny_base, src.parent, tmp_path / "run", "--data.train", src.name,
                     "--data.split", "0.6,0.2,0.2", "--data.misaligned", "expand")
    assert {"validation", "test"} <= set(metrics)
    card = (tmp_path / "run" / "model" / "README.md").read_text()
    assert "| train | `doccano.jsonl` | 18 |" in card, card


def test_label_studio_export_trains_and_evaluates(tmp_path, tiny_base, capsys):
    paths = _example().write_example(tmp_path / "ls", docs=30, seed=1)
    metrics = _train(tiny_base, tmp_path / "ls", tmp_path / "run")
    assert {"validation", "test"} <= set(metrics)
    card = (tmp_path / "run" / "model" / "README.md").read_text()
    assert card.startswith("---\n") and "model-index:" in card and "| train | `train.json` | 24 |" in card
    capsys.readouterr()
    preds = tmp_path / "pred.json"
    assert main(["evaluate", str(tmp_path / "run"), "--data", str(paths["test"]), "--predictions", str(preds),
                 "--json", "--quiet"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got[paths["test"].name]["conlleval"]["micro"]["support"] == \
        sum(len(t["annotations"][0]["result"]) for t in json.loads(paths["test"].read_text()))
    tasks = json.loads(preds.read_text())  # Label Studio in, Label Studio tasks with predictions out
    src = json.loads(paths["test"].read_text())
    assert [t["data"] for t in tasks] == [t["data"] for t in src]
    assert all(t["annotations"] == s["annotations"] and t["predictions"][0]["model_version"] == "nerkit"
               for t, s in zip(tasks, src))
    for t in tasks:
        for r in t["predictions"][0]["result"]:
            v = r["value"]
            assert t["data"]["text"][v["start"]:v["end"]] == v["text"]
    assert main(["errors", str(tmp_path / "run"), "--data", str(paths["test"]), "--quiet",
                 "--png", str(tmp_path / "c.png")]) == 0
    assert (tmp_path / "c.png").is_file()


def test_doccano_jsonl_trains_and_evaluates(tmp_path, tiny_base, capsys):
    src = _example().write_example(tmp_path / "gen", docs=30, seed=2)["doccano"]
    lines = src.read_text().splitlines()
    data = tmp_path / "doccano"
    data.mkdir()
    (data / "train.jsonl").write_text("\n".join(lines[:24]) + "\n")
    (data / "dev.jsonl").write_text("\n".join(lines[24:]) + "\n")
    metrics = _train(tiny_base, data, tmp_path / "run")
    assert "validation" in metrics and "test" not in metrics
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "run"), "--data", str(data), "--predictions", str(tmp_path / "p"),
                 "--quiet"]) == 0
    assert "micro avg" in capsys.readouterr().out
    out = [json.loads(x) for x in (tmp_path / "p" / "validation.jsonl").read_text().splitlines()]
    gold = [json.loads(x) for x in lines[24:]]
    assert [(r["id"], r["text"]) for r in out] == [(g["id"], g["text"]) for g in gold]
    assert all(isinstance(r["label"], list) and all(len(x) == 3 for x in r["label"]) for r in out)
