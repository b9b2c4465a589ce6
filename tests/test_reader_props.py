"""Properties of the CoNLL reader, on generated files (Hypothesis, bounded): a valid corpus written with
any column separators, line endings and an optional BOM reads back exactly; arbitrary bytes either read
or raise the reader's CorpusError, never anything else."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nerkit.corpus import CorpusError, read_conll

# Tokens: any printable text but the separators (space, tab) and line breaks; Unicode spaces included
# on purpose, as they are token characters to the reader.
TOKEN_CHARS = st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters=" \t\r\n\ufeff")
TOKEN = st.text(TOKEN_CHARS | st.sampled_from("\u00a0\u3000\u2028\u0085"), min_size=1, max_size=6).filter(
    lambda w: w.strip() != "" and not w.startswith("-DOCSTART-"))
TYPES = st.sampled_from(["PER", "LOC", "ORG"])
SEP = st.sampled_from([" ", "\t", "  ", " \t "])


@st.composite
def sentences(draw) -> list[tuple[str, str]]:
    """An IOB2 sentence: each entity opens with B- and goes on with I- of its type."""
    out, prev = [], "O"
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["O", "B", "I"] if prev != "O" else ["O", "B"]))
        tag = "O" if kind == "O" else f"{kind}-{draw(TYPES) if kind == 'B' else prev[2:]}"
        out.append((draw(TOKEN), tag))
        prev = tag
    return out


CORPUS = st.lists(st.lists(sentences(), min_size=1, max_size=3), min_size=1, max_size=3)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _read(data: bytes):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "c.conll"
        path.write_bytes(data)
        return read_conll(path, scheme="iob2")


@SETTINGS
@given(CORPUS, st.data(), st.sampled_from(["\n", "\r\n", "\r"]), st.booleans(), st.booleans(), st.integers(0, 2))
def test_valid_corpus_reads_back_exactly(docs, data, end, bom, docstart, extra_columns):
    lines = []
    for doc in docs:
        if docstart:
            lines += ["-DOCSTART- -X- O", ""]
        for sent in doc:
            for word, tag in sent:
                cols = [word] + ["X"] * extra_columns + [tag]
                lines.append(data.draw(SEP).join(cols) + data.draw(st.sampled_from(["", " ", "\t"])))
            lines.append(data.draw(st.sampled_from(["", " ", "\t"])))
    text = ("\ufeff" if bom else "") + end.join(lines) + end
    corpus = _read(text.encode("utf-8"))
    want = [[[w for w, _ in s] for s in doc] for doc in docs]
    got = [[s.words for s in d.sentences] for d in corpus.documents]
    if docstart:
        assert got == want
    else:
        assert got == [[s] for doc in want for s in doc]
    assert [s.tags for s in corpus.sentences] == [[t for _, t in s] for doc in docs for s in doc]
    assert corpus.has_documents == docstart


PIECES = st.sampled_from([b"a", b" ", b"\t", b"\n", b"\r", b"O", b"B-PER", b"I-LOC", b"-DOCSTART-", b"\xef\xbb\xbf",
                          b"\xff", b"\xc3\xa9", b"\xe3\x80\x80", b"\x00", b"B-", b"E-X", b"S-Y", b"x y z"])


@SETTINGS
@given(st.one_of(st.binary(max_size=80), st.lists(PIECES, max_size=40).map(b"".join)))
def test_any_bytes_read_or_raise_corpus_error(data):
    try:
        _read(data)
    except CorpusError as e:
        assert "\n" not in str(e)
