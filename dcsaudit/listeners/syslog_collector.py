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
- UDP: one message per datagram (RFC 5426 §3.1).

Resilience (hostile or broken senders must not crash, hang or exhaust us): a message larger than
``max_message`` (1 MiB) is dropped without being buffered; a frame length beyond ``MAX_SKIP`` or a
malformed MSG-LEN closes the connection (the stream cannot be trusted); at most ``max_connections`` TLS
connections at once; a handshake deadline and an idle timeout per connection; at most ``max_messages``
kept. XML is parsed with entities and DTDs refused (see :mod:`dcsaudit.auditmsg.xmlbody`).

Implementation: blocking sockets in threads with pyOpenSSL, because the stdlib ``ssl`` module cannot
accept an unverifiable client certificate while still telling whether it validated (it has no verify
callback). Threads make the collector usable from sync and async code alike.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import queue
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from OpenSSL import SSL

from dcsaudit import certs
from dcsaudit.auditmsg.classify import classify
from dcsaudit.auditmsg.framing import MAX_SKIP, Deframer, Dropped, Frame, FrameError
from dcsaudit.evidence import EvidenceLog
from dcsaudit.models.audit import AuditMessage, AuditTrail, CollectorConnection, Framing
from dcsaudit.models.core import Reason

MAX_MESSAGE = 1024 * 1024  # octets; PS3.15 A.6 asks for >= 32768, RFC 5425 sets no maximum
MAX_CONNECTIONS = 64
MAX_MESSAGES = 200_000
MAX_MESSAGE_EVIDENCE = 2_000  # one Evidence per message up to this; a summary after that
HANDSHAKE_TIMEOUT = 10.0
IDLE_TIMEOUT = 30.0
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


