"""`nerkit predict --ray`: bulk tagging on Ray Data.

The driver cuts the input into stable blocks (bulk/blocks.py) and hands Ray Data one row per block that
is not done yet; `map_batches` runs them on a fixed pool of actors, each holding one Tagger. An actor
tags a block as one stream (token-budget batches inside, as the tagger does in one process), writes
OUTPUT_DIR/part-NNNNNN.{jsonl,parquet} atomically (beside the target, then renamed) and returns the
block's counts. So a part file is either whole or absent: a re-run skips the parts present; an actor
that dies is restarted by Ray Data and its task retried, and the retried block overwrites nothing
but its own part, so no record is lost or written twice.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import NerkitError, UsageError
from ..settings import PredictSettings
from .blocks import Block, plan, read_block
from .files import filesystem, is_local, list_inputs
from .records import tag_block

PLAN_FILE = "_nerkit_plan.json"
SUMMARY_FILE = "_nerkit_summary.json"


def part_name(index: int, fmt: str) -> str:
    return f"part-{index:06d}.{fmt}"


@dataclass
class ActorStats:
    actor: str  # host:pid
    blocks: int = 0
    documents: int = 0
    words: int = 0
    seconds: float = 0.0  # busy: reading, tagging and writing its blocks

    @property
    def words_per_s(self) -> float:
        return self.words / self.seconds if self.seconds else 0.0


@dataclass
class BulkSummary:
    output_dir: str
    blocks: int  # in the plan
    skipped: int  # already done before this run
    documents: int = 0
    words: int = 0
    seconds: float = 0.0  # wall time of the run, Ray's start included
    actors: list[ActorStats] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def words_per_s(self) -> float:
        return self.words / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["words_per_s"] = round(self.words_per_s, 1)
        for a, s in zip(d["actors"], self.actors):
            a["words_per_s"] = round(s.words_per_s, 1)
        return d

    def lines(self) -> list[str]:
        done = self.blocks - self.skipped
        out = [f"{self.documents} documents, {self.words} words in {done} blocks in {self.seconds:.1f} s: "
               f"{self.words_per_s:.0f} words/s overall ({self.skipped} of {self.blocks} blocks already done)"]
        for a in sorted(self.actors, key=lambda a: a.actor):
            out.append(f"  actor {a.actor}: {a.blocks} blocks, {a.documents} documents, {a.words} words in "
                       f"{a.seconds:.1f} s busy: {a.words_per_s:.0f} words/s")
        return out


class BlockTagger:
    """A Ray Data actor: one Tagger, loaded once; tags whole blocks and writes their part files."""

    def __init__(self, model_dir: str, settings: PredictSettings, output_dir: str, threads: int):
        import torch

        from ..engine.predictor import TEXT_BUDGET
        from ..tagger import Tagger

        torch.set_num_threads(threads)  # onnxruntime follows torch's thread count too
        self.settings = settings
        self.tagger = Tagger(settings.predictor.open(model_dir, TEXT_BUDGET))
        self.fs, self.root = filesystem(output_dir)
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        rows: dict[str, list] = {k: [] for k in ("block", "documents", "words", "seconds", "actor", "failures",
                                                 "error")}
        for spec in batch["block"]:
            t0 = time.perf_counter()
            block = Block.from_json(str(spec))
            failures: list[str] = []
            docs, words, error = [], 0, ""
            try:
                docs = list(read_block(block, self.settings.text_field, failures))
                data, words = tag_block(self.tagger, docs, self.settings.format)
                put(self.fs, self.root, part_name(block.index, self.settings.format), data)
            except NerkitError as e:  # sent back as data: Ray would wrap it in its own traceback
                error = json.dumps([type(e).__name__, e.message, e.field])
            for k, v in (("block", block.index), ("documents", len(docs)), ("words", words),
                         ("seconds", time.perf_counter() - t0), ("actor", self.name),
                         ("failures", json.dumps(failures)), ("error", error)):
                rows[k].append(v)
        return {k: np.array(v) for k, v in rows.items()}


def put(fs, root: str, name: str, data: bytes) -> None:
    """Write root/name whole or not at all: beside it, then renamed over it."""
    if is_local(fs):
        from ..atomic import write_bytes

        write_bytes(os.path.join(root, name), data)
        return
    import uuid

    tmp = f"{root}/.{name}.{uuid.uuid4().hex}.tmp"
    with fs.open_output_stream(tmp) as f:
        f.write(data)
    fs.move(tmp, f"{root}/{name}")


def job_key(model_dir: str, settings: PredictSettings, unit: str, inputs: list, blocks: int) -> dict:
    """What a part file depends on: a re-run into the same folder must match it, or nothing is skipped."""
    p = settings.predictor
    return {"model": os.path.abspath(model_dir), "backend": p.backend, "argmax": p.argmax,
            "max_tokens": p.max_tokens, "batch_size": p.batch_size, "format": settings.format,
            "input_format": settings.input_format, "text_field": settings.text_field, "unit": unit,
            "block_rows": settings.block_rows, "inputs": [[f.source, f.size] for f in inputs], "blocks": blocks}


def prepare_output(output_dir: str, key: dict) -> tuple[Any, str, set[str]]:
    """The output folder, its plan checked against this job's (or written), and the parts already there."""
    import pyarrow.fs as pafs

    fs, root = filesystem(output_dir)
    fs.create_dir(root, recursive=True)
    plan_path = f"{root}/{PLAN_FILE}"
    if fs.get_file_info(plan_path).type == pafs.FileType.File:
        with fs.open_input_stream(plan_path) as f:
            old = json.loads(f.read().decode("utf-8"))
        if differs := [k for k in key if old.get(k) != key[k]]:
            raise UsageError(f"{output_dir!r} holds parts of another job ({differs[0]} differs); give an empty "
                             f"folder, or the same command and input to finish that job", field="output")
    else:
        put(fs, root, PLAN_FILE, (json.dumps(key, indent=1) + "\n").encode("utf-8"))
    names = {i.base_name for i in fs.get_file_info(pafs.FileSelector(root))}
    return fs, root, {n for n in names if n.startswith("part-")}


