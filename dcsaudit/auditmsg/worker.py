"""Classification off the collector's receiving threads: batches of received messages in, JSON Lines out.

The collector (:mod:`dcsaudit.listeners.syslog_collector`) runs :func:`classify_batch` in one worker
process (lxml validation holds the GIL, so a thread would slow the receivers down), or in a thread when
processes are not wanted. The worker writes every classified message to the JSON Lines file, one
``{"index": N, ...AuditMessage}`` object a line, and returns for each message its class and, for the
messages the report keeps (the first ``keep_all``, then the first ``per_class`` of each class), the
message itself.

State lives in this module because the worker is one process fed in order: counts per class are then
exact without a round trip.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import IO, Literal

from dcsaudit.auditmsg.classify import classify
from dcsaudit.models.audit import Framing

# index, payload, transport, peer, received_at (epoch seconds), framing, TLS connection index
Item = tuple[int, bytes, Literal["tls", "udp"], str, float, Framing, "int | None"]


@dataclass(frozen=True, slots=True)
class Result:
    index: int
    key: str  # class: transport | event id | valid/invalid
    message_json: str | None  # the AuditMessage as JSON when the report keeps it


class Classifier:
    """Classification state of one collector (counts per class, what the report keeps)."""

    def __init__(self, jsonl: str | None, keep_all: int, per_class: int) -> None:
        self.out: IO[str] | None = open(jsonl, "a", encoding="utf-8") if jsonl else None
        self.keep_all = keep_all
        self.per_class = per_class
        self.seen = 0
        self.counts: dict[str, int] = {}

    def classify_batch(self, items: list[Item]) -> list[Result]:
        """Classify in order; write each to the JSON Lines file; say which ones the report keeps."""
        st = self
        out: list[Result] = []
        lines: list[str] = []
        for index, payload, transport, peer, at, framing, conn in items:
            extra = ["RFC 5426 §3.2: datagram larger than UDP allows"] if transport == "udp" and len(payload) > 65507 else []
            m = classify(payload, transport=transport, peer=peer, received_at=dt.datetime.fromtimestamp(at, dt.UTC),
                         framing=framing, connection=conn, extra_errors=extra)
            text = m.model_dump_json()
            lines.append(f'{{"index":{index},{text[1:]}\n')
            key = class_key(transport, m.event_id, m.valid)
            n = st.counts.get(key, 0)
            st.counts[key] = n + 1
            keep = st.seen < st.keep_all or n < st.per_class
            st.seen += 1
            out.append(Result(index, key, text if keep else None))
        if st.out is not None:  # one write a batch: a killed worker leaves whole lines
            st.out.write("".join(lines))
            st.out.flush()
        return out

    def close(self) -> None:
        if self.out is not None:
            self.out.close()
            self.out = None


_state: Classifier | None = None


def init(jsonl: str | None, keep_all: int, per_class: int) -> None:
    """Start (or restart) the worker's state; ``jsonl`` is appended to."""
    global _state
    if _state is not None:
        _state.close()
    _state = Classifier(jsonl, keep_all, per_class)


def class_key(transport: str, event_id: str | None, valid: bool) -> str:
    return f"{transport}|{event_id or '-'}|{'valid' if valid else 'invalid'}"


def classify_batch(items: list[Item]) -> list[Result]:
    """The worker process's entry point (after :func:`init`)."""
    if _state is None:
        raise RuntimeError("worker.init() was not called")
    return _state.classify_batch(items)


def close() -> None:
    global _state
    if _state is not None:
        _state.close()
    _state = None


# -- the worker process: ``python -m dcsaudit.auditmsg.worker JSONL KEEP_ALL PER_CLASS`` ------------------
# A plain child process (not multiprocessing): it does not re-import the parent's main module, so any
# program may embed the collector. Protocol on stdin/stdout: 4-octet big-endian length + pickle; a list
# of Items in, a list of Results out, in order. End of stdin: flush messages_file and exit. Only the
# collector that started it writes to it (pickle is safe between the two).


def read_frame(stream: IO[bytes]) -> bytes | None:
    head = stream.read(4)
    if len(head) < 4:
        return None
    n = int.from_bytes(head, "big")
    data = stream.read(n)
    return data if len(data) == n else None


def main(argv: list[str]) -> int:
    import contextlib
    import os
    import pickle
    import sys

    from dcsaudit.auditmsg import worker  # run as __main__: pickle must name the importable module's classes

    with contextlib.suppress(OSError):
        os.nice(10)  # receiving must win the CPU; classification catches up (issue 16)
    jsonl, keep_all, per_class = argv[0], int(argv[1]), int(argv[2])
    state = worker.Classifier(jsonl or None, keep_all, per_class)
    out = sys.stdout.buffer
    try:
        while (frame := read_frame(sys.stdin.buffer)) is not None:
            results = pickle.dumps(state.classify_batch(pickle.loads(frame)), protocol=pickle.HIGHEST_PROTOCOL)
            out.write(len(results).to_bytes(4, "big") + results)
            out.flush()
    except (BrokenPipeError, KeyboardInterrupt):
        pass
    finally:
        state.close()
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
