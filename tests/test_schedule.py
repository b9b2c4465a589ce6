"""The learning-rate schedule is sized from the batches the sampler really gives, epoch by epoch."""

from __future__ import annotations

import pytest

from nerkit.config import load_config
from nerkit.train import Callback, train


class Record(Callback):
    def __init__(self) -> None:
        self.total = 0
        self.lrs: list[float] = []
        self.steps_per_epoch: list[int] = []

    def on_train_begin(self, t) -> None:
        self.total = t.run.total_steps
        self.batches = [t.run.data.batches_in_epoch(e) for e in range(t.run.cfg.train.epochs)]

    def on_step_end(self, t) -> None:
        self.lrs.append(t.run.scheduler.get_last_lr()[0])

    def on_save(self, t) -> None:
        self.steps_per_epoch.append(t.state.step - sum(self.steps_per_epoch))


@pytest.mark.parametrize("grad_accum", [1, 2])
def test_schedule_ends_at_the_last_step_with_jitter(tmp_path, tiny_base, small_data, grad_accum):
    cfg = load_config(None, [("model.name", str(tiny_base)), ("data.dir", str(small_data)),
                             ("output", str(tmp_path / "run")), ("data.context", "48"), ("data.jitter", "true"),
                             ("train.epochs", "4"), ("train.batch_size", "2"), ("train.warmup_ratio", "0.25"),
                             ("train.grad_accum", str(grad_accum)), ("train.progress", "false"),
                             ("train.lr", "1e-3")])
    rec = Record()
    train(cfg, callbacks=[rec])
    assert len(set(rec.batches)) > 1, "jitter must change the batch count between epochs for this test"
    # every optimiser step the loop took was planned by the schedule, and no planned step is left over
    assert rec.steps_per_epoch == [-(-b // grad_accum) for b in rec.batches]
    assert rec.total == len(rec.lrs) == sum(rec.steps_per_epoch)
    assert rec.lrs[-1] == 0.0 and all(lr > 0 for lr in rec.lrs[:-1])  # the decay reaches zero exactly at the end
