"""Micro-batching: requests that arrive together share one `Tagger.pipe` call, because one batched forward
pass costs far less than N single ones on a CPU. The queue in front of the model is bounded: a request
that would only wait past its timeout is refused at once (shed), and a job whose caller has gone is
never run."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .settings import ServeSettings

# A request is shed when its estimated wait passes this share of the timeout: the rest is headroom for
# the estimate's error and for the request's own model call.
SHED_AT_TIMEOUT_FRACTION = 0.5
COST_SMOOTHING = 0.5  # weight of the newest call in the moving average of seconds per text: it must
# follow a model that slows down under load within a call or two


class Overloaded(Exception):
    """The queue is full: the request is refused before it waits."""

    def __init__(self, reason: str, retry_after_s: int):
        super().__init__(reason)
        self.reason, self.retry_after_s = reason, retry_after_s


@dataclass(eq=False)
class _Job:
    texts: list[str]
    future: asyncio.Future
    waiting: bool = field(default=True)  # counted in the queue (not yet taken by the model loop)


class MicroBatcher:
    """Groups concurrent requests into one `tagger.pipe` call.

    One model call runs at a time (a one-thread executor): on a small CPU box, two concurrent forward
    passes only fight over the same cores. With batching off each request is its own model call, taken
    from the same bounded queue.
    """

    def __init__(self, tagger, settings: ServeSettings, on_call: Callable[[int, float], None] | None = None):
        self.tagger, self.settings, self.on_call = tagger, settings, on_call
        self._executor: ThreadPoolExecutor | None = None
        self._queue: asyncio.Queue[_Job] | None = None
        self._carry: _Job | None = None  # a job that did not fit in the last group
        self._task: asyncio.Task | None = None
        self.model_calls = 0
        self.model_texts = 0
        self.model_seconds = 0.0  # time inside tagger.pipe: busy / wall time is the model's utilisation
        self.waiting_texts = 0
        self.waiting_jobs = 0
        self.shed = 0
        self.abandoned = 0  # admitted jobs whose caller left before the model loop took them
        self.seconds_per_text = 0.0  # moving average over model calls; 0 until the first one
        self.call_started: float | None = None  # monotonic start of the model call now running
        self._call_texts = 0

    async def start(self) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="nerkit-model")
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

    # ------------------------------------------------------------------ state for /readyz and shedding

    def running(self) -> bool:
        """The model loop runs, and no model call has been stuck past the request timeout."""
        if self._task is None or self._task.done() or self._executor is None:
            return False
        started = self.call_started
        return started is None or time.monotonic() - started < self.settings.request_timeout_s

    def estimated_wait_s(self, more_texts: int = 0) -> float:
        """Seconds until `more_texts` new texts would be answered, from the queue and the recent cost."""
        left = 0.0
        started = self.call_started
        if started is not None:
            left = max(0.0, self.seconds_per_text * self._call_texts - (time.monotonic() - started))
        return left + (self.waiting_texts + more_texts) * self.seconds_per_text

    def overload(self, n_texts: int = 1) -> Overloaded | None:
        """Why `n_texts` more would be refused now, or None if they are admitted."""
        s = self.settings
        if self.waiting_texts + n_texts > s.max_queue and self.waiting_texts > 0:
            reason = f"the queue is full ({self.waiting_texts} texts waiting; max_queue is {s.max_queue})"
        elif self.waiting_texts and self.estimated_wait_s(n_texts) > SHED_AT_TIMEOUT_FRACTION * s.request_timeout_s:
            reason = (f"the queue would take about {self.estimated_wait_s(n_texts):.1f} s, past half of "
                      f"request_timeout_s ({s.request_timeout_s} s)")
        else:
            return None
        return Overloaded(reason, max(1, round(self.estimated_wait_s())))

    # ------------------------------------------------------------------ the model call

    def _run(self, texts: list[str]) -> list[list]:
        self.model_calls += 1
        self.model_texts += len(texts)
        t0 = time.perf_counter()
        self._call_texts, self.call_started = len(texts), time.monotonic()
        try:
            out = list(self.tagger.pipe(texts))
        finally:
            took = time.perf_counter() - t0
            self.call_started = None
            self.model_seconds += took
            per_text = took / len(texts)
            self.seconds_per_text = per_text if not self.seconds_per_text else (
                COST_SMOOTHING * per_text + (1 - COST_SMOOTHING) * self.seconds_per_text)
            if self.on_call is not None:
                self.on_call(len(texts), took)
        if len(out) != len(texts):
            raise RuntimeError(f"tagger.pipe returned {len(out)} results for {len(texts)} texts")
        return out

    async def _call(self, texts: list[str]) -> list[list]:
        if self._executor is None:  # the app was run without its lifespan (no batcher task)
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="nerkit-model")
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._run, texts)

    # ------------------------------------------------------------------ the queue

    async def tag(self, texts: list[str]) -> list[list]:
        """Spans for each text, in order. Raises Overloaded when the queue is full; cancelling the caller
        (a timeout, a client that left) drops the job, and a dropped job is never run."""
        if not texts:
            return []
        if self._queue is None or self._task is None or self._task.done():
            return await self._call(texts)
        refused = self.overload(len(texts))
        if refused is not None:
            self.shed += 1
            raise refused
        job = _Job(texts, asyncio.get_running_loop().create_future())
        self.waiting_texts += len(texts)
        self.waiting_jobs += 1
        job.future.add_done_callback(lambda _: self._leave(job, abandoned=True))
        self._queue.put_nowait(job)
        return await job.future

    def _leave(self, job: _Job, abandoned: bool = False) -> None:
        """The job is no longer waiting: taken by the loop, or dropped by its caller."""
        if job.waiting:
            job.waiting = False
            self.waiting_texts -= len(job.texts)
            self.waiting_jobs -= 1
            self.abandoned += abandoned

    async def _next(self) -> _Job:
        """The next waiting job whose caller is still there."""
        assert self._queue is not None
        while True:
            job, self._carry = self._carry or await self._queue.get(), None
            if not job.future.done():
                return job

    async def _collect(self) -> list[_Job]:
        """The first waiting job, then whatever else arrives within max_wait_ms, up to max_batch texts."""
        assert self._queue is not None
        first = await self._next()
        jobs, n = [first], len(first.texts)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.max_wait_ms / 1000
        while self.settings.micro_batching and n < self.settings.max_batch:
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
            if job.future.done():
                continue
            if n + len(job.texts) > self.settings.max_batch:
                self._carry = job  # it starts the next group
                break
            jobs.append(job)
            n += len(job.texts)
        jobs = [j for j in jobs if not j.future.done()]  # callers that timed out while the group formed
        for j in jobs:
            self._leave(j)
        return jobs

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
                # one bad text must not fail its neighbours: rerun each request alone, but only those
                # whose caller is still waiting (one that timed out during the failed call is dropped)
                for j in jobs:
                    if j.future.done():
                        continue
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
