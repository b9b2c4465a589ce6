"""ONNX export, transformer graph fusions and dynamic int8 quantization: writes the files and checks them;
running them for prediction is engine/backends.py's job.

The ONNX files live inside the model folder (onnx/model.onnx, onnx/model.int8.onnx), so a folder carries
everything `nerkit.load(dir, backend="onnx")` needs. The graph takes the same inputs as NerModel:
input_ids, attention_mask and, when the model has a word-shape embedding, shape_ids.

What an export does, in order:
1. torch.onnx.export; for a BERT-like encoder, onnxruntime.transformers' fusions (Attention, SkipLayerNorm,
   LayerNorm, BiasGelu), kept in fp32. A model without them (the conv student), or a fusion that fails or
   changes the logits, keeps the unfused graph. Either way the fp32 logits must be within FP32_TOLERANCE of
   torch's on a probe batch.
2. The validation F1 (conlleval micro, through the Predictor) of torch and of each graph written: none may
   fall more than F1_MAX_DROP points below torch's.
3. int8: every MatMul with constant weights and every fused Attention quantized; while the int8 graph
   falls short (its F1 more than `int8_aim` points below torch's, F1_MAX_DROP unless asked for less, or
   under INT8_MIN_AGREEMENT of the words labelled as fp32 does), the nodes that add the most error on a
   probe set of validation windows are kept fp32, a few more each round, for INT8_ROUNDS rounds at most.
   The file is refused only past F1_MAX_DROP (or under the agreement).
4. Each graph's own call cost (the fixed price of one call, in padded tokens), timed on short batches.
Only then is onnx/export.json written, with all of the above and the sha256 of the weights, which the onnx
backends check (ExportCheckError, exit 1, otherwise).
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
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
from .errors import ModelError, UsageError, first_line
from .folder import FP32_FILE, INT8_FILE, ONNX_DIR, ModelFolder, ModelMeta, weights_sha256
from .graph_measures import measure_call_cost, node_errors
from .model import load_model

INFO_FILE = EXPORT_INFO
FP32_TOLERANCE = 1e-3  # most |logit| difference allowed between onnxruntime's fp32 graph and torch
F1_MAX_DROP = 0.5  # most validation F1 points an exported graph may lose against the torch model
INT8_MIN_AGREEMENT = 0.99  # least share of validation words the int8 graph must label as the fp32 one does
INT8_ROUNDS = 4  # quantize+evaluate rounds after the first, each keeping more nodes in fp32 (1, 2, 4, 8 more)
INT8_MAX_FP32_SHARE = 0.5  # most of the quantizable nodes kept in fp32 before the int8 file is refused
INT8_PROBE_WINDOWS = 64  # validation windows on which each node's quantization error is measured
# The fused Attention becomes QAttention, LSTM DynamicQuantizeLSTM; LayerNorm, Gelu stay fp32
QUANTIZED_OPS = ["MatMul", "Attention", "LSTM"]
# model_types whose graphs onnxruntime.transformers' BERT fusions know (the embedding fusion may not match:
# the word-shape embedding adds to inputs_embeds; attention, LayerNorm and Gelu do)
FUSED_TYPES = frozenset({"bert", "roberta", "xlm-roberta", "camembert", "distilbert", "electra"})


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
    fusions: dict[str, int] = field(default_factory=dict)  # fused operator -> count in the fp32 graph
    fusion_note: str | None = None  # why the graph is unfused, when it is
    f1: dict[str, float] = field(default_factory=dict)  # torch, onnx, onnx-int8 -> validation F1 (points)
    validation: str | None = None  # the file the F1s were measured on
    int8_fp32_nodes: list[str] = field(default_factory=list)  # quantizable nodes left in fp32
    call_cost: dict[str, int | None] = field(default_factory=dict)  # file name -> measured call cost (tokens)


def export_onnx(model_dir: str | os.PathLike, int8: bool = False, opset: int = 17,
                validation: str | os.PathLike | None = None, int8_aim: float | None = None) -> ExportResult:
    """Write onnx/model.onnx (and onnx/model.int8.onnx) into the model folder and check them (the module's
    docstring says how). validation: a CoNLL file; default the model's own validation split, from its
    training config. Without one, a plain export checks the logits only; --int8 needs one. int8_aim: the
    validation F1 points int8 may lose before nodes are kept fp32 (0 to F1_MAX_DROP, the default)."""
    if int8_aim is not None and not 0 <= int8_aim <= F1_MAX_DROP:
        raise UsageError(f"expected 0 to {F1_MAX_DROP:g} F1 points, got {int8_aim:g}", field="int8_aim")
    if int8_aim is not None and not int8:
        raise UsageError("applies to the int8 file: pass --int8 too", field="int8_aim")
    int8_aim = F1_MAX_DROP if int8_aim is None else int8_aim
    folder = ModelFolder(model_dir)
    onnxruntime()  # before the slow part
    corpus = _validation_set(folder, validation, required=int8)
    model, tokenizer, meta = load_model(folder, device="cpu"), folder.tokenizer, folder.meta
    config = model.hf.config
    fusable = getattr(config, "model_type", "") in FUSED_TYPES
    if fusable:
        _eager_attention(model)
    out = folder.path / ONNX_DIR
    out.mkdir(exist_ok=True)
    (out / INFO_FILE).unlink(missing_ok=True)  # no record, no use, until the new files pass
    fp32 = out / FP32_FILE
    probe = _probe_batch(tokenizer, meta)
    with torch.inference_mode():
        ref = model(**probe).logits.numpy()
    fusions, note, diff = _export_checked(model, config, meta, probe, ref, fp32, opset, fusable)
    result = ExportResult(fp32, None, diff, fusions=fusions, fusion_note=note)
    info: dict = {}
    if corpus is not None:
        from .engine.predictor import Predictor
        from .evaluation import evaluate

        result.validation = corpus.path
        result.f1["torch"] = 100 * evaluate(Predictor.from_model(model, tokenizer, meta, device="cpu"),
                                            corpus).conlleval.micro.f1
        ev = evaluate(Predictor(OnnxBackend(fp32, meta), tokenizer, meta), corpus)
        result.f1["onnx"] = 100 * ev.conlleval.micro.f1
        _check_f1(fp32, result.f1["onnx"], result.f1["torch"], corpus)
        if int8:
            result.int8 = out / INT8_FILE
            info = _quantize_checked(fp32, result.int8, corpus, tokenizer, meta, ev.predictions, result, int8_aim)
    fits = {}
    for path in (fp32, result.int8):
        if path is not None:
            result.call_cost[path.name], fits[path.name] = measure_call_cost(path, meta, len(tokenizer))
    record = {"labels": meta.labels, "shapes": meta.shapes, "opset": opset, "torch": torch.__version__,
              "onnxruntime": onnxruntime().__version__, "weights_sha256": weights_sha256(folder.path),
              "max_abs_logit_diff": diff, "fp32_tolerance": FP32_TOLERANCE,
              "fusions": fusions, "fusion_note": note,
              "validation": result.validation, "f1": result.f1, "f1_max_drop": F1_MAX_DROP,
              "int8": int8, "int8_label_agreement": result.int8_agreement, "int8_min_agreement": INT8_MIN_AGREEMENT,
              **info, "call_cost": result.call_cost, "call_cost_fit": fits}
    write_text(out / INFO_FILE, json.dumps(record, indent=2) + "\n")
    return result


def _validation_set(folder: ModelFolder, given: str | os.PathLike | None, required: bool = True) -> Corpus | None:
    """The CoNLL file given, else the validation split the model was trained with; None when there is none
    and it is not required."""
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
        if not required:
            return None
        raise ModelError("the int8 check needs a validation set and the model's training data is not at hand: "
                         "pass --validation FILE", field="validation")
    return splits.validation


def _eager_attention(model: nn.Module) -> None:
    """The fusions match the MatMul-Softmax-MatMul pattern of eager attention, not torch's export of sdpa
    (same logits). A model that cannot switch exports as it is, unfused."""
    switch = getattr(getattr(model, "hf", None), "set_attn_implementation", None)
    try:
        if callable(switch):
            switch("eager")
    except Exception:  # transformers raises several types; unfused is the fallback
        pass


def _check_f1(path: Path, f1: float, torch_f1: float, corpus: Corpus, detail: str = "") -> None:
    if torch_f1 - f1 > F1_MAX_DROP:
        raise ExportCheckError(f"{path}: validation F1 {f1:.2f} on {corpus.path} is {torch_f1 - f1:.2f} below the "
                               f"torch model's {torch_f1:.2f}, more than the {F1_MAX_DROP:g} allowed{detail}; not "
                               f"recorded in {INFO_FILE}")


def _agreement(a: list[list[str]], b: list[list[str]]) -> float:
    """Share of the words labelled alike in two taggings of the same sentences."""
    pairs = [(x, y) for sa, sb in zip(a, b) for x, y in zip(sa, sb)]
    return sum(x == y for x, y in pairs) / max(len(pairs), 1)


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


def _max_diff(path: Path, probe: dict[str, torch.Tensor], ref: np.ndarray) -> float:
    return float(np.abs(ref - session_logits(onnx_session(path), probe)).max())


def _export_checked(model: nn.Module, config, meta: ModelMeta, probe: dict[str, torch.Tensor], ref: np.ndarray,
                    dst: Path, opset: int, fusable: bool) -> tuple[dict[str, int], str | None, float]:
    """Export to dst, fused where the model allows it and the fused graph passes the fp32 check, else
    unfused. Returns the fused operators' counts, why there are none (or None), and the check's difference."""
    raw = dst.with_name(dst.name + ".unfused")
    _export(model, meta, probe, raw, opset)
    note = f"model_type {getattr(config, 'model_type', '')!r}: no transformer fusions"
    if fusable:
        fused = dst.with_name(dst.name + ".fused")
        try:
            fusions = fuse(raw, fused, config)
            diff = _max_diff(fused, probe, ref)
        except Exception as e:  # the optimizer raises anything on a graph it does not know
            note = f"fusion failed, graph left unfused: {first_line(e, 200)}"
        else:
            if diff <= FP32_TOLERANCE:
                os.replace(fused, dst)
                raw.unlink()
                return fusions, None, diff
            note = f"the fused graph's logits differ from torch's by {diff:.2e}; graph left unfused"
        fused.unlink(missing_ok=True)
    diff = _max_diff(raw, probe, ref)
    os.replace(raw, dst)
    if not diff <= FP32_TOLERANCE:
        raise ExportCheckError(f"{dst}: onnxruntime's logits differ from torch's by up to {diff:.2e}, more "
                               f"than the {FP32_TOLERANCE:g} allowed; not recorded in {INFO_FILE}")
    return {}, note, diff


@contextmanager
def _quiet() -> Iterator[None]:
    """onnxruntime's optimizer and quantizer log hints ("consider pre-processing") on the root logger."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def fuse(src: Path, dst: Path, config) -> dict[str, int]:
    """onnxruntime.transformers' BERT fusions on src, written to dst in fp32: the fused operators' counts.
    opt_level 0: the Python fusions only, so the file stays portable (the session applies onnxruntime's own
    optimizations when it loads it). The raw 2-D attention mask is kept, so any padding stays right."""
    onnxruntime()
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    options.use_raw_attention_mask(True)
    with _quiet():
        opt = optimize_model(str(src), model_type="bert", num_heads=int(config.num_attention_heads),
                             hidden_size=int(config.hidden_size), optimization_options=options, opt_level=0)
        stats = {k: int(v) for k, v in opt.get_fused_operator_statistics().items() if v}
        tmp = dst.with_name(dst.name + ".tmp")
        opt.save_model_to_file(str(tmp))
    os.replace(tmp, dst)
    return stats


