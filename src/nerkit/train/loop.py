"""The training loop: epochs of optimiser steps on Accelerate (accumulation, clipping, warm-up + decay),
and the events it fires, for callbacks to do the rest (callbacks.py).

Each epoch: on_epoch_begin; per optimiser step on_step_end; once the epoch's batches are done
on_epoch_end; then, with every callback's applied() weights in place (the moving average, say),
on_evaluate (validation, the best model); the epoch goes into the state and the log; then on_save (the
checkpoint). Around it all on_train_begin (after --resume's restore: see Checkpoint) and on_train_end.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager, ExitStack, nullcontext
from pathlib import Path

from ..batching import token_counts
from .setup import Run
from .state import TrainState

log = logging.getLogger("nerkit")


class Callback:
    """A part of training the loop calls at its events, each given the Trainer: its Run (`t.run`: config,
    accelerator, model, data, ...), its TrainState (`t.state`) and the epoch in progress. Every hook is a
    no-op here; a subclass overrides those it needs."""

    def on_train_begin(self, t: Trainer) -> None:
        """Before the first epoch; on --resume, after the checkpoint restored t.state."""

    def on_epoch_begin(self, t: Trainer) -> None:
        """t.epoch (0-based) is about to train; its windows are cut and the model is in train mode.
        t.state.batch > 0: the run resumed inside this epoch, after that many of its batches."""

    def on_step_end(self, t: Trainer) -> None:
        """After each optimiser step: t.state.step counts it, t.state.batch the epoch's batches so far;
        t.step_losses holds the losses of its batches (several with grad_accum); t.real / t.slots the
        epoch's real and padded tokens so far."""

    def on_epoch_end(self, t: Trainer) -> None:
        """The epoch's training is over; t.entry is its history record (timing, padding) so far."""

    def on_evaluate(self, t: Trainer) -> None:
        """Inside every callback's applied(): validation into t.entry, the best model into model/."""

    def on_save(self, t: Trainer) -> None:
        """The epoch is in t.state (history, epoch): write what --resume needs."""

    def on_train_end(self, t: Trainer) -> None:
        """After the last epoch (every process has got here)."""

    def applied(self, t: Trainer) -> AbstractContextManager:
        """The weights that evaluation and saving see, for the length of on_evaluate."""
        return nullcontext()

    def save_checkpoint(self, t: Trainer, folder: Path) -> None:
        """Main process: add this callback's part of the resumable state to a checkpoint being written."""

    def load_checkpoint(self, t: Trainer, folder: Path) -> None:
        """Every process, on --resume: read that part back."""


class Trainer:
    """Runs the epochs of a Run and fires the events at its callbacks, in list order."""

    def __init__(self, run: Run, callbacks: Sequence[Callback] = ()):
        self.run = run
        self.callbacks = list(callbacks)
        self.state = TrainState()
        self.epoch = 0  # the epoch in progress, 0-based
        self.entry: dict = {}  # its history record
        self.step_losses: list[float] = []
        self.real = self.slots = 0  # the epoch's real and padded tokens so far

    def fire(self, event: str) -> None:
        for cb in self.callbacks:
            getattr(cb, event)(self)

    def done(self) -> bool:
        max_steps = self.run.cfg.train.max_steps
        return bool(max_steps) and self.state.step >= max_steps

    def fit(self) -> None:
        run = self.run
        self.fire("on_train_begin")
        for epoch in range(self.state.epoch, run.cfg.train.epochs):
            if self.done():
                break
            self.epoch = epoch
            seconds = self._train_epoch()
            self._end_epoch(seconds)
        run.acc.wait_for_everyone()
        self.fire("on_train_end")
        run.acc.wait_for_everyone()

    def _train_epoch(self) -> float:
        """One pass over the batches (cut short by train.max_steps). Returns its seconds."""
        run, cfg = self.run, self.run.cfg.train
        acc, model, optimizer, scheduler = run.acc, run.model, run.optimizer, run.scheduler
        # state.batch > 0: resumed mid-epoch, those batches (per process) are trained already.
        run.data.set_epoch(self.epoch, skip=self.state.batch * acc.num_processes)
        model.train()
        if not self.state.batch:
            self.real = self.slots = 0
        self.fire("on_epoch_begin")
        t0 = time.perf_counter()
        losses: list[float] = []
        for batch in run.data.loader:
            self.state.batch += 1
            r, s = token_counts(batch)
            self.real, self.slots = self.real + r, self.slots + s
            with acc.accumulate(model):
                loss = run.loss(model, batch)
                acc.backward(loss)
                if acc.sync_gradients and cfg.grad_clip > 0:
                    acc.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            losses.append(loss.item())
            if acc.sync_gradients:
                self.state.step += 1
                self.step_losses, losses = losses, []
                self.fire("on_step_end")
                if self.done():
                    break
        return time.perf_counter() - t0

    def _end_epoch(self, seconds: float) -> None:
        run, state = self.run, self.state
        state.train_seconds += seconds
        self.entry = {"epoch": self.epoch + 1, "step": state.step, "seconds": round(seconds, 1),
                      "padding_fraction": round(1 - self.real / max(self.slots, 1), 5),
                      "tokens_per_second": round(self.real / max(seconds, 1e-9), 1)}
        self.fire("on_epoch_end")
        run.acc.wait_for_everyone()
        with ExitStack() as weights:
            for cb in self.callbacks:
                weights.enter_context(cb.applied(self))
            self.fire("on_evaluate")
        entry = self.entry
        state.history.append(entry)
        state.epoch, state.batch = self.epoch + 1, 0
        log.info("epoch %d: %.0fs, %.0f real tokens/s, padding %.2f%%%s", state.epoch, seconds,
                 entry["tokens_per_second"], 100 * entry["padding_fraction"],
                 f", validation F1 {entry['validation_f1']:.2f}" if "validation_f1" in entry else "")
        self.fire("on_save")
