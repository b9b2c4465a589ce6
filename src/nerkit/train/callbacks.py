"""What a run does around its steps: average the weights, keep the best model, checkpoint, show progress."""

from __future__ import annotations

import json
import logging
import shutil
import signal
import sys
import threading
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from ..atomic import fault_point, replace_dir, temp_dir
from ..engine.predictor import CORPUS_BUDGET, Budget, Predictor
from ..errors import ConfigError
from ..evaluation import evaluate
from ..model import save_model
from .averaging import WeightAverage
from .checkpoint import (
    FINGERPRINT_FILE,
    differences,
    fingerprint,
    load_optimizer,
    load_rng,
    load_weights,
    read_json,
    save_optimizer,
    save_rng,
    save_weights,
    write_json,
)
from .loop import Callback, Trainer
from .state import TrainState

log = logging.getLogger("nerkit")
STATE_FILE = "trainer_state.json"  # written last: a checkpoint folder without it is not one
LOOP_FILE = "loop.json"  # the epoch's real and padded tokens so far
EMA_FILE = "weight_average.safetensors"  # with its decay and count of updates as metadata
PROGRESS_FILE = "progress.json"  # the loss sums since the last log line


def eval_budget(t: Trainer) -> Budget:
    return CORPUS_BUDGET.limited(max_tokens=t.run.cfg.train.eval_max_tokens)


class WeightAveraging(Callback):
    """train.ema: a moving average of the weights, updated after every step. Evaluation and the saved
    model see the average; the optimiser goes on with the raw weights. Kept in the checkpoint."""

    def __init__(self, decay: float):
        self.decay = decay
        self._average: WeightAverage | None = None

    @property
    def average(self) -> WeightAverage:
        assert self._average is not None, "on_train_begin builds the average"
        return self._average

    def on_train_begin(self, t: Trainer) -> None:
        self._average = WeightAverage(t.run.unwrapped, self.decay)

    def on_step_end(self, t: Trainer) -> None:
        self.average.update(t.run.unwrapped)

    def applied(self, t: Trainer) -> AbstractContextManager:
        return self.average.applied(t.run.unwrapped)

    def save_checkpoint(self, t: Trainer, folder: Path) -> None:
        self.average.save(folder / EMA_FILE)
        fault_point("checkpoint", "file")

    def load_checkpoint(self, t: Trainer, folder: Path) -> None:
        self.average.load(folder / EMA_FILE)


class BestModel(Callback):
    """Validation F1 every epoch (into the history); model/ holds the epoch that scored best. Without a
    validation split, the last epoch is the model."""

    def __init__(self) -> None:
        self.predictor: Predictor | None = None

    def on_train_begin(self, t: Trainer) -> None:
        run = t.run
        self.predictor = Predictor.from_model(run.unwrapped, run.tokenizer, run.meta, device=run.acc.device,
                                              constrained=run.cfg.decode.constrained, budget=eval_budget(t))

    def on_evaluate(self, t: Trainer) -> None:
        run, state = t.run, t.state
        if not run.main:
            return
        corpus = run.evals.get("validation")
        if corpus is None:
            self._save(t)
            state.best_epoch = t.epoch + 1
            return
        assert self.predictor is not None, "on_train_begin builds the predictor"
        ev = evaluate(self.predictor, corpus, desc="validation" if run.cfg.train.progress else None)
        f1 = ev.conlleval.micro.f1
        t.entry["validation_f1"] = round(100 * f1, 2)
        if f1 > state.best_f1:
            state.best_f1, state.best_epoch = f1, t.epoch + 1
            self._save(t)

    def _save(self, t: Trainer) -> None:
        save_model(t.run.unwrapped, t.run.tokenizer, t.run.out / "model", t.run.meta)


