"""Priced inference batches vs one padded batch: groups of CoNLL test sentences, as the server's
micro-batches see them, tagged with the budget's call_cost 0 (pad all to the longest) and TEXT_BUDGET's.

    python bench/call_cost.py [--model runs/conll03-minilm/model] [--groups 10 20] [--sentences 600]

The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import random
import time

from machine import describe, machine

import nerkit
from nerkit.corpus import find_split_file, read_conll, resolve_data_dir
from nerkit.engine.predictor import TEXT_BUDGET

CALL_COST_TOKENS = TEXT_BUDGET.call_cost


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="runs/conll03-minilm/model")
    ap.add_argument("--data", default="conll2003")
    ap.add_argument("--groups", type=int, nargs="+", default=[10, 20])
    ap.add_argument("--sentences", type=int, default=600)
    args = ap.parse_args()
    path = find_split_file(resolve_data_dir(args.data), "test")
    sents = [" ".join(s.words) for s in read_conll(path).sentences]
    random.Random(0).shuffle(sents)
    sents = sents[: args.sentences]
    tagger = nerkit.load(args.model, device="cpu")
    print(describe(), flush=True)
    result = {}
    for n in args.groups:
        groups = [sents[i : i + n] for i in range(0, len(sents), n)]
        ms = {}
        for cost in (0, CALL_COST_TOKENS):
            tagger.predictor = tagger.predictor.with_budget(call_cost=cost)
            tagger.tag_texts(groups[0], batch_size=32)  # warm-up
            t0 = time.perf_counter()
            for g in groups:
                tagger.tag_texts(g, batch_size=32)
            ms[cost] = 1000 * (time.perf_counter() - t0) / len(groups)
            print(f"groups of {n:3d}, call_cost {cost:3d}: {ms[cost]:7.1f} ms per group", flush=True)
        result[str(n)] = {"ms_padded": round(ms[0], 1), "ms_priced": round(ms[CALL_COST_TOKENS], 1),
                          "speedup": round(ms[0] / ms[CALL_COST_TOKENS], 2)}
    print(json.dumps({"bench": "call_cost", "machine": machine(), "call_cost": CALL_COST_TOKENS, "groups": result}))


if __name__ == "__main__":
    main()
