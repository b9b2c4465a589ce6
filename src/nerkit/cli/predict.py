"""`nerkit predict`: tag raw text from arguments, files, folders or standard input."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from ..errors import UsageError
from ..settings import PredictSettings
from .common import command


def register(sub) -> None:
    p = command(sub, "predict", PredictSettings, run,
                "tag raw text: arguments, files, a folder, or standard input",
                description="Tag text with a trained model. Texts come from the arguments, from "
                            "--input files or folders, or from standard input (one document per "
                            "line). Writes JSON Lines (one record per document), CoNLL columns, "
                            "or a highlighted view.")
    p.add_argument("texts", nargs="*", metavar="TEXT", help="texts to tag, one document each")
    p.add_argument("-i", "--input", action="append", metavar="PATH",
                   help="a text file or a folder of them (repeatable); default: standard input")
    p.add_argument("-o", "--output", help="write here instead of standard output")


def run(args: argparse.Namespace, extra: list[str]) -> int:
    import contextlib

    from tqdm.auto import tqdm

    from ..atomic import writer
    from ..config import from_args
    from ..engine.predictor import TEXT_BUDGET
    from ..tagger import Tagger

    options = [e for e in extra if e.startswith("-") and len(e) > 1]
    settings = from_args(PredictSettings, args, options)
    texts = args.texts + [e for e in extra if e not in options]  # argparse leaves texts after an option in extra
    if texts and args.input:
        raise UsageError("give texts as arguments or --input files, not both")
    files = _input_files(args.input or [])
    unit = settings.unit if settings.unit != "auto" else ("file" if files else "line")
    tagger = Tagger(settings.predictor.open(args.model_dir, TEXT_BUDGET))
    failures: list[str] = []
    bar = tqdm(total=sum(f.stat().st_size for f in files), unit="B", unit_scale=True, desc="predict",
               leave=False, disable=settings.quiet or not files)
    docs = list(_arg_docs(texts)) if texts else _read_docs(files, unit, failures, bar.update)
    with contextlib.ExitStack() as stack:
        if args.output:  # written beside the target and renamed at the end: never half-written
            out = stack.enter_context(writer(args.output, errors="backslashreplace"))
        else:
            out = sys.stdout
            sys.stdout.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]  # lone surrogates print as \udXXX
        try:
            _predict_into(out, settings, tagger, docs, interactive=not files and not texts and sys.stdin.isatty())
        finally:
            bar.close()
    for msg in failures:
        print(msg, file=sys.stderr)
    return 1 if failures else 0


def _predict_into(out, settings: PredictSettings, tagger, docs, interactive: bool) -> None:
    """Tag the documents in input order and write one record per document."""
    from collections import deque

    write = {"jsonl": _write_jsonl, "conll": _write_conll, "pretty": _write_pretty}[settings.format]
    color = settings.format == "pretty" and out.isatty() and not os.environ.get("NO_COLOR")
    pending: deque[tuple[str, int | None]] = deque()  # where each text read ahead came from

    def texts():
        for source, line, text in docs:
            pending.append((source, line))
            yield text

    # on a terminal, answer each line at once
    for tagged in tagger.pipe_tagged(texts(), read_ahead=1 if interactive else None):
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
                raise UsageError(f"folder {name!r} holds no files", field="input")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise UsageError(f"{name!r} does not exist, expected a text file or folder", field="input")
    return files


def _arg_docs(texts: list[str]):
    for i, t in enumerate(texts, 1):
        yield "arg", i, t


def _read_docs(files: list[Path], unit: str, failures: list[str], progress: Callable[[int], object]):
    """(source, line, text) per document: one per line, or one per file (unit="file"). Standard input
    when there are no files. A line that is not UTF-8 is reported as FILE:LINE and left out (in a
    whole file it becomes an empty line, so later line numbers stay right); the rest is still tagged."""
    sources: list[tuple[str, Path | None]] = [(str(f), f) for f in files] or [("<stdin>", None)]
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
