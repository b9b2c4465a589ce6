"""Speed against accuracy: nerkit's models and backends, the HF pipeline and spaCy's CPU NER pipeline.

    python bench/speed_accuracy.py --runs runs/conll03-minilm [RUN ...] [--data conll2003] [--rounds 3]
        [--spacy runs/spacy-efficiency/model-best] [--spacy-processes 1 [2]] [--png bench/results/speed_accuracy.png]
    python bench/speed_accuracy.py --replot bench/results/speed_accuracy.txt   # the PNG from a results file

The 3,453 CoNLL test sentences, each its words joined by spaces, are the texts for every way: raw text in,
character spans out. Each way runs in its own fresh child process (its peak RSS is its own): the HF
token-classification pipeline on the first run's model; for every run, nerkit torch fp32 and onnxruntime
int8; spaCy's efficiency NER pipeline trained on the same training split (bench/spacy_ner.py holds the
recipe), in one process as spaCy does by default (one core busy; nerkit's rows use all the threads), and
with --spacy-processes 1 2 also with nlp.pipe(n_process=2). Per row: words/s and sentences/s of the timed pass, peak RSS, test F1 on whole documents as
conlleval scores it (nerkit's scorer; spaCy tags the gold tokens, each document one Doc) and span F1 of
the timed sentences' character spans against gold.

Speed is noisy on a shared machine (two runs of one architecture have differed by a quarter), so every way
runs --rounds times, the rounds one after another and the ways in alternating order within them (drift in
the machine's load falls on all ways alike). A row's words/s is the median of its rounds, its "x spaCy" the
median of the per-round ratios to spaCy's row of the same round, and the table shows each row's range.
Accuracy comes from the first round (it does not change between rounds).

A table, a PNG of F1 against words/s, and a last line of JSON:
{"spacy_words_per_s": ..., "rows": [{"name", "layers", "backend", "words_per_s", "sent_per_s", "test_f1", "rss_mb",
 "x_spacy", "words_per_s_rounds"}, ...]}
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from predict_speed import gold_char_spans, in_child, peak_rss_mb, run_nerkit, run_pipeline, span_f1


def run_spacy(model: str, texts: list[str], n_process: int, documents: list | None) -> dict:
    import spacy
    from spacy_ner import tag_documents

    t0 = time.perf_counter()
    nlp = spacy.load(model)
    load_s = time.perf_counter() - t0
    list(nlp.pipe(texts[:64]))  # warm-up
    t0 = time.perf_counter()
    docs = list(nlp.pipe(texts, batch_size=256, n_process=n_process))
    seconds = time.perf_counter() - t0
    spans = [[(e.label_, e.start_char, e.end_char) for e in d.ents] for d in docs]
    rss = peak_rss_mb()  # with n_process > 1, the parent's only
    out = {"seconds": seconds, "load_s": load_s, "rss_mb": rss, "spans": spans}
    if documents is not None:  # untimed, after the RSS reading
        out["doc_tags"] = tag_documents(nlp, documents)
    return out


def layers_of(model_dir: str) -> int | str:
    """Encoder layers of a transformer; 'conv KxW' or 'lstm KxW' (blocks x channels) for nerkit's
    convolutional and recurrent students."""
    config = json.loads((Path(model_dir) / "config.json").read_text())
    if config.get("model_type") == "nerkit-conv":
        if config.get("lstm_layers"):
            return f"lstm {config['lstm_layers']}x{config['hidden_size']}"
        return f"conv {config['num_layers']}x{config['hidden_size']}"
    return int(config.get("num_hidden_layers", 0))


def plot(rows: list[dict], path: Path, title: str) -> None:
    """F1 against words/s: one colour per model, a circle for torch and a triangle for int8 joined by a
    line, spaCy as a black square; dotted, the first target (spaCy's words/s at F1 88.5), dashed, the
    second (0.7x spaCy's words/s at F1 90). Rows without a test F1 (the HF pipeline) are left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    rows = [r for r in rows if r["test_f1"] is not None]
    fig, ax = plt.subplots(figsize=(8, 5))
    models: dict[str, list[dict]] = {}
    for r in rows:
        if r["backend"] != "spacy":
            models.setdefault(r["name"].removeprefix("nerkit ").rsplit(" ", 1)[0], []).append(r)
    colours = plt.get_cmap("tab10")
    for i, (model, rs) in enumerate(models.items()):
        rs = sorted(rs, key=lambda r: r["words_per_s"])
        ax.plot([r["words_per_s"] for r in rs], [r["test_f1"] for r in rs], color=colours(i % 10), lw=1, alpha=0.6)
        for r in rs:
            ax.scatter(r["words_per_s"], r["test_f1"], color=colours(i % 10), s=40, zorder=3,
                       marker="^" if r["backend"].startswith("onnx") else "o")
        ax.plot([], [], color=colours(i % 10), lw=3, label=f"{model} ({rs[0]['layers']}"
                f"{' layers' if isinstance(rs[0]['layers'], int) else ''})")
    spacy = [r for r in rows if r["backend"] == "spacy"]
    for r in spacy:
        ax.scatter(r["words_per_s"], r["test_f1"], color="black", marker="s", s=40, zorder=3, label="spaCy efficiency NER")
        ax.vlines(r["words_per_s"], 88.5, 100, color="grey", ls=":", lw=1)
        ax.hlines(88.5, r["words_per_s"], 1e9, color="grey", ls=":", lw=1)
        ax.vlines(0.7 * r["words_per_s"], 90.0, 100, color="grey", ls="--", lw=1)
        ax.hlines(90.0, 0.7 * r["words_per_s"], 1e9, color="grey", ls="--", lw=1)
    ax.scatter([], [], color="grey", marker="o", label="torch fp32")
    ax.scatter([], [], color="grey", marker="^", label="onnxruntime int8")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    lo, hi = min(r["words_per_s"] for r in rows), max(r["words_per_s"] for r in rows)
    f1s = [r["test_f1"] for r in rows]
    ax.set_xlim(lo / 1.3, hi * 1.3)
    ax.set_ylim(min(f1s) - 0.5, max(f1s) + 0.5)
    ax.set_xlabel("words per second (raw text in, character spans out; log scale)")
    ax.set_ylabel("test F1 (CoNLL-2003, whole documents)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def replot(results: Path, png: Path) -> int:
    """The PNG again from a results file's last line (the JSON), without running anything."""
    from machine import describe

    last = json.loads(results.read_text().strip().splitlines()[-1])
    plot(last["rows"], png, describe(last["machine"]))
    print(f"plot: {png}")
    return 0


@dataclass
class Way:
    """One row: a child-process function, called as fn(*before, documents, *after); `scored` ways get the
    test documents in the first round (an untimed F1 pass), the other rounds only time."""

    name: str
    layers: int | str
    backend: str
    fn: Callable[..., dict]
    before: tuple
    after: tuple = ()
    scored: bool = True
    rounds: list[dict] = field(default_factory=list)

    def run(self, documents: list, first: bool) -> dict:
        res = in_child(self.fn, *self.before, documents if first and self.scored else None, *self.after)
        self.rounds.append(res)
        return res


def build_ways(args, models: list[str], texts: list[str]) -> list[Way]:
    from nerkit.engine.predictor import TEXT_BUDGET

    ways: list[Way] = []
    if args.pipeline:
        ways.append(Way(f"HF pipeline ({Path(models[0]).parent.name})", layers_of(models[0]), "torch",
                        _pipeline, (models[0], texts, 32, args.device), scored=False))
    for m in models:
        name = Path(m).parent.name if Path(m).name == "model" else Path(m).name
        for backend in args.backends:
            ways.append(Way(f"nerkit {name} {backend}", layers_of(m), backend, run_nerkit,
                            (m, texts, TEXT_BUDGET.batch_size, backend),
                            (False, args.device, args.dtype if backend == "torch" else "fp32")))
    for n in args.spacy_processes if args.spacy != "none" else []:  # the first is the ratios' base
        name = "spaCy efficiency NER" + (f", {n} processes" if n > 1 else "")
        ways.append(Way(name, "cnn", "spacy", run_spacy, (args.spacy, texts, n)))
    return ways


def _pipeline(model_dir: str, texts: list[str], batch_size: int, device: str, _documents: None) -> dict:
    return run_pipeline(model_dir, texts, batch_size, device)


def summarise(ways: list[Way], n_words: int, n_texts: int, gold: list, gold_tags: list) -> list[dict]:
    """Per way: the median words/s of its rounds, its range, and the median per-round ratio to spaCy."""
    from nerkit.metrics import entity_report

    spacy = next((w for w in ways if w.backend == "spacy"), None)
    rows = []
    for w in ways:
        wps = [n_words / r["seconds"] for r in w.rounds]
        first = w.rounds[0]
        rows.append({
            "name": w.name, "layers": w.layers, "backend": w.backend,
            "words_per_s": round(statistics.median(wps), 1),
            "sent_per_s": round(statistics.median(n_texts / r["seconds"] for r in w.rounds), 1),
            "words_per_s_rounds": [round(v, 1) for v in wps],
            "x_spacy": round(statistics.median(s["seconds"] / r["seconds"] for r, s in zip(w.rounds, spacy.rounds)),
                             3) if spacy else None,
            "test_f1": round(100 * entity_report(gold_tags, first["doc_tags"]).micro.f1, 2) if "doc_tags" in first
            else None,
            "span_f1": round(100 * span_f1(gold, first["spans"]), 2),
            "rss_mb": round(max(r["rss_mb"] for r in w.rounds))})
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"\n{'way':<36}{'layers':>7}{'words/s':>10}{'range':>14}{'sent/s':>9}{'x spaCy':>9}{'test F1':>9}"
          f"{'span F1':>9}{'RSS MB':>8}")
    for r in rows:
        lo, hi = min(r["words_per_s_rounds"]), max(r["words_per_s_rounds"])
        ratio = f"{r['x_spacy']:.2f}" if r["x_spacy"] is not None else "-"
        print(f"{r['name']:<36}{r['layers']!s:>7}{r['words_per_s']:>10.0f}{f'{lo:.0f}-{hi:.0f}':>14}"
              f"{r['sent_per_s']:>9.1f}{ratio:>9}{r['test_f1'] if r['test_f1'] is not None else '-':>9}"
              f"{r['span_f1']:>9}{r['rss_mb']:>8}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", nargs="+", help="run folders (their model/) or model folders")
    ap.add_argument("--data", default="conll2003", help="dataset folder/name or a CoNLL file (its test split)")
    ap.add_argument("--spacy", default="runs/spacy-efficiency/model-best",
                    help="spaCy model from `python bench/spacy_ner.py train`; 'none' skips the row")
    ap.add_argument("--spacy-processes", nargs="+", type=int, default=[1], metavar="N",
                    help="spaCy rows, nlp.pipe(n_process=N) each; the first is the base of the ratios (default 1, "
                         "spaCy's own default: one core, where nerkit's rows use all)")
    ap.add_argument("--png", default="bench/results/speed_accuracy.png")
    ap.add_argument("--device", default="cpu", help="torch device of the pipeline and nerkit torch rows (cuda: GPU)")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"], help="torch rows' weights")
    ap.add_argument("--backends", nargs="+", default=["torch", "onnx-int8"], help="nerkit backends per run")
    ap.add_argument("--rounds", type=int, default=3, help="timed passes per way; rows give the median")
    ap.add_argument("--no-pipeline", dest="pipeline", action="store_false", help="leave out the HF pipeline row")
    ap.add_argument("--limit", type=int, default=0, help="first N sentences only (smoke runs)")
    ap.add_argument("--replot", metavar="RESULTS", help="only redraw --png from a results file's JSON line")
    args = ap.parse_args()
    if args.replot:
        return replot(Path(args.replot), Path(args.png))
    if not args.runs:
        ap.error("--runs: expected at least one run or model folder")
    if args.rounds < 1:
        ap.error("--rounds: expected at least 1")
    if args.spacy != "none" and not Path(args.spacy).is_dir():
        print(f"no spaCy model at {args.spacy}: run `python bench/spacy_ner.py train` first "
              "(or pass --spacy none)", file=sys.stderr)
        return 2

    from machine import describe, machine

    from nerkit.corpus import find_split_file, read_conll, resolve_data_dir
    from nerkit.export import export_onnx
    from nerkit.folder import FP32_FILE, INT8_FILE, ONNX_DIR, ModelFolder

    data = args.data if Path(args.data).is_file() else str(find_split_file(resolve_data_dir(args.data), "test"))
    corpus = read_conll(data)
    sents = corpus.sentences[: args.limit] if args.limit else corpus.sentences
    texts, gold = map(list, zip(*(gold_char_spans(s.words, s.tags) for s in sents)))
    documents = [[s.words for s in d.sentences] for d in corpus.documents] if not args.limit else [
        [s.words for s in sents]]
    n_words = sum(len(s.words) for s in sents)
    models = []
    for r in args.runs:
        p = Path(r) / "model" if (Path(r) / "model" / "nerkit.json").is_file() else Path(r)
        models.append(str(ModelFolder(p).path))
    for m in models if any(b.startswith("onnx") for b in args.backends) else []:
        if not (Path(m) / ONNX_DIR / FP32_FILE).is_file() or not (Path(m) / ONNX_DIR / INT8_FILE).is_file():
            print(f"exporting {m} to ONNX (fp32 + int8) ...", flush=True)
            export_onnx(m, int8=True)
    print(f"{len(texts)} sentences ({n_words} words) from {data}, each its own text | {describe()} | "
          f"device {args.device}, torch rows in {args.dtype} | {args.rounds} round(s)", flush=True)

    ways = build_ways(args, models, list(texts))
    for k in range(args.rounds):
        for w in ways if k % 2 == 0 else ways[::-1]:
            res = w.run(documents, first=k == 0)
            print(f"  round {k + 1}  {w.name:<34} {n_words / res['seconds']:>9.0f} words/s  "
                  f"RSS {res['rss_mb']:.0f} MB", flush=True)
    rows = summarise(ways, n_words, len(texts), list(gold), [s.tags for s in sents])
    print_table(rows)
    plot(rows, Path(args.png), describe())
    print(f"\nplot: {args.png}")
    spacy_wps = next((r["words_per_s"] for r in rows if r["backend"] == "spacy"), None)
    print(json.dumps({"bench": "speed_accuracy", "machine": machine(), "sentences": len(texts), "words": n_words,
                      "rounds": args.rounds, "spacy_words_per_s": spacy_wps,
                      "rows": [{k: r[k] for k in ("name", "layers", "backend", "words_per_s", "sent_per_s",
                                                  "test_f1", "span_f1", "rss_mb", "x_spacy", "words_per_s_rounds")}
                               for r in rows]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
