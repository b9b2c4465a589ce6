"""train(): set up, run the loop with the standard callbacks (and any extra), report."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..errors import UsageError
from ..settings import Config
from .callbacks import BestModel, Checkpoint, ProgressLog, WeightAveraging
from .loop import Callback, Trainer
from .report import FinalReport
from .setup import setup


def default_callbacks(cfg: Config, resume: bool = False) -> list[Callback]:
    """In firing order: the average exists before Checkpoint restores into it on --resume, the report
    is written before the checkpoint goes."""
    out = Path(cfg.output)
    averaging = [WeightAveraging(cfg.train.ema)] if cfg.train.ema else []
    return [*averaging, ProgressLog(), BestModel(), FinalReport(), Checkpoint(out / "checkpoint", resume)]


def train(cfg: Config, resume: bool = False, callbacks: Sequence[Callback] = ()) -> dict:
    """Train, keep the best model by validation F1, evaluate it on validation and test. Returns the
    metrics (on the main process; {} on the others). callbacks: extra ones, fired after the standard."""
    ckpt_dir = Path(cfg.output) / "checkpoint"
    if resume and not Checkpoint.exists(ckpt_dir):
        raise UsageError(f"no checkpoint in {str(ckpt_dir)!r}; start without --resume", field="resume")
    standard = default_callbacks(cfg, resume)
    run = setup(cfg)
    Trainer(run, [*standard, *callbacks]).fit()
    run.acc.end_training()
    return next(cb.metrics for cb in standard if isinstance(cb, FinalReport))
