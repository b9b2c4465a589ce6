"""A model folder, resolved once: a Hugging Face folder (config.json with the label maps, weights,
tokenizer) with nerkit.json beside it for what nerkit adds, and the ONNX files `nerkit export` writes into
onnx/. Its config, tokenizer and metadata are read when first asked for, and only once.

Imports no torch: checking a folder (the server's parent process does) costs no weights.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from .errors import ModelError, first_line
from .schemes import TagError, split_tag
from .version import __version__

META_FILE = "nerkit.json"
SHAPE_FILE = "nerkit_shapes.safetensors"
ONNX_DIR = "onnx"
FP32_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
CONV_TYPE = "nerkit-conv"  # students.ConvTaggerConfig.model_type
CONV_STUDENTS = ("conv", "lstm")  # the distill.student kinds saved as CONV_TYPE (students.STUDENTS)


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


def quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the LOAD REPORT table is expected for a new classifier head
    hf_logging.disable_progress_bar()


def max_length_for(tokenizer, config) -> int:
    n = min(getattr(tokenizer, "model_max_length", 512) or 512, 512)
    pos = getattr(config, "max_position_embeddings", None)
    if pos:  # RoBERTa-style models reserve two positions
        n = min(n, pos - 2 if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert") else pos)
    return n


def weights_sha256(folder: Path) -> str:
    """One sha256 over a model folder's weight files (safetensors, or pytorch_model*.bin), by name."""
    import hashlib

    h = hashlib.sha256()
    for p in sorted({*folder.glob("*.safetensors"), *folder.glob("pytorch_model*.bin")}):
        h.update(p.name.encode() + b"\0")
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


class ModelFolder:
    """`ModelFolder(path)` accepts a model folder, or a training run folder that holds one in model/.

    Errors name the field `model_dir` or the file at fault."""

    def __init__(self, path: str | os.PathLike):
        p = Path(path)
        if not p.exists():
            raise ModelError(f"{str(p)!r} does not exist, expected a model folder", field="model_dir")
        if not (p / "config.json").is_file() and (p / "model" / "config.json").is_file():
            p = p / "model"
        if not (p / "config.json").is_file():
            raise ModelError(f"{str(p)!r} has no config.json, expected a Hugging Face model folder",
                             field="model_dir")
        self.path = p

    def __repr__(self) -> str:
        return f"ModelFolder({str(self.path)!r})"

    def _load(self, what: str, loader: Any) -> Any:
        quiet_transformers()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return loader.from_pretrained(self.path)
        except Exception as e:  # transformers raises many types for a broken folder
            raise ModelError(f"cannot load the {what} of {str(self.path)!r}: {first_line(e)}",
                             field="model_dir") from None

    @cached_property
    def weights_sha256(self) -> str:
        """Read once per folder object: choosing the 'auto' backend and opening it both check the export."""
        return weights_sha256(self.path)

    @cached_property
    def config(self):
        from transformers import AutoConfig

        if self.model_type == CONV_TYPE:  # nerkit's own architecture: register it with the Auto classes
            from . import students  # noqa: F401
        return self._load("config", AutoConfig)

    @cached_property
    def model_type(self) -> str:
        """config.json's model_type, read without transformers."""
        try:
            return str(json.loads((self.path / "config.json").read_text()).get("model_type", ""))
        except (OSError, ValueError, AttributeError):
            return ""  # AutoConfig names the fault when the config is loaded

    @cached_property
    def tokenizer(self):
        from transformers import AutoTokenizer

        return self._load("tokenizer", AutoTokenizer)

    @cached_property
    def labels(self) -> list[str]:
        labels = [self.config.id2label[i] for i in range(self.config.num_labels)]
        for lab in labels:
            try:
                split_tag(lab)
            except TagError:
                raise ModelError(f"{self.path / 'config.json'}: label {lab!r} in id2label is not an IOB2 tag") from None
        return labels

    @cached_property
    def meta(self) -> ModelMeta:
        """nerkit.json, or for a plain HF token-classification folder the defaults for its labels."""
        meta_path = self.path / META_FILE
        if not meta_path.is_file():
            return ModelMeta(labels=self.labels, max_length=max_length_for(self.tokenizer, self.config))
        try:
            raw = json.loads(meta_path.read_text())
        except json.JSONDecodeError as e:
            raise ModelError(f"{meta_path}:{e.lineno}: invalid JSON, expected nerkit model metadata") from None
        known = set(ModelMeta.__dataclass_fields__)
        meta = ModelMeta(**{k: v for k, v in raw.items() if k in known})
        if meta.labels != self.labels:
            raise ModelError(f"{meta_path}: labels {meta.labels} do not match config.json's id2label {self.labels}")
        return meta

    def onnx_file(self, int8: bool = False) -> Path:
        """The exported file; a ModelError naming the command that writes it when it is missing."""
        path = self.path / ONNX_DIR / (INT8_FILE if int8 else FP32_FILE)
        if not path.is_file():
            flag = "--onnx --int8" if int8 else "--onnx"
            raise ModelError(f"{path}: not found; run `nerkit export {self.path} {flag}` first")
        return path

    def check(self, backend: str = "torch") -> None:
        """Read everything a backend needs but the weights: fails here, before a slow load or a bound port."""
        _ = self.meta, self.tokenizer
        if backend != "torch":
            self.onnx_file(int8=backend == "onnx-int8")
