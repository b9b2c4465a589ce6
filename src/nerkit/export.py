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

from .atomic import write_text
from .corpus import Corpus
from .engine.backends import (
    EXPORT_INFO,
    OnnxBackend,
    onnx_session,
    onnxruntime,
    session_logits,
)
from .errors import ModelError
from .folder import FP32_FILE, INT8_FILE, ONNX_DIR, ModelFolder, ModelMeta, weights_sha256
from .model import load_model

INFO_FILE = EXPORT_INFO
FP32_TOLERANCE = 1e-3  # most |logit| difference allowed between onnxruntime's fp32 graph and torch
INT8_MIN_AGREEMENT = 0.99  # least share of validation words the int8 graph must label as the fp32 one does


class ExportCheckError(ModelError):
    """An exported graph that does not give what the torch model gives (`nerkit export` exits 1)."""


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
    int8_agreement: float | None = None  # share of validation words int8 labels as fp32 does


def export_onnx(model_dir: str | os.PathLike, int8: bool = False, opset: int = 17,
                validation: str | os.PathLike | None = None) -> ExportResult:
    """Write onnx/model.onnx (and onnx/model.int8.onnx) into the model folder and check them: the fp32
    logits within FP32_TOLERANCE of torch's on a probe batch; the int8 labels the fp32 ones on at least
    INT8_MIN_AGREEMENT of the validation words (`validation`: a CoNLL file; default the model's own
    validation split, from its training config). Only then is onnx/export.json written, with the sha256
    of the weights, which the onnx backends check (ExportCheckError otherwise)."""
    folder = ModelFolder(model_dir)
    onnxruntime()  # before the slow part
    corpus = _validation_set(folder, validation) if int8 else None
    model, tokenizer, meta = load_model(folder, device="cpu"), folder.tokenizer, folder.meta
    out = folder.path / ONNX_DIR
    out.mkdir(exist_ok=True)
    (out / INFO_FILE).unlink(missing_ok=True)  # no record, no use, until the new files pass
    fp32 = out / FP32_FILE
    probe = _probe_batch(tokenizer, meta)
    _export(model, meta, probe, fp32, opset)
    with torch.inference_mode():
        ref = model(**probe).logits.numpy()
    diff = float(np.abs(ref - session_logits(onnx_session(fp32), probe)).max())
    if not diff <= FP32_TOLERANCE:
        raise ExportCheckError(f"{fp32}: onnxruntime's logits differ from torch's by up to {diff:.2e}, more "
                               f"than the {FP32_TOLERANCE:g} allowed; not recorded in {INFO_FILE}")
    int8_path, agreement = None, None
    if int8:
        int8_path = out / INT8_FILE
        quantize(fp32, int8_path)
        assert corpus is not None  # read above, when int8
        agreement = _agreement(fp32, int8_path, tokenizer, meta, corpus)
        if agreement < INT8_MIN_AGREEMENT:
            raise ExportCheckError(f"{int8_path}: labels {100 * agreement:.2f}% of the {corpus.path} words as the "
                                   f"fp32 model does, under the {100 * INT8_MIN_AGREEMENT:g}% required; not "
                                   f"recorded in {INFO_FILE}")
    info = {"labels": meta.labels, "shapes": meta.shapes, "opset": opset, "torch": torch.__version__,
            "weights_sha256": weights_sha256(folder.path), "max_abs_logit_diff": diff,
            "fp32_tolerance": FP32_TOLERANCE, "int8": int8, "int8_label_agreement": agreement,
            "int8_min_agreement": INT8_MIN_AGREEMENT}
    write_text(out / INFO_FILE, json.dumps(info, indent=2) + "\n")
    return ExportResult(fp32, int8_path, diff, agreement)


def _validation_set(folder: ModelFolder, given: str | os.PathLike | None) -> Corpus:
    """The CoNLL file given, else the validation split the model was trained with."""
    from .corpus import CorpusError, load_splits, read_conll, resolve_data_dir

    if given is not None:
        return read_conll(given)
    data = folder.meta.train_config.get("data", {})
    try:
        splits = load_splits(resolve_data_dir(data["dir"]), data.get("train") or None,
                             data.get("validation") or None, data.get("test") or None, data.get("scheme", "auto"))
    except (KeyError, CorpusError):
        splits = None
    if splits is None or splits.validation is None:
        raise ModelError("the int8 check needs a validation set and the model's training data is not at hand: "
                         "pass --validation FILE", field="validation")
    return splits.validation


def _agreement(fp32: Path, int8: Path, tokenizer, meta: ModelMeta, corpus: Corpus) -> float:
    """Share of the corpus's words that the int8 graph labels as the fp32 graph does."""
    from .engine.predictor import Predictor

    docs = [[s.words for s in d.sentences] for d in corpus.documents]
    tags = [Predictor(OnnxBackend(path, meta), tokenizer, meta).predict(docs).tags for path in (fp32, int8)]
    pairs = [(a, b) for sa, sb in zip(*tags) for a, b in zip(sa, sb)]
    return sum(a == b for a, b in pairs) / max(len(pairs), 1)


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
