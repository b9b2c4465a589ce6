"""Everything a run needs before its first step: precision, Accelerate, the log, the data, the model and
its encoder, the batches, the optimiser and the schedule."""

from __future__ import annotations

import itertools
import logging
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from ..batching import Collator, LengthBucketSampler
from ..corpus import Corpus, Document, Splits, load_splits, resolve_data_dir
from ..encoding import Encoder
from ..errors import ConfigError
from ..folder import ModelMeta, max_length_for
from ..model import NerModel, build_model, is_cased
from ..settings import Config, DistillConfig
from .augment import replace_mentions
from .distill import DistillCollator, DistillLoss, Teachers, TeacherTargets, plain_loss, read_extra

log = logging.getLogger("nerkit")


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


class TrainData:
    """The training windows, their length-bucketed batches and the loader over them. With jitter, every
    epoch re-cuts the document-context windows at its own seeded offsets."""

    def __init__(self, encoder: Encoder, corpus: Corpus, cfg: Config, jitter: bool, pad_mult: int,
                 targets: TeacherTargets | None = None):
        self.encoder, self.corpus, self.seed, self.jitter = encoder, corpus, cfg.train.seed, jitter
        self.features, self._cut = self._encode(0), 0
        self._batching = (cfg.train.batch_size, cfg.train.max_tokens, pad_mult)
        self.sampler = LengthBucketSampler([len(f) for f in self.features], *self._batching, seed=cfg.train.seed)
        self.resumable = ResumableSampler(self.sampler)
        collate: Callable = Collator(encoder.tokenizer.pad_token_id, pad_mult, with_shapes=encoder.shapes)
        if targets is not None:  # distillation: the teachers' distributions ride along in every batch
            collate = DistillCollator(collate, targets)
        self.loader: Any = DataLoader(self.features, batch_sampler=self.resumable, collate_fn=collate)  # type: ignore[arg-type]

    def _encode(self, epoch: int) -> list:
        rng = random.Random(self.seed * 1000 + epoch) if self.jitter else None
        return self.encoder.encode_corpus(self.corpus, train=True, jitter=rng)

    def batches_in_epoch(self, epoch: int) -> int:
        """How many batches the sampler will give in that epoch: with jitter the windows, and so the
        batches, differ from epoch to epoch, so each epoch is cut as it will be (the windows only counted)."""
        if not self.jitter or epoch == self._cut:
            return len(self.sampler)
        sampler = LengthBucketSampler([len(f) for f in self._encode(epoch)], *self._batching, seed=self.seed)
        sampler.set_epoch(epoch)
        return len(sampler)

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """The batches of that epoch, less the first `skip` (already trained before a --resume)."""
        self.sampler.set_epoch(epoch)
        if self.jitter and epoch != self._cut:  # same list object: the loader sees the new windows
            self.features[:], self._cut = self._encode(epoch), epoch
            self.sampler.set_lengths([len(f) for f in self.features])
        self.resumable.skip = skip
        self.loader.set_epoch(epoch)  # keeps Accelerate's own epoch counter in step after --resume


class ResumableSampler:
    """The batch sampler, with what a run resumed mid-epoch needs for its next pass only: the first
    `skip` batches left out, and `at_start` called as the pass starts. That is once the loader has
    drawn its seed from the global random state, a draw the stopped run made before its checkpoint;
    restoring the random states there, not before, keeps dropout's numbers those of the stopped run."""

    batch_size = None  # see LengthBucketSampler

    def __init__(self, batches: LengthBucketSampler):
        self.batches, self.skip = batches, 0
        self.at_start: Callable[[], None] | None = None

    def __iter__(self) -> Iterator[list[int]]:  # a generator: its body runs at the pass's first batch
        skip, self.skip = self.skip, 0
        at_start, self.at_start = self.at_start, None
        if at_start is not None:
            at_start()
        yield from itertools.islice(iter(self.batches), skip, None)

    def __len__(self) -> int:
        return len(self.batches)


@dataclass
class Run:
    """What setup() built: fixed for the whole run."""

    cfg: Config
    out: Path
    acc: Any  # accelerate.Accelerator
    precision: str
    main: bool  # the process that evaluates and writes
    model: Any  # the model as Accelerate prepared it (wrapped under several processes)
    unwrapped: NerModel
    tokenizer: Any
    meta: ModelMeta
    evals: dict[str, Corpus]  # validation and test, as limited by data.limit_eval
    data: TrainData
    optimizer: torch.optim.Optimizer
    scheduler: Any
    total_steps: int  # optimiser steps the run will take
    loss: Callable[[Any, dict], torch.Tensor] = plain_loss  # (model, batch) -> the loss to minimise
    inputs: dict[str, str] | None = None  # digests of what else the run learns from (the teachers' weights)


