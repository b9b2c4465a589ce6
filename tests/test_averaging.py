"""train.ema: the moving average itself, and that training evaluates, saves and resumes it."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import stop_after_epoch, training_callbacks
from nerkit.cli import main
from nerkit.train import Callback
from nerkit.train.averaging import WeightAverage
from nerkit.train.callbacks import EMA_FILE, WeightAveraging


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    net.bias.requires_grad_(False)  # frozen weights are not averaged
    return net


def test_update_follows_the_ramped_decay():
    net = _net()
    w0 = net.weight.detach().clone()
    avg = WeightAverage(net, decay=0.9)
    assert set(avg.shadow) == {"weight"}
    with torch.no_grad():
        net.weight.add_(1.0)
    avg.update(net)  # first update: decay min(0.9, 2/11)
    d = 2 / 11
    assert torch.allclose(avg.shadow["weight"], d * w0 + (1 - d) * (w0 + 1))
    for _ in range(100):
        avg.update(net)
    assert torch.allclose(avg.shadow["weight"], w0 + 1, atol=1e-4)  # converges to constant weights


def test_applied_swaps_in_and_restores():
    net = _net()
    avg = WeightAverage(net, decay=0.5)
    raw = net.weight.detach().clone()
    avg.shadow["weight"].fill_(7.0)
    with avg.applied(net):
        assert torch.all(net.weight == 7.0)
    assert torch.equal(net.weight, raw)
    with pytest.raises(RuntimeError), avg.applied(net):
        raise RuntimeError("evaluation failed")
    assert torch.equal(net.weight, raw)  # restored on errors too


def test_save_and_load(tmp_path):
    net = _net()
    avg = WeightAverage(net, decay=0.5)
    avg.shadow["weight"].fill_(3.0)
    avg.updates = 12
    avg.save(tmp_path / "avg.pt")
    other = WeightAverage(_net(), decay=0.5)
    other.load(tmp_path / "avg.pt")
    assert other.updates == 12 and torch.all(other.shadow["weight"] == 3.0)


def test_bad_decay():
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(_net(), decay=1.0)


def _args(tiny_base, data, out, *extra):
    return ["train", "--data", str(data), "--output", str(out), "--model.name", str(tiny_base),
            "--batch_size", "16", "--lr", "3e-3", "--progress", "false", "--epochs", "2", *extra]


class Watch(Callback):
    """Keeps the trainer, and checks that every model/ it saves holds the averaged weights."""

    def __init__(self):
        self.checks: list[bool] = []
        self.trainer = None

    def on_train_begin(self, t):
        self.trainer = t

    def on_save(self, t):  # after on_evaluate: model/ was written this epoch if it was the best
        if t.state.best_epoch == t.state.epoch:
            self.checks.append(_holds(t.run.out / "model", self.average.shadow))

    @property
    def average(self) -> WeightAverage:
        return next(cb.average for cb in self.trainer.callbacks if isinstance(cb, WeightAveraging))


def _holds(model_dir, shadow: dict) -> bool:
    from nerkit.folder import ModelFolder
    from nerkit.model import load_model

    with torch.random.fork_rng():  # building the model draws random numbers: leave training's alone
        params = dict(load_model(ModelFolder(model_dir)).named_parameters())
    return all(torch.equal(params[n], s) for n, s in shadow.items())


def test_training_saves_the_average(monkeypatch, tmp_path, tiny_base, small_data):
    watch = Watch()
    with training_callbacks(monkeypatch, watch):
        assert main(_args(tiny_base, small_data, tmp_path / "run", "--train.ema", "0.9")) == 0
    avg = watch.average
    assert watch.checks and all(watch.checks)  # every saved model held the averaged weights
    assert avg.updates == json.loads((tmp_path / "run" / "metrics.json").read_text())["history"][-1]["step"]
    raw = dict(watch.trainer.run.unwrapped.named_parameters())  # and training went on with the raw ones
    assert any(not torch.allclose(raw[n], s) for n, s in avg.shadow.items())


def test_resume_restores_the_average(monkeypatch, tmp_path, tiny_base, small_data):
    straight, resumed = Watch(), Watch()
    with training_callbacks(monkeypatch, straight):
        assert main(_args(tiny_base, small_data, tmp_path / "straight", "--train.ema", "0.9")) == 0

    out = tmp_path / "resumed"
    with training_callbacks(monkeypatch, stop_after_epoch(1)):
        assert main(_args(tiny_base, small_data, out, "--train.ema", "0.9")) == 130
    assert (out / "checkpoint" / EMA_FILE).is_file()
    with training_callbacks(monkeypatch, resumed):
        assert main(_args(tiny_base, small_data, out, "--train.ema", "0.9", "--resume")) == 0
    assert resumed.average.updates == straight.average.updates
    for n, s in straight.average.shadow.items():
        assert torch.allclose(resumed.average.shadow[n], s, atol=1e-6), n

    def scores(run: str) -> dict:  # the interrupted run ends where the straight one did
        m = json.loads((tmp_path / run / "metrics.json").read_text())
        return {k: m[k] for k in ("best_epoch", "validation")} | {
            "history": [{k: h[k] for k in ("epoch", "step", "padding_fraction", "validation_f1")} for h in m["history"]]}

    assert scores("resumed") == scores("straight")


def test_bad_ema_value(capsys, tmp_path, tiny_base, small_data):
    assert main(_args(tiny_base, small_data, tmp_path / "bad", "--train.ema", "1.5")) == 2
    err = capsys.readouterr().err
    assert "train.ema" in err and "Traceback" not in err
