"""A syslog collector for DICOM audit messages: SYSLOG-TLS (RFC 5425, PS3.15 A.6) and SYSLOG-UDP
(RFC 5426, PS3.15 A.7).

Used during ``dcsaudit scan`` (when configured) and by ``dcsaudit listen``: the product under audit is
pointed at it, the scan performs actions, and every message that arrives is parsed and classified
(:mod:`dcsaudit.auditmsg.classify`); :func:`dcsaudit.auditmsg.correlate.correlate` then matches them to
the scan's actions.

What it records about the transport:
- TLS: it asks for a client certificate without requiring one (RFC 5425 §4.2 mutual authentication is
  what a product *should* do; the audit reports what it does) and records, per connection, whether the
  sender presented one and whether the chain validated against ``ca_file``. Validation failures do not
  abort the handshake: we want the messages either way, and the report says the sender was not trusted.
- Framing: octet-counting (RFC 5425 §4.3, ``MSG-LEN SP SYSLOG-MSG``) is the standard; non-transparent
  framing (RFC 6587 §3.4.2, LF-terminated) is detected, accepted and reported as an error. The framing
  rules live in :mod:`dcsaudit.auditmsg.framing` (pure, tested alone); each :class:`Dropped` it yields is
  counted in ``AuditTrail.dropped`` and written to the connection's errors.
- UDP: one message per datagram (RFC 5426 §3.1); the kernel's own drops on our socket (receive buffer
  full) are read from ``/proc/net/udp`` and counted as ``udp_kernel_drops``.

Pace (issue 16): receiving never waits for classification. Connection threads only decrypt and deframe,
and append each message to ``received_file`` (every message, raw, in arrival order: a line
``LEN TRANSPORT FRAMING CONN EPOCH PEER`` then the message and LF). A dispatcher thread reads that file
back in batches and has them classified in one worker process (:mod:`dcsaudit.auditmsg.worker`; lxml
validation holds the GIL), which streams every classified message to ``messages_file`` (JSON Lines).
Memory stays bounded whatever the volume: the trail keeps the first ``keep_all`` messages, then the first
``per_class`` examples of each class (transport, EventID, valid), and counts per class. ``stop()`` is
bounded: what is not classified by its deadline stays, raw, in ``received_file`` and is counted as
received but not classified.

Resilience (hostile or broken senders must not crash, hang or exhaust us): a message larger than
``max_message`` (1 MiB) is dropped without being buffered; a frame length beyond ``MAX_SKIP`` or a
malformed MSG-LEN closes the connection (the stream cannot be trusted); at most ``max_connections`` TLS
connections at once and ``max_per_peer`` from one address: beyond that the connection idle longest is
closed to make room (so a thousand idle connections cannot keep a sender that has something to say
waiting); a handshake deadline and an idle timeout per connection; at most ``max_messages`` stored.
XML is parsed with entities and DTDs refused (see :mod:`dcsaudit.auditmsg.xmlbody`).

Implementation: blocking sockets in threads with pyOpenSSL, because the stdlib ``ssl`` module cannot
accept an unverifiable client certificate while still telling whether it validated (it has no verify
callback). Threads make the collector usable from sync and async code alike.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import pickle
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from OpenSSL import SSL

from dcsaudit import certs
from dcsaudit.auditmsg import worker
from dcsaudit.auditmsg.framing import MAX_SKIP, Deframer, Dropped, Frame, FrameError
from dcsaudit.evidence import EvidenceLog
from dcsaudit.listeners import fdwait
from dcsaudit.models.audit import AuditMessage, AuditTrail, CollectorConnection, Framing, MessageClass
from dcsaudit.models.core import Reason

MAX_MESSAGE = 1024 * 1024  # octets; PS3.15 A.6 asks for >= 32768, RFC 5425 sets no maximum
MAX_CONNECTIONS = 64
MAX_PER_PEER = 16  # connections from one address before its idlest one is closed for a new one
MAX_MESSAGES = 500_000  # stored in received_file (about 1 GB of 2 KB messages); beyond: counted
KEEP_ALL = 200  # messages kept whole in the trail (and report.json); beyond, examples per class
PER_CLASS = 20
MAX_MESSAGE_EVIDENCE = 200  # one Evidence per kept message up to this (each costs report size); a summary after
HANDSHAKE_TIMEOUT = 5.0
IDLE_TIMEOUT = 30.0
UDP_RCVBUF = 32 * 1024 * 1024  # asked for; the kernel grants up to net.core.rmem_max
CLASSIFY_GRACE = 1.0  # seconds stop() lets the classifier catch up before it reports the rest unclassified
_BATCH = 256
_POLL = 0.2  # how often blocked threads look at the stop flag
# AuditTrail.dropped key for each way a TLS stream's octets can fail to become a message.
DROP_COUNTER: dict[FrameError, str] = {
    FrameError.MISSING_SP: "malformed_frame", FrameError.BAD_LENGTH: "malformed_frame",
    FrameError.LEADING_ZERO: "malformed_frame", FrameError.BAD_START: "malformed_frame",
    FrameError.OVERSIZE: "oversize", FrameError.ABSURD_LENGTH: "oversize", FrameError.TRUNCATED: "incomplete_frame",
}


@dataclass
class _ConnState:
    index: int
    peer: str
    opened_at: dt.datetime
    presented: bool = False
    verify_ok: bool = True
    verify_errors: list[str] = field(default_factory=list)
    framing: list[Framing] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    messages: int = 0
    last_active: float = field(default_factory=time.monotonic)
    evict: str | None = None  # set by the accept loop: close this connection, with this reason
    sock: socket.socket | None = None


@dataclass
class _Class:
    transport: Literal["tls", "udp"]
    event_id: str | None
    valid: bool
    count: int = 0
    examples: list[int] = field(default_factory=list)


class _Stopped(Exception):
    pass


class _Evicted(Exception):
    pass


class _Spool:
    """``received_file``: every message, raw, in arrival order; appended by receivers, read back by the
    dispatcher (one reader)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._w: IO[bytes] = open(path, "wb", buffering=1 << 20)
        self._r: IO[bytes] = open(path, "rb")
        self._lock = threading.Lock()
        self.count = 0
        self.read_count = 0

    def append(self, payload: bytes, transport: str, framing: str, conn: int | None, at: float, peer: str) -> None:
        head = b"%d %s %s %s %.6f %s\n" % (len(payload), transport.encode(), framing.encode(),
                                            b"-" if conn is None else b"%d" % conn, at, peer.encode())
        with self._lock:
            self._w.write(head)
            self._w.write(payload)
            self._w.write(b"\n")
            self.count += 1

    def flush(self) -> None:
        with self._lock, contextlib.suppress(ValueError, OSError):
            self._w.flush()

    def read(self, limit: int) -> list[worker.Item]:
        """Up to ``limit`` whole records written (and flushed) since the last call."""
        out: list[worker.Item] = []
        while len(out) < limit:
            start = self._r.tell()
            line = self._r.readline(512)
            if not line.endswith(b"\n"):
                self._r.seek(start)
                break
            n, transport, framing, conn, at, peer = line[:-1].split(b" ", 5)
            body = self._r.read(int(n) + 1)
            if len(body) < int(n) + 1:
                self._r.seek(start)
                break
            out.append((self.read_count, body[:-1], transport.decode(), peer.decode(), float(at),  # type: ignore[arg-type]
                        framing.decode(), None if conn == b"-" else int(conn)))
            self.read_count += 1
        return out

    def close(self) -> None:
        with self._lock:
            for f in (self._w, self._r):
                with contextlib.suppress(OSError):
                    f.close()


