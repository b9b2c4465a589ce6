"""`nerkit convert IN OUT`: between CoNLL, text with character spans and token rows."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import UsageError
from ..settings import ConvertSettings
from .common import command


def register(sub) -> None:
    c = command(sub, "convert", ConvertSettings, run_convert,
                "convert annotations between CoNLL, span JSONL (doccano, spaCy/Prodigy, Label Studio) and "
                "token rows (JSON, JSONL, Parquet)",
                description="Read IN in any format nerkit trains on and write OUT in the format its extension "
                            "names (.jsonl/.json: text with spans, .parquet: rows, else CoNLL) or --to. Spans "
                            "whose edges are not on word boundaries follow --misaligned and are listed.",
                model_dir=False)
    c.add_argument("input", metavar="IN", help="the file to read")
    c.add_argument("output", metavar="OUT", help="the file to write")


def run_convert(args: argparse.Namespace, extra: list[str]) -> int:
    from ..config import from_args
    from ..data import output_format, read, write

    s = from_args(ConvertSettings, args, extra)
    src, dst = Path(args.input), Path(args.output)
    if not src.is_file():
        raise UsageError(f"IN: {str(src)!r} is not a file")
    if dst.resolve() == src.resolve():
        raise UsageError(f"OUT: {str(dst)!r} is the input file; write the conversion elsewhere")
    loaded = read(src, s.format, s.scheme, s.misaligned, s.labels)
    if loaded.report is not None and loaded.report.cases:
        print("\n".join(loaded.report.lines(limit=50)), file=sys.stderr)
    fmt = output_format(dst, s.to)
    write(dst, loaded.corpus, fmt, s.dialect)
    if not s.quiet:
        c = loaded.corpus
        n_ent = sum(t.startswith("B-") for x in c.sentences for t in x.tags)
        print(f"wrote {dst} ({fmt}{' ' + s.dialect if fmt == 'spans' else ''}): {len(c.documents)} documents, "
              f"{len(c.sentences)} sentences, {sum(len(x.words) for x in c.sentences)} words, {n_ent} entities "
              f"(read {src} as {loaded.format})")
    return 0
