"""Lanes: an ONNX model's calls one at a time on all threads, against two at once on half the threads each.

    python bench/lanes.py --runs runs/conll03-minilm runs/student-3l-ens [--lanes 1 2] [--rounds 3]

The 3,453 CoNLL test sentences as raw text, as in bench/speed_accuracy.py. For every run and lane count,
in its own fresh child process: the tagger's throughput over all texts (words/s, raw text in, character
spans out), and the latency of a lone text (the first --latency-texts sentences tagged one call each, the
median and 90th percentile), which is what a server answering one request at a time sees. Rounds as in
speed_accuracy.py: one after another, the ways in alternating order; rows give medians, the "x" column the
median per-round ratio to the first --lanes value. Spans must be the same with every lane count. Prints
the machine, a table and a last line of JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from machine import describe, machine
from predict_speed import in_child, test_texts


def run_lanes(model: str, texts: list[str], lanes: int, latency_texts: int) -> dict:
    import nerkit

    tagger = nerkit.load(model, backend="onnx-int8", lanes=lanes)
    list(tagger.pipe(texts[:64]))  # warm-up
    t0 = time.perf_counter()
    spans = [[(s.label, s.start, s.end) for s in doc] for doc in tagger.pipe(texts)]
    seconds = time.perf_counter() - t0
    waits = []
    for text in texts[:latency_texts]:
        t1 = time.perf_counter()
        tagger(text)
        waits.append(1000 * (time.perf_counter() - t1))
    waits.sort()
    return {"seconds": seconds, "spans": spans, "lanes": tagger.predictor.backend.lanes,
            "p50_ms": statistics.median(waits), "p90_ms": waits[int(0.9 * (len(waits) - 1))]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", nargs="+", required=True, help="run or model folders with an int8 export")
    ap.add_argument("--lanes", nargs="+", type=int, default=[1, 2], help="lane counts; the first is the base")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--latency-texts", type=int, default=300, help="texts tagged one call each")
    ap.add_argument("--data", default="conll2003", help="dataset folder/name (its test split)")
    args = ap.parse_args()
    from nerkit.folder import ModelFolder

    sents, texts = test_texts(args.data)
    n_words = sum(len(s.words) for s in sents)
    models = [str(ModelFolder(r).path) for r in args.runs]
    print(f"{len(texts)} test sentences ({n_words} words) as raw text | {describe()} | onnx-int8 | "
          f"{args.rounds} round(s)", flush=True)
    ways = [(m, n) for m in models for n in args.lanes]
    results: dict[tuple[str, int], list[dict]] = {w: [] for w in ways}
    for k in range(args.rounds):
        for m, n in ways if k % 2 == 0 else ways[::-1]:
            r = in_child(run_lanes, m, texts, n, args.latency_texts)
            results[(m, n)].append(r)
            print(f"  round {k + 1}  {m:<40} lanes {r['lanes']}  {n_words / r['seconds']:>8.0f} words/s  "
                  f"lone text p50 {r['p50_ms']:.2f} ms", flush=True)
    rows = []
    for m, n in ways:
        rs, base = results[(m, n)], results[(m, args.lanes[0])]
        same = all(r["spans"] == base[0]["spans"] for r in rs)
        rows.append({"run": m, "lanes": rs[0]["lanes"], "words_per_s": round(statistics.median(n_words / r["seconds"] for r in rs)),
                     "x_base": round(statistics.median(b["seconds"] / r["seconds"] for r, b in zip(rs, base)), 3),
                     "p50_ms": round(statistics.median(r["p50_ms"] for r in rs), 2),
                     "p90_ms": round(statistics.median(r["p90_ms"] for r in rs), 2), "same_spans": same})
    print(f"\n{'run':<40}{'lanes':>6}{'words/s':>10}{'x base':>8}{'lone p50 ms':>13}{'p90 ms':>8}  same spans")
    for r in rows:
        print(f"{r['run']:<40}{r['lanes']:>6}{r['words_per_s']:>10}{r['x_base']:>8.2f}{r['p50_ms']:>13.2f}"
              f"{r['p90_ms']:>8.2f}  {r['same_spans']}")
    print(json.dumps({"bench": "lanes", "machine": machine(), "rounds": args.rounds, "rows": rows}))


if __name__ == "__main__":
    main()
