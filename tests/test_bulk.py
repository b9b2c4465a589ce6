"""`nerkit predict --ray` on a local Ray with 2 CPUs: the same records as one process, nothing lost or
written twice when an actor is killed mid-run, completed blocks skipped on a re-run. One Ray run (each
actor start imports torch and loads the model); the Parquet parts and refused blocks are checked on the
actor class itself, without Ray."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from conftest import synthetic_sentences
from nerkit.cli import main

ray = pytest.importorskip("ray")
pq = pytest.importorskip("pyarrow.parquet")
pa = pytest.importorskip("pyarrow")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=100 * 2**20,
             logging_level="ERROR")
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


def documents(n: int, seed: int) -> list[str]:
    """Short documents of 1 to 3 sentences, so that the tagger packs and cuts windows as on a corpus."""
    sents = [" ".join(w for w, _ in s) for s in synthetic_sentences(3 * n, seed=seed)]
    return [" ".join(sents[3 * i : 3 * i + 1 + i % 3]) for i in range(n)]


def settings_for(**keys):
    from nerkit.config import settings_from
    from nerkit.settings import PredictSettings

    return settings_from(PredictSettings, None, [(k, str(v)) for k, v in keys.items()])


def parts(out: Path, ext: str) -> list[Path]:
    return sorted(out.glob(f"part-*.{ext}"))


def jsonl_records(files: list[Path]) -> list[dict]:
    return [json.loads(line) for f in files for line in f.read_text(encoding="utf-8").splitlines()]


def actor_pids() -> list[int]:
    """The processes of this session's tagging actors (Ray names them after the class)."""
    import psutil

    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            if "BlockTagger" in " ".join(p.cmdline()):
                out.append(p.pid)
        except psutil.Error:
            continue
    return out


def test_ray_equals_one_process_and_a_killed_actor_loses_nothing(local_ray, tmp_path, trained_model_dir, capsys):
    from nerkit.bulk.ray_tag import run_ray

    docs = documents(480, seed=21)
    inputs = tmp_path / "in"
    inputs.mkdir()
    for k in range(2):  # two files, so that blocks start in each
        (inputs / f"{k}.jsonl").write_text("".join(json.dumps({"id": f"{k}-{i}", "text": t}) + "\n"
                                                   for i, t in enumerate(docs[k::2])), encoding="utf-8")
    model, flags = str(trained_model_dir), ["--block-rows", "4", "--quiet"]
    single = tmp_path / "single.jsonl"
    assert main(["predict", model, "-i", str(inputs), "-o", str(single), *flags]) == 0
    want = jsonl_records([single])
    assert len(want) == 480 and sum(len(r["spans"]) for r in want) > 200

    out = tmp_path / "ray"
    killed: list[tuple[int, int, list[int]]] = []  # (pid, parts done then, the actors' pids then)

    def kill_one_actor():
        deadline, pids = time.monotonic() + 120, []
        while not killed and time.monotonic() < deadline:
            pids = pids or actor_pids()  # found while the actor loads its model, before any part
            if pids and (done := len(parts(out, "jsonl"))) >= 2:
                os.kill(pids[0], signal.SIGKILL)
                killed.append((pids[0], done, pids))
            time.sleep(0.002)

    watcher = threading.Thread(target=kill_one_actor, daemon=True)
    watcher.start()
    # one actor, so that the one killed is busy with blocks and its replacement must finish the job
    settings = settings_for(block_rows=4, quiet=True, actors=1)
    summary = run_ray(model, [str(inputs)], str(out), settings, None, log=lambda m: None)
    watcher.join(timeout=5)
    assert killed and killed[0][1] < summary.blocks == 120, "the actor was killed while blocks were left"
    assert [p.name for p in parts(out, "jsonl")] == [f"part-{i:06d}.jsonl" for i in range(120)]
    assert jsonl_records(parts(out, "jsonl")) == want  # record for record: none lost, none twice
    # The replacement tagged the rest, the killed actor's unfinished block among them; a block counts once
    # in the summary whichever actor finished it (one the killed actor wrote but had not reported is redone).
    by_pid = {int(a.actor.rsplit(":", 1)[1]): a.blocks for a in summary.actors}
    assert len(set(by_pid) - set(killed[0][2])) == 1, by_pid  # one replacement, which did blocks
    assert sum(by_pid.values()) == 120 and summary.documents == 480 and summary.words > 0 and not summary.failures
    assert not list(out.glob(".*.tmp"))  # what a killed writer left beside its part is cleared
    head, *per_actor = summary.lines()
    assert head.startswith(f"480 documents, {summary.words} words in 120 blocks in ") and "words/s overall" in head
    assert len(per_actor) == len(by_pid) and all(" words/s" in line for line in per_actor)

    # a re-run skips every completed block, leaves the parts alone and starts no actor
    stamps = [p.stat().st_mtime_ns for p in parts(out, "jsonl")]
    again = run_ray(model, [str(inputs)], str(out), settings, None, log=lambda m: None)
    assert (again.skipped, again.documents, again.actors) == (120, 0, [])
    assert [p.stat().st_mtime_ns for p in parts(out, "jsonl")] == stamps
    assert json.loads((out / "_nerkit_summary.json").read_text())["skipped"] == 120

    # another job into the same folder is refused, naming what differs
    assert main(["predict", model, "-i", str(inputs), "--ray", "-o", str(out), "--block-rows", "5", "--quiet"]) == 2
    assert "holds parts of another job (block_rows differs)" in capsys.readouterr().err


