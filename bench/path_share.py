"""Where a tagging pass goes: the model calls against everything around them (splitting, encoding, shapes,
batching, log-softmax, Viterbi, spans), the speed issue's "a small student's speed is its model's".

    python bench/path_share.py --runs runs/student-3l-ens runs/student-conv [--backend onnx-int8]

The 3,453 CoNLL test sentences as raw text, as in bench/speed_accuracy.py, one pass after a warm-up; the
backend's logits() is wrapped with a timer, so "around" is the whole pass minus the model calls. One lane
(one call at a time, on all threads), so that the calls' times add up to wall time. Prints a line per run
and a last line of JSON.
"""

from __future__ import annotations

import argparse
import json
import time

from machine import describe, machine
from predict_speed import test_texts


def share(run: str, texts: list[str], backend: str) -> dict:
    import nerkit

    tagger = nerkit.load(run, backend=backend, lanes=1)
    model_call = tagger.predictor.backend.logits
    spent = [0.0]

    def timed(batch):
        t0 = time.perf_counter()
        out = model_call(batch)
        spent[0] += time.perf_counter() - t0
        return out

    tagger.predictor.backend.logits = timed  # type: ignore[method-assign]
    list(tagger.pipe(texts[:64]))  # warm-up
    spent[0] = 0.0
    t0 = time.perf_counter()
    list(tagger.pipe(texts))
    total = time.perf_counter() - t0
    return {"run": run, "backend": backend, "seconds": round(total, 3), "model_s": round(spent[0], 3),
            "model_share": round(spent[0] / total, 3), "around_ms_per_sentence": round(1000 * (total - spent[0]) / len(texts), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", nargs="+", required=True, help="run or model folders")
    ap.add_argument("--backend", default="onnx-int8", help="torch, onnx or onnx-int8")
    ap.add_argument("--data", default="conll2003", help="dataset folder/name (its test split)")
    args = ap.parse_args()

    _, texts = test_texts(args.data)
    print(f"{len(texts)} test sentences as raw text | {describe()} | backend {args.backend}")
    rows = []
    for run in args.runs:
        r = share(run, texts, args.backend)
        rows.append(r)
        print(f"  {run:<28} {r['seconds']:6.2f} s in all, {r['model_s']:6.2f} s in model calls "
              f"({100 * r['model_share']:.0f}%), {r['around_ms_per_sentence']:.3f} ms a sentence around them")
    print(json.dumps({"bench": "path_share", "machine": machine(), "rows": rows}))


if __name__ == "__main__":
    main()