class _Stopped(Exception):
    pass


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
        idle_timeout: float = IDLE_TIMEOUT,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        max_messages: int = MAX_MESSAGES,
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
        self.idle_timeout = idle_timeout
        self.handshake_timeout = handshake_timeout
        self.max_messages = max_messages
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._conn_threads: list[threading.Thread] = []
        self._conn_slots = threading.BoundedSemaphore(max_connections)
        self._messages: list[AuditMessage] = []
        self._connections: list[CollectorConnection | None] = []
        self._framings: list[Framing] = []
        self._dropped: dict[str, int] = {}
        self._largest = 0
        self._evidence_ids: list[str] = []
        self._msg_evidence = 0
        self._udp_queue: queue.Queue[tuple[bytes, str, dt.datetime] | None] = queue.Queue(maxsize=50_000)
        self._tls_sock: socket.socket | None = None
        self._udp_sock: socket.socket | None = None
        self._ctx: SSL.Context | None = None
        self._started_at: dt.datetime | None = None
        self.started = False

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Bind and listen (port 0 picks a free port: read ``tls_port``/``udp_port`` afterwards)."""
        if self.started:
            return
        self._started_at = dt.datetime.now(dt.UTC)
        family = socket.AF_INET6 if ":" in self.bind else socket.AF_INET
        if self.tls_port is not None:
            self._ctx = self._tls_context()
            s = socket.socket(family, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((self.bind, self.tls_port))
                s.listen(128)
            except OSError:
                s.close()
                raise
            s.settimeout(_POLL)
            self._tls_sock = s
            self.tls_port = int(s.getsockname()[1])
            self._spawn(self._accept_loop, "syslog-tls-accept")
        if self.udp_port is not None:
            u = socket.socket(family, socket.SOCK_DGRAM)
            with contextlib.suppress(OSError):  # a larger buffer absorbs bursts; not fatal if refused
                u.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
            try:
                u.bind((self.bind, self.udp_port))
            except OSError:
                u.close()
                if self._tls_sock is not None:
                    self._stop.set()
                    self._tls_sock.close()
                raise
            u.settimeout(_POLL)
            self._udp_sock = u
            self.udp_port = int(u.getsockname()[1])
            self._spawn(self._udp_loop, "syslog-udp-recv")
            self._spawn(self._udp_worker, "syslog-udp-classify")
        self.started = True
        ev = self.evidence.add(
            "syslog.collector", f"{self.bind}", True,
            f"collector listening: TLS {self.tls_port or '-'}, UDP {self.udp_port or '-'}",
            data={"tls_port": self.tls_port, "udp_port": self.udp_port, "ca_file": bool(self.ca_file),
                  "max_message": self.max_message},
        )
        self._evidence_ids.append(ev.id)

    def stop(self, drain_seconds: float = 2.0) -> AuditTrail:
        """Stop listening, let open connections finish for up to ``drain_seconds``, return the trail."""
        for s in (self._tls_sock,):
            if s is not None:
                with contextlib.suppress(OSError):
                    s.close()
        deadline = time.monotonic() + drain_seconds
        for t in list(self._conn_threads):
            t.join(max(0.0, deadline - time.monotonic()))
        self._stop.set()
        for t in [*self._threads, *self._conn_threads]:
            t.join(30.0)  # the UDP worker may still be classifying a queued burst
        if self._udp_sock is not None:
            with contextlib.suppress(OSError):
                self._udp_sock.close()
        with self._lock:
            n = len(self._messages)
            if n > self._msg_evidence:
                ev = self.evidence.add("syslog.collector", self.bind, True,
                                       f"{n} messages received ({n - self._msg_evidence} without own evidence)",
                                       data={"messages": n, "dropped": dict(self._dropped)})
                self._evidence_ids.append(ev.id)
            return AuditTrail(
                messages=list(self._messages), bind=self.bind, tls_port=self.tls_port, udp_port=self.udp_port,
                started_at=self._started_at, stopped_at=dt.datetime.now(dt.UTC), ca_file_given=bool(self.ca_file),
                connections=[c for c in self._connections if c is not None], framings=list(self._framings),
                largest_message=self._largest, dropped=dict(self._dropped), evidence=list(self._evidence_ids),
            )

    def snapshot(self) -> list[AuditMessage]:
        """Messages so far (for ``listen`` progress and tests); the collector keeps running."""
        with self._lock:
            return list(self._messages)

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
            if not self._conn_slots.acquire(blocking=False):
                self._count("connection_limit")
                with contextlib.suppress(OSError):
                    sock.close()
                continue
            with self._lock:
                index = len(self._connections)
                self._connections.append(None)
            t = threading.Thread(target=self._serve_tls, args=(sock, peer, index), name=f"syslog-tls-{index}",
                                 daemon=True)
            self._conn_threads.append(t)
            t.start()
            # Forget finished threads so a long listen does not grow the list without bound.
            if len(self._conn_threads) > 2 * self.max_connections:
                self._conn_threads = [x for x in self._conn_threads if x.is_alive()]

    def _serve_tls(self, sock: socket.socket, peer: str, index: int) -> None:
        state = _ConnState(index=index, peer=peer, opened_at=dt.datetime.now(dt.UTC))
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
                self._io(conn, conn.do_handshake, time.monotonic() + self.handshake_timeout)
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
        except Exception as exc:  # never let a connection thread die silently
            state.errors.append(f"internal error: {type(exc).__name__}: {exc}")
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.shutdown()
            with contextlib.suppress(OSError):
                sock.close()
            self._conn_slots.release()
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

    def _io(self, conn: SSL.Connection, fn: Any, deadline: float, *args: Any) -> Any:
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
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError()
                r, w, _ = select.select([] if want_write else [conn], [conn] if want_write else [], [],
                                        min(_POLL, left))
                if r or w:
                    break

    def _read_frames(self, conn: SSL.Connection, state: _ConnState) -> None:
        """Deframe (:class:`Deframer`) what the sender writes until it closes, or the stream breaks."""
        deframer = Deframer(self.max_message, MAX_SKIP)
        while True:
            try:
                chunk = self._io(conn, conn.recv, time.monotonic() + self.idle_timeout, 65536)
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
            self._deliver(deframer.feed(chunk), state, dt.datetime.now(dt.UTC))
            if deframer.failed is not None:
                break
        end = deframer.close()
        if end is not None:
            self._deliver([end], state, dt.datetime.now(dt.UTC))

    def _deliver(self, items: list[Frame | Dropped], state: _ConnState, received_at: dt.datetime) -> None:
        """Keep each frame as a message; count and note each drop (a fatal one closes the connection)."""
        for item in items:
            if isinstance(item, Frame):
                self._accept(item.payload, "tls", state.peer, received_at, item.framing, state)
            else:
                self._count(DROP_COUNTER[item.error])
                state.errors.append(f"{item.detail}: connection closed" if item.error.fatal else item.detail)

    # -- UDP -------------------------------------------------------------------------------------

    def _udp_loop(self) -> None:
        assert self._udp_sock is not None
        while not self._stop.is_set():
            try:
                data, addr = self._udp_sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    break
                time.sleep(_POLL)
                continue
            try:
                self._udp_queue.put_nowait((data, _peer(addr), dt.datetime.now(dt.UTC)))
            except queue.Full:
                self._count("udp_overflow")
        # Drain what the kernel still holds, then tell the worker to finish.
        while True:
            try:
                self._udp_sock.settimeout(0)
                data, addr = self._udp_sock.recvfrom(65535)
                self._udp_queue.put_nowait((data, _peer(addr), dt.datetime.now(dt.UTC)))
            except (OSError, queue.Full):
                break
        self._udp_queue.put(None)

    def _udp_worker(self) -> None:
        while True:
            item = self._udp_queue.get()
            if item is None:
                return
            data, peer, at = item
            if len(data) > self.max_message:
                self._count("oversize")
                continue
            self._accept(data.rstrip(b"\n\x00"), "udp", peer, at, "datagram", None)

    # -- bookkeeping -----------------------------------------------------------------------------

    def _count(self, reason: str) -> None:
        with self._lock:
            self._dropped[reason] = self._dropped.get(reason, 0) + 1

    def _accept(self, msg: bytes, transport: Literal["tls", "udp"], peer: str, at: dt.datetime,
                framing: Framing, state: _ConnState | None) -> None:
        extra = []
        if transport == "udp" and len(msg) > 65507:
            extra.append("RFC 5426 §3.2: datagram larger than UDP allows")
        m = classify(msg, transport=transport, peer=peer, received_at=at, framing=framing,
                     connection=state.index if state else None, extra_errors=extra)
        if state is not None:
            state.messages += 1
            if framing not in state.framing:
                state.framing.append(framing)
        with self._lock:
            if len(self._messages) >= self.max_messages:
                self._dropped["message_cap"] = self._dropped.get("message_cap", 0) + 1
                return
            if framing not in self._framings:
                self._framings.append(framing)
            self._largest = max(self._largest, len(msg))
            index = len(self._messages)
            record_evidence = self._msg_evidence < MAX_MESSAGE_EVIDENCE
            if record_evidence:
                self._msg_evidence += 1
            self._messages.append(m)
        if record_evidence:
            what = f"{m.event_id} {m.event_name or ''}".strip() if m.event_id else "no DICOM event"
            ev = self.evidence.add(
                "syslog.collector.message", f"{peer}/{transport}", True,
                f"audit message {index}: {what}, {'valid' if m.valid else f'{len(m.errors)} errors'}",
                data={"index": index, "event_id": m.event_id, "event_type_codes": m.event_type_codes,
                      "valid": m.valid, "schema_valid": m.schema_valid, "size": m.size, "framing": framing,
                      "errors": m.errors[:5]},
                at=at,
            )
            with self._lock:
                self._messages[index] = m.model_copy(update={"evidence": ev.id})


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
