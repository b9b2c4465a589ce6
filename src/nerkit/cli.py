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
    encoder = Encoder.from_meta(tokenizer, meta)
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


# ----------------------------------------------------------------------------------------------- errors

def cmd_errors(args: argparse.Namespace, extra: list[str]) -> int:
    import torch

    from .analysis import confusion_counts, find_errors, summary
    from .corpus import check_labels, read_conll
    from .encoding import Encoder
    from .evaluation import predict_corpus
    from .model import load_model
    from .plots import confusion_matrix

    if extra:
        raise UsageError(f"unrecognized arguments: {' '.join(extra)}")
    if not Path(args.data).is_file():
        raise UsageError(f"--data: {args.data!r} is not a file, expected a CoNLL file with gold tags")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, tokenizer, meta = load_model(args.model_dir, device=device)
    corpus = read_conll(args.data, args.scheme)
    check_labels(corpus, meta.labels, "evaluation")
    encoder = Encoder.from_meta(tokenizer, meta)
    pred = predict_corpus(model, encoder, corpus, meta.constrained, device, desc=None if args.quiet else "tagging")
    sents = corpus.sentences
    words, gold = [s.words for s in sents], [s.tags for s in sents]
    errors = find_errors(words, gold, pred)
    types, matrix = confusion_counts(gold, pred)
    png = Path(args.png) if args.png else Path(args.model_dir) / "confusion.png"
    confusion_matrix(types, matrix, png, title=f"{Path(args.data).name}: gold vs predicted entity type")
    if args.json:
        print(json.dumps({"summary": summary(errors), "types": types, "confusion": matrix,
                          "errors": [e.to_dict() for e in errors]}, indent=2))
        return 0
    for kind in ("type_confusion", "false_negative", "false_positive"):
        cases = [e for e in errors if e.kind == kind]
        print(f"== {kind.replace('_', ' ')}s: {len(cases)}")
        for e in cases[: args.limit]:
            line = sents[e.sentence].line + (e.gold or e.pred).start
            print(f"  {Path(args.data).name}:{line}  {e.context}")
        if len(cases) > args.limit:
            print(f"  ... {len(cases) - args.limit} more (--limit, or --json for all)")
    width = max(len(t) for t in types) + 2
    print("\nconfusion (rows gold, columns predicted, exact boundaries):")
    print(" " * width + "".join(f"{t:>{width}}" for t in types))
    for t, row in zip(types, matrix):
        print(f"{t:<{width}}" + "".join(f"{n:>{width}}" for n in row))
    print(f"\nconfusion matrix written to {png}")
    return 0


# --- more commands: each section defines cmd_NAME(args, extra) and registers itself in build_parser ---

# ---------------------------------------------------------------------------------------------- predict

def cmd_predict(args: argparse.Namespace, extra: list[str]) -> int:
    import contextlib

    from tqdm.auto import tqdm

    from . import atomic
    from .tagger import load

    unknown = [e for e in extra if e.startswith("-") and len(e) > 1]
    if unknown:
        raise UsageError(f"unrecognized arguments: {' '.join(unknown)}")
    args.texts = args.texts + extra  # argparse leaves texts that follow an option in `extra`
    if args.batch_size < 1:
        raise UsageError(f"--batch-size: must be at least 1, got {args.batch_size}")
    if args.texts and args.input:
        raise UsageError("give texts as arguments or --input files, not both")
    files = _input_files(args.input or [])
    unit = args.unit or ("file" if files else "line")
    tagger = load(args.model_dir, backend=args.backend, device=args.device, constrained=args.constrained)
    failures: list[str] = []
    total = sum(f.stat().st_size for f in files)
    bar = tqdm(total=total, unit="B", unit_scale=True, desc="predict", leave=False,
               disable=args.quiet or not files)
    docs = list(_arg_docs(args.texts)) if args.texts else _read_docs(files, unit, failures, bar.update)
    with contextlib.ExitStack() as stack:
        if args.output:  # written beside the target and renamed at the end: never half-written
            out = stack.enter_context(atomic.writer(args.output, errors="backslashreplace"))
        else:
            out = sys.stdout
            sys.stdout.reconfigure(errors="backslashreplace")  # lone surrogates print as \udXXX
        try:
            _predict_into(out, args, tagger, docs, files)
        finally:
            bar.close()
    for msg in failures:
        print(msg, file=sys.stderr)
    return 1 if failures else 0


