"""Collects evidence during an audit and hands out stable ids."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from dcsaudit.models.core import Evidence, Reason


class EvidenceLog:
    """Thread-safe: blocking probes (nassl, pynetdicom) record from worker threads."""

    def __init__(self) -> None:
        self._items: list[Evidence] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def add(
        self,
        probe: str,
        target: str,
        ok: bool,
        summary: str,
        *,
        reason: Reason | None = None,
        data: dict[str, Any] | None = None,
        duration_ms: float = 0.0,
        at: datetime | None = None,
    ) -> Evidence:
        with self._lock:
            ev = Evidence(
                id=f"ev-{next(self._ids):04d}",
                probe=probe,
                target=target,
                at=at or datetime.now(UTC),
                duration_ms=round(duration_ms, 3),
                ok=ok,
                reason=reason,
                summary=summary,
                data=data or {},
            )
            self._items.append(ev)
            return ev

    @contextmanager
    def timer(self) -> Iterator[dict[str, float]]:
        """``with log.timer() as t: ...; t['ms']`` — elapsed milliseconds for duration_ms."""
        box = {"ms": 0.0}
        start = time.perf_counter()
        try:
            yield box
        finally:
            box["ms"] = (time.perf_counter() - start) * 1000

    def items(self) -> list[Evidence]:
        with self._lock:
            return list(self._items)

    def get(self, ev_id: str) -> Evidence | None:
        with self._lock:
            return next((e for e in self._items if e.id == ev_id), None)
