"""The `nerkit` command. Exit codes: 0 success, 1 unexpected failure, 2 bad usage or bad input, 130 stopped."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input or options: printed as one line, exit 2."""


def _user_errors() -> tuple[type[BaseException], ...]:
    from .config import ConfigError
    from .corpus import CorpusError
    from .model import ModelError

    return (UsageError, ConfigError, CorpusError, ModelError, FileNotFoundError)


# ------------------------------------------------------------------------------------------------ train

def cmd_train(args: argparse.Namespace, extra: list[str]) -> int:
    from .config import load_config, parse_overrides
    from .training import train

    overrides = parse_overrides(extra)
    if args.data:
        overrides.append(("data.dir", args.data))
    if args.output:
        overrides.append(("output", args.output))
    cfg = load_config(args.config, overrides)
    metrics = train(cfg, resume=args.resume)
    if metrics:
        parts = [f"{name} F1 {100 * metrics[name]['conlleval']['micro']['f1']:.2f}"
                 for name in ("validation", "test") if name in metrics]
        print(f"done: {', '.join(parts)} | model in {Path(cfg.output) / 'model'}")
    return 0


# --------------------------------------------------------------------------------------------- evaluate

def cmd_evaluate(args: argparse.Namespace, extra: list[str]) -> int:
    import torch

    from .corpus import check_labels, find_split_file, read_conll
    from .encoding import Encoder
    from .evaluation import evaluate_corpus
    from .metrics import write_predictions
    from .model import load_model

    if extra:
        raise UsageError(f"unrecognized arguments: {' '.join(extra)}")
    data = Path(args.data)
    if data.is_dir():
        files = {s: find_split_file(data, s) for s in ("validation", "test")}
        files = {s: p for s, p in files.items() if p is not None}
        if not files:
            raise UsageError(f"--data: no validation or test file found in {str(data)!r}; pass a file")
    elif data.is_file():
        files = {data.name: data}
    else:
        raise UsageError(f"--data: {str(data)!r} does not exist, expected a CoNLL file or folder")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, tokenizer, meta = load_model(args.model_dir, device=device)
    encoder = Encoder(tokenizer, meta.labels, meta.max_length, meta.context, meta.shapes)
    constrained = meta.constrained if args.constrained is None else args.constrained
    results = {}
    for name, path in files.items():
        corpus = read_conll(path, args.scheme)
        check_labels(corpus, meta.labels, "evaluation")
        if meta.context and not corpus.has_documents:
            print(f"note: {path} has no -DOCSTART- documents; each sentence is its own document",
                  file=sys.stderr)
        ev = evaluate_corpus(model, encoder, corpus, constrained, device, desc=None if args.quiet else name)
        results[name] = ev.to_dict()
        if args.predictions:
            out = Path(args.predictions)
            target = out / f"{name}.conll" if len(files) > 1 or out.is_dir() else out
            sents = corpus.sentences
            write_predictions(target, [s.words for s in sents], [s.tags for s in sents], ev.predictions)
        if not args.json:
            print(ev.conlleval.table(name))
            print(f"{'strict IOB2':<12}{100 * ev.strict.micro.precision:>10.2f}"
                  f"{100 * ev.strict.micro.recall:>10.2f}{100 * ev.strict.micro.f1:>10.2f}\n")
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


# --- more commands: each section defines cmd_NAME(args, extra) and registers itself in build_parser ---


# ------------------------------------------------------------------------------------------------- main

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nerkit", description="Fine-tune and run transformer NER models.")
    p.add_argument("--version", action="version", version=f"nerkit {_version()}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser("train", help="fine-tune a model, then evaluate it on validation and test",
                       description="Train with a config file; any config key can be overridden as "
                                   "--section.key VALUE (e.g. --train.lr 1e-4, or --lr 1e-4 when unique).")
    t.add_argument("--config", help="TOML or YAML config (e.g. configs/conll03-minilm.toml)")
    t.add_argument("--data", help="folder with the train/validation/test CoNLL files (overrides data.dir)")
    t.add_argument("--output", help="run folder (overrides output)")
    t.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    t.set_defaults(func=cmd_train, extra_ok=True)

    e = sub.add_parser("evaluate", help="entity-level P/R/F1 of a trained model on CoNLL files")
    e.add_argument("model_dir", metavar="MODEL_DIR", help="model folder (or a run folder with model/)")
    e.add_argument("--data", required=True, help="a CoNLL file, or a folder (its validation and test files)")
    e.add_argument("--scheme", default="auto", help="tag scheme of the file: auto, iob1, iob2, iobes, bilou, io")
    e.add_argument("--predictions", help="write 'token gold predicted' lines here (file, or folder for several)")
    e.add_argument("--json", action="store_true", help="print the reports as JSON")
    e.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    e.add_argument("--argmax", dest="constrained", action="store_false", default=None,
                   help="plain argmax instead of constrained (Viterbi) decoding")
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    e.set_defaults(func=cmd_evaluate, extra_ok=False)

    # --- more parsers: register further commands below this line ---
    return p


def _version() -> str:
    from . import __version__

    return __version__


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
    except _user_errors() as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"nerkit: error: {msg}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
