"""Where an exported graph spends its time, per operator type: onnxruntime's own profiler over repeated calls
on one batch of CoNLL-like shape (graph_measures.random_feed: random sub-word ids, every token real), so graphs
can be compared op by op. Each file must sit in its model folder's onnx/, as `nerkit export` writes it.

    python bench/op_profile.py runs/student-conv-aug2/model/onnx/model.int8.onnx [MORE.onnx ...]
        [--batch 32] [--tokens 24] [--calls 50] [--threads 2]

Per graph: ms per call (the mean of --calls after 5 warm-up calls) and each op type's share of the
kernel time. The last line is JSON.
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import describe, machine

from nerkit.graph_measures import random_feed


def profile(path: str, batch: int, tokens: int, calls: int, threads: int) -> dict:
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.enable_profiling, so.intra_op_num_threads = True, threads
        so.profile_file_prefix = str(Path(tmp) / "p")
        session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        # the graph's model folder (ONNX files live in its onnx/) knows the vocabulary the ids come from
        vocab = json.loads((Path(path).resolve().parent.parent / "config.json").read_text())["vocab_size"]
        feed = random_feed(session, batch, tokens, vocab, np.random.default_rng(0))
        for _ in range(5):
            session.run(None, feed)
        t0 = time.perf_counter()
        for _ in range(calls):
            session.run(None, feed)
        ms = (time.perf_counter() - t0) / calls * 1000
        events = json.loads(Path(session.end_profiling()).read_text())
    per_op: collections.Counter = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_op[e["args"]["op_name"]] += e["dur"]
    total = sum(per_op.values()) or 1
    return {"graph": path, "ms_per_call": round(ms, 3),
            "share": {op: round(us / total, 4) for op, us in per_op.most_common()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("graphs", nargs="+", help="ONNX files (a model folder's onnx/model.int8.onnx, ...)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=24, help="sub-words per row")
    ap.add_argument("--calls", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    print(f"batch {args.batch} x {args.tokens} sub-words, {args.calls} calls, {args.threads} threads | {describe()}")
    rows = []
    for g in args.graphs:
        row = profile(g, args.batch, args.tokens, args.calls, args.threads)
        rows.append(row)
        top = ", ".join(f"{op} {share * 100:.1f}%" for op, share in list(row["share"].items())[:8])
        print(f"{g}: {row['ms_per_call']:.2f} ms per call | {top}")
    print(json.dumps({"bench": "op_profile", "machine": machine(), "batch": args.batch, "tokens": args.tokens,
                      "rows": rows}))


if __name__ == "__main__":
    main()
