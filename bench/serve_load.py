"""Load test of `nerkit serve`: throughput and latency with micro-batching on and off.

    python bench/serve_load.py [--model runs/conll03-minilm/model] [--data DIR_OR_FILE] [--clients 20]
                               [--duration 30] [--max-wait-ms 5] [--warmup 3] [--threads 0] [--lanes 0] [--rounds 2]

For each mode the script starts `nerkit serve` on a free 127.0.0.1 port in a child process, sends
`--warmup` seconds of uncounted load, then `--clients` concurrent asyncio httpx clients for `--duration`
seconds, each request one CoNLL test sentence, and stops the server. The modes alternate and each runs
`--rounds` times (default 2: one run on these small shared machines has ranged widely), and the smaller
on/off ratio of the rounds is the one reported. The CPU is printed first. Every loop is bounded in time
and only loopback is used. The last line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import socket
import sys
import time
from pathlib import Path

import httpx

from nerkit.serve.process import start_server, stop_server

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sentences(data: str | None) -> list[str]:
    from nerkit.corpus import find_split_file, read_conll, resolve_data_dir

    p = Path(data) if data else None
    if p is None or p.is_dir() or not p.exists():
        folder = p if p is not None and p.is_dir() else resolve_data_dir(data or "conll2003")
        p = find_split_file(folder, "test")
        if p is None:
            sys.exit(f"serve_load: no test split in {folder}")
    sents = [" ".join(s.words) for s in read_conll(p).sentences]
    random.Random(0).shuffle(sents)
    return sents


async def load(url: str, sentences: list[str], clients: int, seconds: float) -> dict:
    """`clients` loops, each sending one sentence at a time until `seconds` have passed."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    counter = iter(range(10**9))
    end = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=10.0) as client:

        async def one_client() -> None:
            while time.perf_counter() < end:
                text = sentences[next(counter) % len(sentences)]
                t0 = time.perf_counter()
                try:
                    r = await client.post("/v1/entities", json={"text": text})
                    ok = r.status_code == 200 and "entities" in r.json()
                    why = f"HTTP {r.status_code}"
                except (httpx.HTTPError, ValueError) as e:
                    ok, why = False, type(e).__name__
                if ok:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors[why] = errors.get(why, 0) + 1

        t_start = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        elapsed = time.perf_counter() - t_start
    latencies.sort()

    def pct(q: float) -> float:
        return round(1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))], 1) if latencies else -1.0

    return {"requests": len(latencies), "errors": sum(errors.values()), "error_kinds": errors,
            "seconds": round(elapsed, 2), "throughput_rps": round(len(latencies) / elapsed, 1),
            "p50_ms": pct(0.50), "p95_ms": pct(0.95), "p99_ms": pct(0.99),
            "max_ms": round(1000 * latencies[-1], 1) if latencies else -1.0}


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU time of a process (this one by default), from /proc or getrusage."""
    if pid is None:
        import resource

        ru = resource.getrusage(resource.RUSAGE_SELF)
        return ru.ru_utime + ru.ru_stime
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def scrape(url: str) -> dict:
    text = httpx.get(url + "/metrics", timeout=5).text
    out = {}
    for name in ("nerkit_model_calls_total", "nerkit_model_texts_total", "nerkit_model_seconds_total"):
        m = re.search(rf"^{name} (\S+)$", text, re.M)
        out[name] = float(m.group(1)) if m else None
    return out


def run_mode(args, sentences: list[str], batching: bool) -> dict:
    port = free_port()
    extra = ["--max-wait-ms", str(args.max_wait_ms)] if batching else ["--no-batching"]
    extra += ["--threads", str(args.threads), "--lanes", str(args.lanes)]
    try:
        proc = start_server(args.model, port, *extra)
    except RuntimeError as e:
        sys.exit(f"serve_load: {e}")
    url = f"http://127.0.0.1:{port}"
    try:
        if args.warmup > 0:
            asyncio.run(load(url, sentences, args.clients, args.warmup))
        before = scrape(url)
        cpu0, client0 = cpu_seconds(proc.pid), cpu_seconds()
        res = asyncio.run(load(url, sentences, args.clients, args.duration))
        cpu1, client1 = cpu_seconds(proc.pid), cpu_seconds()
        after = scrape(url)
    finally:
        stop_server(proc)
    calls = (after["nerkit_model_calls_total"] or 0) - (before["nerkit_model_calls_total"] or 0)
    texts = (after["nerkit_model_texts_total"] or 0) - (before["nerkit_model_texts_total"] or 0)
    busy = (after["nerkit_model_seconds_total"] or 0) - (before["nerkit_model_seconds_total"] or 0)
    res["mean_batch"] = round(texts / calls, 2) if calls else None
    res["model_ms_per_call"] = round(1000 * busy / calls, 1) if calls else None
    res["model_busy"] = round(busy / res["seconds"], 3)  # fraction of the time the model was running
    res["server_cpu_cores"] = round((cpu1 - cpu0) / res["seconds"], 2)  # of os.cpu_count() cores
    res["client_cpu_cores"] = round((client1 - client0) / res["seconds"], 2)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=str(REPO / "runs" / "conll03-minilm" / "model"))
    ap.add_argument("--data", default=None, help="CoNLL test file or folder (default: conll2003's test split)")
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of measured load per mode")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds of uncounted load first")
    ap.add_argument("--max-wait-ms", type=float, default=5.0)
    ap.add_argument("--threads", type=int, default=0, help="the server's torch threads (0: its default)")
    ap.add_argument("--lanes", type=int, default=0, help="the server's ONNX lanes (0: its default)")
    ap.add_argument("--rounds", type=int, default=2, help="runs of each mode; the smaller ratio is reported")
    args = ap.parse_args()
    if not 1 <= args.clients <= 200 or not 0 < args.duration <= 600 or not 1 <= args.rounds <= 5:
        sys.exit("serve_load: --clients must be 1-200, --duration 0-600 s and --rounds 1-5 (the load stays bounded)")
    if not Path(args.model).exists():
        sys.exit(f"serve_load: model {args.model} not found (train it, or pass --model)")
    sentences = test_sentences(args.data)
    from machine import describe, machine

    print(f"{describe()}")
    print(f"serve_load: {args.model} | {len(sentences)} test sentences | {args.clients} clients x "
          f"{args.duration:g} s per mode | server threads {args.threads or 'default'}, lanes {args.lanes or 'default'} | 127.0.0.1 | "
          f"cpus {os.cpu_count()} | load average before {os.getloadavg()[0]:.2f}", flush=True)
    rounds: list[dict] = []
    for k in range(args.rounds):
        results = {}
        for mode, batching in (("batching_on", True), ("batching_off", False)):
            r = run_mode(args, sentences, batching)
            results[mode] = r
            print(f"{mode:<13} {r['throughput_rps']:>7.1f} req/s  p50 {r['p50_ms']:>6.1f} ms  p95 {r['p95_ms']:>6.1f} ms  "
                  f"p99 {r['p99_ms']:>6.1f} ms  max {r['max_ms']:>6.1f} ms  errors {r['errors']}  "
                  f"requests {r['requests']}  mean model batch {r['mean_batch']}  model {r['model_ms_per_call']} ms/call, "
                  f"busy {100 * r['model_busy']:.0f}%  cpu: server {r['server_cpu_cores']} client "
                  f"{r['client_cpu_cores']} cores  (round {k + 1})", flush=True)
        on, off = results["batching_on"], results["batching_off"]
        results["throughput_ratio"] = round(on["throughput_rps"] / off["throughput_rps"], 2) if off["throughput_rps"] else None
        rounds.append(results)
    ratios = [r["throughput_ratio"] for r in rounds]
    worst = min(rounds, key=lambda r: r["throughput_ratio"] if r["throughput_ratio"] is not None else -1.0)
    ratio = worst["throughput_ratio"]
    p99_on = max(r["batching_on"]["p99_ms"] for r in rounds)
    targets = {"zero_errors": all(r[m]["errors"] == 0 for r in rounds for m in ("batching_on", "batching_off")),
               "throughput_ratio_ge_2": ratio is not None and ratio >= 2.0,
               "p99_on_lt_500ms": 0 <= p99_on < 500}
    print(f"micro-batching on {describe()}: {ratio} x throughput (the smaller of rounds {ratios}); worst p99 on "
          f"{p99_on} ms vs off {max(r['batching_off']['p99_ms'] for r in rounds)} ms; targets "
          + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in targets.items()))
    on, off = worst["batching_on"], worst["batching_off"]
    print(json.dumps({"bench": "serve_load", "machine": machine(), "model": args.model, "clients": args.clients,
                      "duration_s": args.duration, "max_wait_ms": args.max_wait_ms,
                      "server_threads": args.threads, "server_lanes": args.lanes, "loadavg_1m_after": round(os.getloadavg()[0], 2),
                      "batching_on": on, "batching_off": off, "throughput_ratio": ratio, "ratios": ratios,
                      "rounds": rounds, "p99_ratio": round(on["p99_ms"] / off["p99_ms"], 3) if off["p99_ms"] > 0 else None,
                      "targets": targets}))


if __name__ == "__main__":
    main()
