"""`nerkit serve` against hostile clients and overload, as a real server process on a loopback port: many
idle and slow-header sockets, ten times the measured capacity, and a concurrent fuzz with raw bytes.

One server serves the whole module; every loop is bounded in count and time. The client is raw asyncio
HTTP/1.1 (no client library), so it can send what a library refuses to: broken framing, invalid bytes."""

from __future__ import annotations

import asyncio
import gc
import json
import random
import re
import resource
import socket
import time
from dataclasses import dataclass

import pytest

from nerkit.serve.process import start_server, stop_server

HEADER_TIMEOUT_S = 2.0
KEEPALIVE_TIMEOUT_S = 1.0  # shorter than the header timeout, so the test can tell which closed a socket
REQUEST_TIMEOUT_S = 4.0
WORDS = "John Smith works for Reuters in Paris and Mary Chen joined Toyota in Tokyo last week".split()
HEAVY = " ".join(WORDS * 4)  # one text that costs the tiny model a real share of a call


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(trained_model_dir):
    port = free_port()
    # one torch thread: on a 2-core box the other core is left to the event loop and to this test's own
    # client, which the overload test needs to send ten times what the model can take
    proc = start_server(trained_model_dir, port, "--header-timeout-s", str(HEADER_TIMEOUT_S),
                        "--timeout", str(REQUEST_TIMEOUT_S), "--keepalive-timeout-s", str(KEEPALIVE_TIMEOUT_S), "--threads", "1")
    try:
        warm = asyncio.run(post(port, {"texts": [HEAVY] * 32}))  # the first model call pays for warm-up
        assert warm.status == 200, warm
        yield proc, port
    finally:
        stop_server(proc)
    crashes = [x for x in proc.lines if "Traceback" in x or "Exception in ASGI application" in x]
    assert not crashes, proc.output()[-3000:]


@pytest.fixture
def steady_client():
    """The client's own garbage collections would be timed as the server's latency: after hundreds of tests
    this process's heap is large, and one full collection stalls every request in flight at once. Frozen
    and paused for the test, as the server freezes its own heap."""
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


# ------------------------------------------------------------------------------------------ a raw client


@dataclass
class Reply:
    status: int  # 0: no response (the server closed, or the client gave up)
    headers: dict[str, str]
    body: bytes
    seconds: float


def request_bytes(method: str, path: str, body: bytes | None = None, ctype: str | None = "application/json",
                  headers: dict[str, str] | None = None, close: bool = True) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    if ctype is not None:
        lines.append(f"Content-Type: {ctype}")
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    if close:
        lines.append("Connection: close")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + (body or b"")


def parse(raw: bytes, seconds: float) -> Reply:
    head, _, body = raw.partition(b"\r\n\r\n")
    m = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    if not m:
        return Reply(0, {}, raw, seconds)
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        headers[k.decode("latin-1").strip().lower()] = v.decode("latin-1").strip()
    return Reply(int(m.group(1)), headers, body, seconds)


async def send_raw(port: int, data: bytes, timeout: float = REQUEST_TIMEOUT_S + 3, half_close: bool = False) -> Reply:
    """Sends `data` on a new connection and reads until the server closes it (requests say Connection: close)."""
    t0 = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        if half_close:
            writer.write_eof()
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout)
    except (TimeoutError, ConnectionError):
        raw = b""
    finally:
        writer.close()
    return parse(raw, time.perf_counter() - t0)


async def post(port: int, payload: dict) -> Reply:
    return await send_raw(port, request_bytes("POST", "/v1/entities", json.dumps(payload).encode()))


def scrape(port: int) -> dict[str, float]:
    text = asyncio.run(send_raw(port, request_bytes("GET", "/metrics", ctype=None))).body.decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def server_errors(metrics: dict[str, float], but: tuple[str, ...] = ()) -> float:
    return sum(v for k, v in metrics.items() if k.startswith("nerkit_http_requests_total")
               and re.search(r'status="5\d\d"', k) and not any(f'status="{b}"' in k for b in but))


# ------------------------------------------------------------------------------------------ slow clients


