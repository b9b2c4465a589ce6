"""Shared fixtures: the CoNLL data (found as the library finds it; skipped when absent, a failure under CI),
a synthetic corpus that is always there, a tiny random BERT, and a tiny model trained on the synthetic corpus."""

from __future__ import annotations

import functools
import os
from contextlib import contextmanager
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tiny models gain nothing from threads, and spinning OpenMP threads slow everything else on 2 cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]

from nerkit.tiny import conll_text, synthetic_sentences  # noqa: E402  (after the environment above)

__all__ = ["synthetic_sentences"]


def write_conll(path: Path, sentences, docs_every: int = 0) -> Path:
    path.write_text(conll_text(sentences, docs_every))
    return path


def stop_after_epoch(n: int):
    """A training callback that stops the run, as Ctrl-C would, right after epoch n's checkpoint."""
    from nerkit.train import Callback

    class StopAfterEpoch(Callback):
        def on_save(self, t) -> None:
            if t.state.epoch == n:
                raise KeyboardInterrupt

    return StopAfterEpoch()


@contextmanager
def training_callbacks(monkeypatch, *callbacks):
    """Inside the block, `nerkit train` (cli.main) runs with these callbacks attached to its trainer."""
    import nerkit.train

    with monkeypatch.context() as m:
        m.setattr(nerkit.train, "train", functools.partial(nerkit.train.train, callbacks=callbacks))
        yield


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def shared_dataset(name: str, probe: str) -> Path:
    """The dataset folder `name`, found exactly as `--data name` finds it (nerkit.corpus.resolve_data_dir:
    $NERKIT_DATA_ROOT, then ../shared/data beside the working directory and beside the checkout), holding
    `probe`. Missing: the test is skipped, except under CI (CI=true), where the data must be there and the
    test fails, so that a data test cannot quietly stop running."""
    from nerkit.corpus import data_roots, resolve_data_dir
    from nerkit.errors import CorpusError

    try:
        d = resolve_data_dir(name)
    except CorpusError:
        d = None
    if d is None or not (d / probe).is_file():
        where = f"{d} has no {probe}" if d is not None else f"no {name}/ folder"
        msg = (f"{name} not found: {where} (looked in {', '.join(dict.fromkeys(str(r) for r in data_roots()))}; "
               f"put the data in ../shared/data or set NERKIT_DATA_ROOT)")
        if in_ci():
            pytest.fail(f"CI=true and the data this test needs is missing: {msg}", pytrace=False)
        pytest.skip(msg)
    return d


@pytest.fixture(scope="session")
def conll_dir() -> Path:
    return shared_dataset("conll2003", "eng.train")


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("synthetic")
    write_conll(d / "train.txt", synthetic_sentences(400, seed=1), docs_every=8)
    write_conll(d / "dev.txt", synthetic_sentences(80, seed=2), docs_every=8)
    write_conll(d / "test.txt", synthetic_sentences(80, seed=3), docs_every=8)
    return d


@pytest.fixture(scope="session")
def small_data(tmp_path_factory) -> Path:
    """64 training and 16 validation sentences in documents of 8: for runs of a few steps."""
    d = tmp_path_factory.mktemp("small")
    write_conll(d / "train.txt", synthetic_sentences(64, seed=11), docs_every=8)
    write_conll(d / "dev.txt", synthetic_sentences(16, seed=12), docs_every=8)
    return d


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    """A random, lower-casing tiny BERT (so the shape embedding switches on by default)."""
    from nerkit.tiny import build_tiny_model

    words = [w for s in synthetic_sentences(2000, seed=9) for w, _ in s]
    return build_tiny_model(tmp_path_factory.mktemp("tiny_base"), words, vocab_size=400, lowercase=True)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, synthetic_dir, tiny_base) -> Path:
    """A run folder with a tiny model trained on the synthetic corpus (a few seconds)."""
    from nerkit.config import load_config
    from nerkit.train import train

    out = tmp_path_factory.mktemp("trained")
    cfg = load_config(None, [("model.name", str(tiny_base)), ("data.dir", str(synthetic_dir)),
                             ("output", str(out)), ("train.epochs", "4"), ("train.lr", "3e-3"),
                             ("train.batch_size", "16"), ("train.progress", "false")])
    train(cfg)
    return out


@pytest.fixture(scope="session")
def trained_model_dir(trained_run) -> Path:
    return trained_run / "model"


@pytest.fixture(scope="module")
def exported(tmp_path_factory, trained_model_dir) -> Path:
    """A copy of the tiny model, exported with `nerkit export --onnx --int8` (one per test module, which
    may change it)."""
    import shutil

    from nerkit.cli import main

    d = tmp_path_factory.mktemp("export") / "model"
    shutil.copytree(trained_model_dir, d)
    assert main(["export", str(d), "--onnx", "--int8"]) == 0
    return d


@pytest.fixture(scope="session")
def wnut_dir() -> Path:
    return shared_dataset("wnut17", "wnut17train.conll")
