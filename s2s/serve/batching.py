"""Concurrent requests to one model share forward passes.

Each model has one inference worker: an asyncio task that takes jobs from a queue and runs them
on the model's own single thread, so PyTorch is never entered by two requests at once. A job is
a list of items (sentences, images) with a key (the work and its decoding options). The worker
takes the oldest job, keeps collecting jobs while they keep arriving (each within `window`
seconds of the last, at most `max_wait` in all) until `max_items` items are waiting, and runs
every waiting job with the oldest job's key as one call. While a batch runs, new requests queue
up, so under load the next batch is already full when the worker comes back.

Work that the model can decode with continuous batching (`stream.accepts(key)`: beam search
whose batches share forward passes while they run) goes step by step instead, on the inference
thread. Between two decoding steps the waiting jobs of that kind join as a new batch, once they
are at least 1/`join_fraction` of the items in flight (or the oldest has waited `join_wait`, or
nothing is decoding), up to `max_items` items in flight; each job is answered as soon as its
last item is done, so nobody waits for the slowest sentence of a batch. Other kinds of work are
not starved: once one has waited `max_wait`, nothing more joins, and the decoding drains.

A batch that fails with a user error is retried job by job, so one bad request cannot fail the
requests it was batched with; every job is answered exactly once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Hashable, Protocol

from s2s.errors import UserError


@dataclass(eq=False)  # jobs are equal only to themselves
class Job:
    key: Hashable
    items: list
    future: asyncio.Future = field(repr=False)
    arrived: float = 0.0  # event-loop time
    results: list = field(default_factory=list, repr=False)  # per item, while streaming
    left: int = 0  # items not done yet, while streaming


class Stream(Protocol):
    """A model's continuous-batching decoder, driven from the inference thread."""

    def accepts(self, key: Hashable) -> bool: ...

    def add(self, key: Hashable, items: list, tags: list) -> list[tuple[object, object]]: ...

    def step(self) -> list[tuple[object, object]]: ...

    def reset(self) -> None: ...

    def __len__(self) -> int: ...


