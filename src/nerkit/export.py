"""ONNX export, dynamic int8 quantization, and the onnxruntime backend for the tagger.

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

from .inference import Backend
from .model import ModelError, ModelMeta, first_line

ONNX_DIR = "onnx"
FP32_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
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


def onnx_file(model_dir: str | os.PathLike, int8: bool = False) -> Path:
    """The exported file of a model folder; ModelError naming the fix when it is missing."""
    path = Path(model_dir) / ONNX_DIR / (INT8_FILE if int8 else FP32_FILE)
    if not path.is_file():
        flag = "--onnx --int8" if int8 else "--onnx"
        raise ModelError(f"{path}: not found; run `nerkit export {model_dir} {flag}` first")
    return path


def export_onnx(model_dir: str | os.PathLike, int8: bool = False, opset: int = 17) -> ExportResult:
    """Write onnx/model.onnx (and onnx/model.int8.onnx) into the model folder, then check that
    onnxruntime gives the torch logits."""
    from .model import find_model_dir, load_model

    folder = find_model_dir(model_dir)
    _onnxruntime()  # before the slow part
    model, tokenizer, meta = load_model(folder, device="cpu")
    out = folder / ONNX_DIR
    out.mkdir(exist_ok=True)
    fp32 = out / FP32_FILE
    probe = _probe_batch(tokenizer, meta)
    _export(model, meta, probe, fp32, opset)
    with torch.inference_mode():
        ref = model(**probe).logits.numpy()
    got = _session_run(_session(fp32), probe)
    diff = float(np.abs(ref - got).max())
    int8_path = None
    if int8:
        int8_path = out / INT8_FILE
        quantize(fp32, int8_path)
        _session(int8_path)  # fails here, not at tagging time, if the quantized graph is broken
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

    _onnxruntime()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = dst.with_name(dst.name + ".tmp")
    logging.disable(logging.WARNING)  # onnxruntime logs a "consider pre-processing" hint on the root logger
    try:
        quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                         per_channel=True)
    finally:
        logging.disable(logging.NOTSET)
    os.replace(tmp, dst)


def _threads() -> int:
    """onnxruntime threads: NERKIT_THREADS, else what torch uses (its default is the physical cores)."""
    env = os.environ.get("NERKIT_THREADS")
    return int(env) if env and env.isdigit() and int(env) > 0 else torch.get_num_threads()


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise ModelError("the ONNX backend needs onnxruntime and onnx: pip install 'nerkit[onnx]'") from None
    return onnxruntime


def _session(path: Path):
    ort = _onnxruntime()

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = _threads()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own types for a truncated or foreign file
        raise ModelError(f"{path}: cannot load the ONNX model: {first_line(e, 200)}") from None


def _session_run(session, batch: dict[str, torch.Tensor]) -> np.ndarray:
    wanted = {i.name for i in session.get_inputs()}
    feed = {k: v.numpy() for k, v in batch.items() if k in wanted}
    return session.run(["logits"], feed)[0]


def onnx_backend(path: Path, meta: ModelMeta) -> Backend:
    """An onnxruntime session as a word_log_probs backend; checks the graph fits the model folder."""
    session = _session(path)
    inputs = {i.name for i in session.get_inputs()}
    if ("shape_ids" in inputs) != meta.shapes:
        raise ModelError(f"{path}: the graph {'takes' if 'shape_ids' in inputs else 'lacks'} shape_ids but "
                         f"nerkit.json says shapes={meta.shapes}; re-export with `nerkit export --onnx`")
    out = session.get_outputs()[0].shape
    if isinstance(out[-1], int) and out[-1] != len(meta.labels):
        raise ModelError(f"{path}: the graph has {out[-1]} labels, the model folder {len(meta.labels)}; "
                         "re-export with `nerkit export --onnx`")
    return Backend(len(meta.labels), meta.shapes, lambda batch: _session_run(session, batch))
