"""The model card: Hugging Face metadata (model-index from the run's own metrics, labels, base model,
licence), the word-shape caveat only where it applies, and a training command that rebuilds the settings."""

from __future__ import annotations

import dataclasses
import shlex

import yaml

from nerkit.card import model_card, train_command, write_card
from nerkit.config import load_config, parse_overrides
from nerkit.corpus import Corpus, Document, Sentence
from nerkit.folder import ModelMeta


def _score(p, r, f, n):
    return {"precision": p, "recall": r, "f1": f, "support": n, "predicted": n, "correct": n}


METRICS = {
    "best_epoch": 2, "train_seconds": 12.5, "device": "cpu", "precision": "no", "processes": 1,
    "validation": {"conlleval": {"micro": _score(0.9, 0.8, 0.847, 10), "per_type": {"PER": _score(0.9, 0.8, 0.847, 10)}},
                   "strict": {"micro": _score(0.9, 0.8, 0.84, 10), "per_type": {}}},
    "test": {"conlleval": {"micro": _score(0.75, 0.5, 0.6, 4), "per_type": {"PER": _score(0.75, 0.5, 0.6, 4)}},
             "strict": {"micro": _score(0.7, 0.5, 0.58, 4), "per_type": {}}},
}
CORPORA = {"train": Corpus("/d/train.jsonl", [Document([Sentence(["John", "ran"], ["B-PER", "O"])])], True, "iob2")}


def _meta(shapes: bool, overrides=()) -> ModelMeta:
    cfg = load_config(None, [("model.name", "minilm"), ("data.dir", "conll2003"), ("output", "runs/my-ner"),
                             *overrides])
    return ModelMeta(labels=["O", "B-PER", "I-PER"], shapes=shapes, train_config=cfg.to_dict())


def _split(card: str) -> tuple[dict, str]:
    assert card.startswith("---\n")
    head, body = card[4:].split("\n---\n", 1)
    return yaml.safe_load(head), body


def test_metadata_is_hugging_face_model_card_yaml():
    meta, body = _split(model_card(_meta(True), METRICS, CORPORA, "my-ner"))
    assert meta["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert meta["license"] == "apache-2.0" and meta["language"] == "en"  # from the base model's own card
    assert meta["pipeline_tag"] == "token-classification" and meta["library_name"] == "transformers"
    assert meta["labels"] == ["O", "B-PER", "I-PER"] and meta["datasets"] == ["conll2003"]
    (entry,) = meta["model-index"]
    assert entry["name"] == "my-ner"
    got = {r["dataset"]["split"]: {m["type"]: m["value"] for m in r["metrics"]} for r in entry["results"]}
    assert got == {"validation": {"f1": 84.7, "precision": 90.0, "recall": 80.0},
                   "test": {"f1": 60.0, "precision": 75.0, "recall": 50.0}}
    assert all(r["task"]["type"] == "token-classification" for r in entry["results"])
    assert "| micro avg | 75.00 | 50.00 | 60.00 | 4 |" in body  # the measured scores, as measured
    assert "| train | `train.jsonl` | 1 | 1 | 2 | 1 |" in body
    assert "## Intended use and limits" in body


def test_shape_caveat_only_when_the_model_has_shapes():
    with_shapes = _split(model_card(_meta(True), METRICS, CORPORA))[1]
    without = _split(model_card(_meta(False), METRICS, CORPORA))[1]
    assert "without that signal" in with_shapes and "nerkit_shapes.safetensors" in with_shapes
    assert "without that signal" not in without and "no word-shape embedding" in without


def test_no_scores_and_a_local_base_model(tmp_path):
    meta = _meta(False, [("model.name", str(tmp_path))])
    head, body = _split(model_card(meta, {"best_epoch": 1}, CORPORA))
    assert "base_model" not in head and head["license"] == "other"
    assert head["model-index"][0]["results"] == []
    assert "nothing was measured" in body


def test_train_command_rebuilds_the_settings():
    meta = _meta(True, [("train.lr", "1e-4"), ("data.context", "256"), ("data.jitter", "true"),
                        ("data.split", "0.8,0.1,0.1"), ("data.train", "my file.json")])
    cmd = train_command(meta.train_config)
    argv = shlex.split(cmd)
    assert argv[:2] == ["nerkit", "train"] and "--train.lr" in argv and "--train.epochs" not in argv
    rebuilt = load_config(None, parse_overrides(argv[2:]))
    assert dataclasses.asdict(rebuilt) == meta.train_config
    body = _split(model_card(meta, METRICS, CORPORA))[1]
    assert cmd in body


def test_write_card_in_the_model_folder(tmp_path):
    path = write_card(tmp_path / "model", _meta(True), METRICS, CORPORA)
    assert path == tmp_path / "model" / "README.md"
    assert _split(path.read_text())[0]["model-index"][0]["name"] == "my-ner"
