"""The CoNLL reader: layouts it accepts, one-line errors for bad input, and exact counts on the real data."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from nerkit.corpus import CorpusError, load_splits, read_conll, resolve_data_dir
from nerkit.schemes import spans


def _write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _error(path: Path, **kw) -> str:
    with pytest.raises(CorpusError) as ei:
        read_conll(path, **kw)
    msg = str(ei.value)
    assert "\n" not in msg, msg
    return msg


# ------------------------------------------------------------------------------------------- layouts


def test_two_columns(tmp_path):
    c = read_conll(_write(tmp_path / "a.txt", "John B-PER\nlives O\n\nParis B-LOC\n"))
    assert [s.words for s in c.sentences] == [["John", "lives"], ["Paris"]]
    assert [s.tags for s in c.sentences] == [["B-PER", "O"], ["B-LOC"]]
    assert [s.line for s in c.sentences] == [1, 4]
    assert c.scheme == "iob2" and not c.has_documents
    assert len(c.documents) == 2  # no -DOCSTART-: each sentence is its own document


def test_four_columns_iob1_converted(tmp_path):
    text = "EU NNP I-NP I-ORG\nrejects VBZ I-VP O\nGerman JJ I-NP I-MISC\nJohn NNP I-NP I-PER\nSmith NNP I-NP I-PER\n"
    text += "Mary NNP I-NP B-PER\n"
    c = read_conll(_write(tmp_path / "a.txt", text))
    assert c.scheme == "iob1"
    assert c.sentences[0].tags == ["B-ORG", "O", "B-MISC", "B-PER", "I-PER", "B-PER"]


def test_tab_separated_and_whitespace_only_separators(tmp_path):
    # WNUT's quirk: some sentence separators are a lone TAB; also spaces and CRLF
    text = "a\tO\nb\tB-person\n\t\nc\tO\n   \nd\tB-location\r\ne\tI-location\r\n\r\nf\tO"
    c = read_conll(_write(tmp_path / "w.conll", text))
    assert [s.words for s in c.sentences] == [["a", "b"], ["c"], ["d", "e"], ["f"]]
    assert c.sentences[2].tags == ["B-location", "I-location"]
    assert [s.line for s in c.sentences] == [1, 4, 6, 9]


def test_utf8_bom_and_non_ascii(tmp_path):
    c = read_conll(_write(tmp_path / "u.txt", "\ufeffZürich B-LOC\n東京 B-LOC\n"))
    assert c.sentences[0].words == ["Zürich", "東京"]


def test_docstart_boundaries(tmp_path):
    text = (
        "-DOCSTART- -X- O O\n\n"
        "a NN O O\nb NN O B-PER\n\nc NN O O\n\n"
        "-DOCSTART- -X- O O\n\n"
        "d NN O O\n\n"
        "-DOCSTART- -X- -X- O\n"  # no blank line after it, and no sentence before the next one
        "-DOCSTART- -X- -X- O\n\n"
        "e NN O O\nf NN O O\n"
    )
    c = read_conll(_write(tmp_path / "d.txt", text))
    assert c.has_documents
    assert [[s.words for s in d.sentences] for d in c.documents] == [
        [["a", "b"], ["c"]],
        [["d"]],
        [["e", "f"]],
    ]
    assert [s.line for s in c.sentences] == [3, 6, 10, 15]
    assert c.entity_types() == {"PER"}


def test_docstart_without_blank_line_ends_sentence(tmp_path):
    text = "-DOCSTART- O\na O\nb O\n-DOCSTART- O\nc O\n"
    c = read_conll(_write(tmp_path / "d.txt", text))
    assert [[s.words for s in d.sentences] for d in c.documents] == [[["a", "b"]], [["c"]]]


def test_explicit_scheme(tmp_path):
    p = _write(tmp_path / "s.txt", "a S-PER\nb B-LOC\nc E-LOC\n")
    assert read_conll(p, scheme="iobes").sentences[0].tags == ["B-PER", "B-LOC", "I-LOC"]
    assert read_conll(p).scheme == "iobes"


# -------------------------------------------------------------------------------------------- errors


def test_column_count_changes(tmp_path):
    p = _write(tmp_path / "c.txt", "a NN O\nb NN O\n\nc NN NP O\n")
    msg = _error(p)
    assert msg.startswith(f"{p}:4:")
    assert "4 columns" in msg and "expected 3" in msg and "line 1" in msg


def test_line_without_tag(tmp_path):
    p = _write(tmp_path / "n.txt", "a O\nb O\nlonely\n")
    msg = _error(p)
    assert msg.startswith(f"{p}:3:") and "no tag" in msg


@pytest.mark.parametrize(
    "text, scheme, line, bad",
    [
        ("a O\n\nb O\nc X-PER\n", "auto", 4, "X-PER"),
        ("a O\nb B-\n", "auto", 2, "B-"),
        ("a B-PER\n\nb O\nc O\nd E-PER\n", "iob2", 5, "E-PER"),
        ("a B-PER\nb per\n", "auto", 2, "per"),
    ],
)
def test_tag_outside_scheme(tmp_path, text, scheme, line, bad):
    p = _write(tmp_path / "t.txt", text)
    msg = _error(p, scheme=scheme)
    assert msg.startswith(f"{p}:{line}:"), msg
    assert repr(bad) in msg


def test_unknown_scheme_name(tmp_path):
    p = _write(tmp_path / "t.txt", "a O\n")
    assert "scheme" in _error(p, scheme="bioes2")


def test_binary_junk(tmp_path):
    p = _write(tmp_path / "b.txt", b"a O\nb O\n\x00\x01\x02junk\n")
    msg = _error(p)
    assert msg.startswith(f"{p}:3:") and "NUL" in msg


def test_invalid_utf8(tmp_path):
    p = _write(tmp_path / "l.txt", b"a O\n\ncaf\xe9 O\n")
    msg = _error(p)
    assert msg.startswith(f"{p}:3:") and "UTF-8" in msg and "0xe9" in msg


def test_invalid_utf8_after_a_bom_names_its_line_and_byte(tmp_path):
    p = _write(tmp_path / "l.txt", b"\xef\xbb\xbfa O\n\nb O\ncaf\xe9 O\n")
    msg = _error(p)
    assert msg.startswith(f"{p}:4:") and "0xe9 at byte 15 of the file" in msg, msg


def test_cr_only_line_endings(tmp_path):
    c = read_conll(_write(tmp_path / "mac.txt", "John B-PER\rlives O\r\rParis B-LOC\r"))
    assert [s.words for s in c.sentences] == [["John", "lives"], ["Paris"]]
    assert [s.tags for s in c.sentences] == [["B-PER", "O"], ["B-LOC"]]
    assert [s.line for s in c.sentences] == [1, 4]
    msg = _error(_write(tmp_path / "bad.txt", b"a O\rb O\rc \xff O\r"))
    assert msg.startswith(f"{tmp_path / 'bad.txt'}:3:"), msg


@pytest.mark.parametrize("space", ["\u0085", "\u00a0", "\u2028", "\u3000"])
def test_unicode_space_stays_inside_its_token(tmp_path, space):
    c = read_conll(_write(tmp_path / "u.txt", f"New{space}York NNP B-LOC\nis VBZ O\n"))
    assert c.sentences[0].words == [f"New{space}York", "is"] and c.sentences[0].tags == ["B-LOC", "O"]


def test_bom_in_mid_file_and_indented_docstart(tmp_path):
    text = "-DOCSTART- O\n\na O\n\n\ufeff-DOCSTART- O\n\n\ufeffb B-PER\n\n  \t-DOCSTART- O\nc O\n"
    c = read_conll(_write(tmp_path / "cat.txt", text))
    assert [[s.words for s in d.sentences] for d in c.documents] == [[["a"]], [["b"]], [["c"]]]
    assert [s.line for s in c.sentences] == [3, 7, 10]


@pytest.mark.parametrize("content", [b"", b"\n\n  \n\t\n"])
def test_empty_file(tmp_path, content):
    p = _write(tmp_path / "e.txt", content)
    msg = _error(p)
    assert msg.startswith(str(p)) and "empty" in msg


def test_only_docstart(tmp_path):
    p = _write(tmp_path / "d.txt", "-DOCSTART- -X- O O\n\n-DOCSTART- -X- O O\n\n")
    msg = _error(p)
    assert msg.startswith(str(p)) and "no sentences" in msg


def test_missing_file_and_folder_given_as_file(tmp_path):
    assert "cannot read" in _error(tmp_path / "nope.txt")
    assert "folder" in _error(tmp_path)


def test_label_missing_from_train(tmp_path):
    _write(tmp_path / "train.txt", "John B-PER\nParis B-LOC\n")
    _write(tmp_path / "dev.txt", "John B-PER\n\nx O\nAcme B-ORG\n")
    with pytest.raises(CorpusError) as ei:
        load_splits(tmp_path)
    msg = str(ei.value)
    assert "\n" not in msg
    assert msg.startswith(f"{tmp_path / 'dev.txt'}:4:")
    assert "'ORG'" in msg and "validation" in msg and "LOC, PER" in msg


def test_missing_data_folder(tmp_path):
    with pytest.raises(CorpusError, match="does not exist"):
        load_splits(tmp_path / "nope")
    with pytest.raises(CorpusError, match=re.escape("does not exist")):
        resolve_data_dir(str(tmp_path / "nope"))
    with pytest.raises(CorpusError, match="no train file"):
        load_splits(tmp_path)  # exists, but empty


def test_load_splits_conventions(synthetic_dir):
    s = load_splits(synthetic_dir)
    assert len(s.train.sentences) == 400
    assert s.validation is not None and len(s.validation.sentences) == 80
    assert s.test is not None and len(s.test.sentences) == 80
    assert s.labels == ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    assert [n for n, _ in s.items()] == ["validation", "test"]
    assert s.train.has_documents and len(s.train.documents) == 50


# ----------------------------------------------------------------------------------------- real data

CONLL = {
    # file: docs, sentences, tokens, {type: entities}
    "eng.train": (946, 14041, 203621, {"PER": 6600, "ORG": 6321, "LOC": 7140, "MISC": 3438}),
    "eng.testa": (216, 3250, 51362, {"PER": 1842, "ORG": 1341, "LOC": 1837, "MISC": 922}),
    "eng.testb": (231, 3453, 46435, {"PER": 1617, "ORG": 1661, "LOC": 1668, "MISC": 702}),
}


@pytest.fixture(scope="module")
def conll_splits(conll_dir):
    return load_splits(conll_dir)


def test_conll_counts(conll_splits):
    for corpus in (conll_splits.train, conll_splits.validation, conll_splits.test):
        docs, sents, toks, ents = CONLL[Path(corpus.path).name]
        assert corpus.scheme == "iob1" and corpus.has_documents
        assert len(corpus.documents) == docs
        assert len(corpus.sentences) == sents
        assert sum(len(s.words) for s in corpus.sentences) == toks
        assert all(len(s.words) == len(s.tags) for s in corpus.sentences)
        counts = Counter(e.type for s in corpus.sentences for e in spans(s.tags))
        assert dict(counts) == ents
        # after conversion every entity starts with B-: strict and lenient counts agree
        assert sum(len(spans(s.tags, strict=True)) for s in corpus.sentences) == sum(ents.values())
    assert conll_splits.labels == ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]


def test_conll_line_numbers(conll_splits, conll_dir):
    lines = (conll_dir / "eng.train").read_text().split("\n")
    s = conll_splits.train.sentences[1234]
    for i, w in enumerate(s.words):
        assert lines[s.line - 1 + i].split()[0] == w


def test_wnut_counts(wnut_dir):
    s = load_splits(wnut_dir)
    assert [Path(c.path).name for c in (s.train, s.validation, s.test)] == [
        "wnut17train.conll", "emerging.dev.conll", "emerging.test.annotated"]
    expected = [(3394, 62730, 1975), (1009, 15733, 836), (1287, 23394, 1079)]
    for corpus, (sents, toks, ents) in zip((s.train, s.validation, s.test), expected):
        assert corpus.scheme == "iob2" and not corpus.has_documents
        assert len(corpus.sentences) == sents
        assert sum(len(x.words) for x in corpus.sentences) == toks
        assert sum(len(spans(x.tags)) for x in corpus.sentences) == ents
    per_type = Counter(e.type for x in s.train.sentences for e in spans(x.tags))
    assert per_type == {"person": 660, "location": 548, "corporation": 221, "product": 142,
                        "creative-work": 140, "group": 264}
    assert len(s.labels) == 13
