"""Concurrency bounds: overall and per host, shared by every probe (docs/design.md)."""

from __future__ import annotations

import asyncio
import functools
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

T = TypeVar("T")


class Limiter:
    """One overall semaphore plus one per host. Every connection a probe opens holds one slot."""

    def __init__(self, overall: int, per_host: int) -> None:
        self._overall = asyncio.Semaphore(overall)
        self._per_host_n = per_host
        self._per_host: dict[str, asyncio.Semaphore] = defaultdict(lambda: asyncio.Semaphore(self._per_host_n))
        self.overall = overall
        self.per_host = per_host

    @asynccontextmanager
    async def slot(self, host: str) -> AsyncIterator[None]:
        async with self._per_host[host], self._overall:
            yield

    async def run_blocking(self, host: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking probe (nassl, pynetdicom) in the worker pool while holding a slot."""
        async with self.slot(host):
            return await asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args, **kwargs))
