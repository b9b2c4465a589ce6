"""spaCy's CPU NER pipeline trained on the same CoNLL split as nerkit: the speed peer of bench/speed_accuracy.py.

    pip install spacy            # not a nerkit dependency: the bench's peer only
    python bench/spacy_ner.py train [--data conll2003] [--output runs/spacy-efficiency]

The recipe, as a spaCy user would follow it:
1. `python -m spacy init config -l en -p ner -o efficiency config.cfg` (CPU, the `efficiency` optimisation:
   spaCy's small hash-embedding CNN tok2vec plus its transition-based NER; no vectors, no transformer);
2. the CoNLL training and validation splits, read by nerkit's reader (IOB1 -> IOB2) and written as spaCy
   DocBins, one Doc per CoNLL document with the gold tokenisation and entities;
3. `python -m spacy train config.cfg --paths.train train.spacy --paths.dev dev.spacy --output DIR` with the
   config's defaults (it keeps the best model on the dev set: `DIR/model-best`).
Nothing is tuned for the test set. The test F1 of the result is measured by nerkit's scorer (conlleval
rules) in bench/speed_accuracy.py, on the gold tokens, each CoNLL document one Doc.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path


def corpus_docs(nlp, corpus) -> list:
    """One spaCy Doc per CoNLL document: gold words, entities from the IOB2 tags."""
    from spacy.tokens import Doc

    docs = []
    for d in corpus.documents:
        words = [w for s in d.sentences for w in s.words]
        tags = [t for s in d.sentences for t in s.tags]
        if words:
            docs.append(Doc(nlp.vocab, words=words, ents=tags))
    return docs


def tag_documents(nlp, documents: list[list[list[str]]]) -> list[list[str]]:
    """IOB2 tags per sentence for word-split documents (each document one Doc, as in training)."""
    from spacy.tokens import Doc

    out: list[list[str]] = []
    for doc_sents in documents:
        words = [w for s in doc_sents for w in s]
        if not words:
            out += [[] for _ in doc_sents]
            continue
        doc = Doc(nlp.vocab, words=words)
        for _, proc in nlp.pipeline:
            doc = proc(doc)
        tags = [f"{t.ent_iob_}-{t.ent_type_}" if t.ent_iob_ in ("B", "I") else "O" for t in doc]
        k = 0
        for s in doc_sents:
            out.append(tags[k : k + len(s)])
            k += len(s)
    return out


def train(data: str, output: Path, max_steps: int = 0) -> Path:
    import spacy
    from spacy.tokens import DocBin

    from nerkit.corpus import find_split_file, read_conll, resolve_data_dir

    root = resolve_data_dir(data)
    output.mkdir(parents=True, exist_ok=True)
    nlp = spacy.blank("en")
    for split, name in (("train", "train.spacy"), ("validation", "dev.spacy")):
        path = find_split_file(root, split)
        if path is None:
            sys.exit(f"no {split} split in {root}")
        DocBin(docs=corpus_docs(nlp, read_conll(path))).to_disk(output / name)
    cfg = output / "config.cfg"
    spacy_cli = [sys.executable, "-m", "spacy"]
    subprocess.run([*spacy_cli, "init", "config", "-l", "en", "-p", "ner", "-o", "efficiency", "-F", str(cfg)],
                   check=True)
    subprocess.run([*spacy_cli, "train", str(cfg), "--paths.train", str(output / "train.spacy"),
                    "--paths.dev", str(output / "dev.spacy"), "--output", str(output),
                    *(["--training.max_steps", str(max_steps)] if max_steps else [])], check=True)
    return output / "model-best"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train spaCy's efficiency NER pipeline on a CoNLL folder")
    t.add_argument("--data", default="conll2003", help="CoNLL folder or dataset name")
    t.add_argument("--output", default="runs/spacy-efficiency")
    t.add_argument("--max-steps", type=int, default=0, help="stop after N steps (smoke runs); 0: spaCy's default")
    args = ap.parse_args()
    best = train(args.data, Path(args.output), args.max_steps)
    print(f"spaCy model: {best}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