def precision_for(cfg: Config) -> str:
    if cfg.train.precision != "auto":
        if cfg.train.precision != "no" and not torch.cuda.is_available():
            log.warning("train.precision=%s needs CUDA; training in fp32 on the CPU", cfg.train.precision)
            return "no"
        return cfg.train.precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


def setup_logging(out: Path, main: bool) -> None:
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


def optimizer_for(model: NerModel, cfg: Config) -> torch.optim.Optimizer:
    """AdamW over four groups: body or head (which may take train.head_lr), with or without weight decay."""
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


def _fresh(cfg: Config, labels: list[str]) -> tuple[NerModel, Any, list[str]]:
    """`nerkit train`'s model: cfg.model.name with a new head, and the shape embedding if asked for."""
    model, tokenizer = build_model(cfg.model.name, labels, shapes=False)
    cased = is_cased(tokenizer)
    shapes = cfg.model.shapes == "on" or (cfg.model.shapes == "auto" and not cased)
    if cfg.model.shapes == "on" and cased:
        log.warning("model.shapes=on with a cased tokenizer: the shape embedding is kept, but the "
                    "tokenizer already sees case, so expect little gain")
    if shapes:
        model = type(model)(model.hf, shapes=True)
    return model, tokenizer, labels


def _student(cfg: DistillConfig, teachers: Teachers) -> tuple[NerModel, Any, list[str]]:
    """`nerkit distill`'s model: made from the first teacher, whose tokenizer and labels it keeps."""
    from ..model import load_model
    from ..students import make_student

    d, first = cfg.distill, teachers.folders[0]
    student = make_student(d.student, load_model(first), d.layers, d.width, d.kernel, d.pick, d.heads)
    return student, first.tokenizer, teachers.labels


def _model(cfg: Config, splits: Splits, teachers: Teachers | None) -> tuple[NerModel, Any, Encoder, ModelMeta]:
    """The model to train, its tokenizer, and the encoding choices (shapes, context, length) it trains with."""
    if teachers is not None:
        assert isinstance(cfg, DistillConfig)
        teachers.check_labels(splits.labels, splits.train.path)
        model, tokenizer, labels = _student(cfg, teachers)
    else:
        model, tokenizer, labels = _fresh(cfg, splits.labels)
    shapes = model.shape_embedding is not None
    context = cfg.data.context
    if context and not splits.train.has_documents:
        log.warning("data.context=%d but %s has no -DOCSTART- documents: encoding sentence by sentence "
                    "instead", context, splits.train.path)
        context = 0
    limit = max_length_for(tokenizer, model.config)
    if cfg.model.max_length > limit:
        raise ConfigError(f"model.max_length: expected 0 or 16 to {limit} (the limit of {cfg.model.name}), "
                          f"got {cfg.model.max_length}")
    max_length = cfg.model.max_length or limit
    encoder = Encoder(tokenizer, labels, max_length=max_length, context=context, shapes=shapes)
    meta = ModelMeta(labels=labels, max_length=max_length, context=context, shapes=shapes,
                     constrained=cfg.decode.constrained, train_config=cfg.to_dict())
    return model, tokenizer, encoder, meta


def _accelerator(cfg: Config):
    from accelerate import Accelerator

    precision = precision_for(cfg)
    # Several processes (torchrun / accelerate launch --multi_gpu) on a machine without CUDA: Accelerate
    # only sets up gloo (MULTI_CPU) when told cpu=True; otherwise every process thinks it is the main one
    # and they all write, and race on, the same run folder.
    multi_cpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    acc = Accelerator(mixed_precision=precision, gradient_accumulation_steps=cfg.train.grad_accum,
                      cpu=multi_cpu)
    return acc, precision


def _name(cfg: Config) -> str:
    if isinstance(cfg, DistillConfig):
        d = cfg.distill
        if d.student == "layers":
            what = f"{d.layers} layers"
        else:
            what = f"{d.student} {d.layers}x{d.width}" + (f" + attention x{d.heads}" if d.heads else "")
        return f"student ({what}) of {', '.join(d.teacher_list)}"
    return cfg.model.name


