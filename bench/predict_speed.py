"""Tagging speed: transformers.pipeline vs nerkit (torch) vs nerkit (onnxruntime int8), same model.

    python bench/predict_speed.py [--model runs/conll03-minilm/model] [--data conll2003]

Each CoNLL test sentence, its words joined by spaces, is one text for all three ways. Each way runs in
its own child process (spawned fresh), so that its peak RSS (VmHWM) is its own: model load, warm-up and
the timed run. Throughput counts only the timed run: raw text in, character spans out.

Accuracy, so that speed is not bought with errors:
- entity F1 of each way's spans against the gold spans (sentence by sentence, as timed);
- nerkit's test F1 in fp32 and int8 as `nerkit evaluate` computes it (whole documents, so document
  context applies), and the int8 loss;
- span agreement with the pipeline wherever the pipeline is right. The pipeline loads only the standard
  Hugging Face weights and so runs WITHOUT nerkit's word-shape embedding: on a folder trained with it, it
  is a weaker model. To separate decoding from weights, nerkit is also run with the shape embedding off
  (the pipeline's exact weights), untimed.

The last line of output is one JSON object with the figures and ratios.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

Spans = list[tuple[str, int, int]]  # (label, start, end) per text


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -------------------------------------------------------------------------------- children (one per way)

def run_pipeline(model_dir: str, texts: list[str], batch_size: int, device: str = "cpu") -> dict:
    import warnings

    from transformers import pipeline
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    nlp = pipeline("token-classification", model=model_dir, aggregation_strategy="simple",
                   device=-1 if device == "cpu" else device)
    load_s = time.perf_counter() - t0
    nlp(texts[:64], batch_size=batch_size)  # warm-up
    t0 = time.perf_counter()
    out = nlp(texts, batch_size=batch_size)
    seconds = time.perf_counter() - t0
    spans = [[(d["entity_group"], int(d["start"]), int(d["end"])) for d in doc] for doc in out]
    return {"seconds": seconds, "load_s": load_s, "rss_mb": peak_rss_mb(), "spans": spans}


def run_nerkit(model_dir: str, texts: list[str], batch_size: int, backend: str,
               documents: list | None = None, no_shapes: bool = False, device: str = "cpu",
               dtype: str = "fp32") -> dict:
    import nerkit

    t0 = time.perf_counter()
    tagger = nerkit.load(model_dir, backend=backend, device=device)
    if dtype != "fp32":  # half-precision inference (a GPU check): the torch model cast as a whole
        import torch

        tagger.predictor.backend.model.to({"bf16": torch.bfloat16, "fp16": torch.float16}[dtype])
    load_s = time.perf_counter() - t0
    list(tagger.pipe(texts[:64], batch_size=batch_size))  # warm-up
    t0 = time.perf_counter()
    out = list(tagger.pipe(texts, batch_size=batch_size))
    seconds = time.perf_counter() - t0
    result = {"seconds": seconds, "load_s": load_s, "rss_mb": peak_rss_mb(),
              "spans": [[(s.label, s.start, s.end) for s in doc] for doc in out]}
    # Untimed, after the RSS reading: the test set as documents, through the same Predictor under the
    # budget `nerkit evaluate` uses (its F1) ...
    if documents is not None:
        from dataclasses import asdict

        from nerkit.engine.predictor import CORPUS_BUDGET

        result["doc_tags"] = tagger.predictor.with_budget(**asdict(CORPUS_BUDGET)).predict(documents).tags
    # ... and the pipeline's weights: the shape embedding switched off.
    if no_shapes and tagger.meta.shapes:
        tagger.predictor.backend.with_shapes = False
        result["spans_no_shapes"] = [[(s.label, s.start, s.end) for s in doc]
                                     for doc in tagger.pipe(texts, batch_size=batch_size)]
    return result


def in_child(fn, *args, **kwargs) -> dict:
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as ex:
        return ex.submit(fn, *args, **kwargs).result()


# ------------------------------------------------------------------------------------------ the parent

def gold_char_spans(words: list[str], tags: list[str]) -> tuple[str, Spans]:
    from nerkit.schemes import spans

    starts, pos = [], 0
    for w in words:
        starts.append(pos)
        pos += len(w) + 1
    text = " ".join(words)
    return text, [(e.type, starts[e.start], starts[e.end - 1] + len(words[e.end - 1])) for e in spans(tags)]


def test_texts(data: str) -> tuple[list, list[str]]:
    """A dataset's test sentences (folder or name) and each one as raw text, its words joined by spaces."""
    from nerkit.corpus import find_split_file, read_conll, resolve_data_dir

    sents = read_conll(find_split_file(resolve_data_dir(data), "test")).sentences
    return sents, [gold_char_spans(s.words, s.tags)[0] for s in sents]


