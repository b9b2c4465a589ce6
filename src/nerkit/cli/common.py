"""What the commands share: a subcommand with MODEL_DIR and its settings' flags."""

from __future__ import annotations

import argparse

from ..config import add_options


def command(sub, name: str, cls: type | None, func, help: str, description: str | None = None,
            model_dir: bool = True) -> argparse.ArgumentParser:
    """A subcommand parser with MODEL_DIR (when it takes a model) and the flags of settings class `cls`.
    Options argparse does not know go on to the settings, which name the unknown key and suggest one."""
    # No prefix abbreviations: a mistyped key must fail with a suggestion, not match a longer one.
    p = sub.add_parser(name, help=help, description=description or help[:1].upper() + help[1:] + ".",
                       allow_abbrev=False)
    if model_dir:
        p.add_argument("model_dir", metavar="MODEL_DIR", help="model folder (or a run folder with model/)")
    if cls is not None:
        add_options(p, cls)
    p.set_defaults(func=func, extra_ok=cls is not None)
    return p
