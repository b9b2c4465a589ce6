"""The `nerkit` command. Exit codes: 0 success, 1 unexpected failure, 2 bad usage or bad input, 130 stopped.

Wiring only: each command module declares its parser (its settings' flags generated from settings.py) and
a `run(args, extra) -> exit code`. Imports stay light until a command runs.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import NerkitError
from ..version import __version__
from . import convert, evaluate, predict, serve, train

EXIT_USAGE = 2
COMMANDS = (train, evaluate, predict, serve, convert)
# The option a user typed for a settings field a library names in an error.
OPTION_OF_FIELD = {"model_dir": "MODEL_DIR", "data.dir": "--data", "data": "--data", "config": "--config",
                   "resume": "--resume", "output": "--output", "backend": "--backend", "host": "--host",
                   "port": "--port", "input": "--input",
                   "to": "--to", "dialect": "--dialect", "distill.teachers": "--teacher", "data.format": "--format", "data.split": "--data.split",
                   "int8_aim": "--int8-aim"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nerkit", description="Fine-tune and run transformer NER models.")
    p.add_argument("--version", action="version", version=f"nerkit {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return p


def error_line(e: NerkitError) -> str:
    where = OPTION_OF_FIELD.get(e.field or "", e.field)
    return f"{where}: {e.message}" if where else e.message


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USAGE
    if extra and not args.extra_ok:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.func(args, extra)
    except KeyboardInterrupt:
        print("nerkit: stopped", file=sys.stderr)
        return 130
    except NerkitError as e:
        print(f"nerkit: error: {error_line(e)}", file=sys.stderr)
        return EXIT_USAGE
    except FileNotFoundError as e:
        print(f"nerkit: error: {e}", file=sys.stderr)
        return EXIT_USAGE
