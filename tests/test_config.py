"""Config: TOML/YAML files, command-line overrides, and one-line errors for unknown keys and bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from nerkit.config import Config, ConfigError, dump_yaml, load_config, parse_overrides

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _err(*args, **kw) -> str:
    with pytest.raises(ConfigError) as ei:
        load_config(*args, **kw)
    msg = str(ei.value)
    assert "\n" not in msg
    return msg


def test_defaults():
    cfg = load_config()
    assert cfg == Config()
    assert cfg.train.epochs == 3 and cfg.data.dir == "conll2003" and cfg.decode.constrained is True


def test_toml(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('output = "runs/x"\n[train]\nepochs = 5\nlr = 1e-4\nprogress = false\n[data]\ncontext = 64\n')
    cfg = load_config(p)
    assert (cfg.output, cfg.train.epochs, cfg.train.lr, cfg.train.progress, cfg.data.context) == (
        "runs/x", 5, 1e-4, False, 64)
    assert cfg.train.batch_size == 32  # untouched keys keep their defaults


@pytest.mark.parametrize("suffix", [".yaml", ".yml"])
def test_yaml(tmp_path, suffix):
    p = tmp_path / f"c{suffix}"
    p.write_text("model:\n  name: bert-base-cased\n  shapes: off\ntrain:\n  lr: 3.0e-5\n  epochs: 2\n")
    cfg = load_config(p)
    assert cfg.model.name == "bert-base-cased" and cfg.train.lr == 3e-5 and cfg.train.epochs == 2
    assert cfg.model.shapes == "off"  # YAML 1.1 reads `off` as False; must not become "False"


def test_yaml_on_off_yes_no(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model:\n  shapes: on\ntrain:\n  precision: no\n  progress: no\ndecode:\n  constrained: false\n")
    cfg = load_config(p)
    assert cfg.model.shapes == "on" and cfg.train.precision == "no"
    assert cfg.train.progress is False and cfg.decode.constrained is False


def test_yaml_roundtrip(tmp_path):
    cfg = load_config(None, [("train.lr", "2e-4"), ("context", "128"), ("name", "x")])
    p = tmp_path / "back.yaml"
    p.write_text(dump_yaml(cfg))
    assert load_config(p) == cfg


def test_overrides_after_file(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[train]\nepochs = 5\n")
    cfg = load_config(p, parse_overrides(["--train.epochs", "7", "--lr=1e-3", "--batch-size", "8"]))
    assert cfg.train.epochs == 7 and cfg.train.lr == 1e-3 and cfg.train.batch_size == 8


def test_parse_overrides():
    assert parse_overrides(["--train.lr", "1e-4", "--epochs=2", "--x=a=b"]) == [
        ("train.lr", "1e-4"), ("epochs", "2"), ("x", "a=b")]
    with pytest.raises(ConfigError, match="expected a value"):
        parse_overrides(["--train.lr"])
    with pytest.raises(ConfigError, match="--section.key"):
        parse_overrides(["lr", "1"])


def test_short_keys():
    cfg = load_config(None, [("lr", "1e-3"), ("epochs", "1"), ("context", "64"), ("shapes", "on")])
    assert (cfg.train.lr, cfg.train.epochs, cfg.data.context, cfg.model.shapes) == (1e-3, 1, 64, "on")


@pytest.mark.parametrize("key, hint", [("train.lrr", "lr"), ("trian.epochs", "train.epochs"),
                                       ("epocs", "epochs")])
def test_unknown_key_suggests(key, hint):
    msg = _err(None, [(key, "1")])
    assert f"unknown key {key!r}" in msg and "did you mean" in msg and hint in msg


def test_unknown_key_in_file(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[train]\nbatchsize = 8\n")
    msg = _err(p)
    assert msg.startswith(str(p)) and "train.batch_size" in msg


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("epochs", "two", "expected a number"),
        ("epochs", "2.5", "whole number"),
        ("epochs", "inf", "finite"),
        ("lr", "nan", "finite"),
        ("progress", "maybe", "true or false"),
        ("epochs", "0", "positive"),
        ("lr", "-1", "positive"),
        ("warmup_ratio", "1.5", "fraction"),
        ("context", "16", "at least 32"),
        ("shapes", "sometimes", "auto, on, off"),
        ("precision", "fp8", "one of"),
        ("scheme", "bioes", "one of"),
    ],
)
def test_bad_values(key, value, expected):
    msg = _err(None, [(key, value)])
    assert expected in msg


def test_type_error_in_file(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[train]\nepochs = "many"\n')
    assert _err(p).startswith(f"{p} train.epochs")
    p.write_text("[train]\nlr = [1, 2]\n")
    assert "expected a number" in _err(p)
    p.write_text('[model]\nname = ["a", "b"]\n')
    assert "single value" in _err(p)


def test_bad_files(tmp_path):
    assert "does not exist" in _err(tmp_path / "nope.toml")
    p = tmp_path / "bad.toml"
    p.write_text("[train\nepochs = 1\n")
    assert "not valid TOML" in _err(p)
    y = tmp_path / "bad.yaml"
    y.write_text("- a\n- b\n")
    assert "expected a mapping" in _err(y)
    y.write_text("train: [1, 2\n")
    assert "not valid YAML" in _err(y)


def test_bool_and_numbers_from_strings():
    cfg = load_config(None, [("progress", "no"), ("constrained", "0"), ("max_steps", "1e3")])
    assert cfg.train.progress is False and cfg.decode.constrained is False and cfg.train.max_steps == 1000


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.*")), ids=lambda p: p.name)
def test_shipped_configs_load(path):
    if "distill" in path.name:  # `nerkit distill`'s settings; the teacher comes from the command line
        from nerkit.config import settings_from
        from nerkit.settings import DistillConfig

        cfg = settings_from(DistillConfig, path, [("distill.teachers", "runs/teacher")])
        assert cfg.distill.layers > 0
    else:
        cfg = load_config(path)
    assert cfg.output and cfg.model.name and cfg.train.epochs > 0


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("train.log_every", "0", "train.log_every: expected a positive number, got 0"),
        ("train.head_lr", "-1e-4", "train.head_lr: expected 0 (same as lr) or a learning rate in (0, 1], got -0.0001"),
        ("train.lr", "2", "train.lr: expected a learning rate in (0, 1], got 2.0"),
        ("train.weight_decay", "-0.01", "train.weight_decay: expected a weight decay in [0, 1], got -0.01"),
        ("train.grad_clip", "-1", "train.grad_clip: expected 0 (off) or a positive gradient norm, got -1.0"),
        ("train.max_tokens", "-5", "train.max_tokens: expected 0 (batch_size alone) or a positive token budget"),
        ("train.pad_to_multiple_of", "-8", "train.pad_to_multiple_of: expected 0 (the device's default)"),
        ("train.max_steps", "-1", "train.max_steps: expected 0 (all epochs) or a positive number of steps, got -1"),
        ("train.save_every", "-3", "train.save_every: expected 0 (epoch ends only) or a positive number of steps"),
        ("train.seed", "-1", "train.seed: expected a seed from 0 to 2**32 - 1, got -1"),
        ("train.ema", "1", "train.ema: expected 0 (off) or a decay in (0, 1)"),
        ("train.eval_max_tokens", "0", "train.eval_max_tokens: expected a positive number"),
        ("model.max_length", "5", "model.max_length: expected 0 (the model's own limit) or 16 to 8192 sub-words, got 5"),
    ],
)
def test_numeric_ranges(capsys, tmp_path, key, value, expected):
    """Every numeric training key is checked when the settings are read: one line (key, value, range),
    exit 2, and the run folder never made."""
    from nerkit.cli import main

    out = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path), "--output", str(out), f"--{key}={value}"]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and len(err.splitlines()) == 1, err
    assert not out.exists()
    assert _err(None, [(key, value)]).startswith(key)


def test_max_length_beyond_the_model(capsys, tmp_path, tiny_base, small_data):
    from nerkit.cli import main

    args = ["train", "--model.name", str(tiny_base), "--data", str(small_data), "--output", str(tmp_path / "r"),
            "--model.max_length", "8000"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "model.max_length: expected 0 or 16 to" in err and "got 8000" in err, err