def _kernel_udp_drops(sock: socket.socket) -> int | None:
    """Datagrams the kernel dropped on this socket (Linux ``/proc/net/udp*``, last column), if known."""
    try:
        inode = str(os.fstat(sock.fileno()).st_ino)
    except OSError:
        return None
    for name in ("/proc/net/udp", "/proc/net/udp6"):
        with contextlib.suppress(OSError):
            for line in Path(name).read_text().splitlines()[1:]:
                cols = line.split()
                if len(cols) >= 13 and cols[9] == inode:
                    return int(cols[-1])
    return None


class _WorkerProcess:
    """The classifier child (:func:`dcsaudit.auditmsg.worker.main`): batches written to its stdin with a
    deadline, results read back by a thread, in order."""

    def __init__(self, jsonl: Path, keep_all: int, per_class: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dcsaudit.auditmsg.worker", str(jsonl), str(keep_all), str(per_class)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, close_fds=True)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._in = self.proc.stdin
        os.set_blocking(self._in.fileno(), False)
        self.results: queue.Queue[list[worker.Result] | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, args=(self.proc.stdout,), name="syslog-classify-read",
                                        daemon=True)
        self._reader.start()

    def _read(self, stream: IO[bytes]) -> None:
        try:
            while (frame := worker.read_frame(stream)) is not None:
                self.results.put(pickle.loads(frame))
        except (OSError, pickle.UnpicklingError, EOFError):
            pass
        self.results.put(None)

    def submit(self, items: list[worker.Item], deadline: float | None) -> bool:
        """Write one batch; False if the deadline passed first (the child then cannot be trusted to be in
        step, and is closed by the caller)."""
        data = pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL)
        view = memoryview(len(data).to_bytes(4, "big") + data)
        fd = self._in.fileno()
        while view:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            if fdwait.ready([fd], True, _POLL if left is None else min(_POLL, left)):
                try:
                    view = view[os.write(fd, view):]
                except BlockingIOError:
                    continue
                except OSError:
                    return False
        return True

    def close(self, timeout: float) -> None:
        """End of input: the child finishes its batch, flushes messages_file and exits; killed if it has
        not after ``timeout`` s. Not waited for here (a watcher thread reaps it)."""
        with contextlib.suppress(OSError):
            self._in.close()

        def reap() -> None:
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(1.0)

        threading.Thread(target=reap, name="syslog-classify-reap", daemon=True).start()