def quantizable_nodes(path: Path) -> list[str]:
    """The nodes quantize() turns int8, in graph order: fused Attention, LSTM, and MatMul by a constant weight."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {i.name for i in graph.initializer}
    return [n.name for n in graph.node if n.op_type in ("Attention", "LSTM")
            or (n.op_type == "MatMul" and len(n.input) > 1 and n.input[1] in weights)]


def quantize(src: Path, dst: Path, exclude: list[str] | tuple[str, ...] = ()) -> None:
    """Dynamic int8 quantization of the matrix products by constant weights and of the fused attention's
    projections (weights QInt8 per channel, activations quantized on the fly), but for the nodes excluded.
    Embeddings, layer norms, Gelu and softmax stay in fp32."""
    onnxruntime()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = dst.with_name(dst.name + ".tmp")
    with _quiet():
        # DefaultTensorType: onnx's shape inference stops at the fused (com.microsoft) operators
        quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8, op_types_to_quantize=QUANTIZED_OPS,
                         per_channel=True, nodes_to_exclude=list(exclude),
                         extra_options={"DefaultTensorType": 1, "MatMulConstBOnly": True})  # 1: FLOAT
    os.replace(tmp, dst)


def _quantize_checked(fp32: Path, dst: Path, corpus: Corpus, tokenizer, meta: ModelMeta,
                      fp32_tags: list[list[str]], result: ExportResult, aim: float) -> dict:
    """Quantize, evaluate; while short of the F1 (aim: points below torch) or agreement asked, keep the nodes
    measured worst in fp32 and try again (INT8_ROUNDS at most). Fills result's int8 fields; returns what
    export.json records."""
    from .engine.predictor import Predictor
    from .evaluation import evaluate

    candidates = quantizable_nodes(fp32)
    cap = max(1, int(INT8_MAX_FP32_SHARE * len(candidates)))
    torch_f1 = result.f1["torch"]
    kept: list[str] = []
    errors: dict[str, float] = {}
    probe: list[dict[str, torch.Tensor]] | None = None
    rounds = 0
    while True:
        quantize(fp32, dst, kept)
        ev = evaluate(Predictor(OnnxBackend(dst, meta), tokenizer, meta), corpus)
        f1, agreement = 100 * ev.conlleval.micro.f1, _agreement(fp32_tags, ev.predictions)
        if (torch_f1 - f1 <= aim and agreement >= INT8_MIN_AGREEMENT) or rounds == INT8_ROUNDS \
                or len(kept) >= min(cap, len(candidates)):
            break
        probe = probe if probe is not None else _probe_windows(corpus, tokenizer, meta)
        added = node_errors(fp32, dst, [n for n in candidates if n not in kept], probe)
        worst = sorted(added, key=added.__getitem__, reverse=True)[: min(2 ** rounds, cap - len(kept))]
        errors |= {n: added[n] for n in worst}
        kept += worst
        rounds += 1
    result.f1["onnx-int8"], result.int8_agreement, result.int8_fp32_nodes = f1, agreement, kept
    detail = (f", with {len(kept)} of {len(candidates)} quantizable nodes kept fp32 after {rounds + 1} "
              "quantize+evaluate rounds")
    _check_f1(dst, f1, torch_f1, corpus, detail)
    if agreement < INT8_MIN_AGREEMENT:
        raise ExportCheckError(f"{dst}: labels {100 * agreement:.2f}% of the {corpus.path} words as the fp32 model "
                               f"does, under the {100 * INT8_MIN_AGREEMENT:g}% required{detail}; not recorded in "
                               f"{INFO_FILE}")
    return {"int8_quantized_ops": QUANTIZED_OPS, "int8_aim": aim, "int8_quantizable_nodes": len(candidates),
            "int8_rounds": rounds, "int8_fp32_nodes": kept,
            "int8_fp32_node_errors": {n: round(errors[n], 6) for n in kept}}


def _probe_windows(corpus: Corpus, tokenizer, meta: ModelMeta) -> list[dict[str, torch.Tensor]]:
    """The first INT8_PROBE_WINDOWS windows of the corpus, in batches of at most 512 tokens (every
    intermediate tensor of the graph is fetched on them)."""
    from .batching import Collator, make_batches
    from .encoding import Encoder

    enc = Encoder.from_meta(tokenizer, meta)
    feats: list = []
    for doc in corpus.documents:
        feats += enc.encode([[s.words for s in doc.sentences]])
        if len(feats) >= INT8_PROBE_WINDOWS:
            break
    feats = feats[:INT8_PROBE_WINDOWS]
    collate = Collator(tokenizer.pad_token_id, with_shapes=meta.shapes)
    batches = []
    for idx in make_batches([len(f) for f in feats], batch_size=8, max_tokens=512):
        batch = collate([feats[i] for i in idx])
        batch.pop("labels")
        batches.append(batch)
    return batches
