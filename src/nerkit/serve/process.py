"""Start `nerkit serve` in a child process and wait until it answers: for benchmarks, browser tests and
screenshots, which need the real server on a loopback port."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from pathlib import Path

LOG_LINES = 2000  # the server's last output lines kept for a test or bench to read


class ServerProcess(subprocess.Popen):
    """The server's process; a thread drains its output (so a full pipe never blocks its logging) and keeps
    the last LOG_LINES lines."""

    def __init__(self, args: list[str], env: dict[str, str]):
        super().__init__(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         errors="replace")
        self.lines: deque[str] = deque(maxlen=LOG_LINES)
        self._reader = threading.Thread(target=self._drain, name="nerkit-serve-log", daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self.stdout is not None
        for line in self.stdout:
            self.lines.append(line.rstrip("\n"))

    def output(self) -> str:
        """What the server has written so far (its last LOG_LINES lines)."""
        return "\n".join(self.lines)


def start_server(model_dir: str | Path, port: int, *extra: str, timeout: float = 180.0) -> ServerProcess:
    """Returns once GET /healthz answers 200; raises RuntimeError if the server exits or never answers."""
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    proc = ServerProcess([sys.executable, "-m", "nerkit.cli", "serve", str(model_dir), "--host", "127.0.0.1",
                          "--port", str(port), "--log-level", "warning", *extra], env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            proc._reader.join(timeout=5)
            raise RuntimeError(f"nerkit serve exited with {proc.returncode}: {proc.output()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                if r.status == 200:
                    return proc
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"nerkit serve did not answer /healthz within {timeout:.0f} s")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
