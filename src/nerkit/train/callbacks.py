"""What a run does around its steps: average the weights, keep the best model, checkpoint, show progress."""

from __future__ import annotations

import logging
import shutil
import sys
import warnings
from contextlib import AbstractContextManager
from pathlib import Path

from ..atomic import replace_dir
from ..engine.predictor import CORPUS_BUDGET, Budget, Predictor
from ..evaluation import evaluate
from ..model import save_model
from .averaging import WeightAverage
from .loop import Callback, Trainer
from .state import TrainState

log = logging.getLogger("nerkit")
STATE_FILE = "trainer_state.json"
EMA_FILE = "weight_average.pt"


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
    """At every epoch's end, what --resume needs (Accelerate's state, trainer_state.json and every
    callback's save_checkpoint files) in one folder, swapped in whole so that a kill never leaves half a
    checkpoint. With resume, on_train_begin restores it. The folder goes when the run finishes."""

    def __init__(self, folder: Path, resume: bool = False):
        self.folder, self.resume = Path(folder), resume

    @staticmethod
    def exists(folder: Path) -> bool:
        return (Path(folder) / STATE_FILE).is_file()

    def on_train_begin(self, t: Trainer) -> None:
        if not self.resume:
            return
        t.run.acc.load_state(str(self.folder))
        t.state = TrainState.from_json((self.folder / STATE_FILE).read_text())
        for cb in t.callbacks:
            cb.load_checkpoint(t, self.folder)
        log.info("resumed from %s after epoch %d (step %d)", self.folder, t.state.epoch, t.state.step)

    def on_save(self, t: Trainer) -> None:
        acc = t.run.acc
        tmp = self.folder.parent / ".checkpoint.tmp"
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        acc.wait_for_everyone()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            acc.save_state(str(tmp), safe_serialization=False)
        if acc.is_main_process:
            (tmp / STATE_FILE).write_text(t.state.to_json())
            for cb in t.callbacks:
                cb.save_checkpoint(t, tmp)
            replace_dir(tmp, self.folder)
        acc.wait_for_everyone()

    def on_train_end(self, t: Trainer) -> None:
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
        self.loss, self.batches = 0.0, 0

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