def _predict_into(out, args: argparse.Namespace, tagger, docs, files: list[Path]) -> None:
    """Tag the documents in input order and write one record per document."""
    from collections import deque

    write = {"jsonl": _write_jsonl, "conll": _write_conll, "pretty": _write_pretty}[args.format]
    color = args.format == "pretty" and out.isatty() and not os.environ.get("NO_COLOR")
    pending: deque[tuple[str, int | None]] = deque()  # where each text read ahead came from

    def texts():
        for source, line, text in docs:
            pending.append((source, line))
            yield text

    interactive = not files and not args.texts and sys.stdin.isatty()  # answer each line at once
    for tagged in tagger.pipe_tagged(texts(), batch_size=args.batch_size, read_ahead=1 if interactive else None):
        source, line = pending.popleft()
        write(out, source, line, tagged, color)
        if interactive:
            out.flush()


def _input_files(paths: list[str]) -> list[Path]:
    """Files named, and the non-hidden files under folders named, in sorted order."""
    files: list[Path] = []
    for name in paths:
        p = Path(name)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file()
                           and not any(part.startswith(".") for part in f.relative_to(p).parts))
            if not found:
                raise UsageError(f"--input: folder {name!r} holds no files")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise UsageError(f"--input: {name!r} does not exist, expected a text file or folder")
    return files


def _arg_docs(texts: list[str]):
    for i, t in enumerate(texts, 1):
        yield "arg", i, t


def _read_docs(files: list[Path], unit: str, failures: list[str], progress):
    """(source, line, text) per document: one per line, or one per file (unit="file"). Standard input
    when there are no files. A line that is not UTF-8 is reported as FILE:LINE and left out (in a
    whole file it becomes an empty line, so later line numbers stay right); the rest is still tagged."""
    sources = [(str(f), f) for f in files] or [("<stdin>", None)]
    for name, path in sources:
        stream = open(path, "rb") if path is not None else sys.stdin.buffer  # noqa: SIM115
        try:
            kept: list[str] = []
            for n, raw in enumerate(stream, 1):
                progress(len(raw))
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    failures.append(f"{name}:{n}: not UTF-8 ({e.reason} at byte {e.start}); line skipped")
                    line = "\n" if raw.endswith(b"\n") else ""
                    if unit == "line":
                        continue
                if unit == "line":
                    yield name, n, line.rstrip("\r\n")
                else:
                    kept.append(line)
            if unit == "file":
                yield name, None, "".join(kept)
        finally:
            if path is not None:
                stream.close()


def _write_jsonl(out, source: str, line: int | None, tagged, color: bool) -> None:
    rec: dict = {"source": source}
    if line is not None:
        rec["line"] = line
    rec["spans"] = [s.to_dict() for s in tagged.spans]
    out.write(json.dumps(rec, ensure_ascii=False) + "\n")


def _write_conll(out, source: str, line: int | None, tagged, color: bool) -> None:
    """Two columns, word and IOB2 tag; -DOCSTART- opens each document, as `nerkit evaluate` reads it."""
    lines = ["-DOCSTART- O", ""]
    for words, tags in zip(tagged.sentences, tagged.tags):
        lines += [f"{w.text.replace(' ', '_')} {t}" for w, t in zip(words, tags)] + [""]
    out.write("\n".join(lines) + "\n")


_COLORS = ["\033[1;31m", "\033[1;32m", "\033[1;33m", "\033[1;34m", "\033[1;35m", "\033[1;36m"]


