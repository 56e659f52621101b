"""Concurrent requests to one model share forward passes.

Each model has one inference worker: an asyncio task that takes jobs from a queue and runs them
on the model's own single thread, so PyTorch is never entered by two requests at once. A job is
a list of items (sentences, images) with a key (the work and its decoding options). The worker
takes the oldest job, keeps collecting jobs while they keep arriving (each within `window`
seconds of the last, at most `max_wait` in all) until `max_items` items are waiting, and runs
every waiting job with the oldest job's key as one call. While a batch runs, new requests queue
up, so under load the next batch is already full when the worker comes back.

A batch that fails with a user error is retried job by job, so one bad request cannot fail the
requests it was batched with; every job is answered exactly once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from dataclasses import dataclass, field
from typing import Callable, Hashable

from s2s.errors import UserError


@dataclass
class Job:
    key: Hashable
    items: list
    future: asyncio.Future = field(repr=False)


class Batcher:
    """One model's inference worker; `run(key, items) -> results` does the work, in order."""

    def __init__(self, name: str, run: Callable[[Hashable, list], list], max_items: int = 64,
                 window: float = 0.005, max_wait: float = 0.05):
        self.name, self.run = name, run
        self.max_items, self.window, self.max_wait = max_items, window, max_wait
        self.batches = 0  # calls of `run` so far
        self.jobs = 0  # jobs answered so far
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"s2s-{name}")

    def start(self) -> None:
        """Start the worker on the running event loop."""
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._work(), name=f"s2s-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._thread.shutdown(wait=False, cancel_futures=True)

    async def submit(self, key: Hashable, items: list) -> list:
        """The results for `items` (one each, in order), computed in a batch with others."""
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(Job(key, list(items), future))
        return await future

    async def _work(self) -> None:
        waiting: list[Job] = []
        while True:
            if not waiting:
                waiting.append(await self._queue.get())
            await self._collect(waiting)
            key, size, batch, rest = waiting[0].key, 0, [], []
            for job in waiting:
                if job.key == key and (not batch or size + len(job.items) <= self.max_items):
                    batch.append(job)
                    size += len(job.items)
                else:
                    rest.append(job)
            waiting = rest
            await self._answer(key, batch)

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
