"""Ablation of nerkit's accuracy levers on CoNLL-2003 with the default encoder, over several seeds.

    python bench/ablation.py [--seeds 42 43] [--rows plain context shapes constrained schedule all]
                             [--root runs/ablation] [--config configs/conll03-minilm.toml]
    python bench/ablation.py --rows no-context no-constrained      # leave-one-out rows, opt-in

Rows: the plain recipe's modelling choices on nerkit's trainer (sentence at a time, first sub-word,
argmax, 3 epochs at lr 5e-5 without warm-up or weight decay as in run_ner's defaults, no shape embedding,
batches of 32, no weight averaging; bench/train_speed.py compares the trainers), each lever added to it
alone with the values the config gives it (LEVERS), then all together (the config as it is). Opt-in
leave-one-out rows (`no-LEVER`) take one lever back out of the config, which says what it adds on top of
the others. The `constrained` row needs no training: it decodes the plain row's models with Viterbi;
`no-constrained` decodes the `all` row's models with argmax (REUSED). Every (row, seed) run lives in
ROOT/ROW-sSEED; one whose metrics.json exists is reused, so the table can be filled over several sessions,
unless its config.yaml differs from what the row means now (the script then stops and names the settings);
--report trains nothing and tables the runs that exist. Runs are sequential (one training at a time on a
small CPU). The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from machine import machine

PLAIN = {"model.shapes": "off", "data.context": "0", "data.jitter": "false", "decode.constrained": "false",
         "train.lr": "5e-5", "train.warmup_ratio": "0", "train.weight_decay": "0", "train.head_lr": "0",
         "train.epochs": "3", "train.max_tokens": "0", "train.batch_size": "32", "train.ema": "0"}
# Each lever's keys; a lever row takes their values from the config, so the table follows the default.
LEVERS: dict[str, list[str]] = {
    "context": ["data.context", "data.jitter", "train.max_tokens"],
    "shapes": ["model.shapes"],
    "schedule": ["train.lr", "train.warmup_ratio", "train.weight_decay", "train.head_lr", "train.epochs",
                 "train.ema"],
}
ROW_NAMES = ["plain", "context", "shapes", "constrained", "schedule", "all"]
LEAVE_OUT = ["no-context", "no-shapes", "no-constrained", "no-schedule"]
REUSED = {"constrained": "plain", "no-constrained": "all"}  # rows that re-decode another row's models
IGNORED = {"output", "train.progress", "train.log_every", "train.seed"}  # do not change what is learned


def row_overrides(row: str, config: str) -> dict[str, str]:
    """The --key value pairs that turn the config into this row (a REUSED row trains as its source)."""
    from nerkit.config import load_config

    if row in REUSED:
        return row_overrides(REUSED[row], config)
    if row == "all":
        return {}
    if row == "plain":
        return dict(PLAIN)
    if row.startswith("no-"):
        return {k: PLAIN[k] for k in LEVERS[row[3:]]}
    flat = _flat(load_config(config).to_dict())
    return {**PLAIN, **{k: str(flat[k]).lower() if isinstance(flat[k], bool) else str(flat[k])
                        for k in LEVERS[row]}}


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def stale_keys(out: Path, config: str, overrides: dict[str, str], seed: int) -> list[str]:
    """Settings where an existing run differs from what this row means now (e.g. after the default changed)."""
    from nerkit.config import load_config

    want = _flat(load_config(config, [*overrides.items(), ("train.seed", str(seed))]).to_dict())
    have = _flat(load_config(out / "config.yaml").to_dict())
    return [f"{k}: {have[k]} != {want[k]}" for k in want if k not in IGNORED and have.get(k) != want[k]]


def run(config: str, out: Path, overrides: dict[str, str], seed: int, train: bool = True) -> dict | None:
    metrics = out / "metrics.json"
    if metrics.is_file():
        stale = stale_keys(out, config, overrides, seed)
        if stale:
            msg = f"{out}: trained with other settings than this row now has ({'; '.join(stale)})"
            if train:
                sys.exit(msg + "; move it aside to retrain")
            print("skipped:", msg, file=sys.stderr)
            return None
    elif train:
        cmd = [sys.executable, "-m", "nerkit.cli", "train", "--config", config, "--output", str(out),
               "--train.seed", str(seed), "--train.progress", "false"]
        for k, v in overrides.items():
            cmd += [f"--{k}", v]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    else:
        return None
    return json.loads(metrics.read_text())


def redecoded_scores(model_dir: Path, data: str, constrained: bool) -> dict[str, float]:
    """Re-decode a trained model's validation and test predictions (cached beside the run)."""
    cache = model_dir.parent / ("constrained.json" if constrained else "argmax.json")
    if cache.is_file():
        return json.loads(cache.read_text())
    scores = _redecoded_scores(model_dir, data, constrained)
    cache.write_text(json.dumps(scores) + "\n")
    return scores


