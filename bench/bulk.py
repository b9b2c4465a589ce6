"""Bulk tagging: one `nerkit predict` process against `nerkit predict --ray` with 1 and 2 single-thread
actors, on the same JSON Lines corpus, on this machine.

    python bench/bulk.py [--model runs/conll03-minilm/model] [--data conll2003] [--docs 20000]

The corpus: --docs short documents, each --sentences sentences of one CoNLL test document in shuffled
order (words joined by spaces), as {"id": N, "text": ...} lines. Each way runs as its own `nerkit
predict` command (a child process; Ray's start-up, the model loads and the writing included), and its
peak memory is the largest total RSS of its process tree (for Ray: the driver, Ray's own processes and
the actors), sampled every 0.1 s. Words are counted by the tagger's own splitter.

Ray's overhead is its wall time beyond the busiest actor's time in blocks (reading, tagging, writing):
Ray's start, planning, actor start-up and model loads, scheduling. The actors' words/s are per busy
second of one single-thread actor, i.e. per core: the figure that sizes a cluster. The Ray output is
checked against the single process's, record for record.

Writes the report to bench/results/bulk.txt (--out) and prints it; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def build_corpus(data: str, n_docs: int, sentences: int, seed: int, path: Path) -> tuple[int, int]:
    """Write the corpus; return (documents, words as the tagger splits them)."""
    from nerkit.corpus import find_split_file, read_conll, resolve_data_dir
    from nerkit.words import split_sentences

    test = data if Path(data).is_file() else str(find_split_file(resolve_data_dir(data), "test"))
    docs = [d.sentences for d in read_conll(test).documents if d.sentences]
    rng = random.Random(seed)
    words = 0
    with path.open("w", encoding="utf-8") as f:
        for i in range(n_docs):
            sents = docs[i % len(docs)]
            chosen = rng.sample(sents, min(sentences, len(sents)))
            text = " ".join(" ".join(s.words) for s in chosen)
            words += sum(len(s) for s in split_sentences(text))
            f.write(json.dumps({"id": i, "text": text}, ensure_ascii=False) + "\n")
    return n_docs, words


def run_measured(cmd: list[str]) -> dict:
    """Run cmd; its wall time and the peak total RSS of its process tree."""
    import psutil

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    root, peak, peak_one = psutil.Process(proc.pid), 0, 0
    while proc.poll() is None:
        total = 0
        try:
            for p in [root, *root.children(recursive=True)]:
                try:
                    rss = p.memory_info().rss
                except psutil.Error:
                    continue
                total += rss
                peak_one = max(peak_one, rss)
        except psutil.Error:
            pass
        peak = max(peak, total)
        time.sleep(0.1)
    seconds = time.perf_counter() - t0
    err = proc.stderr.read() if proc.stderr else ""
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-3000:]}")
    return {"seconds": seconds, "peak_mb": peak / 2**20, "peak_process_mb": peak_one / 2**20, "stderr": err}


def records(files: list[Path]) -> list[dict]:
    return [json.loads(line) for f in files for line in f.read_text(encoding="utf-8").splitlines()]


def compare(got: list[dict], want: list[dict]) -> dict:
    """Record for record: identical, or identical but for the span scores. The single process runs 2 torch
    threads and each actor 1, and a matrix product summed in another order can move a probability in its
    4th decimal (tests/test_bulk.py compares at one thread count, where the records are identical)."""
    def strip(r: dict) -> dict:
        return {**r, "spans": [{k: v for k, v in sp.items() if k != "score"} for sp in r["spans"]]}

    diffs = [abs(a["score"] - b["score"]) for g, w in zip(got, want) if len(g["spans"]) == len(w["spans"])
             for a, b in zip(g["spans"], w["spans"])]
    return {"records": len(got), "identical": sum(g == w for g, w in zip(got, want)),
            "same_but_scores": len(got) == len(want) and all(strip(g) == strip(w) for g, w in zip(got, want)),
            "max_score_diff": round(max(diffs, default=0.0), 4)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="runs/conll03-minilm/model")
    ap.add_argument("--data", default="conll2003", help="a CoNLL file, or a dataset folder/name (its test split)")
    ap.add_argument("--docs", type=int, default=20000, help="documents in the corpus")
    ap.add_argument("--sentences", type=int, default=2, help="sentences per document")
    ap.add_argument("--block-rows", type=int, default=250, help="documents per block (Ray's unit of work)")
    ap.add_argument("--backend", default="torch", choices=["torch", "onnx-int8"])
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--out", default="bench/results/bulk.txt", help="the report file")
    args = ap.parse_args()

    sys.path.insert(0, str(Path(__file__).parent))
    from machine import describe, machine

    from nerkit.atomic import write_text
    from nerkit.folder import ModelFolder

    model = str(ModelFolder(args.model).path)
    if args.backend == "onnx-int8":
        from nerkit.export import export_onnx
        from nerkit.folder import INT8_FILE, ONNX_DIR

        if not (Path(model) / ONNX_DIR / INT8_FILE).is_file():
            print(f"exporting {model} to ONNX (fp32 + int8) ...", flush=True)
            export_onnx(model, int8=True)
    nerkit = str(Path(sys.executable).with_name("nerkit"))
    report: list[str] = []

    def say(line: str = "") -> None:
        print(line, flush=True)
        report.append(line)

    with tempfile.TemporaryDirectory(prefix="nerkit-bulk-") as tmp:
        corpus = Path(tmp) / "docs.jsonl"
        n_docs, n_words = build_corpus(args.data, args.docs, args.sentences, args.seed, corpus)
        say(f"bulk tagging | model {model} | backend {args.backend} | {n_docs} documents of {args.sentences} "
            f"shuffled CoNLL test sentences, {n_words} words, blocks of {args.block_rows} | {describe()}")
        common = ["-i", str(corpus), "--backend", args.backend, "--block-rows", str(args.block_rows), "--quiet"]
        runs: dict[str, dict] = {}
        single = Path(tmp) / "single.jsonl"
        runs["single"] = run_measured([nerkit, "predict", model, *common, "-o", str(single)])
        want = records([single])
        for actors in (1, 2):
            out = Path(tmp) / f"ray{actors}"
            r = run_measured([nerkit, "predict", model, *common, "--ray", "-o", str(out), "--actors", str(actors),
                              "--cpus-per-actor", "1"])
            r["summary"] = json.loads((out / "_nerkit_summary.json").read_text())
            r["compare"] = compare(records(sorted(out.glob("part-*.jsonl"))), want)
            r["equal"] = r["compare"]["same_but_scores"]
            runs[f"ray_{actors}"] = r
        say()
        say(f"{'way':<26}{'wall s':>8}{'docs/s':>9}{'words/s':>10}{'x single':>9}{'overhead s':>11}"
            f"{'peak MB':>9}{'largest MB':>11}{'same spans':>11}")
        for name, r in runs.items():
            r["docs_per_s"], r["words_per_s"] = n_docs / r["seconds"], n_words / r["seconds"]
            s = r.get("summary")
            r["overhead_s"] = r["seconds"] - max(a["seconds"] for a in s["actors"]) if s else None
            label = "one process, 2 threads" if name == "single" else f"Ray, {name[-1]} x 1-thread actor"
            say(f"{label:<26}{r['seconds']:>8.1f}{r['docs_per_s']:>9.1f}{r['words_per_s']:>10.0f}"
                f"{r['words_per_s'] / runs['single']['words_per_s']:>9.2f}"
                f"{'' if s is None else format(r['overhead_s'], '.1f'):>11}{r['peak_mb']:>9.0f}"
                f"{r['peak_process_mb']:>11.0f}{str(r.get('equal', '-')):>11}")
        say()
        for name in ("ray_1", "ray_2"):
            for a in runs[name]["summary"]["actors"]:
                say(f"{name} actor {a['actor']}: {a['blocks']} blocks, {a['documents']} documents, "
                    f"{a['words_per_s']:.0f} words/s per busy second (one core)")
        for name in ("ray_1", "ray_2"):
            c = runs[name]["compare"]
            say(f"{name} against the single process: {c['records']} records, {c['identical']} identical to the "
                f"byte, every record's documents and spans the same but for scores: {c['same_but_scores']} "
                f"(largest score difference {c['max_score_diff']})")
        per_core = [a["words_per_s"] for n in ("ray_1", "ray_2") for a in runs[n]["summary"]["actors"]]
        figures = {
            "bench": "bulk",
            "machine": machine(),
            "backend": args.backend,
            "documents": n_docs,
            "words": n_words,
            "block_rows": args.block_rows,
            "seconds": {k: round(r["seconds"], 1) for k, r in runs.items()},
            "docs_per_s": {k: round(r["docs_per_s"], 1) for k, r in runs.items()},
            "words_per_s": {k: round(r["words_per_s"]) for k, r in runs.items()},
            "ray2_vs_single": round(runs["ray_2"]["words_per_s"] / runs["single"]["words_per_s"], 2),
            "ray_overhead_s": {k: round(runs[k]["overhead_s"], 1) for k in ("ray_1", "ray_2")},
            "peak_mb": {k: round(r["peak_mb"]) for k, r in runs.items()},
            "peak_process_mb": {k: round(r["peak_process_mb"]) for k, r in runs.items()},
            "actor_words_per_core_s": round(sum(per_core) / len(per_core)),
            "ray_equals_single": all(runs[k]["equal"] for k in ("ray_1", "ray_2")),
            "compare": {k: runs[k]["compare"] for k in ("ray_1", "ray_2")},
        }
        say(f"Ray with 2 single-thread actors: {figures['ray2_vs_single']:.2f}x the single process's words/s "
            f"(target 0.9); one actor core tags {figures['actor_words_per_core_s']} words/s while busy; "
            f"Ray's records equal the single process's (spans; scores within rounding): {figures['ray_equals_single']}")
        say(json.dumps(figures))
    if args.out:
        os.makedirs(Path(args.out).parent, exist_ok=True)
        write_text(args.out, "\n".join(report) + "\n")
    return 0 if figures["ray_equals_single"] else 1


if __name__ == "__main__":
    sys.exit(main())