def setup(cfg: Config) -> Run:
    """Accelerate, the run folder and its log, the seeded model, data, optimiser and schedule, prepared."""
    from accelerate.utils import set_seed
    from transformers import get_linear_schedule_with_warmup

    out = Path(cfg.output)
    acc, precision = _accelerator(cfg)
    main = acc.is_main_process
    if main:
        out.mkdir(parents=True, exist_ok=True)
    acc.wait_for_everyone()
    setup_logging(out, main)
    set_seed(cfg.train.seed)

    d = cfg.data
    splits = load_splits(resolve_data_dir(d.dir), d.train or None, d.validation or None, d.test or None, d.scheme,
                         format=d.format, misaligned=d.misaligned, label_names=d.labels, split=d.split,
                         seed=cfg.train.seed)
    train_c = limit_corpus(splits.train, cfg.data.limit_train)
    evals = {name: limit_corpus(c, cfg.data.limit_eval) for name, c in splits.items()}
    teachers = Teachers(cfg.distill) if isinstance(cfg, DistillConfig) else None
    model, tokenizer, encoder, meta = _model(cfg, splits, teachers)
    if d.augment:
        copies = replace_mentions(train_c, d.augment, cfg.train.seed, d.swap)
        train_c = Corpus(train_c.path, train_c.documents + copies, train_c.has_documents, train_c.scheme)
        log.info("data: %d cop%s of the training text with names swapped (new names: %s)", d.augment,
                 "y" if d.augment == 1 else "ies", d.swap)
    targets = None
    if teachers is not None:
        assert isinstance(cfg, DistillConfig)
        gold = len(train_c.sentences)  # the copies keep their gold labels
        if cfg.distill.extra_files:
            extra = read_extra(cfg.distill.extra_files)
            train_c = Corpus(train_c.path, train_c.documents + extra.documents, True, train_c.scheme)
            log.info("distill: %d sentences of extra text for the teachers to label", len(extra.sentences))
        t0 = time.perf_counter()
        probs = teachers.targets(train_c, acc.device, cfg.train.progress and main)
        log.info("distill: %d teacher(s) labelled %d words in %.0f s", len(teachers.folders), len(probs),
                 time.perf_counter() - t0)
        targets = TeacherTargets.of(probs, [len(s.words) for s in train_c.sentences], gold)
    jitter = cfg.data.jitter and bool(meta.context)
    if cfg.data.jitter and not meta.context:
        log.warning("data.jitter re-cuts document-context windows, and context is off: ignored")

    pad_mult = cfg.train.pad_to_multiple_of or (8 if acc.device.type == "cuda" else 1)
    data = TrainData(encoder, train_c, cfg, jitter, pad_mult, targets)
    # The schedule is sized from the batches the sampler will really give, epoch by epoch (with jitter
    # they differ), so the decay reaches zero at the last step, not before it. Each of N processes takes
    # every N-th batch, and Accelerate's prepared scheduler advances N times per optimiser step.
    procs = acc.num_processes
    total_steps = sum(math.ceil(math.ceil(data.batches_in_epoch(e) / procs) / cfg.train.grad_accum)
                      for e in range(cfg.train.epochs))
    if cfg.train.max_steps:
        total_steps = min(total_steps, cfg.train.max_steps)
    optimizer = optimizer_for(model, cfg)
    scheduled = total_steps * procs
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.train.warmup_ratio * scheduled), scheduled)
    model, optimizer, data.loader, scheduler = acc.prepare(model, optimizer, data.loader, scheduler)

    log.info("nerkit: %s | %d labels | %d train sentences -> %d windows | context=%s shapes=%s | "
             "device=%s precision=%s processes=%d | %d steps", _name(cfg), len(splits.labels),
             len(train_c.sentences), len(data.features), meta.context or "off", meta.shapes, acc.device,
             precision, acc.num_processes, total_steps)
    loss: Callable[[Any, dict], torch.Tensor] = plain_loss
    if isinstance(cfg, DistillConfig):
        loss = DistillLoss(cfg.distill.alpha, cfg.distill.temperature)
    return Run(cfg, out, acc, precision, main, model, acc.unwrap_model(model), tokenizer, meta, evals, data,
               optimizer, scheduler, total_steps, loss, teachers.digests() if teachers else None)