def test_idle_and_slow_header_sockets_neither_block_a_request_nor_stay_open(server, steady_client):
    proc, port = server
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:  # this process holds the 1,000 sockets (the server lifts its own limit)
        resource.setrlimit(resource.RLIMIT_NOFILE, (4096 if hard == resource.RLIM_INFINITY else min(4096, hard), hard))

    async def go():
        socks = []  # (opened at, reader, writer, kind)
        for i in range(1000):
            t0 = time.monotonic()  # before connecting: the server's timer cannot start earlier
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            kind = ("idle", "partial", "trickle")[i % 3] if i % 5 else "partial"
            if kind != "idle":
                writer.write(b"POST /v1/entities HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n")
            socks.append((t0, reader, writer, kind))

        async def trickle():  # one header byte every 0.3 s: activity must not extend the header timeout
            for _ in range(int(HEADER_TIMEOUT_S / 0.3) + 6):
                await asyncio.sleep(0.3)
                for _, _, w, kind in socks:
                    if kind == "trickle" and not w.is_closing():
                        w.write(b"X")
        trickler = asyncio.create_task(trickle())
        normal = await post(port, {"text": " ".join(WORDS)})

        async def closed_after(opened: float, reader) -> tuple[float | None, bytes]:
            try:
                got = await asyncio.wait_for(reader.read(), opened + HEADER_TIMEOUT_S + 2.0 - time.monotonic())
            except TimeoutError:
                return None, b""
            except ConnectionError:
                got = b""
            return time.monotonic() - opened, got

        ends = await asyncio.gather(*(closed_after(t, r) for t, r, _, _ in socks))
        trickler.cancel()
        for _, _, w, _ in socks:
            w.close()
        return normal, [c for c, _ in ends], [(kind, got) for (_, _, _, kind), (_, got) in zip(socks, ends)]

    normal, closed, said = asyncio.run(go())
    for kind, got in said:  # a 408 to a client that sent part of a request; nothing to one that sent nothing
        if kind == "partial":
            assert got.startswith(b"HTTP/1.1 408 "), got[:60]
        elif kind == "idle":
            assert got == b"", got[:60]
        else:  # a byte that reaches the closed socket resets it, and the reset may discard the 408
            assert got == b"" or got.startswith(b"HTTP/1.1 408 "), got[:60]
    assert normal.status == 200 and json.loads(normal.body)["entities"], normal
    assert normal.seconds < 1.0, normal.seconds
    still_open = sum(c is None for c in closed)
    assert still_open == 0, f"{still_open} of 1000 sockets still open {HEADER_TIMEOUT_S + 2} s after they opened"
    late = max(c for c in closed if c is not None)
    early = min(c for c in closed if c is not None)
    assert HEADER_TIMEOUT_S <= early and late <= HEADER_TIMEOUT_S + 1.5, (early, late)
    assert asyncio.run(send_raw(port, request_bytes("GET", "/readyz", ctype=None))).status == 200


def test_an_idle_keep_alive_connection_is_closed_after_its_timeout(server):
    proc, port = server

    async def go():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request_bytes("GET", "/healthz", ctype=None, close=False))
        head = await reader.readuntil(b"\r\n\r\n")
        t0 = time.monotonic()
        rest = await asyncio.wait_for(reader.read(), KEEPALIVE_TIMEOUT_S + 2.0)  # the body, then EOF
        writer.close()
        return head, rest, time.monotonic() - t0

    head, rest, idle = asyncio.run(go())
    assert head.startswith(b"HTTP/1.1 200") and rest == b'{"status":"ok"}'
    assert KEEPALIVE_TIMEOUT_S * 0.9 <= idle <= KEEPALIVE_TIMEOUT_S + 1.0, idle


# ------------------------------------------------------------------------------------------ overload