def _redecoded_scores(model_dir: Path, data: str, constrained: bool) -> dict[str, float]:
    from nerkit.corpus import load_splits, resolve_data_dir
    from nerkit.engine.predictor import Predictor
    from nerkit.evaluation import evaluate

    predictor = Predictor.from_dir(model_dir, device="cpu", constrained=constrained)
    splits = load_splits(resolve_data_dir(data))
    return {name: 100 * evaluate(predictor, c).conlleval.micro.f1 for name, c in splits.items()}


def _shown(row: str, overrides: dict[str, str]) -> str:
    """The table's short form: plain spelled out once, each lever as what it adds."""
    if row == "plain":
        return "`" + " ".join(f"--{k} {v}" for k, v in overrides.items()) + "`"
    if row == "constrained":
        return "the plain row's models, decoded with Viterbi"
    if row == "all":
        return "(config as is)"
    if row == "no-constrained":
        return "the all row's models, decoded with argmax"
    base, lever = ("all", row[3:]) if row.startswith("no-") else ("plain", row)
    return f"{base} + `" + " ".join(f"--{k} {overrides[k]}" for k in LEVERS[lever]) + "`"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/conll03-minilm.toml")
    ap.add_argument("--data", default="conll2003")
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 43])
    ap.add_argument("--rows", nargs="+", default=ROW_NAMES, choices=ROW_NAMES + LEAVE_OUT)
    ap.add_argument("--root", default="runs/ablation")
    ap.add_argument("--report", action="store_true", help="train nothing: table the runs that exist")
    args = ap.parse_args()

    table = {}
    for row in args.rows:
        vals, tests, secs, seeds = [], [], [], []
        overrides = row_overrides(row, args.config)
        for seed in args.seeds:
            out = Path(args.root) / f"{REUSED.get(row, row)}-s{seed}"
            m = run(args.config, out, overrides, seed, train=not args.report)
            if m is None:
                continue
            seeds.append(seed)
            if row in REUSED:
                f1 = redecoded_scores(out / "model", args.data, constrained=row == "constrained")
                vals.append(f1["validation"])
                tests.append(f1["test"])
            else:
                vals.append(100 * m["validation"]["conlleval"]["micro"]["f1"])
                tests.append(100 * m["test"]["conlleval"]["micro"]["f1"])
            secs.append(m["train_seconds"])
        if not seeds:
            continue
        table[row] = {"seeds": seeds, "validation": vals, "test": tests, "train_seconds": secs,
                      "overrides": " ".join(f"--{k} {v}" for k, v in overrides.items()) or "(config as is)",
                      "shown": _shown(row, overrides)}

    def cell(xs: list[float]) -> str:
        return f"{statistics.mean(xs):.2f} ± {statistics.pstdev(xs):.2f}" if len(xs) > 1 else f"{xs[0]:.2f}"

    print(f"\n| row | validation F1 | test F1 | train min | seeds | overrides on {args.config} |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row, r in table.items():
        print(f"| {row} | {cell(r['validation'])} | {cell(r['test'])} | {statistics.mean(r['train_seconds']) / 60:.1f} "
              f"| {' '.join(map(str, r['seeds']))} | {r.pop('shown')} |")
    print(json.dumps({"bench": "ablation", "machine": machine(), "seeds": args.seeds, "rows": table}))


if __name__ == "__main__":
    main()
