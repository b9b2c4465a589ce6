"""What runs the network: torch, or onnxruntime on a file `nerkit export` wrote (fp32 or int8).

A backend takes a padded batch (input_ids, attention_mask and, for a shape-embedding model, shape_ids)
and returns (batch, tokens, labels) logits. Everything before and after that is the Predictor's.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, get_args

from ..errors import ModelError, first_line

if TYPE_CHECKING:  # torch loads with the first backend, not with the settings that name one
    import numpy as np
    import torch

    from ..folder import ModelFolder, ModelMeta

BackendName = Literal["torch", "onnx", "onnx-int8", "auto"]
BACKENDS: tuple[str, ...] = get_args(BackendName)


class Backend(Protocol):
    num_labels: int
    with_shapes: bool  # the network takes shape_ids
    lanes: int  # calls the Predictor may run at once

    def logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | np.ndarray: ...


class TorchBackend:
    """A NerModel on a device. Runs it in eval mode under inference_mode, and gives it back in the mode it
    was in, so the trainer can evaluate the model it is training."""

    def __init__(self, model, device: torch.device | str = "cpu"):
        self.model, self.device = model, device
        self.num_labels = model.config.num_labels
        self.with_shapes = model.shape_embedding is not None
        self.call_cost: int | None = None  # not measured: the budget's own stands
        self.lanes = 1  # torch's thread pool is the process's: one call at a time uses it all

    def logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        import torch

        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                return self.model(**{k: v.to(self.device) for k, v in batch.items()}).logits
        finally:
            if was_training:
                self.model.train()


def default_device(device: str | None = None) -> str:
    """The device asked for, else cuda when there is one."""
    import torch

    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise ModelError("the ONNX backend needs onnxruntime and onnx: pip install 'nerkit[onnx]'",
                         field="backend") from None
    return onnxruntime


def _threads() -> int:
    """onnxruntime's intra-op threads: NERKIT_THREADS, else torch's intra-op count, never more than the CPUs
    this process may run on."""
    import torch

    env = os.environ.get("NERKIT_THREADS")
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    wanted = int(env) if env and env.isdigit() and int(env) > 0 else torch.get_num_threads()
    return max(1, min(wanted, allowed))


AUTO_LANES = 2  # lanes=0: two where there are two threads or more (bench/results/lanes.txt)


def split_threads(lanes: int, threads: int | None = None) -> tuple[int, int]:
    """(lanes, intra-op threads per lane) for an ONNX backend: `lanes` model calls at once (0: AUTO_LANES),
    never more than the threads, which the lanes share."""
    threads = threads or _threads()
    n = max(1, min(lanes or AUTO_LANES, threads))
    return n, max(1, threads // n)


def onnx_session(path: Path, threads: int | None = None):
    ort = onnxruntime()
    opts = ort.SessionOptions()
    # Threads, deliberately: `threads` (default _threads(): as many as torch's, whose default is the physical
    # cores; hyper-threads only contend for the same units; OMP_NUM_THREADS, the server's --threads and the
    # Ray actors set it through torch), NERKIT_THREADS over all; no inter-op pool, since the graph is one
    # chain of operators and a second pool would only fight the first for cores. Parallel calls are lanes.
    opts.intra_op_num_threads = threads or _threads()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own types for a truncated or foreign file
        raise ModelError(f"{path}: cannot load the ONNX model: {first_line(e, 200)}") from None


def session_logits(session, batch: dict[str, torch.Tensor]) -> np.ndarray:
    wanted = {i.name for i in session.get_inputs()}
    feed = {k: v.numpy() for k, v in batch.items() if k in wanted}
    return session.run(["logits"], feed)[0]


class OnnxBackend:
    """An onnxruntime session over an exported file; checks that the graph fits the model folder.

    lanes: how many calls the Predictor may run at once on the one session (onnxruntime's run is
    thread-safe and lets go of the GIL). On few cores, small calls keep two cores busier as two one-thread
    calls than as one two-thread call, and one lane's Python work overlaps the other's model call."""

    def __init__(self, path: Path, meta: ModelMeta, call_cost: int | None = None, lanes: int = 0):
        self.lanes, threads = split_threads(lanes)
        self.session = onnx_session(path, threads)
        self.call_cost = call_cost  # this graph's own, measured at export (export.json), else None
        inputs = {i.name for i in self.session.get_inputs()}
        if ("shape_ids" in inputs) != meta.shapes:
            raise ModelError(f"{path}: the graph {'takes' if 'shape_ids' in inputs else 'lacks'} shape_ids but "
                             f"nerkit.json says shapes={meta.shapes}; re-export with `nerkit export --onnx`")
        out = self.session.get_outputs()[0].shape
        if isinstance(out[-1], int) and out[-1] != len(meta.labels):
            raise ModelError(f"{path}: the graph has {out[-1]} labels, the model folder {len(meta.labels)}; "
                             "re-export with `nerkit export --onnx`")
        self.num_labels, self.with_shapes = len(meta.labels), meta.shapes

    def logits(self, batch: dict[str, torch.Tensor]) -> np.ndarray:
        return session_logits(self.session, batch)


EXPORT_INFO = "export.json"  # what `nerkit export` checked and recorded, in the onnx/ folder


def check_export(folder: ModelFolder) -> dict:
    """The ONNX files must come from this folder's weights: export.json records their sha256. Returns the
    record."""
    import json

    info = folder.path / "onnx" / EXPORT_INFO
    redo = f"run `nerkit export {folder.path} --onnx` (with --int8 for onnx-int8) again"
    try:
        record = json.loads(info.read_text())
        recorded = record.get("weights_sha256")
    except (OSError, ValueError, AttributeError):
        raise ModelError(f"{info}: missing or unreadable, so the ONNX files cannot be matched to the weights; {redo}") from None
    if recorded != folder.weights_sha256:
        raise ModelError(f"{info}: the ONNX files were exported from other weights than the folder holds now; {redo}")
    return record


def recorded_call_cost(record: dict, file_name: str) -> int | None:
    """The call cost export.json records for that file (measured at export), or None."""
    costs = record.get("call_cost")
    cost = costs.get(file_name) if isinstance(costs, dict) else None
    return cost if isinstance(cost, int) and not isinstance(cost, bool) and cost > 0 else None


def check_name(backend: str) -> None:
    if backend not in BACKENDS:
        raise ModelError(f"{backend!r} is not one of {', '.join(BACKENDS)}", field="backend")


def choose(folder: ModelFolder, backend: str, device: str | None = None) -> str:
    """The backend a name means. 'auto' is onnx-int8 where it can run and is the faster choice on a CPU: the
    folder holds an int8 export made from its current weights, onnxruntime is installed, and the model runs
    on the CPU (no device named and no CUDA, or device cpu). Otherwise, and for any other name, torch or the
    name itself. Int8 matches fp32's test F1 on the default model (bench/results/speed_accuracy.txt), and
    `nerkit export` refuses to record an int8 file whose validation F1 is more than 0.5 below torch's, or
    that disagrees with fp32 on more than 1% of words."""
    check_name(backend)
    if backend != "auto":
        return backend
    if default_device(device or None) != "cpu":
        return "torch"
    try:
        folder.onnx_file(int8=True)
        check_export(folder)
        onnxruntime()
    except ModelError:
        return "torch"
    return "onnx-int8"


def open_backend(folder: ModelFolder, backend: str = "torch", device: str | None = None,
                 lanes: int = 0) -> Backend:
    """The named backend over a model folder. torch loads the weights; onnx and onnx-int8 the exported file
    (checked to exist before anything slow), run in `lanes` parallel calls (0: AUTO_LANES; torch: one)."""
    backend = choose(folder, backend, device)
    if backend == "torch":
        from ..model import load_model

        dev = default_device(device)
        return TorchBackend(load_model(folder, device=dev), dev)
    path = folder.onnx_file(int8=backend == "onnx-int8")
    record = check_export(folder)
    return OnnxBackend(path, folder.meta, call_cost=recorded_call_cost(record, path.name), lanes=lanes)
