"""PNG plots: training curves, and the entity-type confusion matrix."""

from __future__ import annotations

import io
import os

from .atomic import write_bytes


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    write_bytes(path, buf.getvalue())


def training_curves(losses: list[list[float]], history: list[dict], path: str | os.PathLike) -> None:
    """Training loss by step (left) and validation F1 by epoch (right)."""
    plt = _figure()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    if losses:
        ax1.plot([s for s, _ in losses], [v for _, v in losses], color="tab:blue")
    ax1.set(xlabel="optimiser step", ylabel="training loss", title="Training loss")
    ax1.set_yscale("log")
    ep = [h["epoch"] for h in history if "validation_f1" in h]
    f1 = [h["validation_f1"] for h in history if "validation_f1" in h]
    if ep:
        ax2.plot(ep, f1, marker="o", color="tab:green")
        for x, y in zip(ep, f1):
            ax2.annotate(f"{y:.2f}", (x, y), textcoords="offset points", xytext=(0, 6), ha="center")
    ax2.set(xlabel="epoch", ylabel="F1 (%)", title="Validation entity F1")
    ax2.xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def confusion_matrix(types: list[str], matrix: list[list[int]], path: str | os.PathLike, title: str = "") -> None:
    """Gold entity type (rows) against predicted type (columns), exact boundaries; '(none)' is a miss
    (last column) or a spurious entity (last row)."""
    import numpy as np

    plt = _figure()
    m = np.array(matrix, dtype=float)
    norm = m / np.maximum(m.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.1 * len(types) + 2, 1.0 * len(types) + 1.5))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(types)):
        for j in range(len(types)):
            if matrix[i][j]:
                ax.text(j, i, str(matrix[i][j]), ha="center", va="center",
                        color="white" if norm[i, j] > 0.5 else "black", fontsize=9)
    ax.set_xticks(range(len(types)), types, rotation=45, ha="right")
    ax.set_yticks(range(len(types)), types)
    ax.set(xlabel="predicted", ylabel="gold", title=title or "Entity type confusion (exact boundaries)")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
