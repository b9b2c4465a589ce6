"""A training run's figures as the README quotes them, from its metrics.json (and the machine that reads
it, which for a run just finished is the machine that trained it):

    python bench/run_summary.py runs/conll03-minilm > bench/results/conll03-minilm.txt

Prints validation and test P/R/F1 (conlleval and strict), test per type with support, the validation F1
after each epoch, the training time and the overrides from its config.yaml. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from machine import describe, machine


def pct(x: float) -> str:
    return f"{100 * x:.2f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", help="a run folder (with metrics.json)")
    args = ap.parse_args()
    run = Path(args.run)
    m = json.loads((run / "metrics.json").read_text())
    print(f"run {run} | best epoch {m['best_epoch']} | training {m['train_seconds']:.0f} s "
          f"({m['train_seconds'] / 60:.1f} min) on {m['device']}, {m['processes']} process(es) | read on {describe()}")
    print("\n| split | precision | recall | F1 (conlleval) | F1 (strict IOB2) |\n| --- | --- | --- | --- | --- |")
    splits = [s for s in ("validation", "test") if s in m]
    for s in splits:
        c, st = m[s]["conlleval"]["micro"], m[s]["strict"]["micro"]
        print(f"| {s} | {pct(c['precision'])} | {pct(c['recall'])} | {pct(c['f1'])} | {pct(st['f1'])} |")
    last = splits[-1]
    print(f"\n| {last}, per type | precision | recall | F1 | support |\n| --- | --- | --- | --- | --- |")
    for typ, r in sorted(m[last]["conlleval"]["per_type"].items()):
        print(f"| {typ} | {pct(r['precision'])} | {pct(r['recall'])} | {pct(r['f1'])} | {r['support']} |")
    curve = [h.get("validation_f1") for h in m["history"]]
    print(f"\nvalidation F1 after each epoch: {', '.join(f'{x:.2f}' for x in curve if x is not None)}")
    pads = [h["padding_fraction"] for h in m["history"]]
    print(f"padding per epoch: {', '.join(f'{100 * p:.2f}%' for p in pads)}; "
          f"seconds per epoch: {', '.join(str(round(h['seconds'])) for h in m['history'])}")
    print(json.dumps({"bench": "run_summary", "run": str(run), "machine": machine(), "train_seconds": m["train_seconds"],
                      "best_epoch": m["best_epoch"], "validation_f1_by_epoch": curve, "padding_by_epoch": pads,
                      **{f"{s}_f1": round(100 * m[s]["conlleval"]["micro"]["f1"], 2) for s in splits}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
