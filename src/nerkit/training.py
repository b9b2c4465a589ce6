"""The training loop on Accelerate: AdamW, warm-up + linear decay, clipping, accumulation, mixed precision,
an optional moving average of the weights, evaluation every epoch, best model by validation F1, resumable
checkpoints.

Run layout (OUTPUT/):
  model/               best model by validation F1, a Hugging Face folder + nerkit.json
  metrics.json         validation and test reports, per-epoch history, timings
  config.yaml          the config this run used
  predictions/         validation.conll, test.conll: 'token gold predicted' for conlleval
  curves.png           training loss and validation F1
  train.log            the log
  checkpoint/          state for --resume (removed when the run finishes)
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import sys
import time
import warnings
from contextlib import nullcontext
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from . import atomic
from .averaging import WeightAverage
from .batching import Collator, LengthBucketSampler, token_counts
from .config import Config, dump_yaml
from .corpus import Corpus, Document, load_splits, resolve_data_dir
from .encoding import Encoder
from .evaluation import evaluate_corpus
from .metrics import write_predictions
from .model import ModelMeta, build_model, is_cased, load_model, max_length_for, replace_dir, save_model

log = logging.getLogger("nerkit")
EMA_FILE = "weight_average.pt"


def limit_corpus(corpus: Corpus, n: int) -> Corpus:
    """The first n sentences, documents kept whole up to the cut."""
    if n <= 0:
        return corpus
    docs, left = [], n
    for d in corpus.documents:
        if left <= 0:
            break
        docs.append(Document(d.sentences[:left]))
        left -= len(docs[-1].sentences)
    return Corpus(corpus.path, docs, corpus.has_documents, corpus.scheme)


def _precision(cfg: Config) -> str:
    if cfg.train.precision != "auto":
        if cfg.train.precision != "no" and not torch.cuda.is_available():
            log.warning("train.precision=%s needs CUDA; training in fp32 on the CPU", cfg.train.precision)
            return "no"
        return cfg.train.precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


def _setup_logging(out: Path, main: bool) -> None:
    log.setLevel(logging.INFO)
    for h in list(log.handlers):  # an earlier run in this process (tests, notebooks) left its handlers
        h.close()
        log.removeHandler(h)
    log.propagate = False
    if not main:
        return
    fmt = logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S")
    for h in (logging.StreamHandler(sys.stderr), logging.FileHandler(out / "train.log")):
        h.setFormatter(fmt)
        log.addHandler(h)


def _optimizer(model, cfg: Config) -> torch.optim.Optimizer:
    head = {id(p) for p in model.head_parameters()}
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name or "shape_embedding" in name
        groups.setdefault((id(p) in head, no_decay), []).append(p)
    head_lr = cfg.train.head_lr or cfg.train.lr
    params = [
        {"params": ps, "lr": head_lr if is_head else cfg.train.lr,
         "weight_decay": 0.0 if no_decay else cfg.train.weight_decay}
        for (is_head, no_decay), ps in groups.items()
    ]
    return torch.optim.AdamW(params, lr=cfg.train.lr)


def train(cfg: Config, resume: bool = False) -> dict:
    """Train, keep the best model by validation F1, evaluate it on validation and test. Returns metrics."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from transformers import get_linear_schedule_with_warmup
    out = Path(cfg.output)
    ckpt_dir = out / "checkpoint"
    state_file = ckpt_dir / "trainer_state.json"
    if resume and not state_file.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint in {str(ckpt_dir)!r}; start without --resume")

    precision = _precision(cfg)
    # Several processes (torchrun / accelerate launch --multi_gpu) on a machine without CUDA: Accelerate
    # only sets up gloo (MULTI_CPU) when told cpu=True; otherwise every process thinks it is the main one
    # and they all write, and race on, the same run folder.
    multi_cpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    acc = Accelerator(mixed_precision=precision, gradient_accumulation_steps=cfg.train.grad_accum,
                      cpu=multi_cpu)
    main = acc.is_main_process
    if main:
        out.mkdir(parents=True, exist_ok=True)
    acc.wait_for_everyone()
    _setup_logging(out, main)
    set_seed(cfg.train.seed)

    data_dir = resolve_data_dir(cfg.data.dir)
    splits = load_splits(data_dir, cfg.data.train or None, cfg.data.validation or None,
                         cfg.data.test or None, cfg.data.scheme)
    train_c = limit_corpus(splits.train, cfg.data.limit_train)
    evals = {name: limit_corpus(c, cfg.data.limit_eval) for name, c in splits.items()}
    labels = splits.labels

    model, tokenizer = build_model(cfg.model.name, labels, shapes=False)
    cased = is_cased(tokenizer)
    shapes = cfg.model.shapes == "on" or (cfg.model.shapes == "auto" and not cased)
    if cfg.model.shapes == "on" and cased:
        log.warning("model.shapes=on with a cased tokenizer: the shape embedding is kept, but the "
                    "tokenizer already sees case, so expect little gain")
    if shapes:
        model = type(model)(model.hf, shapes=True)
    context = cfg.data.context
    if context and not splits.train.has_documents:
        log.warning("data.context=%d but %s has no -DOCSTART- documents: encoding sentence by sentence "
                    "instead", context, splits.train.path)
        context = 0
    max_length = cfg.model.max_length or max_length_for(tokenizer, model.config)
    encoder = Encoder(tokenizer, labels, max_length=max_length, context=context, shapes=shapes)
    meta = ModelMeta(labels=labels, max_length=max_length, context=context, shapes=shapes,
                     constrained=cfg.decode.constrained, train_config=cfg.to_dict())

    jitter = cfg.data.jitter and bool(context)
    if cfg.data.jitter and not context:
        log.warning("data.jitter re-cuts document-context windows, and context is off: ignored")

    def train_features(epoch: int) -> list:
        rng = random.Random(cfg.train.seed * 1000 + epoch) if jitter else None
        return encoder.encode_corpus(train_c, train=True, jitter=rng)

    feats, feats_epoch = train_features(0), 0
    pad_mult = cfg.train.pad_to_multiple_of or (8 if acc.device.type == "cuda" else 1)
    sampler = LengthBucketSampler([len(f) for f in feats], cfg.train.batch_size, cfg.train.max_tokens,
                                  pad_mult, seed=cfg.train.seed)
    collate = Collator(tokenizer.pad_token_id, pad_mult, with_shapes=shapes)
    loader = DataLoader(feats, batch_sampler=sampler, collate_fn=collate)
    steps_per_epoch = math.ceil(len(sampler) / cfg.train.grad_accum)
    total_steps = steps_per_epoch * cfg.train.epochs
    if cfg.train.max_steps:
        total_steps = min(total_steps, cfg.train.max_steps)
    optimizer = _optimizer(model, cfg)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.train.warmup_ratio * total_steps), total_steps)
    model, optimizer, loader, scheduler = acc.prepare(model, optimizer, loader, scheduler)

    log.info("nerkit: %s | %d labels | %d train sentences -> %d windows | context=%s shapes=%s | "
             "device=%s precision=%s processes=%d | %d steps", cfg.model.name, len(labels),
             len(train_c.sentences), len(feats), context or "off", shapes, acc.device, precision,
             acc.num_processes, total_steps)

    state = {"epoch": 0, "step": 0, "best_f1": -1.0, "best_epoch": 0, "history": [], "losses": [],
             "train_seconds": 0.0}
    unwrapped = acc.unwrap_model(model)
    ema = WeightAverage(unwrapped, cfg.train.ema) if cfg.train.ema else None
    if resume:
        acc.load_state(str(ckpt_dir))
        state = json.loads(state_file.read_text())
        if ema:
            ema.load(ckpt_dir / EMA_FILE)
        log.info("resumed from %s after epoch %d (step %d)", ckpt_dir, state["epoch"], state["step"])

    if main:
        atomic.write_text(out / "config.yaml", dump_yaml(cfg))
    for epoch in range(state["epoch"], cfg.train.epochs):
        if cfg.train.max_steps and state["step"] >= cfg.train.max_steps:
            break
        sampler.set_epoch(epoch)
        if jitter and epoch != feats_epoch:  # same list object: the loader sees the new windows
            feats[:], feats_epoch = train_features(epoch), epoch
            sampler.set_lengths([len(f) for f in feats])
        loader.set_epoch(epoch)  # keeps Accelerate's own epoch counter in step after --resume
        model.train()
        t0 = time.perf_counter()
        real = slots = 0
        run_loss, run_n = 0.0, 0
        bar = _bar(len(loader), f"epoch {epoch + 1}/{cfg.train.epochs}", main and cfg.train.progress)
        for batch in loader:
            r, s = token_counts(batch)
            real, slots = real + r, slots + s
            with acc.accumulate(model):
                loss = model(**batch).loss
                acc.backward(loss)
                if acc.sync_gradients and cfg.train.grad_clip > 0:
                    acc.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            run_loss += loss.item()
            run_n += 1
            bar.update(1)
            if acc.sync_gradients:
                state["step"] += 1
                if ema:
                    ema.update(unwrapped)
                if state["step"] % cfg.train.log_every == 0:
                    avg = run_loss / run_n
                    state["losses"].append([state["step"], avg])
                    bar.set_postfix(loss=f"{avg:.4f}", pad=f"{1 - real / max(slots, 1):.1%}")
                    if not bar.enabled:
                        log.info("step %d loss %.4f lr %.2e padding %.2f%%", state["step"], avg,
                                 scheduler.get_last_lr()[0], 100 * (1 - real / max(slots, 1)))
                    run_loss, run_n = 0.0, 0
                if cfg.train.max_steps and state["step"] >= cfg.train.max_steps:
                    break
        bar.close()
        seconds = time.perf_counter() - t0
        state["train_seconds"] += seconds
        entry = {"epoch": epoch + 1, "step": state["step"], "seconds": round(seconds, 1),
                 "padding_fraction": round(1 - real / max(slots, 1), 5),
                 "tokens_per_second": round(real / seconds, 1)}
        acc.wait_for_everyone()
        with ema.applied(unwrapped) if ema else nullcontext():
            if main and "validation" in evals:
                ev = evaluate_corpus(unwrapped, encoder, evals["validation"], cfg.decode.constrained,
                                     acc.device, cfg.train.eval_max_tokens,
                                     desc="validation" if cfg.train.progress else None)
                entry["validation_f1"] = round(100 * ev.conlleval.micro.f1, 2)
                if ev.conlleval.micro.f1 > state["best_f1"]:
                    state["best_f1"], state["best_epoch"] = ev.conlleval.micro.f1, epoch + 1
                    save_model(unwrapped, tokenizer, out / "model", meta)
            elif main:  # no validation split: the last epoch is the model
                save_model(unwrapped, tokenizer, out / "model", meta)
                state["best_epoch"] = epoch + 1
        state["history"].append(entry)
        state["epoch"] = epoch + 1
        log.info("epoch %d: %.0fs, %.0f real tokens/s, padding %.2f%%%s", epoch + 1, seconds,
                 entry["tokens_per_second"], 100 * entry["padding_fraction"],
                 f", validation F1 {entry['validation_f1']:.2f}" if "validation_f1" in entry else "")
        _checkpoint(acc, ckpt_dir, state, ema)

    acc.wait_for_everyone()
    metrics: dict = {}
    if main:
        metrics = _finish(cfg, out, evals, state, acc.device, precision, acc.num_processes)
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    acc.wait_for_everyone()
    acc.end_training()
    return metrics


