"""ONNX export and dynamic int8 quantization: writes the files and checks them; running them for
prediction is engine/backends.py's job.

The ONNX files live inside the model folder (onnx/model.onnx, onnx/model.int8.onnx), so a folder carries
everything `nerkit.load(dir, backend="onnx")` needs. The graph takes the same inputs as NerModel:
input_ids, attention_mask and, when the model has a word-shape embedding, shape_ids.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .engine.backends import onnx_session, onnxruntime, session_logits
from .folder import FP32_FILE, INT8_FILE, ONNX_DIR, ModelFolder, ModelMeta
from .model import load_model

INFO_FILE = "export.json"


class _LogitsOnly(nn.Module):
    """NerModel with plain tensor inputs and outputs, which is what the exporter traces."""

    def __init__(self, model: nn.Module, shapes: bool):
        super().__init__()
        self.model, self.shapes = model, shapes

    def forward(self, input_ids, attention_mask, shape_ids=None):
        return self.model(input_ids, attention_mask, shape_ids=shape_ids if self.shapes else None).logits


@dataclass
class ExportResult:
    fp32: Path
    int8: Path | None
    max_abs_diff: float  # largest |logit| difference between torch and onnxruntime on a probe batch


def export_onnx(model_dir: str | os.PathLike, int8: bool = False, opset: int = 17) -> ExportResult:
    """Write onnx/model.onnx (and onnx/model.int8.onnx) into the model folder, then check that
    onnxruntime gives the torch logits."""
    folder = ModelFolder(model_dir)
    onnxruntime()  # before the slow part
    model, tokenizer, meta = load_model(folder, device="cpu"), folder.tokenizer, folder.meta
    out = folder.path / ONNX_DIR
    out.mkdir(exist_ok=True)
    fp32 = out / FP32_FILE
    probe = _probe_batch(tokenizer, meta)
    _export(model, meta, probe, fp32, opset)
    with torch.inference_mode():
        ref = model(**probe).logits.numpy()
    got = session_logits(onnx_session(fp32), probe)
    diff = float(np.abs(ref - got).max())
    int8_path = None
    if int8:
        int8_path = out / INT8_FILE
        quantize(fp32, int8_path)
        onnx_session(int8_path)  # fails here, not at tagging time, if the quantized graph is broken
    info = {"labels": meta.labels, "shapes": meta.shapes, "opset": opset, "torch": torch.__version__,
            "max_abs_logit_diff": diff}
    (out / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return ExportResult(fp32, int8_path, diff)


def _probe_batch(tokenizer, meta: ModelMeta) -> dict[str, torch.Tensor]:
    """Two windows of different lengths, so that padding and both dynamic axes are exercised."""
    from .batching import Collator
    from .encoding import Encoder

    enc = Encoder.from_meta(tokenizer, meta)
    feats = enc.encode([[["Peter", "Blackburn", "visited", "BRUSSELS", "on", "1996-08-22", "."]], [["EU"]]])
    batch = Collator(tokenizer.pad_token_id, with_shapes=meta.shapes)(feats)
    batch.pop("labels")
    return batch


def _export(model: nn.Module, meta: ModelMeta, probe: dict[str, torch.Tensor], path: Path, opset: int) -> None:
    names = ["input_ids", "attention_mask"] + (["shape_ids"] if meta.shapes else [])
    axes = {n: {0: "batch", 1: "sequence"} for n in names} | {"logits": {0: "batch", 1: "sequence"}}
    wrapper = _LogitsOnly(model, meta.shapes).eval()
    tmp = path.with_name(path.name + ".tmp")
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, tuple(probe[n] for n in names), str(tmp), input_names=names,
                          output_names=["logits"], dynamic_axes=axes, opset_version=opset, dynamo=False)
    os.replace(tmp, path)


def quantize(src: Path, dst: Path) -> None:
    """Dynamic int8 quantization of the matrix products (weights QInt8, activations quantized on the fly).
    Embeddings and layer norms stay in fp32, which keeps the accuracy loss small."""
    import logging

    onnxruntime()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = dst.with_name(dst.name + ".tmp")
    logging.disable(logging.WARNING)  # onnxruntime logs a "consider pre-processing" hint on the root logger
    try:
        quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                         per_channel=True)
    finally:
        logging.disable(logging.NOTSET)
    os.replace(tmp, dst)
