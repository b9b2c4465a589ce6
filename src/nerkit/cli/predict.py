"""`nerkit predict`: tag raw text from arguments, files, folders or standard input."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable

from ..errors import UsageError
from ..settings import PredictSettings
from .common import command


def register(sub) -> None:
    p = command(sub, "predict", PredictSettings, run,
                "tag raw text: arguments, files, a folder, or standard input",
                description="Tag text with a trained model. Texts come from the arguments, from "
                            "--input files or folders (text, JSON Lines with --text-field, Parquet), or "
                            "from standard input (one document per line). Writes JSON Lines (one record "
                            "per document), Parquet, CoNLL columns, or a highlighted view. With --ray, "
                            "tags on Ray Data into an output folder, one part file per input block.")
    p.add_argument("texts", nargs="*", metavar="TEXT", help="texts to tag, one document each")
    p.add_argument("-i", "--input", action="append", metavar="PATH",
                   help="a file or a folder of them (repeatable; local, or any URI pyarrow opens: "
                        "s3://, gs://, ...); default: standard input")
    p.add_argument("-o", "--output", help="write here instead of standard output; with --ray: the output folder")
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="tag on Ray Data: join the cluster at ADDRESS (host:6379, ray://host:10001, auto), "
                        "or start Ray on this machine when none is given; needs -i and -o")


def run(args: argparse.Namespace, extra: list[str]) -> int:
    from ..config import from_args

    options = [e for e in extra if e.startswith("-") and len(e) > 1]
    settings = from_args(PredictSettings, args, options)
    texts = args.texts + [e for e in extra if e not in options]  # argparse leaves texts after an option in extra
    if texts and args.input:
        raise UsageError("give texts as arguments or --input files, not both")
    if settings.format == "parquet" and not args.output:
        raise UsageError("-f parquet writes a file: give -o OUTPUT", field="format")
    if args.ray is not None:
        return _run_ray(args, settings, texts)
    return _run_here(args, settings, texts)


def _run_ray(args: argparse.Namespace, settings: PredictSettings, texts: list[str]) -> int:
    from ..bulk.ray_tag import run_ray

    if texts or not args.input or not args.output:
        raise UsageError("--ray tags --input files into an -o OUTPUT_DIR folder", field="ray")
    summary = run_ray(args.model_dir, args.input, args.output, settings, args.ray or None,
                      log=lambda m: print(m, file=sys.stderr))
    for line in summary.lines():
        print(line, file=sys.stderr)
    for msg in summary.failures:
        print(msg, file=sys.stderr)
    return 1 if summary.failures else 0


def _run_here(args: argparse.Namespace, settings: PredictSettings, texts: list[str]) -> int:
    import contextlib

    from tqdm.auto import tqdm

    from ..atomic import writer
    from ..bulk.blocks import plan
    from ..bulk.files import list_inputs
    from ..bulk.records import Doc
    from ..engine.predictor import TEXT_BUDGET
    from ..tagger import Tagger

    files = list_inputs(args.input) if args.input else []
    unit = settings.unit if settings.unit != "auto" else ("file" if files else "line")
    blocks = plan(files, settings.input_format, unit, settings.block_rows, settings.text_field) if files else []
    tagger = Tagger(settings.predictor.open(args.model_dir, TEXT_BUDGET))
    failures: list[str] = []
    bar = tqdm(total=sum(f.size for f in files), unit="B", unit_scale=True, desc="predict",
               leave=False, disable=settings.quiet or not files)
    interactive = not files and not texts and sys.stdin.isatty()
    with contextlib.ExitStack() as stack:
        if settings.format == "parquet":
            out = stack.enter_context(writer(args.output, binary=True))
        elif args.output:  # written beside the target and renamed at the end: never half-written
            out = stack.enter_context(writer(args.output, errors="backslashreplace"))
        else:
            out = sys.stdout
            sys.stdout.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]  # lone surrogates print as \udXXX
        try:
            if texts:
                streams = [[Doc("arg", i, t) for i, t in enumerate(texts, 1)]]
            elif files:
                streams = _block_docs(blocks, settings, failures, bar.update)
            else:
                streams = [_stdin_docs(settings, unit, failures)]
            _predict_into(out, settings, tagger, streams, interactive)
        finally:
            bar.close()
    for msg in failures:
        print(msg, file=sys.stderr)
    return 1 if failures else 0


def _block_docs(blocks, settings: PredictSettings, failures: list[str], progress: Callable[[int], object]):
    """Each block's documents as its own stream: the blocks and batches `--ray` tags, so both agree."""
    from ..bulk.blocks import read_block

    for block in blocks:
        yield list(read_block(block, settings.text_field, failures, progress))


def _stdin_docs(settings: PredictSettings, unit: str, failures: list[str]):
    from ..bulk.blocks import iter_line_docs

    kind = settings.input_format if settings.input_format != "auto" else "text"
    if kind == "parquet":
        raise UsageError("Parquet cannot be read from standard input: give -i FILE", field="input_format")
    return iter_line_docs(sys.stdin.buffer, "<stdin>", kind, settings.text_field, 1, failures,
                          whole=kind == "text" and unit == "file")


def _predict_into(out, settings: PredictSettings, tagger, streams: Iterable[Iterable], interactive: bool) -> None:
    """Tag each stream of documents in input order and write one record per document."""
    from collections import deque

    from ..bulk.records import ParquetRecords, jsonl_line, record

    sink = ParquetRecords(out) if settings.format == "parquet" else None
    write = {"conll": _write_conll, "pretty": _write_pretty}.get(settings.format)
    color = settings.format == "pretty" and out.isatty() and not os.environ.get("NO_COLOR")
    for docs in streams:
        pending: deque = deque()  # the documents read ahead, in order

        def texts(docs=docs, pending=pending):
            for doc in docs:
                pending.append(doc)
                yield doc.text

        # on a terminal, answer each line at once
        for tagged in tagger.pipe_tagged(texts(), read_ahead=1 if interactive else None):
            doc = pending.popleft()
            if write is not None:
                write(out, doc.source, doc.line, tagged, color)
            else:
                rec = record(doc, [s.to_dict() for s in tagged.spans])
                if sink is not None:
                    sink.add(rec)
                else:
                    out.write(jsonl_line(rec))
            if interactive:
                out.flush()
    if sink is not None:
        sink.close()


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