class SyslogCollector:
    """See the module docstring. ``start()`` returns once listening; ``stop()`` returns the trail."""

    def __init__(
        self,
        bind: str,
        tls_port: int | None,
        udp_port: int | None,
        evidence: EvidenceLog,
        *,
        cert_file: Path | None = None,
        key_file: Path | None = None,
        ca_file: Path | None = None,
        max_message: int = MAX_MESSAGE,
        max_connections: int = MAX_CONNECTIONS,
        max_per_peer: int = MAX_PER_PEER,
        idle_timeout: float = IDLE_TIMEOUT,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        max_messages: int = MAX_MESSAGES,
        out_dir: Path | None = None,
        keep_all: int = KEEP_ALL,
        per_class: int = PER_CLASS,
        classify_in_process: bool = True,
    ) -> None:
        self.bind = bind
        self.tls_port = tls_port
        self.udp_port = udp_port
        self.evidence = evidence
        self.cert_file = cert_file
        self.key_file = key_file
        self.ca_file = ca_file
        self.max_message = max_message
        self.max_connections = max_connections
        self.max_per_peer = max_per_peer
        self.idle_timeout = idle_timeout
        self.handshake_timeout = handshake_timeout
        self.max_messages = max_messages
        self.out_dir = out_dir
        self.keep_all = keep_all
        self.per_class = per_class
        self.classify_in_process = classify_in_process
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._conn_threads: list[threading.Thread] = []
        self._active: dict[int, _ConnState] = {}
        self._kept: list[AuditMessage] = []
        self._classes: dict[str, _Class] = {}
        self._classified = 0
        self._connections: list[CollectorConnection | None] = []
        self._framings: list[Framing] = []
        self._dropped: dict[str, int] = {}
        self._largest = 0
        self._evidence_ids: list[str] = []
        self._msg_evidence = 0
        self._tls_sock: socket.socket | None = None
        self._udp_sock: socket.socket | None = None
        self._udp_rcvbuf: int | None = None
        self._ctx: SSL.Context | None = None
        self._started_at: dt.datetime | None = None
        self._spool: _Spool | None = None
        self._tmp: Path | None = None
        self._jsonl: Path | None = None
        self._proc: _WorkerProcess | None = None
        self._worker_given_up = False
        self._classifier: worker.Classifier | None = None
        self._dispatcher: threading.Thread | None = None
        self._closing_at: float | None = None
        self._classify_grace = CLASSIFY_GRACE
        self._classify_error: str | None = None
        self.started = False

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Bind and listen (port 0 picks a free port: read ``tls_port``/``udp_port`` afterwards)."""
        if self.started:
            return
        self._started_at = dt.datetime.now(dt.UTC)
        family = socket.AF_INET6 if ":" in self.bind else socket.AF_INET
        try:
            if self.tls_port is not None:
                self._ctx = self._tls_context()
                s = socket.socket(family, socket.SOCK_STREAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((self.bind, self.tls_port))
                    s.listen(1024)  # a burst of connects must not overflow the backlog (SYN retries cost 1 s+)
                except OSError:
                    s.close()
                    raise
                s.settimeout(_POLL)
                self._tls_sock = s
                self.tls_port = int(s.getsockname()[1])
            if self.udp_port is not None:
                u = socket.socket(family, socket.SOCK_DGRAM)
                # A larger buffer absorbs bursts (UDP has no back-pressure). SO_RCVBUFFORCE passes the
                # net.core.rmem_max cap when privileged (as rsyslog's imudp rcvbufSize does); else the capped
                # SO_RCVBUF; neither is fatal if refused.
                try:
                    u.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), UDP_RCVBUF)
                except OSError:
                    with contextlib.suppress(OSError):
                        u.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RCVBUF)
                try:
                    u.bind((self.bind, self.udp_port))
                except OSError:
                    u.close()
                    raise
                self._udp_rcvbuf = u.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
                u.settimeout(_POLL)
                self._udp_sock = u
                self.udp_port = int(u.getsockname()[1])
        except BaseException:
            for sock in (self._tls_sock, self._udp_sock):
                if sock is not None:
                    sock.close()
            raise
        self._open_files()
        self._start_classifier()
        if self._tls_sock is not None:
            self._spawn(self._accept_loop, "syslog-tls-accept")
        if self._udp_sock is not None:
            self._spawn(self._udp_loop, "syslog-udp-recv")
        self._dispatcher = threading.Thread(target=self._dispatch_guarded, name="syslog-dispatch", daemon=True)
        self._dispatcher.start()
        self.started = True
        ev = self.evidence.add(
            "syslog.collector", f"{self.bind}", True,
            f"collector listening: TLS {self.tls_port or '-'}, UDP {self.udp_port or '-'}",
            data={"tls_port": self.tls_port, "udp_port": self.udp_port, "ca_file": bool(self.ca_file),
                  "max_message": self.max_message, "udp_receive_buffer": self._udp_rcvbuf},
        )
        self._evidence_ids.append(ev.id)

    def _open_files(self) -> None:
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            base = self.out_dir
        else:
            self._tmp = base = Path(tempfile.mkdtemp(prefix="dcsaudit-collector-"))
        self._jsonl = base / "messages.jsonl"
        self._jsonl.write_bytes(b"")
        self._spool = _Spool(base / "received.log")

    def _start_classifier(self) -> None:
        assert self._jsonl is not None
        if self.classify_in_process:
            try:
                self._proc = _WorkerProcess(self._jsonl, self.keep_all, self.per_class)
                return
            except OSError as exc:  # no processes here: classify in a thread instead
                self._classify_error = f"worker process unavailable ({type(exc).__name__}); classified in a thread"
        self._classifier = worker.Classifier(str(self._jsonl), self.keep_all, self.per_class)

    def stop(self, drain_seconds: float = 0.5, classify_seconds: float = CLASSIFY_GRACE) -> AuditTrail:
        """Stop listening, let open connections finish for up to ``drain_seconds``, classify what came for
        up to ``classify_seconds`` more, and return the trail. Bounded: about the sum plus 1 s."""
        if self._tls_sock is not None:
            with contextlib.suppress(OSError):
                self._tls_sock.close()
        deadline = time.monotonic() + drain_seconds
        for t in list(self._conn_threads):
            t.join(max(0.0, deadline - time.monotonic()))
        self._stop.set()
        for t in [*self._threads, *self._conn_threads]:
            t.join(max(0.05, deadline + 0.5 - time.monotonic()))
        if self._udp_sock is not None:
            drops = _kernel_udp_drops(self._udp_sock)
            if drops:
                self._count("udp_kernel_drops", drops)
            with contextlib.suppress(OSError):
                self._udp_sock.close()
        spool = self._spool
        if spool is not None:
            spool.flush()
        self._classify_grace = classify_seconds
        self._closing_at = time.monotonic() + classify_seconds
        if self._dispatcher is not None:
            self._dispatcher.join(classify_seconds + 1.0)
        self._stop_classifier()
        if spool is not None:
            spool.close()
        return self._trail()

    def _stop_classifier(self) -> None:
        if self._proc is not None:
            self._proc.close(2.0)
            self._proc = None
        if self._classifier is not None:
            self._classifier.close()

    def _trail(self) -> AuditTrail:
        received = self._spool.count if self._spool is not None else 0
        keep_files = self.out_dir is not None
        with self._lock:
            n = len(self._kept)
            unclassified = received - self._classified
            summary = f"{received} messages received, {self._classified} classified"
            if unclassified:
                summary += (f"; {unclassified} not classified before the collector stopped (kept raw in "
                            f"{'received.log' if keep_files else 'a temporary file, now removed'})")
            if self._classify_error:
                summary += f"; {self._classify_error}"
            if self._classified > self._msg_evidence or unclassified or self._classify_error:
                ev = self.evidence.add("syslog.collector", self.bind, not unclassified, summary,
                                       reason=Reason.TIMEOUT if unclassified else None,
                                       data={"received": received, "classified": self._classified, "kept": n,
                                             "dropped": dict(self._dropped)})
                self._evidence_ids.append(ev.id)
            trail = AuditTrail(
                messages=list(self._kept), bind=self.bind, tls_port=self.tls_port, udp_port=self.udp_port,
                started_at=self._started_at, stopped_at=dt.datetime.now(dt.UTC), ca_file_given=bool(self.ca_file),
                connections=[c for c in self._connections if c is not None], framings=list(self._framings),
                largest_message=self._largest, dropped=dict(self._dropped), evidence=list(self._evidence_ids),
                received=received, classified=self._classified,
                classes=[MessageClass(transport=c.transport, event_id=c.event_id, valid=c.valid, count=c.count,
                                      examples=c.examples) for c in self._classes.values()],
                messages_file=str(self._jsonl) if keep_files and self._jsonl else None,
                received_file=str(self._spool.path) if keep_files and self._spool else None,
                udp_receive_buffer=self._udp_rcvbuf,
            )
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
        return trail

    def snapshot(self) -> list[AuditMessage]:
        """Messages classified and kept so far (for ``listen`` progress and tests); keeps running."""
        with self._lock:
            return list(self._kept)

    def received(self) -> int:
        """Messages received and stored so far (classified or not)."""
        return self._spool.count if self._spool is not None else 0

    def classified(self) -> int:
        """Messages classified so far."""
        return self._classified

    def __enter__(self) -> SyslogCollector:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._stop.is_set():
            self.stop()

    def _spawn(self, fn: Any, name: str, *args: Any) -> threading.Thread:
        t = threading.Thread(target=fn, args=args, name=name, daemon=True)
        t.start()
        self._threads.append(t)
        return t

    # -- classification (off the receiving threads) ------------------------------------------------

    def _dispatch_guarded(self) -> None:
        try:
            self._dispatch()
        except Exception as exc:  # never a thread traceback: what is not classified stays raw, counted
            self._classify_error = f"classification stopped: {type(exc).__name__}: {str(exc)[:120]}"

    def _dispatch(self) -> None:
        """Read ``received_file`` back in batches and have them classified, two batches in flight.
        Once stopping, the (low-priority) worker is given up: the batches it still holds and the rest
        are classified here, small batches at a time, until the deadline. (If the worker had written a
        batch but not answered yet, messages_file then holds those indexes twice, identical.)"""
        spool = self._spool
        assert spool is not None
        inflight: list[list[worker.Item]] = []
        redo: list[worker.Item] = []
        while True:
            closing = self._closing_at
            if closing is not None and time.monotonic() >= closing:
                return
            proc = None if self._worker_given_up else self._proc
            if proc is not None and inflight:
                # Stopping: the worker gets the first half of the grace to answer what it holds.
                give_up = None if closing is None else closing - self._classify_grace / 2
                wait = _POLL if len(inflight) >= 2 else 0.0
                if give_up is not None:
                    wait = max(0.0, min(0.02, give_up - time.monotonic()))
                try:
                    got = proc.results.get(timeout=wait)
                except queue.Empty:
                    got = []
                if got:
                    inflight.pop(0)
                    self._collect(got)
                    continue
                if got is None:
                    self._classify_error = "classifier process ended early"
                if got is None or (give_up is not None and time.monotonic() >= give_up):  # redo what it holds
                    self._worker_given_up, proc = True, None
                    redo = [item for batch in inflight for item in batch]
                    inflight.clear()
                elif len(inflight) >= 2 or closing is not None:
                    continue
            if closing is not None or proc is None:
                items = redo[:32] if redo else spool.read(32 if closing is not None else _BATCH)
                del redo[:len(items) if redo else 0]
                if items:
                    if self._classifier is None:
                        assert self._jsonl is not None
                        self._classifier = worker.Classifier(str(self._jsonl), self.keep_all, self.per_class)
                    self._collect(self._classifier.classify_batch(items))
                    continue
            else:
                items = spool.read(_BATCH)
                if items:
                    inflight.append(items)
                    if not proc.submit(items, None):
                        self._classify_error = "classifier process stopped reading"
                        self._worker_given_up = True
                        redo = [item for batch in inflight for item in batch]
                        inflight.clear()
                    continue
            if closing is not None and not inflight and not redo and spool.read_count >= spool.count:
                return  # everything received is classified
            spool.flush()
            time.sleep(0.005)

    def _collect(self, results: list[worker.Result]) -> None:
        for r in results:
            transport, event_id, validity = r.key.split("|")
            with self._lock:
                self._classified += 1
                cls = self._classes.get(r.key)
                if cls is None:
                    cls = self._classes[r.key] = _Class("udp" if transport == "udp" else "tls",
                                                        None if event_id == "-" else event_id, validity == "valid")
                cls.count += 1
            if r.message_json is None:
                continue
            with self._lock:  # the worker proposes, this decides (two classifiers may have worked)
                example = len(cls.examples) < self.per_class
                if example:
                    cls.examples.append(r.index)
                if not example and len(self._kept) >= self.keep_all:
                    continue
            m = AuditMessage.model_validate_json(r.message_json)
            with self._lock:
                index = len(self._kept)
                record_evidence = self._msg_evidence < MAX_MESSAGE_EVIDENCE
                if record_evidence:
                    self._msg_evidence += 1
                self._kept.append(m)
            if record_evidence:
                what = f"{m.event_id} {m.event_name or ''}".strip() if m.event_id else "no DICOM event"
                ev = self.evidence.add(
                    "syslog.collector.message", f"{m.peer}/{m.transport}", True,
                    f"audit message {r.index}: {what}, {'valid' if m.valid else f'{len(m.errors)} errors'}",
                    data={"index": r.index, "event_id": m.event_id, "event_type_codes": m.event_type_codes,
                          "valid": m.valid, "schema_valid": m.schema_valid, "size": m.size, "framing": m.framing,
                          "errors": m.errors[:5]},
                    at=m.received_at,
                )
                with self._lock:
                    self._kept[index] = m.model_copy(update={"evidence": ev.id})

    # -- TLS -------------------------------------------------------------------------------------

    def _tls_context(self) -> SSL.Context:
        ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
        ctx.set_min_proto_version(SSL.TLS1_2_VERSION)  # PS3.15 A.6: TLS >= 1.2 recommended
        if self.cert_file is not None and self.key_file is not None:
            ctx.use_certificate_chain_file(str(self.cert_file))
            ctx.use_privatekey_file(str(self.key_file))
        else:
            cert, key = certs.issue("dcsaudit syslog collector", hosts=[self.bind])
            ctx.use_certificate(cert)  # pyOpenSSL accepts cryptography objects
            ctx.use_privatekey(key)
        ctx.check_privatekey()
        if self.ca_file is not None:
            ctx.load_verify_locations(str(self.ca_file))
        # Ask for a client certificate, never require it, and never fail the handshake on it: the
        # callback notes the verdict and accepts, so that the messages are still received.
        ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_CLIENT_ONCE, _verify_callback)
        ctx.set_session_id(b"dcsaudit-collector")
        return ctx

    def _make_room(self, peer: str) -> bool:
        """Admit a new connection from ``peer``: when this peer or the collector is at its bound, close
        the connection silent longest (it can reconnect, RFC 5425 senders do; one that is sending is not
        silent). False only while closed connections have not ended yet: the new one is then refused."""
        host = peer.rsplit(":", 1)[0]
        with self._lock:
            live = [c for c in self._active.values() if c.evict is None]
            same = [c for c in live if c.peer.rsplit(":", 1)[0] == host]
            now = time.monotonic()
            for pool, bound, why in ((same, self.max_per_peer, "per_peer_limit"),
                                     (live, self.max_connections, "connection_limit")):
                if len(pool) < bound:
                    continue
                if len(self._active) >= 2 * self.max_connections:  # evicted threads have not ended yet
                    return False
                victim = min(pool, key=lambda c: c.last_active)
                victim.evict = f"closed after {now - victim.last_active:.1f} s idle to admit a new connection ({why})"
                if victim.sock is not None:  # wakes its thread now, so the slot is free at once
                    with contextlib.suppress(OSError):
                        victim.sock.shutdown(socket.SHUT_RDWR)
                self._dropped[f"evicted_idle_{why}"] = self._dropped.get(f"evicted_idle_{why}", 0) + 1
                return True
        return True

    def _accept_loop(self) -> None:
        assert self._tls_sock is not None
        while not self._stop.is_set():
            try:
                sock, addr = self._tls_sock.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set() or self._tls_sock.fileno() < 0:
                    return
                time.sleep(_POLL)  # EMFILE and the like: back off instead of spinning
                continue
            peer = _peer(addr)
            admitted = self._make_room(peer)
            wait_until = time.monotonic() + 1.0
            while not admitted and time.monotonic() < wait_until and not self._stop.is_set():
                time.sleep(0.005)  # closed connections are ending: slow accepting down rather than refuse
                admitted = self._make_room(peer)
            if not admitted:
                self._count("connection_limit")
                with contextlib.suppress(OSError):
                    sock.close()
                continue
            with self._lock:
                index = len(self._connections)
                self._connections.append(None)
                state = _ConnState(index=index, peer=peer, opened_at=dt.datetime.now(dt.UTC), sock=sock)
                self._active[index] = state
            t = threading.Thread(target=self._serve_tls, args=(sock, state), name=f"syslog-tls-{index}", daemon=True)
            self._conn_threads.append(t)
            t.start()
            # Forget finished threads so a long listen does not grow the list without bound.
            if len(self._conn_threads) > 2 * self.max_connections:
                self._conn_threads = [x for x in self._conn_threads if x.is_alive()]

    def _serve_tls(self, sock: socket.socket, state: _ConnState) -> None:
        peer, index = state.peer, state.index
        conn: SSL.Connection | None = None
        handshake_ok = False
        version = cipher = subject = fingerprint = None
        try:
            sock.setblocking(False)
            assert self._ctx is not None
            conn = SSL.Connection(self._ctx, sock)
            conn.set_app_data(state)
            conn.set_accept_state()
            try:
                self._io(conn, state, conn.do_handshake, time.monotonic() + self.handshake_timeout)
                handshake_ok = True
            except TimeoutError:
                state.errors.append("TLS handshake timed out")
            except (SSL.Error, OSError) as exc:
                state.errors.append(f"TLS handshake failed: {_ssl_err(exc)}")
            if handshake_ok:
                version = conn.get_protocol_version_name()
                cipher = conn.get_cipher_name()
                cert = conn.get_peer_certificate(as_cryptography=True)
                if cert is not None:
                    state.presented = True
                    subject = cert.subject.rfc4514_string()[:300]
                    from cryptography.hazmat.primitives.serialization import Encoding

                    fingerprint = hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()
                self._read_frames(conn, state)
        except _Stopped:
            state.errors.append("collector stopped while the connection was open")
        except _Evicted:
            state.errors.append(state.evict or "closed to admit a new connection")
        except Exception as exc:  # never let a connection thread die silently
            state.errors.append(f"internal error: {type(exc).__name__}: {exc}")
        finally:
            if state.evict is not None and state.evict not in state.errors:
                state.errors.append(state.evict)
            state.sock = None
            if conn is not None and handshake_ok and state.evict is None:
                with contextlib.suppress(Exception):
                    conn.shutdown()
            with contextlib.suppress(OSError):
                sock.close()
            with self._lock:
                self._active.pop(index, None)
            validated: bool | None = None
            if state.presented:
                validated = state.verify_ok if self.ca_file is not None else None
            rec = CollectorConnection(
                peer=peer, opened_at=state.opened_at, handshake_ok=handshake_ok, tls_version=version,
                cipher=cipher, client_certificate_presented=state.presented,
                client_certificate_validated=validated, client_certificate_subject=subject,
                client_certificate_sha256=fingerprint,
                verify_error="; ".join(state.verify_errors[:3]) or None,
                framing=state.framing, messages=state.messages, errors=state.errors[:20],
            )
            cert_txt = ("no client certificate" if not state.presented else
                        f"client certificate {'validated' if validated else 'not validated' if validated is False else 'presented (no CA to check)'}")
            ev = self.evidence.add(
                "syslog.collector.connection", f"{peer}/tls", handshake_ok,
                f"TLS connection from {peer}: {version or 'no handshake'}, {cert_txt}, {state.messages} messages",
                reason=None if handshake_ok else Reason.TLS_FAILURE,
                data=rec.model_dump(mode="json", exclude={"evidence"}), at=state.opened_at,
            )
            with self._lock:
                self._connections[index] = rec.model_copy(update={"evidence": ev.id})

    def _io(self, conn: SSL.Connection, state: _ConnState, fn: Any, deadline: float, *args: Any) -> Any:
        """Run a pyOpenSSL call on a non-blocking socket, waiting (bounded) when it wants I/O."""
        while True:
            try:
                return fn(*args)
            except SSL.WantReadError:
                want_write = False
            except SSL.WantWriteError:
                want_write = True
            while True:
                if self._stop.is_set():
                    raise _Stopped()
                if state.evict is not None:
                    raise _Evicted()
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError()
                if fdwait.ready([conn.fileno()], want_write, min(_POLL, left)):
                    state.last_active = time.monotonic()  # handshake flights count: only silence is idle
                    break

    def _read_frames(self, conn: SSL.Connection, state: _ConnState) -> None:
        """Deframe (:class:`Deframer`) what the sender writes until it closes, or the stream breaks."""
        deframer = Deframer(self.max_message, MAX_SKIP)
        while True:
            try:
                chunk = self._io(conn, state, conn.recv, time.monotonic() + self.idle_timeout, 65536)
            except SSL.ZeroReturnError:  # close_notify
                break
            except TimeoutError:
                state.errors.append(f"idle for {self.idle_timeout:.0f} s: connection closed")
                break
            except SSL.SysCallError as exc:
                if exc.args and exc.args[0] not in (-1, 0):
                    state.errors.append(f"connection error: {_ssl_err(exc)}")
                else:
                    state.errors.append("sender closed without close_notify (RFC 5425 §4.4)")
                break
            except SSL.Error as exc:
                state.errors.append(f"TLS error: {_ssl_err(exc)}")
                break
            if not chunk:
                break
            state.last_active = time.monotonic()
            self._deliver(deframer.feed(chunk), state, time.time())
            if self._spool is not None:
                self._spool.flush()  # a message is received when it is on disk, not in a buffer
            if deframer.failed is not None:
                break
        end = deframer.close()
        if end is not None:
            self._deliver([end], state, time.time())

    def _deliver(self, items: list[Frame | Dropped], state: _ConnState, received_at: float) -> None:
        """Store each frame as a message; count and note each drop (a fatal one closes the connection)."""
        for item in items:
            if isinstance(item, Frame):
                if self._store(item.payload, "tls", state.peer, received_at, item.framing, state.index):
                    state.messages += 1
                    if item.framing not in state.framing:
                        state.framing.append(item.framing)
            else:
                self._count(DROP_COUNTER[item.error])
                if len(state.errors) < 50:
                    state.errors.append(f"{item.detail}: connection closed" if item.error.fatal else item.detail)

    # -- UDP -------------------------------------------------------------------------------------

    def _udp_loop(self) -> None:
        sock = self._udp_sock
        assert sock is not None
        spool = self._spool
        assert spool is not None
        unflushed = 0
        while not self._stop.is_set():
            try:
                data, addr = sock.recvfrom(65535)
            except TimeoutError:
                if unflushed:
                    spool.flush()
                    unflushed = 0
                continue
            except OSError:
                if self._stop.is_set():
                    break
                time.sleep(_POLL)
                continue
            self._udp_datagram(data, addr)
            unflushed += 1
            if unflushed >= 256:
                spool.flush()
                unflushed = 0
        # What the kernel still holds was received before the stop: take it too (bounded by the buffer).
        sock.settimeout(0)
        while True:
            try:
                data, addr = sock.recvfrom(65535)
            except OSError:
                break
            self._udp_datagram(data, addr)

    def _udp_datagram(self, data: bytes, addr: Any) -> None:
        if len(data) > self.max_message:
            self._count("oversize")
            return
        self._store(data.rstrip(b"\n\x00"), "udp", _peer(addr), time.time(), "datagram", None)

    # -- bookkeeping -----------------------------------------------------------------------------

    def _count(self, reason: str, n: int = 1) -> None:
        with self._lock:
            self._dropped[reason] = self._dropped.get(reason, 0) + n

    def _store(self, msg: bytes, transport: Literal["tls", "udp"], peer: str, at: float, framing: Framing,
               conn: int | None) -> bool:
        """Append one message to received_file (the classifier reads it from there). False: over the cap."""
        spool = self._spool
        assert spool is not None
        with self._lock:
            if spool.count >= self.max_messages:
                self._dropped["message_cap"] = self._dropped.get("message_cap", 0) + 1
                return False
            if framing not in self._framings:
                self._framings.append(framing)
            self._largest = max(self._largest, len(msg))
        spool.append(msg, transport, framing, conn, at, peer)
        return True


def _verify_callback(conn: SSL.Connection, cert: Any, errnum: int, depth: int, ok: int) -> bool:
    state = conn.get_app_data()
    if isinstance(state, _ConnState):
        state.presented = True
        if not ok:
            state.verify_ok = False
            if len(state.verify_errors) < 5:
                state.verify_errors.append(f"depth {depth}: X509 error {errnum}")
    return True  # accept: the verdict is recorded, the messages are still wanted


def _ssl_err(exc: BaseException) -> str:
    if isinstance(exc, SSL.Error) and exc.args and isinstance(exc.args[0], list):
        parts = [str(e[-1]) for e in exc.args[0] if isinstance(e, tuple)]
        if parts:
            return "; ".join(parts)[:200]
    return f"{type(exc).__name__}: {exc}"[:200]


def _peer(addr: Any) -> str:
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
