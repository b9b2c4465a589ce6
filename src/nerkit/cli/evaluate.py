"""`nerkit evaluate` (entity-level scores) and `nerkit errors` (what went wrong, and a confusion PNG)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import UsageError
from ..settings import ErrorsSettings, EvaluateSettings
from .common import command


def register(sub) -> None:
    e = command(sub, "evaluate", EvaluateSettings, run_evaluate,
                "entity-level P/R/F1 of a trained model on CoNLL, span JSONL or token-row files (torch, ONNX or int8)")
    e.add_argument("--data", required=True, help="a gold file (CoNLL, span JSONL, token rows), or a folder "
                                                 "(its validation and test files)")
    e.add_argument("--predictions", help="write the predictions here in the input's format (CoNLL: 'token gold "
                                         "predicted' lines); a file, or a folder when --data is one")
    r = command(sub, "errors", ErrorsSettings, run_errors,
                "list false positives, misses and type confusions; draw a confusion matrix")
    r.add_argument("--data", required=True, help="a gold file: CoNLL, span JSONL or token rows")
    r.add_argument("--png", help="where to write the confusion matrix (default MODEL_DIR/confusion.png)")


def _gold_files(data: Path) -> dict[str, Path]:
    if data.is_dir():
        from ..corpus import find_split_file

        files = {s: find_split_file(data, s) for s in ("validation", "test")}
        found = {s: p for s, p in files.items() if p is not None}
        if not found:
            raise UsageError(f"no validation or test file found in {str(data)!r}; pass a file", field="data")
        return found
    if data.is_file():
        return {data.name: data}
    raise UsageError(f"{str(data)!r} does not exist, expected a gold file or folder", field="data")


def _gold(path: Path, s: EvaluateSettings, labels: list[str], context: int):
    """The gold file in any format (nerkit.data.Loaded: the corpus and what writing predictions back needs)."""
    from ..data import read
    from ..data.formats import check_corpus_labels

    loaded = read(path, s.format, s.scheme, s.misaligned, s.labels)
    if loaded.report is not None and loaded.report.cases:
        print("\n".join(loaded.report.lines(limit=20)), file=sys.stderr)
    check_corpus_labels(loaded, labels, "evaluation")
    if context and not loaded.corpus.has_documents:
        print(f"note: {path} has no -DOCSTART- documents; each sentence is its own document", file=sys.stderr)
    return loaded


def _target(out: Path, name: str, path: Path, fmt: str, several: bool) -> Path:
    """Where one file's predictions go: OUT itself, or OUT/NAME with the input's own extension."""
    if not (several or out.is_dir()):
        return out
    if fmt == "conll":
        return out / f"{name}.conll"
    return out / f"{Path(name).stem}{path.suffix}"


def run_evaluate(args: argparse.Namespace, extra: list[str]) -> int:
    from ..config import from_args
    from ..data import write_predictions
    from ..engine.predictor import CORPUS_BUDGET
    from ..evaluation import evaluate

    s = from_args(EvaluateSettings, args, extra)
    files = _gold_files(Path(args.data))
    pred = s.predictor.open(args.model_dir, CORPUS_BUDGET)
    results = {}
    for name, path in files.items():
        loaded = _gold(path, s, pred.labels, pred.meta.context)
        ev = evaluate(pred, loaded.corpus, desc=None if s.quiet else name)
        results[name] = ev.to_dict()
        if args.predictions:
            target = _target(Path(args.predictions), name, path, loaded.format,
                             len(files) > 1 or Path(args.data).is_dir())
            write_predictions(target, loaded, ev.predictions)
        if not s.json:
            print(ev.conlleval.table(name))
            print(f"{'strict IOB2':<12}{100 * ev.strict.micro.precision:>10.2f}"
                  f"{100 * ev.strict.micro.recall:>10.2f}{100 * ev.strict.micro.f1:>10.2f}\n")
    if s.json:
        print(json.dumps(results, indent=2))
    return 0


def run_errors(args: argparse.Namespace, extra: list[str]) -> int:
    from ..analysis import confusion_counts, find_errors, summary
    from ..config import from_args
    from ..engine.predictor import CORPUS_BUDGET
    from ..evaluation import predict_corpus
    from ..plots import confusion_matrix

    s = from_args(ErrorsSettings, args, extra)
    if not Path(args.data).is_file():
        raise UsageError(f"{args.data!r} is not a file, expected a gold file (CoNLL, span JSONL, token rows)",
                         field="data")
    pred = s.predictor.open(args.model_dir, CORPUS_BUDGET)
    loaded = _gold(Path(args.data), s, pred.labels, 0)
    corpus = loaded.corpus
    tags = predict_corpus(pred, corpus, desc=None if s.quiet else "tagging")
    sents = corpus.sentences
    errors = find_errors([x.words for x in sents], [x.tags for x in sents], tags)
    types, matrix = confusion_counts([x.tags for x in sents], tags)
    png = Path(args.png) if args.png else Path(args.model_dir) / "confusion.png"
    confusion_matrix(types, matrix, png, title=f"{Path(args.data).name}: gold vs predicted entity type")
    if s.json:
        print(json.dumps({"summary": summary(errors), "types": types, "confusion": matrix,
                          "errors": [e.to_dict() for e in errors]}, indent=2))
        return 0
    for kind in ("type_confusion", "false_negative", "false_positive"):
        cases = [e for e in errors if e.kind == kind]
        print(f"== {kind.replace('_', ' ')}s: {len(cases)}")
        for e in cases[: s.limit]:
            entity = e.gold or e.pred
            # CoNLL: a word per line; span and row files: the whole sentence sits on its record's line
            line = sents[e.sentence].line + (entity.start if entity and loaded.format == "conll" else 0)
            print(f"  {Path(args.data).name}:{line}  {e.context}")
        if len(cases) > s.limit:
            print(f"  ... {len(cases) - s.limit} more (--limit, or --json for all)")
    width = max(len(t) for t in types) + 2
    print("\nconfusion (rows gold, columns predicted, exact boundaries):")
    print(" " * width + "".join(f"{t:>{width}}" for t in types))
    for t, row in zip(types, matrix):
        print(f"{t:<{width}}" + "".join(f"{n:>{width}}" for n in row))
    print(f"\nconfusion matrix written to {png}")
    return 0
