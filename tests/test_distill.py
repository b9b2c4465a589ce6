"""`nerkit distill`: students made from a teacher, the teachers' targets, the extra loss term, and whole
distillation runs on the tiny model (students that load, tag, export and resume like any model)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from nerkit.config import load_config, settings_from
from nerkit.errors import ConfigError
from nerkit.folder import ModelFolder
from nerkit.model import load_model, save_model
from nerkit.settings import DistillConfig


def test_spread_keeps_the_top_layer_and_spaces_the_rest():
    from nerkit.students import bottom, spread

    assert bottom(6, 2) == [0, 1]
    assert spread(6, 2) == [2, 5]
    assert spread(6, 3) == [1, 3, 5]
    assert spread(6, 6) == list(range(6))
    assert spread(6, 1) == [5]


def _batch(model_dir: Path):
    from nerkit.batching import Collator
    from nerkit.encoding import Encoder

    folder = ModelFolder(model_dir)
    enc = Encoder.from_meta(folder.tokenizer, folder.meta)
    feats = enc.encode([[["Peter", "Blackburn", "visited", "Paris", "."]], [["EU", "rejects", "it"]]])
    batch = Collator(folder.tokenizer.pad_token_id, with_shapes=folder.meta.shapes)(feats)
    batch.pop("labels")
    return batch


def test_layer_student_with_every_layer_is_the_teacher(trained_model_dir):
    from nerkit.students import layer_student

    teacher = load_model(ModelFolder(trained_model_dir))
    n = teacher.config.num_hidden_layers
    same, cut = layer_student(teacher, n).eval(), layer_student(teacher, 1).eval()
    batch = _batch(trained_model_dir)
    with torch.inference_mode():
        ref = teacher(**batch).logits
        assert torch.equal(same(**batch).logits, ref)
        assert cut.config.num_hidden_layers == 1 and not torch.allclose(cut(**batch).logits, ref)
    assert teacher.config.num_hidden_layers == n  # the teacher itself is untouched
    assert torch.equal(cut.shape_embedding.weight, teacher.shape_embedding.weight)
    with pytest.raises(Exception, match="at most"):
        layer_student(teacher, n + 1)


@pytest.mark.parametrize("kind,heads", [("conv", 0), ("conv", 4), ("lstm", 0), ("lstm", 4)])
def test_conv_student_saves_loads_and_exports(trained_model_dir, tmp_path, kind, heads):
    from nerkit.export import export_onnx
    from nerkit.students import STUDENTS

    folder = ModelFolder(trained_model_dir)
    teacher = load_model(folder)
    student = STUDENTS[kind](teacher, layers=2, width=32, kernel=3, heads=heads).eval()
    assert (student.hf.conv.attention is not None) == bool(heads)
    assert (len(student.hf.conv.blocks), len(student.hf.conv.recurrent)) == ((2, 0) if kind == "conv" else (0, 2))
    assert torch.equal(student.hf.get_input_embeddings().weight, teacher.hf.get_input_embeddings().weight)
    out = tmp_path / "conv"
    save_model(student, folder.tokenizer, out, folder.meta)
    assert json.loads((out / "config.json").read_text())["model_type"] == "nerkit-conv"
    again = load_model(ModelFolder(out))
    batch = _batch(out)
    with torch.inference_mode():
        torch.testing.assert_close(again(**batch).logits, student(**batch).logits)
        # padding must not leak into the real tokens: each text alone gives the same logits as in the batch
        for row in range(batch["input_ids"].shape[0]):
            n = int(batch["attention_mask"][row].sum())
            alone = {k: v[row : row + 1, :n] for k, v in batch.items()}
            torch.testing.assert_close(again(**alone).logits[0], again(**batch).logits[row, :n],
                                       atol=1e-5, rtol=1e-5)
    result = export_onnx(out, opset=17)
    assert result.max_abs_diff <= 1e-3


def test_distill_loss_is_cross_entropy_plus_the_teacher_term():
    from nerkit.train.distill import DistillLoss

    torch.manual_seed(0)
    logits = torch.randn(2, 5, 4)
    labels = torch.tensor([[-100, 1, 2, -100, 0], [-100, 3, -100, -100, -100]])

    class Fixed(torch.nn.Module):
        def forward(self, **_):
            from transformers.modeling_outputs import TokenClassifierOutput

            return TokenClassifierOutput(logits=logits)

    gold = labels != -100
    ce = torch.nn.functional.cross_entropy(logits[gold], labels[gold])
    t = 2.0
    soft = torch.zeros(2, 5, 4)
    soft[gold] = torch.softmax(logits[gold] / t, -1)  # the teacher agrees with the student exactly
    batch = {"input_ids": torch.zeros(2, 5, dtype=torch.long), "labels": labels, "teacher_probs": soft}
    torch.testing.assert_close(DistillLoss(0.7, t)(Fixed(), batch), 0.3 * ce)
    torch.testing.assert_close(DistillLoss(0.0, t)(Fixed(), batch), ce)
    other = soft.clone()
    other[gold] = torch.softmax(-logits[gold] / t, -1)
    kl = torch.nn.functional.kl_div(torch.log_softmax(logits[gold] / t, -1), other[gold], reduction="batchmean")
    torch.testing.assert_close(DistillLoss(1.0, t)(Fixed(), {**batch, "teacher_probs": other}), kl * t * t)
    assert "teacher_probs" in batch  # the caller's batch is left as it was


def test_collator_puts_targets_on_first_subwords_and_drops_gold_on_extra_text():
    from nerkit.batching import Collator
    from nerkit.encoding import Feature
    from nerkit.train.distill import DistillCollator, TeacherTargets

    probs = np.arange(5 * 3, dtype=np.float32).reshape(5, 3)  # 2 gold sentences (2 + 1 words), 1 extra (2)
    targets = TeacherTargets.of(probs, [2, 1, 2], gold_sentences=2)
    feats = [Feature([1, 5, 6, 7, 2], [-100, 0, -100, 1, -100], [0] * 5, [1, 3], [0, 0], [0, 1], [True, True]),
             Feature([1, 8, 9, 10, 2], [-100, 2, 0, 1, -100], [0] * 5, [1, 2, 3], [1, 2, 2], [0, 0, 1], [True] * 3)]
    batch = DistillCollator(Collator(0), targets)(feats)
    p = batch["teacher_probs"]
    assert p.shape == (2, 5, 3)
    assert p[0, 1].tolist() == probs[0].tolist() and p[0, 3].tolist() == probs[1].tolist()
    assert p[1, 1].tolist() == probs[2].tolist() and p[1, 2].tolist() == probs[3].tolist()
    assert p[1, 3].tolist() == probs[4].tolist()
    assert p[0, 2].sum() == 0 and p[0, 0].sum() == 0  # not a first sub-word, a special token
    assert batch["labels"][1].tolist() == [-100, 2, -100, -100, -100]  # the extra sentence lost its gold


def _distill_cfg(trained_run, synthetic_dir, out, *more):
    pairs = [("distill.teachers", str(trained_run)), ("data.dir", str(synthetic_dir)), ("output", str(out)),
             ("train.epochs", "2"), ("train.lr", "3e-3"), ("train.batch_size", "16"), ("train.progress", "false"),
             *more]
    return settings_from(DistillConfig, None, list(pairs))


def test_distilled_layer_student_trains_loads_and_tags(trained_run, synthetic_dir, tmp_path):
    import nerkit
    from nerkit.train import train

    metrics = train(_distill_cfg(trained_run, synthetic_dir, tmp_path / "s1", ("distill.layers", "1")))
    assert metrics["validation"]["conlleval"]["micro"]["f1"] > 0.8
    folder = ModelFolder(tmp_path / "s1")
    assert folder.config.num_hidden_layers == 1
    assert folder.meta.train_config["distill"]["teachers"] == str(trained_run)
    card = (folder.path / "README.md").read_text()
    assert "distilled with nerkit from the teacher(s)" in card and "\nnerkit distill --" in card and "--distill.teachers" in card
    spans = nerkit.load(str(tmp_path / "s1"))("Peter Blackburn visited Paris .")
    assert all(s.text == "Peter Blackburn visited Paris ."[s.start:s.end] for s in spans)


@pytest.mark.parametrize("kind", ["conv", "lstm"])
def test_distilled_conv_student_learns(trained_run, synthetic_dir, tmp_path, kind):
    from nerkit.train import train

    cfg = _distill_cfg(trained_run, synthetic_dir, tmp_path / "conv", ("distill.student", kind),
                       ("distill.layers", "2"), ("distill.width", "64"), ("train.epochs", "3"))
    metrics = train(cfg)
    assert metrics["validation"]["conlleval"]["micro"]["f1"] > 0.6
    assert ModelFolder(tmp_path / "conv").model_type == "nerkit-conv"


def test_two_teachers_and_extra_text(trained_run, synthetic_dir, tmp_path):
    from nerkit.train import train
    from nerkit.train.distill import read_extra

    second = tmp_path / "teacher2"
    shutil.copytree(trained_run / "model", second)
    extra = tmp_path / "extra.txt"
    extra.write_text("Anna Schmidt flew to Berlin. She met Siemens there.\n\nThe Rhine is long.\n")
    corpus = read_extra([str(extra)])
    assert [[s.words for s in d.sentences] for d in corpus.documents] == [
        [["Anna", "Schmidt", "flew", "to", "Berlin", "."], ["She", "met", "Siemens", "there", "."]],
        [["The", "Rhine", "is", "long", "."]]]
    cfg = _distill_cfg(trained_run, synthetic_dir, tmp_path / "s2", ("distill.teachers", f"{trained_run},{second}"),
                       ("distill.extra", str(extra)), ("distill.layers", "1"), ("train.epochs", "1"))
    metrics = train(cfg)
    assert "validation" in metrics


def test_targets_are_each_words_mean_distribution_with_a_progress_bar(trained_run, synthetic_dir, tmp_path):
    from nerkit.corpus import read_conll
    from nerkit.train.distill import Teachers

    corpus = read_conll(synthetic_dir / "dev.txt")
    words = sum(len(s.words) for s in corpus.sentences)
    one = Teachers(settings_from(DistillConfig, None, [("distill.teachers", str(trained_run))]).distill)
    probs = one.targets(corpus, "cpu", progress=True)  # the bar's callback is called once per model call
    assert probs.shape == (words, len(one.labels))
    assert np.allclose(probs.sum(-1), 1.0, atol=1e-5)
    second = tmp_path / "same"
    shutil.copytree(trained_run / "model", second)
    two = Teachers(settings_from(DistillConfig, None, [("distill.teachers", f"{trained_run},{second}")]).distill)
    assert np.allclose(two.targets(corpus, "cpu", progress=False), probs, atol=1e-6)  # the mean of equals


def test_teachers_must_share_labels(trained_run, tmp_path):
    from nerkit.train.distill import Teachers

    other = tmp_path / "other"
    shutil.copytree(trained_run / "model", other)
    config = json.loads((other / "config.json").read_text())
    config["id2label"] = {k: v.replace("PER", "PERSON") for k, v in config["id2label"].items()}
    config["label2id"] = {v: int(k) for k, v in config["id2label"].items()}
    (other / "config.json").write_text(json.dumps(config))
    meta = json.loads((other / "nerkit.json").read_text())
    meta["labels"] = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
    (other / "nerkit.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="share one label list"):
        Teachers(settings_from(DistillConfig, None, [("distill.teachers", f"{trained_run},{other}")]).distill)


def test_settings_need_a_teacher_and_check_their_ranges():
    with pytest.raises(ConfigError, match="distill.teachers: expected at least one"):
        settings_from(DistillConfig, None, [])
    with pytest.raises(ConfigError, match="distill.alpha"):
        settings_from(DistillConfig, None, [("teachers", "x"), ("alpha", "1.5")])
    with pytest.raises(ConfigError, match="distill.kernel: expected an odd"):
        settings_from(DistillConfig, None, [("teachers", "x"), ("kernel", "4")])
    assert load_config(None, []).to_dict().get("distill") is None  # `nerkit train` has no such section


def test_cli_joins_repeated_teachers_and_fails_in_one_line(trained_run, synthetic_dir, tmp_path, capsys):
    from nerkit.cli import build_parser, main
    from nerkit.config import from_args

    args, extra = build_parser().parse_known_args(["distill", "--teacher", "a", "--teacher", "b", "--layers", "3"])
    cfg = from_args(args.settings, args, extra)
    assert cfg.distill.teacher_list == ["a", "b"] and cfg.distill.layers == 3
    assert main(["distill", "--output", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["nerkit: error: distill.teachers: expected at least one trained run or model folder (--teacher DIR)"]
    assert main(["distill", "--teacher", str(tmp_path / "nowhere"), "--data", str(synthetic_dir),
                 "--output", str(tmp_path / "y")]) == 2
    assert "does not exist" in capsys.readouterr().err.strip().splitlines()[-1]
    # The encoder and the shapes come from the teacher: not offered, and refused when given anyway.
    with pytest.raises(SystemExit):
        main(["distill", "--help"])
    help_text = capsys.readouterr().out
    assert "--model.max_length" in help_text and "--model.name" not in help_text and "--shapes" not in help_text
    for option in (["--model.name", "bert-base-cased"], ["--shapes", "on"]):
        assert main(["distill", "--teacher", str(trained_run), *option, "--output", str(tmp_path / "z")]) == 2
        assert "a student takes it from its first teacher" in capsys.readouterr().err.strip().splitlines()[-1]
    assert not (tmp_path / "z").exists()


def test_resumed_distillation_equals_the_uninterrupted_one_and_checks_the_teacher(trained_run, synthetic_dir,
                                                                                   tmp_path):
    from conftest import stop_after_epoch
    from nerkit.folder import weights_sha256
    from nerkit.train import train

    teacher = tmp_path / "teacher"
    shutil.copytree(trained_run / "model", teacher)
    more = [("distill.teachers", str(teacher)), ("distill.layers", "1"), ("data.limit_train", "200")]
    train(_distill_cfg(trained_run, synthetic_dir, tmp_path / "whole", *more))
    cfg = _distill_cfg(trained_run, synthetic_dir, tmp_path / "parts", *more)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, callbacks=[stop_after_epoch(1)])
    train(cfg, resume=True)
    assert weights_sha256(tmp_path / "parts" / "model") == weights_sha256(tmp_path / "whole" / "model")

    with pytest.raises(KeyboardInterrupt):  # a teacher whose weights changed since the checkpoint
        train(_distill_cfg(trained_run, synthetic_dir, tmp_path / "third", *more), callbacks=[stop_after_epoch(1)])
    from safetensors.torch import load_file, save_file

    weights = load_file(str(teacher / "model.safetensors"))
    name = next(iter(weights))
    weights[name] = weights[name] + 0.01
    save_file(weights, str(teacher / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ConfigError, match=r"data \(teacher 1 weights\) differs"):
        train(_distill_cfg(trained_run, synthetic_dir, tmp_path / "third", *more), resume=True)
