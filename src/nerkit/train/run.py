"""train(): set up, run the loop with the standard callbacks (and any extra), report."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..settings import Config
from .callbacks import BestModel, Checkpoint, ProgressLog, WeightAveraging
from .loop import Callback, Trainer
from .report import FinalReport
from .runfolder import run_folder
from .setup import setup


def default_callbacks(cfg: Config, resume: bool = False) -> list[Callback]:
    """In firing order: the average exists before Checkpoint restores into it on --resume, the report
    is written before the checkpoint goes."""
    out = Path(cfg.output)
    averaging = [WeightAveraging(cfg.train.ema)] if cfg.train.ema else []
    return [*averaging, ProgressLog(), BestModel(), FinalReport(),
            Checkpoint(out / "checkpoint", resume, cfg.train.save_every)]


def train(cfg: Config, resume: bool = False, callbacks: Sequence[Callback] = (), overwrite: bool = False) -> dict:
    """Train, keep the best model by validation F1, evaluate it on validation and test. Returns the
    metrics (on the main process; {} on the others). callbacks: extra ones, fired after the standard.
    resume: go on from the run folder's checkpoint; overwrite: start over although it holds one."""
    standard = default_callbacks(cfg, resume)
    with run_folder(cfg, resume, overwrite):
        try:
            run = setup(cfg)
            Trainer(run, [*standard, *callbacks]).fit()
            run.acc.end_training()
        finally:
            for cb in standard:
                if isinstance(cb, Checkpoint):
                    cb.release()
    return next(cb.metrics for cb in standard if isinstance(cb, FinalReport))
