"""Settings from files and options: a dataclass tree (settings.py) read from TOML or YAML, then
`--section.key value` overrides, then checked. The CLI's flags are generated from the same tree.

Unknown keys are errors, with a suggestion, so that a typo never silently trains the wrong thing. A key's
last part works alone where it is unique (`--lr` for `--train.lr`).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import os
import tomllib
import typing
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError
from .settings import Config

__all__ = ["Config", "ConfigError", "add_options", "dump_yaml", "load_config", "parse_overrides", "settings_from"]
T = TypeVar("T")


def leaves(obj: Any, prefix: str = "") -> dict[str, tuple[Any, dataclasses.Field]]:
    """'section.key' -> (owning dataclass, its field)."""
    out = {}
    for f in dataclasses.fields(obj):
        val = getattr(obj, f.name)
        if dataclasses.is_dataclass(val):
            out.update(leaves(val, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = (obj, f)
    return out


def choices(obj: Any, f: dataclasses.Field) -> tuple[str, ...] | None:
    """The allowed values of a Literal-typed field."""
    hint = typing.get_type_hints(type(obj)).get(f.name)
    return typing.get_args(hint) if typing.get_origin(hint) is typing.Literal else None


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


def set_key(root: Any, key: str, value: Any, where: str) -> None:
    table = leaves(root)
    if key not in table:
        short = [k for k in table if k.split(".")[-1] == key]  # '--lr' for '--train.lr' when unique
        if len(short) == 1:
            key = short[0]
        else:
            names = list(table) + [k.split(".")[-1] for k in table]
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where}: unknown key {key!r}{hint}")
    obj, f = table[key]
    setattr(obj, f.name, _coerce(value, getattr(obj, f.name), f"{where} {key}"))


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """{'train': {'lr': 1}} -> {'train.lr': 1}."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def read_file(path: str | os.PathLike) -> dict[str, Any]:
    """A settings file (TOML, or YAML for any other suffix) as flat 'section.key' -> value."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"file {str(p)!r} does not exist", field="config")
    text = p.read_text(encoding="utf-8")
    try:
        raw = tomllib.loads(text) if p.suffix == ".toml" else (_yaml_load(text) or {})
    except Exception as e:
        raise ConfigError(f"{p}: not valid {p.suffix.lstrip('.').upper() or 'YAML'}: {str(e).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: expected a mapping of sections, got {type(raw).__name__}")
    return flatten(raw)


def settings_from(cls: type[T], path: str | os.PathLike | None = None,
                  overrides: list[tuple[str, Any]] | None = None) -> T:
    """Defaults, then the file (TOML or YAML), then overrides in order, then checks."""
    root = cls()
    if path is not None:
        for key, value in read_file(path).items():
            set_key(root, key, value, str(path))
    for key, value in overrides or []:
        set_key(root, key, value, "option")
    validate(root)
    return root


def load_config(path: str | os.PathLike | None = None, overrides: list[tuple[str, Any]] | None = None) -> Config:
    """The settings of `nerkit train`."""
    return settings_from(Config, path, overrides)


def validate(root: Any) -> None:
    """Each field against its Literal choices and `positive` mark, then each section's own check()."""
    for key, (obj, f) in leaves(root).items():
        value = getattr(obj, f.name)
        allowed = choices(obj, f)
        if allowed and value not in allowed:
            raise ConfigError(f"{key}: expected one of {', '.join(allowed)}, got {value!r}")
        if f.metadata.get("positive") and value <= 0:
            raise ConfigError(f"{key}: expected a positive number, got {value}")
    for obj in [root] + [getattr(root, f.name) for f in dataclasses.fields(root)]:
        if dataclasses.is_dataclass(obj) and hasattr(obj, "check") and (problem := obj.check()):
            raise ConfigError(problem)


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


def dump_yaml(cfg: Any) -> str:
    import yaml

    return yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False)


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


# ------------------------------------------------------------------------------------------ CLI flags

DEST = "settings:"  # argparse dest prefix of the generated options


def add_options(parser: argparse.ArgumentParser, cls: type) -> None:
    """One option per settings field: `--section.key`, its last part alone where unique (`--max-tokens`
    for `--predictor.max_tokens`), and the field's aliases; the other spellings (dashes for underscores
    and back) are accepted but not listed. Values stay strings here: settings_from coerces and checks
    them as it does a file's. Options that were not given leave no trace. Keys the class lists in
    HIDDEN_KEYS (inherited settings its check() refuses) get no option."""
    table = leaves(cls())
    last = [k.split(".")[-1] for k in table]
    group = parser.add_argument_group("settings (also read from a --config file, by section)")
    group.add_argument("--config", metavar="FILE", help="TOML or YAML file with these settings")
    for key, (obj, f) in table.items():
        if key in getattr(cls, "HIDDEN_KEYS", ()):
            continue
        short = key.split(".")[-1]
        shown = [f"--{key}"] + ([f"--{short.replace('_', '-')}"] if "." in key and last.count(short) == 1 else [])
        shown += [a for a in f.metadata.get("aliases", ()) if a not in shown]
        spellings = {f"--{key.replace('_', '-')}", f"--{short}" if last.count(short) == 1 else f"--{key}"}
        hidden = sorted(spellings - set(shown))
        value, allowed = getattr(obj, f.name), choices(obj, f)
        kw: dict[str, Any] = {"dest": DEST + key, "default": argparse.SUPPRESS}
        if f.metadata.get("flag"):
            kw.update(action="store_const", const="true")
        elif f.metadata.get("repeat"):
            kw.update(action="append", metavar="VALUE")
        else:
            kw["metavar"] = "{" + ",".join(allowed) + "}" if allowed else \
                ("BOOL" if type(value) is bool else type(value).__name__.upper())
        group.add_argument(*shown, help=f"{f.metadata.get('help', '')} (default: {value!r})".replace("%", "%%"), **kw)
        if hidden:
            group.add_argument(*hidden, help=argparse.SUPPRESS, **kw)
        for off in f.metadata.get("off", ()):
            group.add_argument(off, action="store_const", const="false", dest=DEST + key,
                               default=argparse.SUPPRESS, help=f"set {key} to false")


def given(ns: argparse.Namespace) -> list[tuple[str, str]]:
    """The generated options the command line set, as (key, value) overrides."""
    return [(k[len(DEST):], ",".join(v) if isinstance(v, list) else v) for k, v in vars(ns).items()
            if k.startswith(DEST)]


def from_args(cls: type[T], ns: argparse.Namespace, extra: list[str] = ()) -> T:  # type: ignore[assignment]
    """The settings of one command: defaults, --config FILE, the options given, then any `--key VALUE`
    argparse did not know (an unknown key fails there, with a suggestion)."""
    return settings_from(cls, ns.config, given(ns) + parse_overrides(list(extra)))
