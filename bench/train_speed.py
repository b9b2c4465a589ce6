"""Training speed, padding and memory: the run_ner recipe vs nerkit, same encoder, same sentences.

    python bench/train_speed.py [--data DIR] [--sentences 3000] [--model minilm] [--device cpu|cuda]
                                [--precision no|bf16|fp16]

Way 1 is Hugging Face's run_ner.py recipe: `Trainer`, `DataCollatorForTokenClassification`, batches of 32
in random order, first sub-word labelled. Way 2 is nerkit's trainer (length-bucketed batches, dynamic
padding) on the same encoder, without nerkit's extras (no shape embedding, no document context), so the
comparison is batching against batching. Each way runs one epoch in its own child process, so that
peak memory (RSS on the CPU, torch's peak allocation on CUDA) belongs to that way alone. The last line is
JSON.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _sample(data_dir: str, n: int, seed: int):
    from nerkit.corpus import load_splits

    splits = load_splits(data_dir)
    sents = splits.train.sentences
    rng = random.Random(seed)
    return rng.sample(sents, min(n, len(sents))), splits.labels


def run_recipe(args, q) -> None:
    """run_ner.py's recipe, condensed: tokenise with is_split_into_words, label the first sub-word."""
    import torch
    from transformers import (
        AutoModelForTokenClassification,
        AutoTokenizer,
        DataCollatorForTokenClassification,
        Trainer,
        TrainingArguments,
    )
    from transformers.utils import logging as hf_logging

    from nerkit.model import resolve_name

    hf_logging.set_verbosity_error()
    torch.set_num_threads(args.threads or torch.get_num_threads())
    sents, labels = _sample(args.data, args.sentences, args.seed)
    label2id = {lab: i for i, lab in enumerate(labels)}
    path = resolve_name(args.model)
    tok = AutoTokenizer.from_pretrained(path)
    rows = []
    for s in sents:
        enc = tok(s.words, is_split_into_words=True, truncation=True)
        prev, lab = None, []
        for w in enc.word_ids():
            lab.append(-100 if w is None or w == prev else label2id[s.tags[w]])
            prev = w
        rows.append({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": lab})
    model = AutoModelForTokenClassification.from_pretrained(
        path, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label2id)
    base = DataCollatorForTokenClassification(tok)
    counts = {"real": 0, "slots": 0}

    def collate(feats):
        batch = base(feats)
        counts["real"] += int(batch["attention_mask"].sum())
        counts["slots"] += batch["attention_mask"].numel()
        return batch

    with tempfile.TemporaryDirectory() as tmp:
        targs = TrainingArguments(
            output_dir=tmp, per_device_train_batch_size=32, num_train_epochs=1, learning_rate=5e-5, seed=args.seed,
            report_to=[], save_strategy="no", eval_strategy="no", logging_strategy="no", disable_tqdm=True,
            bf16=args.precision == "bf16", fp16=args.precision == "fp16", use_cpu=args.device == "cpu",
            dataloader_num_workers=0)
        trainer = Trainer(model=model, args=targs, train_dataset=rows, data_collator=collate)
        if args.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        out = trainer.train()
        seconds = time.perf_counter() - t0
    q.put(_result(seconds, counts["real"], counts["slots"], len(sents), out.training_loss, args.device))


def run_nerkit(args, q) -> None:
    import torch

    from nerkit.config import load_config
    from nerkit.train import train

    torch.set_num_threads(args.threads or torch.get_num_threads())
    sents, _ = _sample(args.data, args.sentences, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        # The sample goes into a temporary CoNLL file (never into the project: research-only data).
        lines = []
        for s in sents:
            lines += [f"{w} {t}" for w, t in zip(s.words, s.tags)] + [""]
        Path(tmp, "train.txt").write_text("\n".join(lines) + "\n")
        overrides = [("model.name", args.model), ("data.dir", tmp), ("data.scheme", "iob2"),
                     ("model.shapes", "off"), ("data.context", "0"), ("train.epochs", "1"),
                     ("train.batch_size", "32"), ("train.max_tokens", str(args.max_tokens)),
                     ("train.lr", "5e-5"), ("train.seed", str(args.seed)), ("train.progress", "false"),
                     ("train.precision", args.precision), ("train.log_every", "1000000"),
                     ("output", str(Path(tmp) / "run"))]
        if args.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        metrics = train(load_config(None, overrides))
    h = metrics["history"][0]
    real = round(h["tokens_per_second"] * h["seconds"])
    slots = round(real / (1 - h["padding_fraction"]))
    q.put(_result(h["seconds"], real, slots, len(sents), None, args.device))


def _result(seconds, real, slots, n, loss, device) -> dict:
    import torch

    r = {"epoch_seconds": round(seconds, 2), "real_tokens_per_second": round(real / seconds, 1),
         "sentences_per_second": round(n / seconds, 2), "padding_fraction": round(1 - real / slots, 4),
         "peak_rss_mb": round(_peak_rss_mb(), 1)}
    if device == "cuda":
        r["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        r["gpu"] = torch.cuda.get_device_name()
    if loss is not None:
        r["train_loss"] = round(loss, 4)
    return r


def _child(fn, args) -> dict:
    q = mp.get_context("spawn").Queue()
    p = mp.get_context("spawn").Process(target=fn, args=(args, q))
    p.start()
    result = q.get()
    p.join()
    if p.exitcode:
        sys.exit(f"{fn.__name__} failed with exit code {p.exitcode}")
    return result


def main() -> None:
    from nerkit.corpus import resolve_data_dir

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="conll2003", help="dataset folder or name (default: conll2003)")
    ap.add_argument("--sentences", type=int, default=3000, help="training sentences sampled (seeded)")
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--device", default="cuda" if _cuda() else "cpu", choices=["cpu", "cuda"])
    ap.add_argument("--precision", default="no", choices=["no", "bf16", "fp16"])
    ap.add_argument("--max-tokens", type=int, default=2048, help="nerkit's token budget per batch")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    args.data = str(resolve_data_dir(args.data))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""

    from machine import describe, machine

    print(f"train_speed: {args.sentences} sentences, model {args.model}, {args.device}, precision {args.precision}"
          f" | {describe()}")
    recipe = _child(run_recipe, args)
    print("run_ner recipe:", json.dumps(recipe))
    ours = _child(run_nerkit, args)
    print("nerkit:        ", json.dumps(ours))
    ratios = {
        "epoch_time_ratio": round(ours["epoch_seconds"] / recipe["epoch_seconds"], 3),
        "throughput_ratio": round(ours["real_tokens_per_second"] / recipe["real_tokens_per_second"], 3),
        "peak_rss_ratio": round(ours["peak_rss_mb"] / recipe["peak_rss_mb"], 3),
    }
    if "peak_gpu_mb" in ours:
        ratios["peak_gpu_ratio"] = round(ours["peak_gpu_mb"] / recipe["peak_gpu_mb"], 3)
    print(f"nerkit epoch time = {ratios['epoch_time_ratio']:.2f} x recipe; padding {100 * ours['padding_fraction']:.1f}% "
          f"vs {100 * recipe['padding_fraction']:.1f}%; peak memory {ratios['peak_rss_ratio']:.2f} x")
    print(json.dumps({"bench": "train_speed", "machine": machine(), "device": args.device, "precision": args.precision,
                      "sentences": args.sentences, "recipe": recipe, "nerkit": ours, **ratios}))


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


if __name__ == "__main__":
    main()
