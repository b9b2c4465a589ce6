"""Everything that turns data files into Documents and back: CoNLL (corpus.py for now), text with
character spans (spans.py) and token rows (rows.py), chosen by formats.py. Every reader returns the
Corpus / Document / Sentence objects of corpus.py, and every writer takes them."""

from __future__ import annotations

from .base import AlignmentReport, DocSource, Loaded, Misaligned
from .dialects import DIALECTS
from .formats import (
    FORMATS,
    FormatName,
    detect_format,
    output_format,
    parse_split,
    read,
    read_corpus,
    split_documents,
    write,
    write_conll,
    write_predictions,
)
from .spans import POLICIES, Policy

__all__ = ["AlignmentReport", "DIALECTS", "DocSource", "FORMATS", "FormatName", "Loaded", "Misaligned", "POLICIES",
           "Policy", "detect_format", "output_format", "parse_split", "read", "read_corpus", "split_documents",
           "write", "write_conll", "write_predictions"]
