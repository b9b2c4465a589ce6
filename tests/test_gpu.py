"""What only a GPU shows: training under bf16/fp16 autocast on CUDA, and a CUDA predictor that tags as the CPU one
does. Skipped without CUDA (CI has none); bench/gpu_check.sh runs them on a lent GPU machine."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.parametrize("precision", ["bf16", "fp16", "no"])
def test_trains_on_cuda(tmp_path, small_data, tiny_base, precision):
    from nerkit.config import load_config
    from nerkit.train import train

    cfg = load_config(None, [("model.name", str(tiny_base)), ("data.dir", str(small_data)),
                             ("output", str(tmp_path / "run")), ("train.epochs", "1"), ("train.lr", "3e-3"),
                             ("train.batch_size", "16"), ("train.progress", "false"),
                             ("train.precision", precision)])
    metrics = train(cfg)
    assert metrics["device"].startswith("cuda")
    assert metrics["precision"] == precision
    f1 = metrics["history"][-1]["validation_f1"]
    assert math.isfinite(f1) and 0 <= f1 <= 1
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()


def test_cuda_predictor_tags_as_cpu(trained_model_dir, synthetic_dir):
    from nerkit.corpus import read_conll
    from nerkit.engine.predictor import Predictor

    docs = [[s.words for s in d.sentences] for d in read_conll(synthetic_dir / "test.txt").documents]
    cpu = Predictor.from_dir(trained_model_dir, device="cpu").predict(docs).tags
    gpu = Predictor.from_dir(trained_model_dir, device="cuda").predict(docs).tags
    words = sum(len(t) for t in cpu)
    same = sum(a == b for tc, tg in zip(cpu, gpu) for a, b in zip(tc, tg))
    assert same / words >= 0.999  # fp32 on both: only reduction order differs
