"""End to end: a tiny random BERT learns CoNLL-2003 NER, and `nerkit train` runs under 2 Accelerate processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, synthetic_sentences, write_conll

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def conll_tiny(conll_dir, tmp_path_factory) -> Path:
    """A tiny cased BERT whose WordPiece vocabulary is built from CoNLL train words."""
    from nerkit.corpus import read_conll
    from nerkit.tiny import build_tiny_model

    words = [w for s in read_conll(conll_dir / "eng.train").sentences for w in s.words]
    return build_tiny_model(tmp_path_factory.mktemp("conll_tiny"), words, vocab_size=2000)


def _cfg(overrides: dict[str, object]):
    from nerkit.config import load_config

    return load_config(None, [(k, str(v)) for k, v in overrides.items()])


def test_tiny_bert_learns_conll(conll_dir, conll_tiny, tmp_path):
    from nerkit.corpus import load_splits
    from nerkit.engine.predictor import Predictor
    from nerkit.evaluation import evaluate
    from nerkit.folder import ModelMeta
    from nerkit.model import build_model
    from nerkit.train import limit_corpus, train

    overrides = {"model.name": conll_tiny, "data.dir": conll_dir, "output": tmp_path / "run",
                 "data.limit_train": 2000, "data.limit_eval": 300, "data.context": 128, "model.shapes": "on",
                 "train.epochs": 3, "train.lr": 3e-3, "train.batch_size": 32, "train.progress": "false",
                 "train.seed": 1}
    cfg = _cfg(overrides)

    # the untrained model: a random classifier over a random encoder
    splits = load_splits(conll_dir)
    val = limit_corpus(splits.validation, 300)
    model, tok = build_model(str(conll_tiny), splits.labels, shapes=True)
    meta = ModelMeta(labels=splits.labels, max_length=128, context=128, shapes=True)
    untrained = 100 * evaluate(Predictor.from_model(model, tok, meta, device="cpu"), val).conlleval.micro.f1

    metrics = train(cfg)
    trained = 100 * metrics["validation"]["conlleval"]["micro"]["f1"]
    history = [h["validation_f1"] for h in metrics["history"]]
    print(f"untrained val F1 {untrained:.2f}, trained {trained:.2f}, history {history}")
    assert untrained < 8
    assert trained > 15 and trained > untrained + 10  # measured: untrained ~4, trained 24-27
    assert trained == pytest.approx(max(history), abs=0.01)  # the best epoch is the saved model
    assert metrics["validation"]["conlleval"]["micro"]["support"] > 400  # 300 sentences of testa
    assert "test" in metrics and (tmp_path / "run" / "predictions" / "test.conll").is_file()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_accelerate(tmp_path, tiny_base):
    data = tmp_path / "data"
    data.mkdir()
    write_conll(data / "train.txt", synthetic_sentences(90, seed=21), docs_every=8)
    write_conll(data / "dev.txt", synthetic_sentences(20, seed=22), docs_every=8)
    out = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(REPO / "src"), "HF_HOME": str(tmp_path / "hf_home")}
    # `--cpu` alone runs one process; `--multi_gpu` on a machine without CUDA starts torchrun workers that
    # Accelerate sets up as MULTI_CPU with the gloo backend.
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--num_cpu_threads_per_process", "1", "--main_process_port", str(_free_port()),
           "-m", "nerkit.cli", "train", "--data", str(data), "--output", str(out),
           "--model.name", str(tiny_base), "--epochs", "2", "--batch_size", "16", "--max_tokens", "400",
           "--lr", "3e-3", "--progress", "false"]
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, "\n".join(ln for ln in r.stderr.splitlines() if "error" in ln.lower())[-3000:]
    assert (out / "model" / "config.json").is_file() and (out / "model" / "nerkit.json").is_file()
    m = json.loads((out / "metrics.json").read_text())
    assert m["processes"] == 2
    assert [h["epoch"] for h in m["history"]] == [1, 2]
    assert not (out / "checkpoint").exists()
    log = (out / "train.log").read_text()
    assert "processes=2" in log