def test_ten_times_capacity_is_shed_at_once_and_the_admitted_stay_in_time(server, steady_client):
    proc, port = server
    # one full micro-batch a request: the capacity is the model's, and ten times it stays within what the
    # pure-Python HTTP layer and this test's own client can parse on a small box
    payload = {"texts": [HEAVY] * 32}

    async def capacity(seconds: float = 2.0, clients: int = 4) -> float:
        """Closed loop: each client sends its next request when the last is answered."""
        done, end = [0], time.perf_counter() + seconds

        async def loop():
            while time.perf_counter() < end:
                r = await post(port, payload)
                assert r.status in (200, 503), r
                done[0] += r.status == 200
        t0 = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(clients)))
        return done[0] / (time.perf_counter() - t0)

    async def offered(rate: float, seconds: float) -> list[Reply]:
        n = min(int(rate * seconds), 1500)
        t0 = time.perf_counter()

        async def one(i: int) -> Reply:
            await asyncio.sleep(max(0.0, t0 + i / rate - time.perf_counter()))
            return await post(port, payload)
        return await asyncio.gather(*(one(i) for i in range(n)))

    before = scrape(port)
    cap = asyncio.run(capacity())
    replies = asyncio.run(offered(10 * cap, 3.0))
    after = scrape(port)
    ok = sorted(r.seconds for r in replies if r.status == 200)
    shed = sorted(r.seconds for r in replies if r.status == 503 and json.loads(r.body)["error"]["type"] == "overload")
    other: dict[str, int] = {}
    for r in replies:
        if r.status != 200 and not (r.status == 503 and json.loads(r.body)["error"]["type"] == "overload"):
            kind = f"{r.status} {json.loads(r.body)['error']['type'] if r.body[:1] == b'{' else r.body[:40]!r}"
            other[kind] = other.get(kind, 0) + 1
    print(f"capacity {cap:.1f} req/s; offered {10 * cap:.0f} req/s: {len(ok)} admitted (p99 "
          f"{1000 * pct(ok, 0.99):.0f} ms), {len(shed)} shed (p50 {1000 * pct(shed, 0.5):.0f} ms, p99 "
          f"{1000 * pct(shed, 0.99):.0f} ms), other {other}")
    assert not other, other  # no timeouts, no errors: only answers and sheds
    assert len(shed) >= len(replies) / 2, "at ten times capacity most requests must be shed"
    assert len(ok) >= cap, "the server must keep serving about its capacity while it sheds"
    assert pct(shed, 0.99) < 0.1, f"shedding took {pct(shed, 0.99):.3f} s at p99"
    assert pct(ok, 0.99) < REQUEST_TIMEOUT_S
    for r in replies:
        if r.status == 503:
            assert int(r.headers["retry-after"]) >= 1
    assert after["nerkit_shed_total"] - before["nerkit_shed_total"] == len(shed)
    assert server_errors(after, but=("503",)) == server_errors(before, but=("503",)) == 0
    assert proc.poll() is None


def pct(xs: list[float], q: float) -> float:
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else 0.0


def test_a_client_that_leaves_while_queued_is_never_run(server):
    proc, port = server

    async def go():
        # holds the model for a while: the most texts a request may carry, each twice HEAVY (a lighter call
        # ends before the leaving client is queued, and then its job runs as it should)
        busy = asyncio.create_task(post(port, {"texts": [HEAVY + " " + HEAVY] * 64}))
        await asyncio.sleep(0.05)
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request_bytes("POST", "/v1/entities", json.dumps({"texts": ["Ann Lee"] * 5}).encode(),
                                   close=False))
        await writer.drain()
        await asyncio.sleep(0.02)
        writer.close()  # gone while its job waits behind the busy call
        return await busy

    before = scrape(port)
    t0 = time.perf_counter()
    assert asyncio.run(go()).status == 200
    busy_s = time.perf_counter() - t0
    time.sleep(0.2)
    after = scrape(port)
    assert busy_s > 0.1, f"the busy call took {busy_s:.3f} s: too short to hold the model while the client leaves"
    assert after["nerkit_abandoned_total"] - before["nerkit_abandoned_total"] == 1
    assert after["nerkit_model_texts_total"] - before["nerkit_model_texts_total"] == 64  # the five never ran


# ------------------------------------------------------------------------------------------ concurrent fuzz


def fuzz_bodies(rng: random.Random) -> list[bytes]:
    deep = 100_000
    fixed = [
        b'{"text": "caf\xe9 \xff\xfe"}', b'{"text": "\xed\xa0\x80"}', b'{"texts": ["\xc3", "\xe2\x82"]}',
        b'{"text": "\\ud800"}', b'{"text": "a\\udfffb"}', b'{"texts": ["ok", "\\udbff\\udc00", "\\ud83d"]}',
        b'{"text": 1' + b"0" * 5000 + b"}", b'{"texts": [' + b"9" * 100_000 + b"]}", b'{"text": 1e999}',
        b'{"text": -1e999}', b'{"text": NaN}', b'{"text": Infinity}', b'{"texts": [1.5e308, -0.0]}',
        b"[" * deep + b"]" * deep, b'{"text": ' + b"[" * deep + b"]" * deep + b"}", b'{"a":' * 20_000 + b"1" + b"}" * 20_000,
        b"[" * deep, b'{"text": "' + b"\\" * 999 + b'"}', b"\x00" * 100, b"\xef\xbb\xbf{\"text\": \"bom\"}",
        b"\xff\xfe{\x00\"\x00t\x00", b'{"text": "ok"}' * 50, b"", b"null", b'{"text": "' + b"x" * 9000 + b'"}',
    ]
    rand = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))) for _ in range(20)]
    inside = [b'{"text": "' + bytes(rng.randrange(128, 256) for _ in range(rng.randrange(1, 30))) + b'"}'
              for _ in range(20)]
    valid = [json.dumps({"text": " ".join(rng.choices(WORDS, k=rng.randrange(0, 12)))}).encode() for _ in range(15)]
    valid += [json.dumps({"texts": [" ".join(rng.choices(WORDS, k=5)) for _ in range(rng.randrange(1, 4))]}).encode()
              for _ in range(10)]
    return fixed + rand + inside + valid