def span_f1(gold: list[Spans], pred: list[Spans]) -> float:
    correct = sum(len(set(g) & set(p)) for g, p in zip(gold, pred))
    n_pred, n_gold = sum(len(p) for p in pred), sum(len(g) for g in gold)
    prec, rec = correct / max(n_pred, 1), correct / max(n_gold, 1)
    return 2 * prec * rec / (prec + rec) if prec + rec else 0.0


def off_word_boundary(text: str, spans: Spans) -> int:
    """Spans that start or end inside a word: the pipeline's sub-word merge/split errors."""
    bad = 0
    for _, s, e in spans:
        if (s > 0 and text[s - 1] != " ") or (e < len(text) and text[e] != " "):
            bad += 1
    return bad


def compare(texts: list[str], gold: list[Spans], pipe: list[Spans], ours: list[Spans]) -> dict:
    """Where the pipeline is right (its span is a gold span), does nerkit give the same span?"""
    right = missed = 0
    examples: list[str] = []
    reasons: Counter[str] = Counter()
    for text, g, p, n in zip(texts, gold, pipe, ours):
        for span in set(p) & set(g):
            right += 1
            if span in n:
                continue
            missed += 1
            overlap = [x for x in n if x[1] < span[2] and span[1] < x[2]]
            if not overlap:
                why = "nerkit finds no entity there"
            elif any(x[1:] == span[1:] for x in overlap):
                why = "same words, other type"
            else:
                why = "other boundaries"
            reasons[why] += 1
            if len(examples) < 25:
                lab, s, e = span
                examples.append(f"  {why:<30} pipeline+gold {lab} {text[s:e]!r}  nerkit {[(x[0], text[x[1]:x[2]]) for x in overlap]}"
                                f"  | {text[:90]!r}")
    full = [i for i, (g, p) in enumerate(zip(gold, pipe)) if set(g) == set(p)]
    differ = sum(set(ours[i]) != set(pipe[i]) for i in full)
    return {"pipeline_right_entities": right, "nerkit_differs_entities": missed, "reasons": dict(reasons),
            "pipeline_right_sentences": len(full), "nerkit_differs_sentences": differ, "examples": examples}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="runs/conll03-minilm/model")
    ap.add_argument("--data", default="conll2003", help="a CoNLL file, or a dataset folder/name (its test split)")
    ap.add_argument("--batch-size", type=int, default=32, help="the pipeline's batch size (the issue's recipe: 32)")
    ap.add_argument("--nerkit-batch-size", type=int, default=0, help="nerkit's windows per call (default: the tagger's)")
    ap.add_argument("--limit", type=int, default=0, help="first N sentences only (smoke runs)")
    args = ap.parse_args()

    from machine import describe, machine

    from nerkit.corpus import find_split_file, read_conll, resolve_data_dir
    from nerkit.export import export_onnx
    from nerkit.folder import FP32_FILE, INT8_FILE, ONNX_DIR, ModelFolder
    from nerkit.metrics import entity_report

    model_dir = str(ModelFolder(args.model).path)
    if not Path(args.data).is_file():
        args.data = str(find_split_file(resolve_data_dir(args.data), "test"))
    corpus = read_conll(args.data)
    sents = corpus.sentences[: args.limit] if args.limit else corpus.sentences
    texts, gold = zip(*(gold_char_spans(s.words, s.tags) for s in sents))
    texts, gold = list(texts), list(gold)
    documents = [[s.words for s in d.sentences] for d in corpus.documents]
    if args.limit:
        documents = [[s.words for s in sents]]
    gold_tags = [s.tags for s in sents]
    onnx_dir = Path(model_dir) / ONNX_DIR
    if not (onnx_dir / FP32_FILE).is_file() or not (onnx_dir / INT8_FILE).is_file():
        print(f"exporting {model_dir} to ONNX (fp32 + int8) ...", flush=True)
        export_onnx(model_dir, int8=True)
    meta = json.loads((Path(model_dir) / "nerkit.json").read_text())
    print(f"model {model_dir} | context {meta.get('context')} | shapes {meta.get('shapes')} | "
          f"{len(texts)} sentences from {args.data}, each its own text | batch size: pipeline {args.batch_size}, "
          f"nerkit {args.nerkit_batch_size or 'default'} | "
          f"{describe()}, torch threads default", flush=True)

    from nerkit.engine.predictor import TEXT_BUDGET

    nb = args.nerkit_batch_size or TEXT_BUDGET.batch_size
    runs = {}
    runs["pipeline"] = in_child(run_pipeline, model_dir, texts, args.batch_size)
    print(f"pipeline      {len(texts) / runs['pipeline']['seconds']:8.1f} sent/s", flush=True)
    runs["torch"] = in_child(run_nerkit, model_dir, texts, nb, "torch", documents, True)
    print(f"nerkit torch  {len(texts) / runs['torch']['seconds']:8.1f} sent/s", flush=True)
    runs["int8"] = in_child(run_nerkit, model_dir, texts, nb, "onnx-int8", documents)
    print(f"nerkit int8   {len(texts) / runs['int8']['seconds']:8.1f} sent/s", flush=True)

    sps = {k: len(texts) / r["seconds"] for k, r in runs.items()}
    f1_spans = {k: span_f1(gold, r["spans"]) for k, r in runs.items()}
    f1_doc = {k: entity_report(gold_tags, runs[k]["doc_tags"]).micro.f1 for k in ("torch", "int8")}
    cmp = compare(texts, gold, runs["pipeline"]["spans"], runs["torch"]["spans"])
    cmp_same = (compare(texts, gold, runs["pipeline"]["spans"], runs["torch"]["spans_no_shapes"])
                if "spans_no_shapes" in runs["torch"] else None)
    pipe_split = sum(off_word_boundary(t, p) for t, p in zip(texts, runs["pipeline"]["spans"]))
    ours_split = sum(off_word_boundary(t, p) for t, p in zip(texts, runs["torch"]["spans"]))

    print()
    print(f"{'way':<14}{'sent/s':>10}{'x pipeline':>12}{'peak RSS MB':>13}{'load s':>8}{'span F1':>9}")
    for k, r in runs.items():
        print(f"{k:<14}{sps[k]:>10.1f}{sps[k] / sps['pipeline']:>12.2f}{r['rss_mb']:>13.0f}"
              f"{r['load_s']:>8.1f}{100 * f1_spans[k]:>9.2f}")
    print(f"\nnerkit test F1 on whole documents (as `nerkit evaluate`): fp32 {100 * f1_doc['torch']:.2f}, "
          f"int8 {100 * f1_doc['int8']:.2f}, loss {100 * (f1_doc['torch'] - f1_doc['int8']):.2f} points")
    print(f"pipeline spans that start or end inside a word (sub-word merge/split): {pipe_split}; nerkit: {ours_split}")
    print(f"\nWhere the pipeline is right: {cmp['pipeline_right_entities']} entities, nerkit differs on "
          f"{cmp['nerkit_differs_entities']} {cmp['reasons']}; {cmp['pipeline_right_sentences']} fully right "
          f"sentences, nerkit differs on {cmp['nerkit_differs_sentences']}.")
    if cmp_same:
        print(f"Same weights as the pipeline (shape embedding off): nerkit differs on "
              f"{cmp_same['nerkit_differs_entities']} of those entities {cmp_same['reasons']} and "
              f"{cmp_same['nerkit_differs_sentences']} of those sentences.")
    print("Why they differ: the pipeline loads only the Hugging Face weights, so it runs without the shape "
          "embedding the model was trained with, i.e. it is another model, and it labels every sub-word and "
          "merges them (aggregation 'simple'), while nerkit labels the first sub-word of each word, as in "
          "training, and decodes under IOB2 constraints. Each difference below is an entity the pipeline "
          "(and gold) has and nerkit does not:")
    print("\n".join(cmp["examples"]) or "  (none)")
    if cmp_same and cmp_same["examples"]:
        print("With the pipeline's weights:")
        print("\n".join(cmp_same["examples"][:10]))

    figures = {
        "bench": "predict_speed",
        "machine": machine(),
        "sentences": len(texts),
        "sent_per_s": {k: round(v, 1) for k, v in sps.items()},
        "torch_vs_pipeline": round(sps["torch"] / sps["pipeline"], 2),
        "int8_vs_pipeline": round(sps["int8"] / sps["pipeline"], 2),
        "peak_rss_mb": {k: round(r["rss_mb"]) for k, r in runs.items()},
        "torch_rss_vs_pipeline": round(runs["torch"]["rss_mb"] / runs["pipeline"]["rss_mb"], 2),
        "span_f1": {k: round(100 * v, 2) for k, v in f1_spans.items()},
        "test_f1_documents": {"fp32": round(100 * f1_doc["torch"], 2), "int8": round(100 * f1_doc["int8"], 2)},
        "int8_f1_loss": round(100 * (f1_doc["torch"] - f1_doc["int8"]), 2),
        "pipeline_right_entities": cmp["pipeline_right_entities"],
        "nerkit_differs_entities": cmp["nerkit_differs_entities"],
        "nerkit_differs_entities_same_weights": cmp_same["nerkit_differs_entities"] if cmp_same else None,
        "pipeline_spans_inside_words": pipe_split,
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
