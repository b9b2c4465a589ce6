"""Soak test of `nerkit serve`: a steady load at about 80% of the measured capacity for a set number of
minutes, reporting requests, errors, p99 latency and the server's RSS over time.

    python bench/soak.py [--model runs/conll03-minilm/model] [--data DIR_OR_FILE] [--minutes 10]
                         [--fraction 0.8] [--interval 30] [--capacity-seconds 20] [--clients 20]

The script starts `nerkit serve` on a free 127.0.0.1 port in a child process, measures its capacity with
`--clients` closed-loop clients (each request one CoNLL test sentence, as bench/serve_load.py), then sends
requests open-loop at `--fraction` of that rate for `--minutes`, sampling every `--interval` seconds. Both
loads run on raw keep-alive asyncio connections with pre-encoded requests: an HTTP client library on the same
2 cores cost so much per request that the generator fell behind its own schedule and starved the server.
Targets: 0 errors, and RSS growth under 5% from the end of the warm-up (the first sample) to the end.
Writes bench/results/soak.txt and bench/results/soak.png (RSS and p99 against time); the last line is
JSON. Every loop is bounded in time and only loopback is used.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from nerkit.serve.process import start_server, stop_server

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe, machine  # noqa: E402
from serve_load import free_port, test_sentences  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MAX_IN_FLIGHT = 256  # open-loop requests waiting at once; past it the client counts the send as an error
RSS_TARGET = 0.05


@dataclass
class Sample:
    t_s: float  # seconds since the soak began, at the end of this interval
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float
    rss_mb: float


def rss_mb(pid: int) -> float:
    """Resident set size of a process, from /proc (the server's, as `ps` shows it)."""
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return float("nan")
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return round(1000 * xs[min(len(xs) - 1, int(q * len(xs)))], 1) if xs else -1.0


class Conn:
    """One keep-alive HTTP/1.1 connection on raw asyncio streams: a pre-encoded request out, the status and
    body back. Far cheaper per request than an HTTP client library, so that on a small machine the load
    generator does not starve the server it measures (nor fall behind its own schedule)."""

    def __init__(self, port: int):
        self.port, self.reader, self.writer = port, None, None

    async def post(self, raw: bytes) -> tuple[int, bytes]:
        for attempt in (0, 1):  # the server may have closed an idle or shed connection: reconnect once
            try:
                if self.writer is None:
                    self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
                self.writer.write(raw)
                await self.writer.drain()
                head = await self.reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = next((int(h.split(b":", 1)[1]) for h in head.split(b"\r\n")
                               if h.lower().startswith(b"content-length:")), 0)
                body = await self.reader.readexactly(length)
                if b"connection: close" in head.lower():
                    self.close()
                return status, body
            except (ConnectionError, asyncio.IncompleteReadError, OSError):
                self.close()
                if attempt:
                    raise
        raise ConnectionError("unreachable")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def request_bytes(text: str) -> bytes:
    body = json.dumps({"text": text}).encode()
    return (b"POST /v1/entities HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


async def capacity(port: int, sentences: list[str], clients: int, seconds: float) -> dict:
    """Closed loop on the same lean connections: each client sends its next request when the last is answered."""
    raw = [request_bytes(t) for t in sentences]
    done, lat, end = [0], [], time.perf_counter() + seconds

    async def client(k: int) -> None:
        c, i = Conn(port), k
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            status, _ = await c.post(raw[i % len(raw)])
            if status == 200:
                done[0] += 1
                lat.append(time.perf_counter() - t0)
            i += clients
        c.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
    return {"throughput_rps": round(done[0] / (time.perf_counter() - t0), 1), "p99_ms": pct(lat, 0.99)}


async def soak(port: int, pid: int, sentences: list[str], rate: float, seconds: float, interval: float,
               on_sample, connections: int = 32) -> tuple[list[Sample], dict[str, int]]:
    """Open loop: request i is due at start + i/rate whatever the answers take, so a slow server meets the
    same load (a closed loop would slow down with it and hide the problem). Due requests wait in a bounded
    backlog for one of `connections` keep-alive connections; latency counts from the due time, so waiting
    there is counted too."""
    raw = [request_bytes(t) for t in sentences]
    samples: list[Sample] = []
    kinds: dict[str, int] = {}
    window: list[float] = []
    errors = [0]
    backlog: asyncio.Queue = asyncio.Queue()

    def error(why: str) -> None:
        errors[0] += 1
        kinds[why] = kinds.get(why, 0) + 1

    async def worker() -> None:
        c = Conn(port)
        while (item := await backlog.get()) is not None:
            due, i = item
            try:
                status, body = await c.post(raw[i % len(raw)])
                if status == 200 and b'"entities"' in body:
                    window.append(time.perf_counter() - due)
                else:
                    error(f"HTTP {status}")
            except (ConnectionError, asyncio.IncompleteReadError, OSError, ValueError) as e:
                error(type(e).__name__)
        c.close()

    workers = [asyncio.create_task(worker()) for _ in range(connections)]
    start = time.perf_counter()
    next_sample, i = start + interval, 0
    while (now := time.perf_counter()) < start + seconds:
        due = start + i / rate
        if now < due:
            await asyncio.sleep(min(due - now, max(0.0, next_sample - now)))
        if time.perf_counter() >= due:
            if backlog.qsize() >= MAX_IN_FLIGHT:
                error("client backlog full")
            else:
                backlog.put_nowait((due, i))
            i += 1
        if time.perf_counter() >= next_sample:
            s = Sample(round(next_sample - start, 1), len(window), errors[0], pct(window, 0.5), pct(window, 0.99),
                       round(rss_mb(pid), 1))
            samples.append(s)
            on_sample(s)
            window.clear()
            errors[0] = 0
            next_sample += interval
    for _ in workers:
        backlog.put_nowait(None)
    await asyncio.wait(workers, timeout=35)
    return samples, kinds


def plot(samples: list[Sample], title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s.t_s / 60 for s in samples]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(t, [s.rss_mb for s in samples], color="tab:blue", marker="o", ms=3)
    ax.set_xlabel("minutes")
    ax.set_ylabel("server RSS (MiB)", color="tab:blue")
    ax.set_ylim(0, 1.15 * max(s.rss_mb for s in samples))  # from 0: growth shows in proportion
    ax2 = ax.twinx()
    ax2.plot(t, [s.p99_ms for s in samples], color="tab:red", marker="s", ms=3)
    ax2.set_ylabel("p99 latency (ms)", color="tab:red")
    ax2.set_ylim(0, 1.15 * max(max(s.p99_ms for s in samples), 1.0))
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return buf.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=str(REPO / "runs" / "conll03-minilm" / "model"))
    ap.add_argument("--data", default=None, help="CoNLL test file or folder (default: conll2003's test split)")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--fraction", type=float, default=0.8, help="share of the measured capacity to send")
    ap.add_argument("--interval", type=float, default=30.0, help="seconds per sample")
    ap.add_argument("--capacity-seconds", type=float, default=20.0)
    ap.add_argument("--clients", type=int, default=20, help="closed-loop clients that measure the capacity")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "soak.txt"))
    ap.add_argument("--png", default=str(REPO / "bench" / "results" / "soak.png"))
    ap.add_argument("--serve-arg", action="append", default=[], help="an extra `nerkit serve` argument")
    args = ap.parse_args()
    if not 0 < args.minutes <= 240 or not 0 < args.fraction <= 1 or not 1 <= args.interval <= 600:
        sys.exit("soak: --minutes must be 0-240, --fraction 0-1 and --interval 1-600 s (the run stays bounded)")
    if not 1 <= args.clients <= 200 or not 0 < args.capacity_seconds <= 120:
        sys.exit("soak: --clients must be 1-200 and --capacity-seconds 0-120")
    if not Path(args.model).exists():
        sys.exit(f"soak: model {args.model} not found (train it, or pass --model)")
    sentences = test_sentences(args.data)
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        print(line, flush=True)

    say(describe())
    port = free_port()
    try:
        proc = start_server(args.model, port, *args.serve_arg)
    except RuntimeError as e:
        sys.exit(f"soak: {e}")
    try:
        asyncio.run(capacity(port, sentences, args.clients, 3.0))  # warm-up, uncounted
        cap = asyncio.run(capacity(port, sentences, args.clients, args.capacity_seconds))
        rate = args.fraction * cap["throughput_rps"]
        say(f"soak: {args.model} | capacity {cap['throughput_rps']} req/s ({args.clients} closed-loop clients, "
            f"p99 {cap['p99_ms']} ms) | sending {rate:.1f} req/s open-loop ({args.fraction:.0%}) for "
            f"{args.minutes:g} min | samples every {args.interval:g} s | cpus {os.cpu_count()} | "
            f"load average before {os.getloadavg()[0]:.2f}")
        say(f"{'t (s)':>7} {'requests':>9} {'errors':>7} {'p50 ms':>8} {'p99 ms':>8} {'RSS MiB':>8}")
        samples, kinds = asyncio.run(soak(port, proc.pid, sentences, rate, 60 * args.minutes, args.interval,
                                          lambda s: say(f"{s.t_s:>7.0f} {s.requests:>9} {s.errors:>7} "
                                                        f"{s.p50_ms:>8.1f} {s.p99_ms:>8.1f} {s.rss_mb:>8.1f}")))
        crashed = proc.poll() is not None
    finally:
        stop_server(proc)
    requests, errors = sum(s.requests for s in samples), sum(s.errors for s in samples)
    base, end = (samples[0].rss_mb, samples[-1].rss_mb) if samples else (float("nan"), float("nan"))
    growth = (end - base) / base if samples and base > 0 else float("nan")
    worst_p99 = max((s.p99_ms for s in samples), default=-1.0)
    targets = {"zero_errors": errors == 0 and not crashed, "rss_growth_lt_5pct": growth < RSS_TARGET}
    say(f"soak: {requests} requests, {errors} errors {kinds or ''}, worst interval p99 {worst_p99} ms, RSS "
        f"{base:.1f} -> {end:.1f} MiB ({100 * growth:+.1f}% after the first {args.interval:g} s); targets "
        + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in targets.items()))
    result = {"bench": "soak", "machine": machine(), "model": args.model, "minutes": args.minutes,
              "capacity_rps": cap["throughput_rps"], "rate_rps": round(rate, 1), "fraction": args.fraction,
              "requests": requests, "errors": errors, "error_kinds": kinds, "worst_p99_ms": worst_p99,
              "rss_start_mb": base, "rss_end_mb": end, "rss_growth": round(growth, 4), "server_crashed": crashed,
              "samples": [asdict(s) for s in samples], "targets": targets}
    lines.append(json.dumps(result))
    print(lines[-1])
    from nerkit.atomic import write_bytes, write_text

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_text(args.out, "\n".join(lines) + "\n")
    if samples:
        write_bytes(args.png, plot(samples, f"nerkit serve soak: {rate:.0f} req/s ({args.fraction:.0%} of "
                                            f"capacity)\n{describe()}"))
    print(f"soak: wrote {args.out} and {args.png}")


if __name__ == "__main__":
    main()
