"""Micro-batching: requests that arrive together share one `Tagger.pipe` call, because one batched forward
pass costs far less than N single ones on a CPU."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from .settings import ServeSettings


@dataclass
class _Job:
    texts: list[str]
    future: asyncio.Future


class MicroBatcher:
    """Groups concurrent requests into one `tagger.pipe` call.

    One model call runs at a time (a one-thread executor): on a small CPU box, two concurrent forward
    passes only fight over the same cores. With batching off each request is its own model call.
    """

    def __init__(self, tagger, settings: ServeSettings):
        self.tagger, self.settings = tagger, settings
        self._executor: ThreadPoolExecutor | None = None
        self._queue: asyncio.Queue[_Job] | None = None
        self._carry: _Job | None = None  # a job that did not fit in the last group
        self._task: asyncio.Task | None = None
        self.model_calls = 0
        self.model_texts = 0
        self.model_seconds = 0.0  # time inside tagger.pipe: busy / wall time is the model's utilisation

    async def start(self) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="nerkit-model")
        if self.settings.micro_batching:
            self._queue, self._carry = asyncio.Queue(), None
            self._task = asyncio.create_task(self._loop(), name="nerkit-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = self._queue = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def _run(self, texts: list[str]) -> list[list]:
        self.model_calls += 1
        self.model_texts += len(texts)
        t0 = time.perf_counter()
        try:
            out = list(self.tagger.pipe(texts))
        finally:
            self.model_seconds += time.perf_counter() - t0
        if len(out) != len(texts):
            raise RuntimeError(f"tagger.pipe returned {len(out)} results for {len(texts)} texts")
        return out

    async def _call(self, texts: list[str]) -> list[list]:
        if self._executor is None:  # the app was run without its lifespan (no batcher task)
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="nerkit-model")
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._run, texts)

    async def tag(self, texts: list[str]) -> list[list]:
        """Spans for each text, in order. Cancelling the caller (a timeout) drops the job."""
        if not texts:
            return []
        if self._queue is None or self._task is None or self._task.done():
            return await self._call(texts)
        fut = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(texts, fut))
        return await fut

    async def _collect(self) -> list[_Job]:
        """The first waiting job, then whatever else arrives within max_wait_ms, up to max_batch texts."""
        assert self._queue is not None
        first, self._carry = self._carry or await self._queue.get(), None
        jobs, n = [first], len(first.texts)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.max_wait_ms / 1000
        while n < self.settings.max_batch:
            try:
                job = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self._queue.get(), left)
                except TimeoutError:
                    break
            if n + len(job.texts) > self.settings.max_batch:
                self._carry = job  # it starts the next group
                break
            jobs.append(job)
            n += len(job.texts)
        return [j for j in jobs if not j.future.done()]  # callers that timed out are gone

    async def _loop(self) -> None:
        while True:
            jobs = await self._collect()
            if not jobs:
                continue
            try:
                results = await self._call([t for j in jobs for t in j.texts])
            except Exception as e:
                if len(jobs) == 1:
                    _settle(jobs[0].future, exc=e)
                    continue
                # one bad text must not fail its neighbours: rerun each request alone
                for j in jobs:
                    try:
                        _settle(j.future, await self._call(j.texts))
                    except Exception as e2:
                        _settle(j.future, exc=e2)
                continue
            i = 0
            for j in jobs:
                _settle(j.future, results[i:i + len(j.texts)])
                i += len(j.texts)


def _settle(fut: asyncio.Future, result: Any = None, exc: BaseException | None = None) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)
