"""The leaner ONNX engine, piece by piece: the unfused and the fused graph (onnxruntime.transformers'
Attention, SkipLayerNorm, BiasGelu fusions), each in fp32 and int8, each tagging groups of CoNLL test
sentences (as the server's micro-batches see them) with calls priced at TEXT_BUDGET's default and at the
graph's own call cost measured by `nerkit export`.

    python bench/onnx_engine.py [--model runs/conll03-minilm/model] [--data conll2003] [--sentences 600]
        [--groups 10 20] [--validation FILE]

The model folder is copied to a temporary folder and exported there twice (runs/ is never written to);
each export runs its own checks (validation F1 against torch: --validation FILE makes them shorter).
Per row: ms per group and the conlleval F1 of the timed sentences. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
import time
from pathlib import Path

from machine import describe, machine

import nerkit
import nerkit.export
from nerkit.corpus import find_split_file, read_conll, resolve_data_dir
from nerkit.engine.predictor import TEXT_BUDGET
from nerkit.folder import FP32_FILE, INT8_FILE, ONNX_DIR
from nerkit.metrics import entity_report


def export_copy(model: Path, into: Path, fused: bool, validation: str | None) -> Path:
    d = into / ("fused" if fused else "unfused")
    shutil.copytree(model, d, ignore=shutil.ignore_patterns(ONNX_DIR))
    keep = nerkit.export.FUSED_TYPES
    nerkit.export.FUSED_TYPES = keep if fused else frozenset()
    try:
        nerkit.export.export_onnx(d, int8=True, validation=validation)
    finally:
        nerkit.export.FUSED_TYPES = keep
    return d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="runs/conll03-minilm/model")
    ap.add_argument("--data", default="conll2003")
    ap.add_argument("--sentences", type=int, default=600)
    ap.add_argument("--groups", type=int, nargs="+", default=[10, 20])
    ap.add_argument("--validation", help="CoNLL file for the exports' F1 checks (default: the model's own)")
    args = ap.parse_args()
    data = args.data if Path(args.data).is_file() else str(find_split_file(resolve_data_dir(args.data), "test"))
    sents = read_conll(data).sentences
    random.Random(0).shuffle(sents)
    sents = sents[: args.sentences]
    texts, gold = [" ".join(s.words) for s in sents], [s.tags for s in sents]
    print(f"{len(sents)} sentences from {data} | {describe()}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="onnx_engine.") as tmp:
        for fused in (False, True):
            d = export_copy(Path(args.model), Path(tmp), fused, args.validation)
            info = json.loads((d / ONNX_DIR / "export.json").read_text())
            print(f"{d.name}: fused {info['fusions'] or 'nothing'} | validation F1 {info['f1']} | "
                  f"call cost {info['call_cost']}", flush=True)
            for backend, file in (("onnx", FP32_FILE), ("onnx-int8", INT8_FILE)):
                tagger = nerkit.load(str(d), backend=backend)
                tags = tagger.predictor.predict([[s.words] for s in sents]).tags
                f1 = 100 * entity_report(gold, tags).micro.f1
                measured = info["call_cost"].get(file)
                for cost in dict.fromkeys((TEXT_BUDGET.call_cost, measured or TEXT_BUDGET.call_cost)):
                    tagger.predictor = tagger.predictor.with_budget(call_cost=cost)
                    for n in args.groups:
                        groups = [texts[i : i + n] for i in range(0, len(texts), n)]
                        tagger.tag_texts(groups[0], batch_size=32)  # warm-up
                        t0 = time.perf_counter()
                        for g in groups:
                            tagger.tag_texts(g, batch_size=32)
                        ms = 1000 * (time.perf_counter() - t0) / len(groups)
                        row = {"graph": d.name, "backend": backend, "call_cost": cost, "group": n,
                               "ms_per_group": round(ms, 2), "f1": round(f1, 2)}
                        rows.append(row)
                        print(f"{d.name:8s} {backend:10s} call_cost {cost:5d} groups of {n:3d}: {ms:8.2f} ms per "
                              f"group | F1 {f1:.2f}", flush=True)
    print(json.dumps({"bench": "onnx_engine", "machine": machine(), "sentences": len(sents), "rows": rows}))


if __name__ == "__main__":
    main()
