"""Measurements of an exported ONNX graph that `nerkit export` records: the error each int8 node adds, and
the fixed price of one call in padded tokens."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from .engine.backends import onnx_session
from .folder import ModelMeta

CALL_COST_SHAPES = ((1, 8), (1, 32), (1, 64), (4, 16), (4, 32), (8, 16), (8, 32), (16, 32))  # (windows, tokens)
CALL_COST_REPEATS = 5  # timings per shape; the least is kept (other load on the machine only adds)
CALL_COST_MAX = 4096  # tokens; a fit above that is clipped


def node_errors(fp32: Path, int8: Path, nodes: list[str], probe: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    """For each node (named in the fp32 graph), the relative error its int8 version adds on the probe
    batches: |int8 - fp32| / |fp32| of its output less that of its input, both graphs run in full (so a
    node's error is measured on the inputs the int8 graph really gives it)."""
    import onnx

    graph = onnx.load(str(fp32), load_external_data=False).graph
    ends = {n.name: (n.input[0], n.output[0]) for n in graph.node if n.name in nodes}
    tensors = sorted({t for pair in ends.values() for t in pair})
    sq_diff = dict.fromkeys(tensors, 0.0)
    sq_ref = dict.fromkeys(tensors, 0.0)
    sessions = [_tapped_session(path, tensors) for path in (fp32, int8)]
    for batch in probe:
        (ref, got) = [_run_tapped(s, batch, tensors) for s in sessions]
        for t in tensors:
            sq_diff[t] += float(np.square(got[t] - ref[t], dtype=np.float64).sum())
            sq_ref[t] += float(np.square(ref[t], dtype=np.float64).sum())
    rel = {t: (sq_diff[t] / sq_ref[t]) ** 0.5 if sq_ref[t] > 0 else 0.0 for t in tensors}
    return {n: rel[o] - rel[i] for n, (i, o) in ends.items()}


def _tapped_session(path: Path, tensors: list[str]):
    """A session over the graph at path that also outputs the named intermediate tensors."""
    import tempfile

    import onnx

    model = onnx.load(str(path))
    have = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None)
                              for t in tensors if t not in have)
    with tempfile.TemporaryDirectory(dir=path.parent) as d:
        tapped = Path(d) / path.name
        onnx.save(model, str(tapped))
        return onnx_session(tapped)


def _run_tapped(session, batch: dict[str, torch.Tensor], tensors: list[str]) -> dict[str, np.ndarray]:
    wanted = {i.name for i in session.get_inputs()}
    feed = {k: v.numpy() for k, v in batch.items() if k in wanted}
    return dict(zip(tensors, session.run(tensors, feed)))


def random_feed(session, batch: int, tokens: int, vocab_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Inputs for any of nerkit's graphs (only those the session takes): random sub-word ids, every token
    real, shape class 0. Timing needs the shapes, not the text."""
    feed = {"input_ids": rng.integers(0, vocab_size, (batch, tokens), dtype=np.int64),
            "attention_mask": np.ones((batch, tokens), dtype=np.int64),
            "shape_ids": np.zeros((batch, tokens), dtype=np.int64)}
    wanted = {i.name for i in session.get_inputs()}
    return {k: v for k, v in feed.items() if k in wanted}


def measure_call_cost(path: Path, meta: ModelMeta, vocab_size: int) -> tuple[int | None, dict[str, float]]:
    """The fixed cost of one call of the graph, in padded tokens: the session's run timed (least of
    CALL_COST_REPEATS) on CALL_COST_SHAPES batches of random ids, fitted as a + b x tokens; a / b, clipped to
    1..CALL_COST_MAX. None when the fit is unusable (time not growing with tokens). Also the fit, for
    export.json. Run on the machine that serves: the price is the CPU's as much as the graph's."""
    session = onnx_session(path)
    rng = np.random.default_rng(0)
    tokens, seconds = [], []
    for b, n in CALL_COST_SHAPES:
        feed = random_feed(session, b, n, vocab_size, rng)
        session.run(["logits"], feed)  # warm-up: the first call of a shape allocates
        best = float("inf")
        for _ in range(CALL_COST_REPEATS):
            t0 = time.perf_counter()
            session.run(["logits"], feed)
            best = min(best, time.perf_counter() - t0)
        tokens.append(b * n)
        seconds.append(best)
    # weights 1/time: relative residuals, so that the small calls, which fix the intercept, count as much
    slope, intercept = (float(v) for v in np.polyfit(tokens, seconds, 1, w=1 / np.asarray(seconds)))
    fit = {"ms_per_call": round(1e3 * intercept, 4), "us_per_token": round(1e6 * slope, 4)}
    if not slope > 0:
        return None, fit
    return int(np.clip(round(intercept / slope), 1, CALL_COST_MAX)), fit
