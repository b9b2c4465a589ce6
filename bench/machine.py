"""The machine a bench ran on, for its output: ratios hold only for the CPU that measured them (int8 runs
much faster with AVX-512 VNNI than on an AVX2-only CPU). Run it alone to print this machine's line."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile")


def machine() -> dict:
    model, flags = platform.processor() or "unknown", set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model in ("unknown", "", platform.processor()):
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    return {"cpu": model, "cores": os.cpu_count(), "flags": [f for f in FLAGS if f in flags]}


def describe(m: dict | None = None) -> str:
    m = m or machine()
    return f"{m['cpu']}, {m['cores']} cores, {' '.join(m['flags']) or 'no AVX2'}"


if __name__ == "__main__":
    print(describe())
    print(json.dumps(machine()))
