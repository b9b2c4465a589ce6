"""What a run has done so far: saved beside the checkpoint's weights as trainer_state.json, read back on
--resume, and the source of metrics.json's history and curves.png."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields


@dataclass
class TrainState:
    epoch: int = 0  # epochs finished
    step: int = 0  # optimiser steps taken
    batch: int = 0  # batches of the epoch in progress taken (per process); 0 at an epoch's end
    best_f1: float = -1.0  # best validation micro F1 (0-1); -1: none yet, or no validation split
    best_epoch: int = 0  # the epoch (1-based) whose weights are in model/
    history: list[dict] = field(default_factory=list)  # per epoch: step, seconds, padding, validation F1
    losses: list[list[float]] = field(default_factory=list)  # [step, mean training loss] every log_every
    train_seconds: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> TrainState:
        raw = json.loads(text)
        return cls(**{f.name: raw[f.name] for f in fields(cls) if f.name in raw})
