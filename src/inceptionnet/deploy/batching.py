"""Dynamic batching: images of concurrent requests run through the model together.

Requests wait in an asyncio queue; a single collector takes the first one, then whatever else arrives
within `max_wait_s`, up to `max_batch` images, and runs them as one batch on the model's one worker
thread (so the model never runs twice at once, and the event loop never blocks on it). It waits only
while other requests are on their way (announced with `expecting()` while they are read and decoded), so
a lone request runs at once. Each request gets back its own rows. Switched off, every request runs alone
on the same worker thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import torch
from torch import Tensor


class DynamicBatcher:
    """Runs `run` ((N, C, H, W) -> (N, K) tensor) on batches gathered from concurrent `submit` calls."""

    def __init__(self, run: Callable[[Tensor], Tensor], max_batch: int = 16, max_wait_s: float = 0.005,
                 enabled: bool = True) -> None:
        self.run = run
        self.max_batch = max(1, max_batch)
        self.max_wait_s = max(0.0, max_wait_s)
        self.enabled = enabled
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inceptionnet-model")
        self.queue: asyncio.Queue[tuple[Tensor, asyncio.Future]] = asyncio.Queue()
        self.collector: asyncio.Task | None = None
        self.incoming = 0

    @contextmanager
    def expecting(self) -> Iterator[None]:
        """Announce a request that will `submit` soon (while its upload is read and decoded), so that the
        collector waits for it rather than running a batch without it."""
        self.incoming += 1
        try:
            yield
        finally:
            self.incoming -= 1

    async def call(self, fn: Callable, *args):
        """Run fn(*args) on the model's worker thread (also for work that must not overlap a batch)."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def submit(self, images: Tensor) -> tuple[Tensor, int]:
        """(n, C, H, W) images of one request -> (their (n, K) outputs, the size of the batch they ran in)."""
        if not self.enabled:
            return await self.call(self.run, images), len(images)
        if self.collector is None:
            self.collector = asyncio.get_running_loop().create_task(self._collect())
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((images, future))
        return await future

    async def _next_batch(self) -> list[tuple[Tensor, asyncio.Future]]:
        """The first waiting request plus those arriving within max_wait_s, up to max_batch images."""
        items = [await self.queue.get()]
        count = len(items[0][0])
        deadline = asyncio.get_running_loop().time() + self.max_wait_s
        while count < self.max_batch and (self.incoming or not self.queue.empty()):
            left = deadline - asyncio.get_running_loop().time()
            try:
                item = self.queue.get_nowait() if left <= 0 else await asyncio.wait_for(self.queue.get(), left)
            except (asyncio.QueueEmpty, TimeoutError):
                break
            items.append(item)
            count += len(item[0])
        return items

    async def _collect(self) -> None:
        while True:
            items = await self._next_batch()
            try:
                outputs = await self.call(self.run, torch.cat([images for images, _ in items]))
            except Exception as e:  # the requests of this batch fail; the collector keeps serving
                for _, future in items:
                    if not future.done():
                        future.set_exception(e)
                continue
            for (_, future), rows in zip(items, outputs.split([len(i) for i, _ in items]), strict=True):
                if not future.done():  # a client that went away cancelled its future
                    future.set_result((rows, len(outputs)))

    async def close(self) -> None:
        """Stop collecting and release the worker thread."""
        if self.collector is not None:
            self.collector.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)
