"""What bench/gpu_check.sh takes to a GPU machine, which has PyTorch and transformers but no internet and
receives at most 64 MiB with the working tree.

    python bench/gpu_payload.py pack [--model runs/conll03-minilm/model] [--out gpu_payload]   # here
    python bench/gpu_payload.py unpack [--payload gpu_payload] [--out gpu_work]               # there

pack writes the trained model with its weights in fp16 (half the bytes; the MiniLM default is ~45 MB) and a
synthetic CoNLL corpus (templates of made-up sentences in the four CoNLL types: no licensed data travels).
unpack writes the model back in fp32, the dtype training and the benches start from.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path


def copy_model(src: Path, dst: Path, dtype) -> None:
    from safetensors.torch import load_file, save_file

    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("onnx", "*.png", "README.md"))
    for f in dst.glob("*.safetensors"):
        tensors = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in load_file(str(f)).items()}
        save_file(tensors, str(f), metadata={"format": "pt"})


def main() -> int:
    import torch

    from nerkit.tiny import conll_text, synthetic_sentences

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("--model", default="runs/conll03-minilm/model")
    p.add_argument("--out", default="gpu_payload")
    u = sub.add_parser("unpack")
    u.add_argument("--payload", default="gpu_payload")
    u.add_argument("--out", default="gpu_work")
    args = ap.parse_args()
    if args.cmd == "pack":
        out = Path(args.out)
        copy_model(Path(args.model), out / "model", torch.float16)
        (out / "data").mkdir(parents=True, exist_ok=True)
        for name, n, seed in (("train.txt", 3000, 1), ("dev.txt", 500, 2), ("test.txt", 3453, 3)):
            (out / "data" / name).write_text(conll_text(synthetic_sentences(n, seed), docs_every=10))
        size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 2**20
        print(f"wrote {out} ({size:.1f} MiB)")
        return 0 if size < 60 else 1
    out = Path(args.out)
    copy_model(Path(args.payload) / "model", out / "model", torch.float32)
    shutil.copytree(Path(args.payload) / "data", out / "data", dirs_exist_ok=True)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
