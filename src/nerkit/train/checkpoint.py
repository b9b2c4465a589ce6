"""The checkpoint's files: tensors as safetensors, everything else as JSON, so that loading one runs no
pickle. The Checkpoint callback (callbacks.py) decides when; this module knows what and how.

  model.safetensors                  the raw (not averaged) weights
  optimizer.safetensors / .json      AdamW's per-parameter tensors / its groups and scalars
  scheduler.json                     the learning-rate schedule's state
  rng-RANK.safetensors / .json       each process's torch (and CUDA) / Python and NumPy random states
  fingerprint.json                   the settings and the data the run trains on, checked on --resume
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from ..atomic import fault_point
from ..config import flatten
from ..corpus import Corpus

MODEL_FILE = "model.safetensors"
FINGERPRINT_FILE = "fingerprint.json"
# Settings that may change on --resume: where the run is, how it shows progress, how often it saves.
RESUMABLE_KEYS = {"output", "train.progress", "train.save_every"}


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=1) + "\n")
    fault_point("checkpoint", "file")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path))
    fault_point("checkpoint", "file")


def save_weights(model: torch.nn.Module, folder: Path) -> None:
    save_model(model, str(folder / MODEL_FILE))  # drops tied duplicates, which save_file refuses
    fault_point("checkpoint", "file")


def load_weights(model: torch.nn.Module, folder: Path) -> None:
    load_model(model, str(folder / MODEL_FILE), device=str(next(model.parameters()).device))


def save_optimizer(state: dict, folder: Path) -> None:
    """optimizer.state_dict(): its tensors by 'PARAM.NAME', the rest (groups, scalars) as JSON."""
    tensors, scalars = {}, {}
    for i, per_param in state["state"].items():
        for name, v in per_param.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{i}.{name}"] = v
            else:
                scalars[f"{i}.{name}"] = v
    save_tensors(folder / "optimizer.safetensors", tensors)
    write_json(folder / "optimizer.json", {"param_groups": state["param_groups"], "scalars": scalars})


def load_optimizer(folder: Path) -> dict:
    meta = read_json(folder / "optimizer.json")
    state: dict[int, dict] = {}
    items = list(load_file(str(folder / "optimizer.safetensors")).items()) + list(meta["scalars"].items())
    for key, v in items:
        i, name = key.split(".", 1)
        state.setdefault(int(i), {})[name] = v
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def save_rng(folder: Path, rank: int) -> None:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors.update({f"cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    save_tensors(folder / f"rng-{rank}.safetensors", tensors)
    name, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)  # type: ignore[misc]
    write_json(folder / f"rng-{rank}.json", {"python": random.getstate(),
                                             "numpy": [name, np.asarray(keys).tolist(), pos, has_gauss, gauss]})


def load_rng(folder: Path, rank: int) -> None:
    tensors = load_file(str(folder / f"rng-{rank}.safetensors"))
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[f"cuda.{i}"] for i in range(len(tensors) - 1)]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    raw = read_json(folder / f"rng-{rank}.json")
    version, internal, gauss = raw["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = raw["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


def corpus_digest(corpus: Corpus) -> str:
    """sha256 of what training sees of a corpus: its documents, sentences, words and tags."""
    h = hashlib.sha256()
    for doc in corpus.documents:
        h.update(b"\x1d")
        for s in doc.sentences:
            h.update(json.dumps([s.words, s.tags]).encode())
    return h.hexdigest()


def fingerprint(config: dict, corpora: dict[str, Corpus], processes: int = 1,
                inputs: dict[str, str] | None = None) -> dict:
    """What a run must share with its checkpoint to resume from it exactly: the settings (but those in
    RESUMABLE_KEYS), the data as read (and `inputs`: digests of the teachers' weights), and the number of
    processes."""
    flat = flatten(config)
    return {"config": {k: v for k, v in flat.items() if k not in RESUMABLE_KEYS},
            "data": {**{name: corpus_digest(c) for name, c in corpora.items()}, **(inputs or {})},
            "run": {"processes": processes}}


def differences(saved: dict, now: dict, sections: tuple[str, ...] = ("config", "data", "run")) -> list[str]:
    """What differs between a checkpoint's fingerprint and this run's, one short phrase per key."""
    out = []
    for section in sections:
        a, b = saved.get(section, {}), now[section]
        for key in sorted(set(a) | set(b)):
            if a.get(key) == b.get(key):
                continue
            if section == "data":
                out.append(f"data ({key if key.startswith('teacher') else key + ' split'}) differs")
            else:
                out.append(f"{key} ({a.get(key, 'unset')!r} in the checkpoint, {b.get(key, 'unset')!r} now)")
    return out