def _checkpoint(acc, ckpt_dir: Path, state: dict, ema: WeightAverage | None = None) -> None:
    """Save resumable state; the folder is swapped in whole so a kill never leaves half a checkpoint."""
    tmp = ckpt_dir.parent / ".checkpoint.tmp"
    if acc.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    acc.wait_for_everyone()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        acc.save_state(str(tmp), safe_serialization=False)
    if acc.is_main_process:
        (tmp / "trainer_state.json").write_text(json.dumps(state))
        if ema:
            ema.save(tmp / EMA_FILE)
        replace_dir(tmp, ckpt_dir)
    acc.wait_for_everyone()


def _finish(cfg, out: Path, evals: dict, state: dict, device, precision: str, processes: int) -> dict:
    """Reload the best model from its folder (which also proves the folder loads), evaluate, write."""
    model, tokenizer, meta = load_model(out / "model", device=device)
    encoder = Encoder.from_meta(tokenizer, meta)
    metrics: dict = {"best_epoch": state["best_epoch"], "train_seconds": round(state["train_seconds"], 1),
                     "device": str(device), "precision": precision, "processes": processes,
                     "history": state["history"]}
    for name, corpus in evals.items():
        ev = evaluate_corpus(model, encoder, corpus, meta.constrained, device, cfg.train.eval_max_tokens,
                             desc=name if cfg.train.progress else None)
        metrics[name] = ev.to_dict()
        sents = corpus.sentences
        write_predictions(out / "predictions" / f"{name}.conll", [s.words for s in sents],
                          [s.tags for s in sents], ev.predictions)
        log.info("%s (conlleval, best epoch %d)\n%s", name, state["best_epoch"], ev.conlleval.table(name))
        log.info("%s strict IOB2 micro F1 %.2f", name, 100 * ev.strict.micro.f1)
    atomic.write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    from .plots import training_curves

    training_curves(state["losses"], state["history"], out / "curves.png")
    return metrics


class _NoBar:
    enabled = False

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **kw) -> None:
        pass

    def close(self) -> None:
        pass


def _bar(total: int, desc: str, enabled: bool):
    if not enabled or not sys.stderr.isatty():
        return _NoBar()
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit="batch", dynamic_ncols=True)
    bar.enabled = True
    return bar