def _write_pretty(out, source: str, line: int | None, tagged, color: bool) -> None:
    """The text with entities marked: colored on a terminal, [text](TYPE) elsewhere."""
    head = f"{source}:{line}" if line is not None else source
    parts, pos = [], 0
    for s in tagged.spans:
        parts.append(tagged.text[pos : s.start])
        if color:
            c = _COLORS[hash(s.label) % len(_COLORS)]
            parts.append(f"{c}{s.text}\033[0m\033[2m {s.label}\033[0m")
        else:
            parts.append(f"[{s.text}]({s.label})")
        pos = s.end
    parts.append(tagged.text[pos:])
    out.write((f"\033[2m{head}\033[0m" if color else f"# {head}") + "\n" + "".join(parts).rstrip("\n") + "\n\n")


# ----------------------------------------------------------------------------------------------- export

def cmd_export(args: argparse.Namespace, extra: list[str]) -> int:
    from .export import export_onnx

    if extra:
        raise UsageError(f"unrecognized arguments: {' '.join(extra)}")
    if not (args.onnx or args.int8):
        raise UsageError("nothing to export: pass --onnx (and --int8 for the quantized model too)")
    result = export_onnx(args.model_dir, int8=args.int8, opset=args.opset)
    for path in (result.fp32, result.int8):
        if path is not None:
            print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    print(f"onnxruntime vs torch: max |logit difference| {result.max_abs_diff:.2e}")
    return 0


# ------------------------------------------------------------------------------------------------ serve

