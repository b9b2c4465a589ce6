"""The README's example output is the one docs/readme_examples.py wrote from a real model."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _examples():
    spec = importlib.util.spec_from_file_location("readme_examples", ROOT / "docs" / "readme_examples.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_readme_example_is_the_generated_one():
    mod = _examples()
    block = mod.readme_block(mod.README.read_text())
    assert block is not None, "README.md lost its readme-example markers"
    saved = mod.RESULT.read_text().split("\n", 1)[1].rstrip("\n")
    assert block == saved, "README example differs from bench/results/readme_example.txt: run docs/readme_examples.py"
    assert "Span(label='PER'" in block


def test_the_example_code_runs(trained_model_dir):
    """The same code on the tiny model: it runs, and its output has the shape the README shows."""
    block = _examples().example(str(trained_model_dir))
    assert block.startswith("```python") and block.endswith("```")
    lines = block.splitlines()
    assert any(line.startswith("# [") for line in lines)
    assert lines[-2].endswith("]") and "-> ['" in lines[-2]  # the tags of the four words