def _clear_temporary(fs, root: str) -> None:
    import pyarrow.fs as pafs

    for i in fs.get_file_info(pafs.FileSelector(root)):
        if i.base_name.startswith(".part-") and i.base_name.endswith(".tmp"):
            fs.delete_file(i.path)


def run_ray(model_dir: str, inputs: list[str], output_dir: str, settings: PredictSettings, address: str | None,
            log: Callable[[str], object] = print) -> BulkSummary:
    """Tag `inputs` into `output_dir` on Ray Data: a cluster at `address`, or Ray started here."""
    try:
        import ray
    except ImportError:
        raise UsageError('--ray needs Ray Data: pip install "nerkit[ray]"', field="ray") from None
    from ..folder import ModelFolder

    if settings.format not in ("jsonl", "parquet"):
        raise UsageError(f"--ray writes jsonl or parquet, not {settings.format}", field="format")
    t0 = time.perf_counter()
    model = str(ModelFolder(model_dir).path.resolve())  # every node opens the same path
    unit = "line" if settings.unit == "line" else "file"
    files = list_inputs(inputs)
    blocks = plan(files, settings.input_format, unit, settings.block_rows, settings.text_field)
    fs, root, done = prepare_output(output_dir, job_key(model, settings, unit, files, len(blocks)))
    todo = [b for b in blocks if part_name(b.index, settings.format) not in done]
    summary = BulkSummary(output_dir, len(blocks), len(blocks) - len(todo))
    log(f"{len(todo)} of {len(blocks)} blocks to tag into {output_dir}")
    if todo:
        if not ray.is_initialized():  # started here: no dashboard (its processes would share the cores)
            joining = bool(address or os.environ.get("RAY_ADDRESS"))
            ray.init(address=address or None, logging_level=logging.WARNING, log_to_driver=False,
                     include_dashboard=None if joining else False)
        _run_blocks(ray, todo, model, settings, root if is_local(fs) else output_dir, summary, log)
    _clear_temporary(fs, root)  # left beside its part by an actor that died while writing
    summary.seconds = time.perf_counter() - t0
    put(fs, root, SUMMARY_FILE, (json.dumps(summary.to_dict(), indent=1) + "\n").encode("utf-8"))
    return summary


def _run_blocks(ray, todo: list[Block], model: str, settings: PredictSettings, output_dir: str,
                summary: BulkSummary, log: Callable[[str], object]) -> None:
    r = settings.ray
    per, kind = (r.gpus_per_actor, "GPU") if r.gpus_per_actor > 0 else (r.cpus_per_actor, "CPU")
    have = ray.cluster_resources().get(kind, 0)
    if have < per:  # an autoscaling cluster may add nodes; anything else waits for ever
        log(f"warning: the Ray cluster has {have:g} {kind}s now and an actor needs {per:g}: "
            f"the actors wait for nodes that have them")
    actors = r.actors or max(1, int(have // per))
    if r.gpus_per_actor > 0 and not settings.predictor.device:
        settings.predictor.device = "cuda"
    ray.data.DataContext.get_current().enable_progress_bars = not settings.quiet
    ds = ray.data.from_items([{"block": b.to_json()} for b in todo], override_num_blocks=len(todo))
    ds = ds.map_batches(BlockTagger, batch_size=1, compute=ray.data.ActorPoolStrategy(size=min(actors, len(todo))),
                        fn_constructor_kwargs={"model_dir": model, "settings": settings, "output_dir": output_dir,
                                               "threads": max(1, int(r.cpus_per_actor))},
                        num_cpus=r.cpus_per_actor, num_gpus=r.gpus_per_actor or None)
    stats: dict[str, ActorStats] = {}
    failures: dict[int, list[str]] = {}  # by block, so that they print in input order
    for row in ds.iter_rows():
        if str(row["error"]):  # a block nerkit refused: the first one stops the job, as in one process
            from .. import errors

            name, message, where = json.loads(str(row["error"]))
            raise getattr(errors, name, NerkitError)(message, field=where)
        a = stats.setdefault(str(row["actor"]), ActorStats(str(row["actor"])))
        a.blocks += 1
        a.documents += int(row["documents"])
        a.words += int(row["words"])
        a.seconds += float(row["seconds"])
        failures[int(row["block"])] = json.loads(str(row["failures"]))
    summary.failures = [m for b in sorted(failures) for m in failures[b]]
    summary.actors = list(stats.values())
    summary.documents = sum(a.documents for a in summary.actors)
    summary.words = sum(a.words for a in summary.actors)
