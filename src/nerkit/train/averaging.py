"""An exponential moving average of the trainable weights (train.ema).

The average smooths out the noise of the last optimiser steps; with it on, every evaluation and every saved
model uses the averaged weights, while the optimiser keeps training the raw ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch


class WeightAverage:
    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"decay: expected a number in (0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.shadow = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        # The early average would be dominated by the pretrained weights; ramping the decay up as
        # (1 + t) / (10 + t) lets it follow the first steps closely.
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for n, p in model.named_parameters():
            if n in self.shadow:
                self.shadow[n].lerp_(p.detach(), 1.0 - d)

    @contextmanager
    def applied(self, model: torch.nn.Module) -> Iterator[None]:
        """Inside the block the model holds the averaged weights; the raw ones come back after it."""
        params = dict(model.named_parameters())
        with torch.no_grad():
            raw = {n: params[n].detach().clone() for n in self.shadow}
            for n, s in self.shadow.items():
                params[n].copy_(s)
        try:
            yield
        finally:
            with torch.no_grad():
                for n, r in raw.items():
                    params[n].copy_(r)

    def save(self, path: Path) -> None:
        """A safetensors file: the averaged tensors, the decay and the count of updates as its metadata."""
        from safetensors.torch import save_file

        save_file({n: s.detach().cpu().contiguous() for n, s in self.shadow.items()}, str(path),
                  metadata={"decay": repr(self.decay), "updates": str(self.updates)})

    def load(self, path: Path) -> None:
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            self.updates = int(f.metadata()["updates"])
            for n in f.keys():  # noqa: SIM118 (safe_open is no dict)
                self.shadow[n].copy_(f.get_tensor(n))