class Batcher:
    """One model's inference worker; `run(key, items) -> results` does the work, in order."""

    def __init__(self, name: str, run: Callable[[Hashable, list], list], max_items: int = 64,
                 window: float = 0.005, max_wait: float = 0.05, stream: Stream | None = None,
                 join_fraction: int = 2, join_wait: float = 0.2):
        self.name, self.run, self.stream = name, run, stream
        self.max_items, self.window, self.max_wait = max_items, window, max_wait
        self.join_fraction, self.join_wait = join_fraction, join_wait
        self.batches = 0  # calls of `run` and batches joining the stream so far
        self.jobs = 0  # jobs answered so far
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"s2s-{name}")
        self._lock = threading.Lock()  # guards the three below, shared with the inference thread
        self._inbox: list[Job] | None = None  # while decoding runs: jobs that will join it
        self._other_since: float | None = None  # arrival of the oldest job of another kind since
        self._closing = False

    def start(self) -> None:
        """Start the worker on the running event loop."""
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._work(), name=f"s2s-{self.name}")

    async def stop(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._thread.shutdown(wait=False, cancel_futures=True)

    async def submit(self, key: Hashable, items: list) -> list:
        """The results for `items` (one each, in order), computed in a batch with others."""
        loop = asyncio.get_running_loop()
        job = Job(key, list(items), loop.create_future(), loop.time())
        with self._lock:
            joined = self._inbox is not None and self.stream.accepts(key)
            if joined:
                self._inbox.append(job)  # decoding is running: join it
            elif self._inbox is not None and self._other_since is None:
                self._other_since = job.arrived
        if not joined:
            self._queue.put_nowait(job)
        return await job.future

    async def _work(self) -> None:
        waiting: list[Job] = []
        while True:
            if not waiting:
                waiting.append(await self._queue.get())
            while not self._queue.empty():
                waiting.append(self._queue.get_nowait())
            if self._streams(waiting):
                waiting = await self._stream(waiting)
                continue
            await self._collect(waiting)
            key = next(job.key for job in waiting if not self._streamable(job))
            size, batch, rest = 0, [], []
            for job in waiting:
                if job.key == key and (not batch or size + len(job.items) <= self.max_items):
                    batch.append(job)
                    size += len(job.items)
                else:
                    rest.append(job)
            waiting = rest
            await self._answer(key, batch)

    def _streamable(self, job: Job) -> bool:
        return self.stream is not None and self.stream.accepts(job.key)

    def _streams(self, waiting: list[Job]) -> bool:
        """Whether the waiting jobs go to the stream next: some can, and no other kind of job
        has waited `max_wait`."""
        if not any(self._streamable(job) for job in waiting):
            return False
        others = [job for job in waiting if not self._streamable(job)]
        return not others or asyncio.get_running_loop().time() - others[0].arrived <= self.max_wait

    async def _stream(self, waiting: list[Job]) -> list[Job]:
        """Decode on the inference thread while anything is in flight (`_stream_loop`); jobs
        that can join go straight to it meanwhile. Returns the jobs waiting when it ends."""
        await self._collect(waiting)
        with self._lock:
            self._inbox = [job for job in waiting if self._streamable(job)]
            waiting = [job for job in waiting if not self._streamable(job)]
            self._other_since = waiting[0].arrived if waiting else None
        loop = asyncio.get_running_loop()
        left = await loop.run_in_executor(self._thread, self._stream_loop, loop)
        return sorted(waiting + left, key=lambda job: job.arrived)

    def _stream_loop(self, loop: asyncio.AbstractEventLoop) -> list[Job]:
        """On the inference thread: between decoding steps, admit the jobs in the inbox as one
        batch once there are enough (a `join_fraction` of the items in flight) or the oldest
        has waited `join_wait`; answer each job (on the event loop) when its last item is done.
        Stops when nothing is in flight or waiting, or another kind of work has waited
        `max_wait`, and returns the jobs not admitted. The event loop is never between two steps."""
        flying: list[Job] = []
        pending: list[Job] = []
        while True:
            now = time.monotonic()  # the event loop's clock
            in_flight = sum(job.left for job in flying)
            with self._lock:
                pending += self._inbox
                self._inbox.clear()
                starved = self._other_since is not None and now - self._other_since > self.max_wait
                joining: list[Job] = []
                if pending and not starved and not self._closing and (
                        sum(len(job.items) for job in pending) >= max(1, in_flight // self.join_fraction)
                        or now - pending[0].arrived > self.join_wait):
                    room = self.max_items - in_flight
                    for job in pending:  # in arrival order: none overtakes one that waits for room
                        if len(job.items) > room and (flying or joining):
                            break
                        joining.append(job)
                        room -= len(job.items)
                    pending = pending[len(joining):]
                if not joining and (not flying or self._closing):
                    self._inbox = None
                    return pending
            for job in joining:
                job.results, job.left = [None] * len(job.items), len(job.items)
            answers: list[tuple[Job, list | None, Exception | None]] = []
            try:
                done, refused = join_and_step(self.stream, joining)
            except Exception as e:  # a bug: every request in flight gets a 500
                self.stream.reset()
                answers = [(job, None, e) for job in flying + joining]
                flying, done, refused, joining = [], [], [], []
            for job, error in refused:
                joining.remove(job)
                answers.append((job, None, error))
            self.batches += len({job.key for job in joining})  # one batch per kind joins
            flying += joining
            for (job, index), result in done:
                job.results[index] = result
                job.left -= 1
                if not job.left:
                    flying.remove(job)
                    answers.append((job, job.results, None))
            if answers:
                loop.call_soon_threadsafe(self._settle_all, answers)

    def _settle_all(self, answers: list[tuple[Job, list | None, Exception | None]]) -> None:
        for job, results, error in answers:
            self._settle(job, results, error)

    async def _collect(self, waiting: list[Job]) -> None:
        """Add arriving jobs to `waiting` until enough items share the first job's key, no job
        came for `window` seconds, or `max_wait` has passed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while True:
            while not self._queue.empty():
                waiting.append(self._queue.get_nowait())
            key = waiting[0].key
            if sum(len(j.items) for j in waiting if j.key == key) >= self.max_items:
                return
            timeout = min(self.window, deadline - loop.time())
            if timeout <= 0:
                return
            try:
                waiting.append(await asyncio.wait_for(self._queue.get(), timeout))
            except asyncio.TimeoutError:
                return

    async def _answer(self, key: Hashable, batch: list[Job]) -> None:
        items = [item for job in batch for item in job.items]
        try:
            results = await self._call(key, items)
        except UserError as e:
            if len(batch) == 1:
                return self._settle(batch[0], error=e)
            for job in batch:  # find the request at fault; answer the others
                await self._answer(key, [job])
            return
        except Exception as e:  # a bug: every request of the batch gets a 500
            for job in batch:
                self._settle(job, error=e)
            return
        start = 0
        for job in batch:
            self._settle(job, results[start:start + len(job.items)])
            start += len(job.items)

    async def _call(self, key: Hashable, items: list) -> list:
        self.batches += 1
        loop = asyncio.get_running_loop()
        results = await loop.run_in_executor(self._thread, self.run, key, items)
        assert len(results) == len(items), "a batch must give one result per item"
        return results

    def _settle(self, job: Job, results: list | None = None, error: Exception | None = None) -> None:
        self.jobs += 1
        if job.future.done():  # the client went away
            return
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(results)


def join_and_step(stream: Stream, joining: list[Job]) -> tuple[list, list]:
    """On the inference thread: the joining jobs enter `stream`, one batch per kind of work (a
    batch refused with a user error is retried job by job, and the job at fault is refused),
    then one decoding step. Returns ((job, index), result) of the items done and (job, error)
    of the jobs refused."""
    done, refused = [], []
    kinds: dict[Hashable, list[Job]] = {}
    for job in joining:
        kinds.setdefault(job.key, []).append(job)

    def add(key, jobs):
        items = [item for job in jobs for item in job.items]
        return stream.add(key, items, [(job, i) for job in jobs for i in range(len(job.items))])

    for key, jobs in kinds.items():
        try:
            done += add(key, jobs)
        except UserError:
            for job in jobs:
                try:
                    done += add(key, [job])
                except UserError as e:
                    refused.append((job, e))
    if len(stream):
        done += stream.step()
    return done, refused
