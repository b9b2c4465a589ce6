"""Lanes: an ONNX Predictor runs several model calls at once on one session, and tags as one call at a time."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from nerkit.cli import main
from nerkit.engine.backends import split_threads
from nerkit.engine.predictor import Predictor
from nerkit.tagger import load

DOCS = [[["John", "Smith", "works", "for", "Acme", "Corp", "in", "New", "York", "."],
         ["Mary", "Jones", "lives", "in", "Paris", "."]],
        [["Shares", "of", "Toyota", "rose", "3", "percent", "in", "Tokyo", "trading", "."]],
        [["The", "German", "team", "beat", "FIFA", "2-1", "."] * 30]]  # longer than one window


@pytest.mark.parametrize("lanes, threads, want", [
    (0, 2, (2, 1)),  # auto: two one-thread lanes on two cores
    (0, 1, (1, 1)),  # one thread: one lane
    (0, 8, (2, 4)),  # auto: two lanes share the threads
    (4, 2, (2, 1)),  # never more lanes than threads
    (1, 2, (1, 2)),  # one lane takes them all
    (2, 5, (2, 2)),
])
def test_lanes_share_the_threads(lanes, threads, want):
    assert split_threads(lanes, threads) == want


def _calls_by_thread(pred: Predictor) -> list[str]:
    """Wrap the backend so each call records the thread that made it."""
    names: list[str] = []
    inner = pred.backend.logits

    def logits(batch):
        names.append(threading.current_thread().name)
        return inner(batch)

    pred.backend.logits = logits  # type: ignore[method-assign]
    return names


@pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
def test_two_lanes_tag_as_one(monkeypatch, exported, backend):
    monkeypatch.setenv("NERKIT_THREADS", "2")  # two lanes even on a one-core machine
    one = Predictor.from_dir(exported, backend=backend, lanes=1).with_budget(batch_size=2)
    two = Predictor.from_dir(exported, backend=backend, lanes=2).with_budget(batch_size=2)
    assert (one.backend.lanes, two.backend.lanes) == (1, 2)
    seen_one, seen_two = _calls_by_thread(one), _calls_by_thread(two)
    ticks: list[tuple[int, int]] = []
    a = one.predict(DOCS)
    b = two.predict(DOCS, progress=lambda k, n: ticks.append((k, n)))
    assert a.tags == b.tags
    for p, q in zip(a.probs, b.probs):
        np.testing.assert_allclose(p, q, rtol=1e-4, atol=1e-6)  # one thread or two sum in another order
    assert len(seen_two) > 1 and set(seen_two) <= {f"nerkit-lane_{i}" for i in range(2)}
    assert set(seen_one) == {threading.current_thread().name}  # one lane: the caller's own thread
    total = ticks[0][1]
    assert sum(k for k, _ in ticks) == total and all(n == total for _, n in ticks)


def test_a_lane_that_fails_fails_the_call(monkeypatch, exported):
    monkeypatch.setenv("NERKIT_THREADS", "2")
    pred = Predictor.from_dir(exported, backend="onnx-int8", lanes=2).with_budget(batch_size=1)
    calls = []

    def logits(batch):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("lane broke")
        return inner(batch)

    inner, pred.backend.logits = pred.backend.logits, logits
    with pytest.raises(RuntimeError, match="lane broke"):
        pred.predict(DOCS)


def test_torch_runs_one_call_at_a_time(trained_model_dir):
    pred = Predictor.from_dir(trained_model_dir, backend="torch", lanes=2)
    assert pred.backend.lanes == 1  # torch's thread pool is the process's own


def test_the_tagger_and_the_command_take_lanes(capsys, monkeypatch, exported):
    monkeypatch.setenv("NERKIT_THREADS", "2")
    assert load(str(exported), backend="onnx-int8", lanes=1).predictor.backend.lanes == 1
    assert load(str(exported), backend="onnx-int8").predictor.backend.lanes == 2
    capsys.readouterr()
    assert main(["predict", str(exported), "--backend", "onnx-int8", "--lanes", "-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("nerkit: error: ") and "lanes" in err[-1] and "Traceback" not in "".join(err)