class Checkpoint(Callback):
    """What --resume needs, in one folder swapped in whole (atomic.replace_dir), so that a kill at any
    point leaves the complete new checkpoint or the complete old one: at every epoch's end, every
    train.save_every optimiser steps, and on SIGTERM or SIGINT, after which the run stops (exit 130).
    With resume, on_train_begin checks that the settings and the data are the checkpoint's, then restores
    the weights, optimiser, schedule, random states, the position in the epoch and every callback's part,
    so that the run goes on exactly as if it had never stopped. The folder goes when the run finishes."""

    def __init__(self, folder: Path, resume: bool = False, save_every: int = 0):
        self.folder, self.resume, self.save_every = Path(folder), resume, save_every
        self.stop: int | None = None  # the signal that asked the run to stop
        self._handlers: dict[int, Any] = {}
        self._fingerprint: dict = {}

    @staticmethod
    def exists(folder: Path) -> bool:
        return (Path(folder) / STATE_FILE).is_file()

    def on_train_begin(self, t: Trainer) -> None:
        run = t.run
        self._fingerprint = fingerprint(run.cfg.to_dict(), {"train": run.data.corpus, **run.evals},
                                        run.acc.num_processes, run.inputs)
        if self.resume:
            self._restore(t)
        self._catch_signals()

    @staticmethod
    def check_fingerprint(folder: Path, now: dict, sections: tuple[str, ...] = ("config", "data", "run")) -> None:
        """A ConfigError naming every key (or data split) that differs from the checkpoint's."""
        if not (folder / FINGERPRINT_FILE).is_file():
            raise ConfigError(f"{folder} was written by an older nerkit, which it cannot resume from exactly; "
                              "start over with --overwrite", field="resume")
        if diff := differences(read_json(folder / FINGERPRINT_FILE), now, sections):
            raise ConfigError(f"{folder} was written with other settings or data: {'; '.join(diff)}; resume "
                              "with the same ones, or start over with --overwrite", field="resume")

    def _restore(self, t: Trainer) -> None:
        run, folder = t.run, self.folder
        self.check_fingerprint(folder, self._fingerprint)
        load_weights(run.unwrapped, folder)
        run.optimizer.load_state_dict(load_optimizer(folder))
        run.scheduler.load_state_dict(read_json(folder / "scheduler.json"))
        t.state = TrainState.from_json((folder / STATE_FILE).read_text())
        rank = run.acc.process_index
        if t.state.batch:  # mid-epoch: once the epoch's pass has started (see ResumableSampler)
            run.data.resumable.at_start = lambda: load_rng(folder, rank)
        else:
            load_rng(folder, rank)
        t.real, t.slots = read_json(folder / LOOP_FILE)
        for cb in t.callbacks:
            cb.load_checkpoint(t, folder)
        log.info("resumed from %s at epoch %d, batch %d (step %d)", folder, t.state.epoch + 1, t.state.batch,
                 t.state.step)

    def on_step_end(self, t: Trainer) -> None:
        fault_point("train", "step")
        if self.stop or (self.save_every and t.state.step % self.save_every == 0):
            self._save(t)
        self._stop_if_asked(t)

    def on_save(self, t: Trainer) -> None:
        self._save(t)
        self._stop_if_asked(t)

    def _save(self, t: Trainer) -> None:
        run, acc = t.run, t.run.acc
        tmp = self.folder.parent / f".{self.folder.name}.tmp-train"  # one name for every process
        if acc.is_main_process:
            temp_dir(self.folder, "train")
        acc.wait_for_everyone()
        save_rng(tmp, acc.process_index)
        acc.wait_for_everyone()
        if acc.is_main_process:
            save_weights(run.unwrapped, tmp)
            save_optimizer(run.optimizer.state_dict(), tmp)
            write_json(tmp / "scheduler.json", run.scheduler.state_dict())
            write_json(tmp / LOOP_FILE, [t.real, t.slots])
            write_json(tmp / FINGERPRINT_FILE, self._fingerprint)
            for cb in t.callbacks:
                cb.save_checkpoint(t, tmp)
            write_json(tmp / STATE_FILE, json.loads(t.state.to_json()))
            replace_dir(tmp, self.folder)
        acc.wait_for_everyone()

    def _catch_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set there
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._handlers[sig] = signal.signal(sig, self._ask_stop)

    def _ask_stop(self, signum: int, frame: Any) -> None:
        self.stop = signum
        signal.signal(signum, self._handlers.get(signum, signal.SIG_DFL))  # a second one stops at once

    def _stop_if_asked(self, t: Trainer) -> None:
        if self.stop:
            log.info("stopped by %s at step %d; the checkpoint is in %s: continue with --resume",
                     signal.Signals(self.stop).name, t.state.step, self.folder)
            raise KeyboardInterrupt

    def release(self) -> None:
        """Give back the signal handlers (train() calls it however the run ended)."""
        for sig, handler in self._handlers.items():
            signal.signal(sig, handler)
        self._handlers.clear()

    def on_train_end(self, t: Trainer) -> None:
        self.release()
        if t.run.main:
            shutil.rmtree(self.folder, ignore_errors=True)


class ProgressLog(Callback):
    """A progress bar per epoch on a terminal (train.progress), else a log line, every log_every steps:
    the mean training loss since the last one (kept in the state for curves.png) and the padding."""

    def __init__(self) -> None:
        self.bar: _NoBar = _NoBar()
        self.loss, self.batches = 0.0, 0

    def on_epoch_begin(self, t: Trainer) -> None:
        cfg = t.run.cfg.train
        self.bar = _bar(len(t.run.data.loader), f"epoch {t.epoch + 1}/{cfg.epochs}", t.run.main and cfg.progress)
        self.bar.update(t.state.batch)
        if not t.state.batch:  # else resumed mid-epoch: the sums since the last log line came back
            self.loss, self.batches = 0.0, 0

    def save_checkpoint(self, t: Trainer, folder: Path) -> None:
        write_json(folder / PROGRESS_FILE, [self.loss, self.batches])

    def load_checkpoint(self, t: Trainer, folder: Path) -> None:
        self.loss, self.batches = read_json(folder / PROGRESS_FILE)

    def on_step_end(self, t: Trainer) -> None:
        for loss in t.step_losses:
            self.loss += loss
            self.batches += 1
        self.bar.update(len(t.step_losses))
        step = t.state.step
        if step % t.run.cfg.train.log_every:
            return
        avg = self.loss / self.batches
        t.state.losses.append([step, avg])
        self.bar.set_postfix(loss=f"{avg:.4f}", pad=f"{1 - t.real / max(t.slots, 1):.1%}")
        if not self.bar.enabled:
            log.info("step %d loss %.4f lr %.2e padding %.2f%%", step, avg, t.run.scheduler.get_last_lr()[0],
                     100 * (1 - t.real / max(t.slots, 1)))
        self.loss, self.batches = 0.0, 0

    def on_epoch_end(self, t: Trainer) -> None:
        self.bar.close()


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
