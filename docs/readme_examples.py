"""Run the README's "Tagging your own text" example on a trained model and write what it prints into the
README (between the `readme-example` markers) and into bench/results/readme_example.txt, so the example
shows today's model, never a stale one. tests/test_readme.py checks that the two agree.

    python docs/readme_examples.py [--model runs/conll03-minilm]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RESULT = ROOT / "bench" / "results" / "readme_example.txt"
BEGIN, END = "<!-- readme-example:begin -->", "<!-- readme-example:end -->"
TEXT = "Angela Merkel met Tim Cook in Berlin."
WORDS = ["EU", "rejects", "German", "call"]


def example(model: str) -> str:
    """The code block the README shows, with the output of each call under it."""
    import nerkit

    tagger = nerkit.load(model)
    spans = tagger(TEXT)
    shown = ",\n#  ".join(repr(s) for s in spans)
    return "\n".join([
        "```python",
        "import nerkit",
        "",
        f'tagger = nerkit.load("{model}")            # a model folder, or a run folder with model/',
        f'tagger("{TEXT}")',
        f"# [{shown}]",
        'for spans in tagger.pipe(open("docs.txt")):            # streams, results in input order',
        "    ...",
        f"tagger.tag_words({WORDS!r})   # pre-tokenised -> {tagger.tag_words(WORDS)!r}",
        "```",
    ])


def readme_block(text: str) -> str | None:
    m = re.search(re.escape(BEGIN) + r"\n(.*?)\n" + re.escape(END), text, re.S)
    return m.group(1) if m else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="runs/conll03-minilm")
    args = ap.parse_args()
    block = example(args.model)
    text = README.read_text()
    if readme_block(text) is None:
        print(f"{README}: no {BEGIN} ... {END} markers", file=sys.stderr)
        return 2
    README.write_text(text.replace(readme_block(text), block))
    RESULT.write_text(f"# python docs/readme_examples.py --model {args.model}\n{block}\n")
    print(block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
