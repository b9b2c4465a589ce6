"""The run's final report: the best model reloaded from its folder (which also proves the folder loads),
scored on validation and test, written as predictions/*.conll, metrics.json and curves.png."""

from __future__ import annotations

import json
import logging

from ..atomic import write_text
from ..engine.predictor import Predictor
from ..evaluation import evaluate
from ..metrics import write_predictions
from .callbacks import eval_budget
from .loop import Callback, Trainer
from .setup import Run
from .state import TrainState

log = logging.getLogger("nerkit")


def write_report(run: Run, state: TrainState, predictor: Predictor) -> dict:
    """Score the predictor on every split in run.evals, write the run's reports; return the metrics."""
    cfg, out = run.cfg, run.out
    metrics: dict = {"best_epoch": state.best_epoch, "train_seconds": round(state.train_seconds, 1),
                     "device": str(run.acc.device), "precision": run.precision, "processes": run.acc.num_processes,
                     "history": state.history}
    for name, corpus in run.evals.items():
        ev = evaluate(predictor, corpus, desc=name if cfg.train.progress else None)
        metrics[name] = ev.to_dict()
        sents = corpus.sentences
        write_predictions(out / "predictions" / f"{name}.conll", [s.words for s in sents],
                          [s.tags for s in sents], ev.predictions)
        log.info("%s (conlleval, best epoch %d)\n%s", name, state.best_epoch, ev.conlleval.table(name))
        log.info("%s strict IOB2 micro F1 %.2f", name, 100 * ev.strict.micro.f1)
    write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    from ..card import write_card  # the model card: README.md in the model folder, from these metrics

    write_card(out / "model", run.meta, metrics, {"train": run.data.corpus, **run.evals})
    from ..plots import training_curves

    training_curves(state.losses, state.history, out / "curves.png")
    return metrics


class FinalReport(Callback):
    """At the end of training, on the main process: write_report on the saved best model."""

    def __init__(self) -> None:
        self.metrics: dict = {}

    def on_train_end(self, t: Trainer) -> None:
        run = t.run
        if not run.main:
            return
        predictor = Predictor.from_dir(run.out / "model", device=str(run.acc.device), budget=eval_budget(t))
        self.metrics = write_report(run, t.state, predictor)
