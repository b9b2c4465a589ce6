"""`nerkit train`, `nerkit distill` and `nerkit export`: the commands that write model folders."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import UsageError
from ..settings import Config, DistillConfig
from .common import command


def register(sub) -> None:
    t = command(sub, "train", Config, run_train, "fine-tune a model, then evaluate it on validation and test",
                description="Train with a config file; every setting can be given as --section.key VALUE "
                            "(e.g. --train.lr 1e-4, or --lr 1e-4 where the last part is unique).",
                model_dir=False)
    d = command(sub, "distill", DistillConfig, run_train,
                "train a smaller student from trained teachers: gold labels plus the teachers' distributions",
                description="As `nerkit train`, with one more loss term: the student (distill.student: the first "
                            "teacher cut to --layers K of its layers, or a convolutional tagger) also matches the "
                            "teachers' averaged word-level label distributions at distill.temperature, weighted by "
                            "distill.alpha. Example: nerkit distill --config configs/conll03-distill.toml "
                            "--teacher runs/conll03-minilm --layers 2 --output runs/student-2l",
                model_dir=False)
    for p in (t, d):
        p.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
        p.add_argument("--overwrite", action="store_true",
                       help="start over in a run folder that holds the checkpoint of an unfinished run")
    t.set_defaults(settings=Config)
    d.set_defaults(settings=DistillConfig)
    x = command(sub, "export", None, run_export, "write an ONNX model (optionally int8) into the model folder",
                description="Export to MODEL_DIR/onnx/model.onnx for onnxruntime; --int8 also writes "
                            "model.int8.onnx with dynamic int8 quantization. Use them with "
                            "`--backend onnx|onnx-int8` in predict, evaluate, errors and serve.")
    x.add_argument("--onnx", action="store_true", help="export to ONNX")
    x.add_argument("--int8", action="store_true", help="also write a dynamically int8-quantized model")
    x.add_argument("--opset", type=int, default=17, help="ONNX opset (default: 17)")
    x.add_argument("--validation", metavar="FILE",
                   help="CoNLL file on which each exported graph's F1 must be within 0.5 of the torch model's, "
                        "and int8 must label 99%% of the words as fp32 does (default: the model's own "
                        "validation split; needed for --int8)")
    x.add_argument("--int8-aim", type=float, default=None, metavar="POINTS",
                   help="keep more nodes fp32 until int8's validation F1 is at most this far below torch's "
                        "(0 to 0.5; default 0.5, the most allowed); a graph that stays past 0.5 is refused")


def run_train(args: argparse.Namespace, extra: list[str]) -> int:
    from ..config import from_args
    from ..train import train

    cfg = from_args(args.settings, args, extra)
    metrics = train(cfg, resume=args.resume, overwrite=args.overwrite)
    if metrics:
        parts = [f"{name} F1 {100 * metrics[name]['conlleval']['micro']['f1']:.2f}"
                 for name in ("validation", "test") if name in metrics]
        print(f"done: {', '.join(parts)} | model in {Path(cfg.output) / 'model'}")
    return 0


def run_export(args: argparse.Namespace, extra: list[str]) -> int:
    from ..export import export_onnx

    if not (args.onnx or args.int8):
        raise UsageError("nothing to export: pass --onnx (and --int8 for the quantized model too)")
    from ..engine.budget import TEXT_BUDGET
    from ..export import F1_MAX_DROP, FP32_TOLERANCE, ExportCheckError

    try:
        result = export_onnx(args.model_dir, int8=args.int8, opset=args.opset, validation=args.validation,
                             int8_aim=args.int8_aim)
    except ExportCheckError as e:  # the files are there but fail their check: exit 1, not a usage error
        print(f"nerkit: export failed its check: {e}", file=sys.stderr)
        return 1
    fused = ", ".join(f"{op} {n}" for op, n in sorted(result.fusions.items())) or f"none ({result.fusion_note})"
    print(f"wrote {result.fp32} ({result.fp32.stat().st_size / 1e6:.1f} MB; fused operators: {fused})")
    if result.int8 is not None:
        print(f"wrote {result.int8} ({result.int8.stat().st_size / 1e6:.1f} MB; "
              f"{len(result.int8_fp32_nodes)} quantizable nodes kept fp32)")
    print(f"onnxruntime vs torch: max |logit difference| {result.max_abs_diff:.2e} (allowed {FP32_TOLERANCE:g})")
    if result.f1:
        scores = ", ".join(f"{name} {f1:.2f}" for name, f1 in result.f1.items())
        print(f"validation F1 ({result.validation}): {scores} (at most {F1_MAX_DROP:g} below torch allowed)")
    else:
        print("validation F1: not checked, no validation set at hand (pass --validation FILE)")
    if result.int8_agreement is not None:
        print(f"int8 vs fp32: {100 * result.int8_agreement:.2f}% of the validation words labelled alike")
    costs = ", ".join(f"{name} {cost if cost is not None else 'not fitted'}" for name, cost in result.call_cost.items())
    print(f"call cost, in tokens, measured: {costs} (text budget default {TEXT_BUDGET.call_cost})")
    return 0
