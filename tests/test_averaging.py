"""train.ema: the moving average itself, and that training evaluates, saves and resumes it."""

from __future__ import annotations

import json

import pytest
import torch

from nerkit.averaging import WeightAverage
from nerkit.cli import main


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


def test_training_saves_the_average(monkeypatch, tmp_path, tiny_base, small_data):
    import nerkit.training as training

    live, checks = [], []
    real_save = training.save_model

    def spy_save(model, tokenizer, path, meta):
        (avg, _), = live
        params = dict(model.named_parameters())
        checks.append(all(torch.equal(params[n], s) for n, s in avg.shadow.items()))
        real_save(model, tokenizer, path, meta)

    real_init = WeightAverage.__init__

    def spy_init(self, model, decay):
        real_init(self, model, decay)
        live.append((self, model))

    monkeypatch.setattr(training, "save_model", spy_save)
    monkeypatch.setattr(WeightAverage, "__init__", spy_init)
    assert main(_args(tiny_base, small_data, tmp_path / "run", "--train.ema", "0.9")) == 0
    (avg, model), = live
    assert checks and all(checks)  # every saved model held the averaged weights
    assert avg.updates == json.loads((tmp_path / "run" / "metrics.json").read_text())["history"][-1]["step"]
    raw = dict(model.named_parameters())  # and training went on with the raw ones
    assert any(not torch.allclose(raw[n], s) for n, s in avg.shadow.items())


def test_resume_restores_the_average(monkeypatch, tmp_path, tiny_base, small_data):
    import nerkit.training as training

    made = []
    real_init = WeightAverage.__init__

    def spy_init(self, model, decay):
        real_init(self, model, decay)
        made.append(self)

    monkeypatch.setattr(WeightAverage, "__init__", spy_init)
    assert main(_args(tiny_base, small_data, tmp_path / "straight", "--train.ema", "0.9")) == 0

    real_checkpoint = training._checkpoint

    def stop_after_first(acc, ckpt_dir, state, *rest):
        real_checkpoint(acc, ckpt_dir, state, *rest)
        if state["epoch"] == 1:
            raise KeyboardInterrupt

    out = tmp_path / "resumed"
    monkeypatch.setattr(training, "_checkpoint", stop_after_first)
    assert main(_args(tiny_base, small_data, out, "--train.ema", "0.9")) == 130
    assert (out / "checkpoint" / training.EMA_FILE).is_file()
    monkeypatch.setattr(training, "_checkpoint", real_checkpoint)
    assert main(_args(tiny_base, small_data, out, "--train.ema", "0.9", "--resume")) == 0
    straight, _, resumed = made
    assert resumed.updates == straight.updates
    for n, s in straight.shadow.items():
        assert torch.allclose(resumed.shadow[n], s, atol=1e-6), n


def test_bad_ema_value(capsys, tmp_path, tiny_base, small_data):
    assert main(_args(tiny_base, small_data, tmp_path / "bad", "--train.ema", "1.5")) == 2
    err = capsys.readouterr().err
    assert "train.ema" in err and "Traceback" not in err