CTYPES = ["application/json", "application/json; charset=latin-1", "text/plain", "application/xml",
          "multipart/form-data; boundary=xyz", "application/x-www-form-urlencoded", None, "application/json, text/html",
          "\xff\xfe/\x00"]


def chunked(body: bytes, rng: random.Random) -> bytes:
    out, i = b"", 0
    while i < len(body):
        n = rng.randrange(1, 4000)
        out += f"{n if i + n <= len(body) else len(body) - i:x}\r\n".encode() + body[i:i + n] + b"\r\n"
        i += n
    return out + b"0\r\n\r\n"


def fuzz_requests(seed: int = 18) -> list[tuple[bytes, bool]]:
    """(bytes to send, half-close after sending): bodies under every framing and content type, broken
    framing, and garbage request lines and headers."""
    rng = random.Random(seed)
    out: list[tuple[bytes, bool]] = []
    for body in fuzz_bodies(rng):
        ctype = rng.choice(CTYPES)
        head = request_bytes("POST", "/v1/entities", None, ctype).removesuffix(b"\r\n\r\n")
        out.append((request_bytes("POST", "/v1/entities", body, ctype), False))
        framed = chunked(body, rng)
        out.append((head + b"\r\nTransfer-Encoding: chunked\r\n\r\n" + framed, False))
        cut = rng.randrange(0, max(1, len(framed) - 5))
        out.append((head + b"\r\nTransfer-Encoding: chunked\r\n\r\n" + framed[:cut], True))  # chunks cut short
        out.append((head + f"\r\nContent-Length: {len(body) + 10}\r\n\r\n".encode() + body, True))  # body short
    out += [(x, False) for x in (
        b"POST /v1/entities HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        b"POST /v1/entities HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -5\r\n\r\n",
        b"POST /v1/entities HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: abc\r\n\r\n{}",
        b"POST /v1/entities HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 99999999999999999999\r\n\r\n{}",
        b"POST /v1/entities HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        b"POST /v1/entities HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n{}",
        b"GET /v1/entities?x=%ff%fe HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", b"GET /%ff%00 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"GET /static/../../../../etc/passwd HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"GET /static/%2e%2e/%2e%2e/app.py HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"BREW /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", b"GET /healthz HTTP/9.9\r\nHost: 127.0.0.1\r\n\r\n",
        b"GET /healthz\r\n\r\n", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", b"\r\n\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header: x\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Nul: a\x00b\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: evil.example\r\n\r\n", b"GET /healthz HTTP/1.1\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    )]
    rng.shuffle(out)
    return out


def test_concurrent_raw_fuzz_never_gets_a_5xx_nor_kills_the_worker(server):
    proc, port = server
    cases = fuzz_requests()
    before = scrape(port)

    async def go() -> list[Reply]:
        gate = asyncio.Semaphore(48)

        async def one(data: bytes, half_close: bool) -> Reply:
            async with gate:
                return await send_raw(port, data, half_close=half_close)
        return await asyncio.gather(*(one(d, h) for d, h in cases))

    t0 = time.perf_counter()
    replies = asyncio.run(go())
    took = time.perf_counter() - t0
    statuses: dict[int, int] = {}
    for (data, _), r in zip(cases, replies, strict=True):
        statuses[r.status] = statuses.get(r.status, 0) + 1
        assert r.status < 500, (data[:300], r.status, r.body[:300])
        if r.status == 200 and data.startswith(b"POST"):
            assert "entities" in json.loads(r.body) or "results" in json.loads(r.body)
    print(f"fuzz: {len(cases)} raw requests, 48 at a time, in {took:.1f} s; statuses {dict(sorted(statuses.items()))}")
    assert {200, 400, 413, 422} <= set(statuses), statuses  # it reached the happy path and each refusal
    after = scrape(port)
    assert server_errors(after) == server_errors(before), "a 5xx was answered to a client that left"
    assert proc.poll() is None
    ok = asyncio.run(post(port, {"text": " ".join(WORDS)}))
    assert ok.status == 200 and json.loads(ok.body)["entities"]