def cmd_serve(args: argparse.Namespace, extra: list[str]) -> int:
    # Idle OpenMP threads sleep instead of spinning, so the event loop gets a core between model calls:
    # bench/serve_load.py went from 61.7 to 70.0 req/s and p99 591 to 479 ms. Must precede torch's import.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from .serve import PortError, ServeSettings, run

    if extra:
        raise UsageError(f"unrecognized arguments: {' '.join(extra)}")
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port: {args.port} is not a port number (0-65535)")
    if args.workers < 1:
        raise UsageError(f"--workers: {args.workers}, expected 1 or more")
    try:
        settings = ServeSettings(max_body_bytes=args.max_body_bytes, max_chars=args.max_chars,
                                 max_texts=args.max_texts, request_timeout_s=args.timeout,
                                 micro_batching=not args.no_batching, max_wait_ms=args.max_wait_ms,
                                 max_batch=args.max_batch, batch_size=args.batch_size, threads=args.threads)
    except ValueError as e:
        raise UsageError(str(e)) from None
    try:
        run(args.model_dir, host=args.host, port=args.port, workers=args.workers, backend=args.backend,
            device=args.device, settings=settings, log_level=args.log_level)
    except PortError as e:
        raise UsageError(str(e)) from None
    return 0



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

    r = sub.add_parser("errors", help="list false positives, misses and type confusions; draw a confusion matrix")
    r.add_argument("model_dir", metavar="MODEL_DIR", help="model folder (or a run folder with model/)")
    r.add_argument("--data", required=True, help="a CoNLL file with gold tags")
    r.add_argument("--scheme", default="auto", help="tag scheme of the file (default: auto)")
    r.add_argument("--limit", type=int, default=20, help="cases shown per kind (default 20)")
    r.add_argument("--png", help="where to write the confusion matrix (default MODEL_DIR/confusion.png)")
    r.add_argument("--json", action="store_true", help="print everything as JSON")
    r.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=cmd_errors, extra_ok=False)

    # --- more parsers: register further commands below this line ---
    pr = sub.add_parser("predict", help="tag raw text: arguments, files, a folder, or standard input",
                        description="Tag text with a trained model. Texts come from the arguments, from "
                                    "--input files or folders, or from standard input (one document per "
                                    "line). Writes JSON Lines (one record per document), CoNLL columns, "
                                    "or a highlighted view.")
    pr.add_argument("model_dir", metavar="MODEL_DIR", help="model folder (or a run folder with model/)")
    pr.add_argument("texts", nargs="*", metavar="TEXT", help="texts to tag, one document each")
    pr.add_argument("-i", "--input", action="append", metavar="PATH",
                    help="a text file or a folder of them (repeatable); default: standard input")
    pr.add_argument("--unit", choices=["line", "file"],
                    help="one document per line, or per file (default: file for --input, line for stdin)")
    pr.add_argument("-f", "--format", choices=["jsonl", "conll", "pretty"], default="jsonl",
                    help="output format (default: jsonl)")
    pr.add_argument("-o", "--output", help="write here instead of standard output")
    pr.add_argument("--backend", choices=["torch", "onnx", "onnx-int8"], default="torch",
                    help="torch, or onnxruntime on the file `nerkit export` wrote (default: torch)")
    pr.add_argument("--device", help="torch device: cpu, cuda, cuda:1 ... (default: cuda when available)")
    pr.add_argument("--batch-size", type=int, default=32,
                    help="windows per model call (default: 32; 256 is faster on a CPU but uses more memory)")
    pr.add_argument("--argmax", dest="constrained", action="store_false", default=None,
                    help="plain argmax instead of constrained (Viterbi) decoding")
    pr.add_argument("--quiet", action="store_true", help="no progress bar")
    pr.set_defaults(func=cmd_predict, extra_ok=True)

    x = sub.add_parser("export", help="write an ONNX model (optionally int8) into the model folder",
                       description="Export to MODEL_DIR/onnx/model.onnx for onnxruntime; --int8 also writes "
                                   "model.int8.onnx with dynamic int8 quantization. Use them with "
                                   "`nerkit predict --backend onnx|onnx-int8`.")
    x.add_argument("model_dir", metavar="MODEL_DIR", help="model folder (or a run folder with model/)")
    x.add_argument("--onnx", action="store_true", help="export to ONNX")
    x.add_argument("--int8", action="store_true", help="also write a dynamically int8-quantized model")
    x.add_argument("--opset", type=int, default=17, help="ONNX opset (default: 17)")
    x.set_defaults(func=cmd_export, extra_ok=False)

    v = sub.add_parser("serve", help="serve a model over HTTP: JSON API, web page, metrics",
                       description="Start a FastAPI app under uvicorn: POST /v1/entities, GET /v1/labels, "
                                   "/healthz, /metrics, /docs, and a web page at /.")
    v.add_argument("model_dir", metavar="MODEL_DIR", help="model folder (or a run folder with model/)")
    v.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, this machine only)")
    v.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    v.add_argument("--workers", type=int, default=1, help="worker processes, each loads the model (default 1)")
    v.add_argument("--backend", default="torch", choices=["torch", "onnx", "onnx-int8"],
                   help="inference backend (onnx needs `nerkit export --onnx` first)")
    v.add_argument("--device", help="cpu, cuda, ... (default: the tagger's choice)")
    v.add_argument("--max-wait-ms", type=float, default=5.0,
                   help="micro-batching: how long to wait for more requests to join a batch (default 5)")
    v.add_argument("--max-batch", type=int, default=32, help="micro-batching: most texts per model call")
    v.add_argument("--batch-size", type=int, default=32,
                   help="most texts per forward pass within a micro-batch (default 32); the tagger cuts a "
                        "micro-batch of mixed lengths into cheaper, less padded passes on its own")
    v.add_argument("--no-batching", action="store_true", help="run each request alone (no micro-batching)")
    v.add_argument("--max-body-bytes", type=int, default=1_000_000, help="largest request body (default 1 MB)")
    v.add_argument("--max-chars", type=int, default=10_000, help="most characters per text (default 10000)")
    v.add_argument("--max-texts", type=int, default=64, help="most texts per request (default 64)")
    v.add_argument("--timeout", type=float, default=30.0, help="request timeout in seconds (default 30)")
    v.add_argument("--threads", type=int, default=0,
                   help="torch threads per worker (default: all cores for 1 worker, cores/N for N)")
    v.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                   help="uvicorn log level")
    v.set_defaults(func=cmd_serve, extra_ok=False)

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