def test_actor_writes_the_parquet_parts_one_process_writes(tmp_path, trained_model_dir):
    """Without Ray (the Ray path is the test above): the actor class on every block of a Parquet file
    writes parts whose rows, in block order, are the single process's Parquet file."""
    import numpy as np
    import torch

    from nerkit.bulk.blocks import plan
    from nerkit.bulk.files import list_inputs
    from nerkit.bulk.ray_tag import BlockTagger

    docs = documents(30, seed=22)
    src = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist([{"n": i, "body": t} for i, t in enumerate(docs)]), src, row_group_size=4)
    model = str(trained_model_dir)
    assert main(["predict", model, "-i", str(src), "-o", str(tmp_path / "single.parquet"), "--text-field", "body",
                 "-f", "parquet", "--block-rows", "8", "--quiet"]) == 0
    settings = settings_for(text_field="body", format="parquet", block_rows=8, quiet=True)
    blocks = plan(list_inputs([str(src)]), "auto", "file", 8, "body")
    assert [(b.first, b.start, b.stop) for b in blocks] == [(1, 0, 2), (9, 2, 4), (17, 4, 6), (25, 6, 8)]
    threads = torch.get_num_threads()
    try:
        actor = BlockTagger(model, settings, str(tmp_path / "ray"), threads=1)
    finally:
        torch.set_num_threads(threads)
    rows = actor({"block": np.array([b.to_json() for b in reversed(blocks)])})  # any order: parts by index
    assert list(rows["documents"]) == [6, 8, 8, 8] and set(rows["error"]) == {""}
    got = [r for f in parts(tmp_path / "ray", "parquet") for r in pq.read_table(f).to_pylist()]
    assert got == pq.read_table(tmp_path / "single.parquet").to_pylist()
    assert [r["n"] for r in got] == list(range(30)) and any(r["spans"] for r in got)


def test_an_actor_sends_a_refused_block_back_as_data(tmp_path, trained_model_dir):
    """Without Ray. A nerkit error in a block comes back as a row (the driver raises
    it as the one-line error), not as Ray's wrapped traceback, and no part is written for that block."""
    import numpy as np
    import torch

    from nerkit.bulk.blocks import Block
    from nerkit.bulk.ray_tag import BlockTagger

    pq.write_table(pa.Table.from_pylist([{"x": "a"}]), tmp_path / "p.parquet")
    (tmp_path / "ok.jsonl").write_text(json.dumps({"text": "Olga Chen lives in Lima ."}) + "\n")
    threads = torch.get_num_threads()
    try:
        actor = BlockTagger(str(trained_model_dir), settings_for(quiet=True), str(tmp_path / "out"), threads=1)
    finally:
        torch.set_num_threads(threads)
    bad = Block(3, "parquet", (str(tmp_path / "p.parquet"),), ("p.parquet",), 1, 0, 1, 10)
    good = Block(4, "jsonl", (str(tmp_path / "ok.jsonl"),), ("ok.jsonl",), 1, 0, 38, 38)
    rows = actor({"block": np.array([bad.to_json(), good.to_json()])})
    assert json.loads(rows["error"][0]) == ["UsageError", "p.parquet: no column 'text' (--text-field); it has x",
                                            "text_field"]
    assert rows["error"][1] == "" and list(rows["documents"]) == [0, 1]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["part-000004.jsonl"]
