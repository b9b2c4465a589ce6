"""The tagger (Python API) and `nerkit predict` on the tiny trained model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import nerkit
from conftest import synthetic_sentences
from nerkit.cli import main
from nerkit.errors import ModelError
from nerkit.schemes import spans as iob2_spans


@pytest.fixture(scope="module")
def tagger(trained_model_dir):
    return nerkit.load(str(trained_model_dir), device="cpu")


def test_spans_with_offsets(tagger):
    text = "John Smith works for Acme Corp in New York. Mary Jones lives in Paris."
    got = tagger(text)
    assert [(s.label, s.text) for s in got] == [
        ("PER", "John Smith"), ("ORG", "Acme Corp"), ("LOC", "New York"), ("PER", "Mary Jones"), ("LOC", "Paris")]
    for s in got:
        assert text[s.start : s.end] == s.text
        assert 0.5 < s.score <= 1.0
    assert tagger.entity_types == ["LOC", "MISC", "ORG", "PER"]
    assert tagger.labels[0] == "O" and len(tagger.labels) == 9


def test_score_is_mean_word_probability(tagger):
    text = "Peter Brown joined Google ."
    (tagged,) = tagger.tag_texts([text])
    probs = tagger.predictor.predict([[[w.text for w in s] for s in tagged.sentences]]).probs
    assert [(s.label, s.text) for s in tagged.spans] == [("PER", "Peter Brown"), ("ORG", "Google")]
    per, org = tagged.spans
    assert per.score == pytest.approx(float(probs[0][:2].mean()), abs=1e-4)  # words 0-1
    assert org.score == pytest.approx(float(probs[0][3]), abs=1e-4)  # word 3
    assert 0.5 < per.score < 1 and 0.5 < org.score < 1  # measured: 0.98 each


def test_empty_and_odd_text(tagger):
    assert tagger("") == [] and tagger("   \n ") == []
    for text, expected in [
        ("Mary Jones\x00 lives in\ud800 Paris\x1b[0m.", [("PER", 0, 10), ("LOC", 22, 27)]),
        ("\ufeffPeter\u200bBrown in Tokyo", [("PER", 1, 12), ("LOC", 16, 21)]),  # zero-width space: one word
        ("!!! ??? ...", []),
        ("\U0001f600 Anna Chen " * 3, [("PER", 2, 11), ("PER", 14, 23), ("PER", 26, 35)]),
    ]:
        got = tagger(text)
        assert [(s.label, s.start, s.end) for s in got] == expected, text
        for s in got:
            assert text[s.start : s.end] == s.text
    with pytest.raises(TypeError):
        tagger(None)  # type: ignore[arg-type]


def test_pipe_streams_in_input_order(tagger):
    texts = [f"{'it rained all week . ' * (i % 7)}Olga Chen lives in Lima." for i in range(20)] + [""]
    one_by_one = [tagger(t) for t in texts]

    def lazy():  # a generator: pipe must not need len() or indexing
        yield from texts

    assert list(tagger.pipe(lazy(), batch_size=3)) == one_by_one
    assert [[(s.label, s.text) for s in spans] for spans in one_by_one] == [
        [("PER", "Olga Chen"), ("LOC", "Lima")]] * 20 + [[]]
    assert list(tagger.pipe([], batch_size=8)) == []


def test_call_cost_changes_the_passes_not_the_result(trained_model_dir):
    t = nerkit.load(str(trained_model_dir), device="cpu")
    calls = []
    run = t.predictor.backend.logits
    t.predictor.backend.logits = lambda batch: calls.append(tuple(batch["input_ids"].shape)) or run(batch)
    texts = ["Olga Chen lives in Lima ."] * 4 + ["it rained all week and " * 12 + "Olga Chen left ."] * 2
    got = {}
    for cost in (0, 8, 10_000):
        t.predictor, calls[:] = t.predictor.with_budget(call_cost=cost), []
        got[cost] = (t.tag_texts(texts), list(calls))
    assert len(got[0][1]) == 1 and len(got[10_000][1]) == 1  # no pricing, or calls dearer than padding
    assert len(got[8][1]) == 2  # long and short texts in passes of their own
    assert sum(n * L for n, L in got[8][1]) < sum(n * L for n, L in got[0][1])
    assert got[0][0] == got[8][0] == got[10_000][0]
    assert [[(s.label, s.text) for s in t.spans] for t in got[0][0]] == [
        [("PER", "Olga Chen"), ("LOC", "Lima")]] * 4 + [[("PER", "Olga Chen")]] * 2


def test_tag_words(tagger):
    assert tagger.tag_words(["Mary", "Jones", "lives", "in", "Paris", "."]) == [
        "B-PER", "I-PER", "O", "O", "B-LOC", "O"]
    assert tagger.tag_words([["Toyota"], [], ["Berlin", "."]]) == [["B-ORG"], [], ["B-LOC", "O"]]
    assert tagger.tag_words([]) == []


def test_same_tags_as_evaluation(tagger, trained_model_dir, synthetic_dir):
    """The tagger (small text budget) and evaluation (a corpus budget, its own Predictor) give the same
    tags: batching changes how windows are grouped, never which tag a word gets."""
    from nerkit.corpus import read_conll
    from nerkit.engine.predictor import Predictor
    from nerkit.evaluation import predict_corpus

    corpus = read_conll(synthetic_dir / "test.txt")
    expected = predict_corpus(Predictor.from_dir(trained_model_dir, device="cpu"), corpus)
    docs = [[s.words for s in d.sentences] for d in corpus.documents]
    got = [t for doc in tagger.tag_documents(docs) for t in doc]
    assert got == expected
    # and both are right: the tiny model tags this split perfectly (measured: 279 entity tags, all gold)
    assert got == [s.tags for s in corpus.sentences]
    assert sum(t != "O" for sent in got for t in sent) == 279


def test_long_document_20000_words(tagger):
    """One 20,000-word stream spans hundreds of windows: every word is tagged and entities that cross a
    window edge come out whole."""
    sents = synthetic_sentences(2400, seed=5)
    words = [w for s in sents for w, _ in s][:20000]
    gold = [t for s in sents for _, t in s][:20000]
    tags = tagger.tag_words(words)
    assert len(tags) == len(words) == 20000
    windows = [(f.word_indices[0], f.word_indices[-1] + 1) for f in tagger.predictor.encoder.encode([[words]])]
    assert len(windows) > 300  # measured: 326
    cut = {e for e in iob2_spans(gold) if any(e.start < b < e.end for _, b in windows)}
    assert len(cut) > 30, "entities must straddle window edges"  # measured: 37
    predicted = set(iob2_spans(tags))
    assert cut <= predicted
    gold_set = set(iob2_spans(gold))
    # measured over three tiny vocabularies: 5084 of the 5085 gold entities found; 5096-5133 predicted
    assert len(gold_set & predicted) / len(gold_set) > 0.999
    assert len(gold_set & predicted) / len(predicted) > 0.985


def test_document_context_windows_cover_every_word(trained_model_dir):
    """With document context, sentences are packed into shared windows and each keeps its own tags."""
    from nerkit.engine.backends import TorchBackend
    from nerkit.engine.predictor import Predictor
    from nerkit.folder import ModelFolder
    from nerkit.model import load_model
    from nerkit.tagger import Tagger

    folder = ModelFolder(trained_model_dir)
    folder.meta.context = 48
    tagger = Tagger(Predictor(TorchBackend(load_model(folder), "cpu"), folder.tokenizer, folder.meta))
    sents = synthetic_sentences(300, seed=7)
    text = " ".join(" ".join(w for w, _ in s) for s in sents)
    (tagged,) = tagger.tag_texts([text])
    # the splitter breaks after "." before a capital: a template sentence that starts in lower case
    # ("it rained in ...") runs on from the one before (300 sentences -> 261)
    lengths: list[int] = []
    for s in sents:
        if lengths and s[0][0][0].islower():
            lengths[-1] += len(s)
        else:
            lengths.append(len(s))
    assert [len(s) for s in tagged.sentences] == lengths and len(lengths) == 261
    assert [len(t) for t in tagged.tags] == lengths
    gold_per = sum(e.type == "PER" for s in sents for e in iob2_spans([t for _, t in s]))
    assert sum(s.label == "PER" for s in tagged.spans) == gold_per == 175  # measured: every PER, no more
    for s in tagged.spans:
        assert text[s.start : s.end] == s.text


def test_argmax_option(trained_model_dir):
    t = nerkit.load(str(trained_model_dir), constrained=False)
    assert not t.constrained
    assert [s.text for s in t("Mary Jones lives in Paris.")] == ["Mary Jones", "Paris"]


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "config.json").unlink(), "no config.json"),
    (lambda d: (d / "config.json").write_text((d / "config.json").read_text().replace('"B-PER"', '"PERSON"')),
     "PERSON"),
    (lambda d: (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:5000]), "cannot load"),
])
def test_bad_model_folder(tmp_path, trained_model_dir, damage, message):
    d = tmp_path / "model"
    shutil.copytree(trained_model_dir, d)
    damage(d)
    with pytest.raises(ModelError, match=message) as err:
        nerkit.load(str(d))
    assert "\n" not in str(err.value)
    with pytest.raises(ModelError):
        nerkit.load(str(tmp_path / "missing"))


# ------------------------------------------------------------------------------------------------ CLI

def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_predict_arguments_jsonl(capsys, trained_model_dir):
    rc, out, _ = run_cli(capsys, "predict", str(trained_model_dir), "Mary Jones lives in Paris.", "--quiet", "")
    assert rc == 0
    recs = [json.loads(line) for line in out.splitlines()]
    assert len(recs) == 2 and recs[1]["spans"] == []
    assert [(s["label"], s["text"], s["start"], s["end"]) for s in recs[0]["spans"]] == [
        ("PER", "Mary Jones", 0, 10), ("LOC", "Paris", 20, 25)]


def test_predict_file_with_a_bad_line(capsys, tmp_path, trained_model_dir):
    f = tmp_path / "in.txt"
    f.write_bytes(b"Mary Jones lives in Paris.\n\xff\xfe broken\nPeter Brown joined Google.\n")
    rc, out, err = run_cli(capsys, "predict", str(trained_model_dir), "-i", str(f), "--unit", "line", "--quiet")
    assert rc == 1
    assert f"{f}:2:" in err
    recs = [json.loads(line) for line in out.splitlines()]
    assert [r["line"] for r in recs] == [1, 3]
    assert [s["text"] for s in recs[1]["spans"]] == ["Peter Brown", "Google"]


def test_predict_folder_conll_and_pretty(capsys, tmp_path, trained_model_dir):
    from nerkit.corpus import read_conll

    d = tmp_path / "docs"
    d.mkdir()
    (d / "a.txt").write_text("Anna Chen visited Tokyo.\nShe met John Smith.\n")
    (d / "b.txt").write_text("Siemens opened an office in Berlin.")
    (d / ".hidden").write_text("ignored")
    rc, out, _ = run_cli(capsys, "predict", str(trained_model_dir), "-i", str(d), "-f", "conll", "--quiet")
    assert rc == 0
    conll = tmp_path / "out.conll"
    conll.write_text(out)
    corpus = read_conll(conll)
    assert len(corpus.documents) == 2
    assert [(s.words, s.tags) for s in corpus.sentences] == [
        (["Anna", "Chen", "visited", "Tokyo", "."], ["B-PER", "I-PER", "O", "B-LOC", "O"]),
        (["She", "met", "John", "Smith", "."], ["O", "O", "B-PER", "I-PER", "O"]),
        (["Siemens", "opened", "an", "office", "in", "Berlin", "."], ["B-ORG", "O", "O", "O", "O", "B-LOC", "O"])]
    rc, out, _ = run_cli(capsys, "predict", str(trained_model_dir), "-f", "pretty", "Olga Muller lives in Lima.")
    assert rc == 0 and "[Olga Muller](PER) lives in [Lima](LOC)." in out


def test_predict_stdin(capsys, monkeypatch, trained_model_dir):
    import io
    import sys

    data = io.TextIOWrapper(io.BytesIO(b"Mary Jones lives in Paris.\n\nToyota said so.\n"))
    monkeypatch.setattr(sys, "stdin", data)
    rc, out, _ = run_cli(capsys, "predict", str(trained_model_dir))
    assert rc == 0
    recs = [json.loads(line) for line in out.splitlines()]
    assert [len(r["spans"]) for r in recs] == [2, 0, 1]


@pytest.mark.parametrize("argv", [
    ["predict", "MODEL", "--batch-size", "-1", "x"],
    ["predict", "MODEL", "--bogus", "x"],
    ["predict", "MODEL", "-i", "/nonexistent/file.txt"],
    ["predict", "/nonexistent/model", "x"],
    ["predict", "MODEL", "--backend", "onnx", "x"],  # not exported: one-line error naming the fix
])
def test_predict_usage_errors(capsys, tmp_path, trained_model_dir, argv):
    d = tmp_path / "m"
    shutil.copytree(trained_model_dir, d, ignore=shutil.ignore_patterns("onnx"))
    argv = [str(d) if a == "MODEL" else a for a in argv]
    rc, _, err = run_cli(capsys, *argv)
    assert rc == 2
    assert err.strip().count("\n") == 0 and err.startswith("nerkit: error:")


def test_import_nerkit_is_light():
    import subprocess
    import sys

    code = "import sys, nerkit; assert callable(nerkit.load); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parent)
    assert out.stdout.strip() == "False"


def test_unknown_backend_is_named(trained_model_dir):
    """An unknown backend fails as such, before anything looks for its files."""
    with pytest.raises(ModelError, match="^backend: 'tensorrt' is not one of torch, onnx, onnx-int8, auto$"):
        nerkit.load(str(trained_model_dir), backend="tensorrt")
