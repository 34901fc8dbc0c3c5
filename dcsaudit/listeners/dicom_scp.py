"""``dcsaudit listen``: a DICOM SCP that records the product as association *initiator* (PS3.2 N.8.5.1,
Table N.8-8; the sender side of N.8-3).

For every incoming association it records the Calling/Called AE titles, the implementation identity
(PS3.7 D.3.3.2), the proposed presentation contexts, the User Identity type and positive-response-
requested flag (PS3.7 D.3.3.7 — the passcode is never stored, and for types 3–5 only the token length),
and on the TLS port what the ClientHello offered (versions, suites, groups, signature algorithms,
RFC 8446 §4.1.2) plus any client certificate. It answers C-ECHO and C-STORE (keeping data under
``store_dir`` or discarding it) and accepts any identity, replying with an empty User Identity AC when a
positive response is requested, so that initiators that insist on one (``storescu --pos-response``)
carry on.

The ClientHello is read with ``MSG_PEEK`` before the socket is wrapped, so the real handshake is not
disturbed; parsing is :func:`dcsaudit.probes.tls.wire.parse_client_hello`.

Hostile initiators (issue 12 F6-F10): the accept loop only accepts; each connection has its own thread
for the ClientHello peek and the TLS handshake (bounded by ``handshake_timeout``), so silent peers
never delay the next one. pynetdicom never reads the peer's socket: the connection thread reads the
first PDU, checks it (:mod:`dcsaudit.listeners.ul_guard`: PDU type, a length cap, the A-ASSOCIATE-RQ's
structure and pynetdicom's own decoder), answers a bad one with A-ABORT and records it, and relays a
good association to a pynetdicom acceptor over a socket pair, header by header: a PDU above the cap, a
second A-ASSOCIATE-RQ, an acceptor's PDU from the requestor are refused with A-ABORT; PDUs after the
association ended are dropped. One connection is one record at most (events that come after it was
frozen change nothing), and its outcome is what the relay saw pass (AC, RJ, RP, A-ABORT). At most
``max_connections`` are served at once; more get A-ASSOCIATE-RJ (transient, local limit exceeded). A
connection that never sends a PDU (a port check) is counted, not recorded as an initiator.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
import socket
import ssl
import struct
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.pdu_primitives import UserIdentityNegotiation
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from dcsaudit import certs
from dcsaudit.evidence import EvidenceLog
from dcsaudit.listeners import bad_server_certs, fdwait, ul_guard
from dcsaudit.models.core import Reason
from dcsaudit.models.dicom import Initiator, PresentationContextResult, TlsOffer
from dcsaudit.rules import served_certs
from dcsaudit.rules.implementations import recognise
from dcsaudit.rules.sop_classes import name_of

HANDSHAKE_TIMEOUT = 10.0  # ClientHello + TLS handshake, in the connection's own thread (never the accept loop)
REQUEST_TIMEOUT = 30.0  # from connect (or handshake) to a whole A-ASSOCIATE-RQ (PS3.8 ARTIM-like bound)
IDLE_TIMEOUT = 60.0  # no octet in either direction: the association is aborted
MAX_CONNECTIONS = 64  # connections served at once; more are answered A-ASSOCIATE-RJ (local limit exceeded)
MAX_RECORDS = 10_000  # initiators kept; beyond that they are counted in the closing evidence
STOP_GRACE = 0.5  # seconds open associations get to end by themselves when the listener stops
PEEK_LIMIT = 16384
_POLL = 0.2
_CHUNK = 65536
_SAFE = re.compile(r"[^0-9A-Za-z._-]")


class _Stopped(Exception):
    pass


@dataclass
class _Record:
    """Mutable while the association runs; frozen into an Initiator when it ends."""

    peer: str
    port: int
    tls: bool
    started: float = field(default_factory=time.perf_counter)
    calling_ae: str = ""
    called_ae: str = ""
    fields: dict[str, Any] = field(default_factory=dict)
    services: list[str] = field(default_factory=list)
    stored: int = 0
    outcome: str = "requested"
    tls_offer: TlsOffer | None = None
    errors: list[str] = field(default_factory=list)

    def error(self, text: str) -> None:
        if len(self.errors) < 20:
            self.errors.append(text)


@dataclass
class _Conn:
    """One TCP connection: at most one association, so at most one record (no phantoms, F10)."""

    rec: _Record
    key: tuple[str, int]
    assoc: Any = None
    finished: bool = False
    unrecorded: str | None = None  # counted under this name instead of becoming an Initiator
    trial: bad_server_certs.Trial | None = None  # --tls-cert-tests: the certificate served and what followed


def _describe_cert(der: bytes) -> dict[str, str]:
    from cryptography import x509

    out = {"sha256": hashlib.sha256(der).hexdigest()}
    try:
        cert = x509.load_der_x509_certificate(der)
        out.update(subject=cert.subject.rfc4514_string(), issuer=cert.issuer.rfc4514_string(),
                   not_after=cert.not_valid_after_utc.isoformat())
    except ValueError:
        out["error"] = "not a parsable X.509 certificate"
    return out


class DicomListener:
    """Plain and/or TLS DICOM SCP recording each incoming association as an :class:`Initiator`.

    Each connection is served by its own thread: TLS handshake, then the first PDU is read and checked
    (:mod:`dcsaudit.listeners.ul_guard`) before pynetdicom sees anything; a good A-ASSOCIATE-RQ is then
    relayed to a pynetdicom acceptor over a socket pair, PDU header by PDU header, so that an absurd PDU
    length or a PDU after the association ended is refused at the relay."""

    def __init__(self, bind: str, dicom_port: int | None, dicom_tls_port: int | None, evidence: EvidenceLog, *,
                 tls_cert: Path | None, tls_key: Path | None, tls_ca: Path | None, store_dir: Path | None,
                 ae_title: str = "DCSAUDIT", max_connections: int = MAX_CONNECTIONS,
                 handshake_timeout: float = HANDSHAKE_TIMEOUT, request_timeout: float = REQUEST_TIMEOUT,
                 idle_timeout: float = IDLE_TIMEOUT, cert_tests: bool = False,
                 signing_ca: bad_server_certs.SigningCa | None = None) -> None:
        self.bind = bind
        self.dicom_port = dicom_port
        self.dicom_tls_port = dicom_tls_port
        self.evidence = evidence
        self.tls_cert, self.tls_key, self.tls_ca = tls_cert, tls_key, tls_ca
        self.store_dir = store_dir
        self.ae_title = ae_title
        self.handshake_timeout = handshake_timeout
        self.request_timeout = request_timeout
        self.idle_timeout = idle_timeout
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._slots = threading.BoundedSemaphore(max_connections)
        self._listen_socks: list[socket.socket] = []
        self._accept_threads: list[threading.Thread] = []
        self._conn_threads: list[threading.Thread] = []
        self._conns: dict[tuple[str, int], _Conn] = {}
        self._done: list[Initiator] = []
        self._counts: dict[str, int] = {}
        self._tmp: Path | None = None
        self._ssl: ssl.SSLContext | None = None
        self.cert_tests, self.signing_ca = cert_tests, signing_ca
        self._rotation: bad_server_certs.Rotation | None = None

    # ------------------------------------------------------------------ lifecycle

    def _ae(self) -> AE:
        ae = AE(ae_title=self.ae_title)
        ae.require_called_aet = False
        ae.require_calling_aet = []
        ae.maximum_associations = 64
        ae.acse_timeout = 30
        ae.dimse_timeout = 30
        ae.network_timeout = 60
        ae.add_supported_context(Verification, ALL_TRANSFER_SYNTAXES)
        for cx in AllStoragePresentationContexts:
            if cx.abstract_syntax is not None:
                ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        return ae

    def _ssl_context(self) -> ssl.SSLContext:
        cert, key = self.tls_cert, self.tls_key
        if self.cert_tests:
            # One context per served certificate; without --tls-cert the control is issued there.
            self._tmp = Path(tempfile.mkdtemp(prefix="dcsaudit-listen-"))
            own = (cert, key) if cert is not None and key is not None else None
            self._rotation = bad_server_certs.Rotation(self._context_for, own, self._tmp, [self.bind, "127.0.0.1"],
                                                       self.signing_ca)
        if cert is None or key is None:
            self._tmp = self._tmp or Path(tempfile.mkdtemp(prefix="dcsaudit-listen-"))
            cert, key = certs.write_pem(*certs.issue("dcsaudit listener", hosts=[self.bind, "127.0.0.1"], days=2),
                                        self._tmp, "listener")
        return self._context_for(cert, key)

    def _context_for(self, cert: Path, key: Path) -> ssl.SSLContext:
        sc = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        sc.minimum_version = ssl.TLSVersion.TLSv1_2
        sc.load_cert_chain(str(cert), str(key))
        if self.tls_ca is not None:
            # Ask for (but do not require) a client certificate, so its presence is observable.
            sc.load_verify_locations(cafile=str(self.tls_ca))
            sc.verify_mode = ssl.CERT_OPTIONAL
        return sc

    def _acceptor(self, port: int) -> Any:
        """A pynetdicom server object used only to make acceptors (its own socket is closed at once)."""
        handlers: list[Any] = [
            (evt.EVT_CONN_OPEN, self._on_open), (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_C_ECHO, self._on_echo), (evt.EVT_C_STORE, self._on_store), (evt.EVT_USER_ID, self._on_user_id),
        ]
        family_host = "::1" if ":" in self.bind else "127.0.0.1"
        srv = self._ae().make_server((family_host, 0), evt_handlers=handlers)
        srv.server_close()
        srv.server_address = (self.bind, port)
        return srv

    def _listen(self, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.bind else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((self.bind, port))
            s.listen(128)
        except OSError:
            s.close()
            raise
        s.settimeout(_POLL)
        self._listen_socks.append(s)
        return s

    def start(self) -> None:
        """Bind and serve in background threads; returns once listening (chosen ports are then set)."""
        try:
            if self.dicom_port is not None:
                s = self._listen(self.dicom_port)
                self.dicom_port = int(s.getsockname()[1])
                self._spawn_accept(s, False)
            if self.dicom_tls_port is not None:
                self._ssl = self._ssl_context()
                s = self._listen(self.dicom_tls_port)
                self.dicom_tls_port = int(s.getsockname()[1])
                self._spawn_accept(s, True)
        except BaseException:
            self.stop()
            raise

    def _spawn_accept(self, s: socket.socket, tls: bool) -> None:
        port = int(s.getsockname()[1])
        t = threading.Thread(target=self._accept_loop, args=(s, tls, self._acceptor(port)),
                             name=f"listen-dicom-accept-{port}", daemon=True)
        t.start()
        self._accept_threads.append(t)

    def stop(self, grace: float = STOP_GRACE) -> list[Initiator]:
        """Stop accepting, give open associations ``grace`` seconds, abort the rest; return the records.
        Bounded: about ``grace`` + 1.5 s whatever the peers do."""
        for s in self._listen_socks:
            with contextlib.suppress(OSError):
                s.close()
        deadline = time.monotonic() + grace
        for t in list(self._conn_threads):
            t.join(max(0.0, deadline - time.monotonic()))
        self._stop.set()
        for t in [*self._accept_threads, *self._conn_threads]:
            t.join(max(0.05, deadline + 1.0 - time.monotonic()))
        with self._lock:
            for conn in list(self._conns.values()):  # a thread that did not end in time
                conn.rec.error("listener stopped during the association")
                self._finish(conn)
            done = list(self._done)
            counts = dict(self._counts)
        if counts:
            self.evidence.add("listen.dicom", self.bind, ok=True,
                              summary="connections not recorded one by one: "
                              + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())), data=counts)
        if self.cert_tests and not any(i.served_certificate is not None for i in done):
            # Said, so the check can say "undetermined" rather than nothing at all.
            self.evidence.add(served_certs.NO_TRIALS_PROBE, f"{self.bind}:{self.dicom_tls_port}", ok=False,
                              summary="--tls-cert-tests: the product made no TLS connection with a ClientHello "
                              "to the DICOM TLS port, so no served certificate was tried",
                              reason=Reason.SKIPPED)
        self._listen_socks.clear()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
        return done

    # ------------------------------------------------------------------ accept and serve

    def _count(self, what: str) -> None:
        with self._lock:
            self._counts[what] = self._counts.get(what, 0) + 1

    def _accept_loop(self, s: socket.socket, tls: bool, srv: Any) -> None:
        port = int(srv.server_address[1])
        while not self._stop.is_set():
            try:
                raw, addr = s.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set() or s.fileno() < 0:
                    return
                time.sleep(_POLL)  # EMFILE and the like: back off instead of spinning
                continue
            if not self._slots.acquire(blocking=False):
                self._count("refused_connection_limit")
                with contextlib.suppress(OSError):
                    if not tls:  # transient reject, local limit exceeded (PS3.8 §9.3.4)
                        raw.setblocking(False)
                        raw.send(ul_guard.associate_rj(2, 3, 2))
                    raw.close()
                continue
            t = threading.Thread(target=self._serve, args=(raw, addr, tls, port, srv),
                                 name=f"listen-dicom-{addr[1]}", daemon=True)
            self._conn_threads.append(t)
            t.start()
            if len(self._conn_threads) > 256:  # forget finished threads so a long listen stays small
                self._conn_threads = [x for x in self._conn_threads if x.is_alive()]

    def _serve(self, raw: socket.socket, addr: Any, tls: bool, port: int, srv: Any) -> None:
        key = (str(addr[0]), int(addr[1]))
        conn = _Conn(rec=_Record(peer=key[0], port=port, tls=tls), key=key)
        with self._lock:
            self._conns[key] = conn
        stream: socket.socket | None = None
        try:
            raw.setblocking(False)
            stream = self._tls_accept(raw, conn) if tls else raw
            if stream is not None:
                self._associate(stream, conn, srv)
        except _Stopped:
            if conn.rec.outcome != "tls_failure":
                conn.rec.error("listener stopped during the association")
            if conn.rec.outcome in ("requested", "accepted"):
                conn.rec.outcome = "aborted"
        except Exception as exc:  # never let a connection thread die silently
            conn.rec.error(f"internal error: {type(exc).__name__}: {str(exc)[:160]}")
        finally:
            for sock in (stream, raw):
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.close()
            if conn.assoc is not None:
                conn.assoc.join(1.0)  # let pynetdicom's last events land on this record
            with self._lock:
                self._finish(conn)
            self._slots.release()

    # ------------------------------------------------------------------ bounded socket I/O

    def _wait(self, sock: socket.socket, write: bool, deadline: float) -> None:
        while True:
            if self._stop.is_set():
                raise _Stopped()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError()
            if fdwait.ready([sock.fileno()], write, min(_POLL, left)):
                return

    def _recv(self, sock: socket.socket, n: int, deadline: float) -> bytes:
        """Up to ``n`` octets (b'' when the peer closed), waiting at most until ``deadline``."""
        while True:
            if not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
                self._wait(sock, False, deadline)
            try:
                return sock.recv(n)
            except (ssl.SSLWantReadError, BlockingIOError):
                continue
            except ssl.SSLWantWriteError:
                self._wait(sock, True, deadline)

    def _recv_exact(self, sock: socket.socket, n: int, deadline: float) -> bytes | None:
        buf = bytearray()
        while len(buf) < n:
            chunk = self._recv(sock, min(n - len(buf), _CHUNK), deadline)
            if not chunk:
                return None
            buf += chunk
        return bytes(buf)

    def _send(self, sock: socket.socket, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        while view:
            try:
                sent = sock.send(view[:_CHUNK])
                view = view[sent:]
            except (ssl.SSLWantWriteError, BlockingIOError):
                self._wait(sock, True, deadline)
            except ssl.SSLWantReadError:
                self._wait(sock, False, deadline)

    def _answer(self, sock: socket.socket, pdu: bytes) -> None:
        """Best effort: a peer that does not read is not waited for long."""
        with contextlib.suppress(OSError, TimeoutError, _Stopped):
            self._send(sock, pdu, time.monotonic() + 2.0)

    # ------------------------------------------------------------------ TLS accept

    def _peek_client_hello(self, sock: socket.socket, deadline: float) -> bytes:
        """Peek (without consuming) until one whole TLS record is buffered, or the deadline passes."""
        data = b""
        grew = time.monotonic()
        while True:
            try:
                self._wait(sock, False, deadline)
            except TimeoutError:
                return data
            try:
                peeked = sock.recv(PEEK_LIMIT, socket.MSG_PEEK)
            except BlockingIOError:
                continue
            if not peeked:
                return b""
            if len(peeked) > len(data):
                data, grew = peeked, time.monotonic()
            elif time.monotonic() - grew > 0.5:
                return data  # stalled (or closed) mid-record: the handshake will tell which
            if data[0] & 0x80:  # SSLv2-format hello: 2-byte header
                need = 2 + ((data[0] & 0x7F) << 8 | data[1]) if len(data) >= 2 else 3
            else:
                need = 5 + struct.unpack(">H", data[3:5])[0] if len(data) >= 5 else 6
            if len(data) >= min(need, PEEK_LIMIT):
                return data
            time.sleep(0.005)  # part of the record is in: wait for the rest without spinning

    def _tls_accept(self, raw: socket.socket, conn: _Conn) -> ssl.SSLSocket | None:
        """ClientHello peek and handshake, bounded by ``handshake_timeout``; a failure is recorded."""
        deadline = time.monotonic() + self.handshake_timeout
        offer: dict[str, Any] = {}
        try:
            hello = self._peek_client_hello(raw, deadline)
            if hello:
                from dcsaudit.probes.tls.wire import parse_client_hello

                try:
                    ch = parse_client_hello(hello)
                    offer.update(versions=list(ch.versions), cipher_suites=list(ch.cipher_suites),
                                 groups=list(ch.groups), signature_algorithms=list(ch.signature_algorithms),
                                 server_name=ch.sni)
                except ValueError as exc:
                    offer["handshake_error"] = f"first bytes are not a ClientHello: {exc}"
            assert self._ssl is not None
            context = self._ssl
            # Only a real ClientHello uses up a certificate (not a port check, not junk). Each certificate has
            # its own context, hence its own ticket keys: no session resumed from the control skips validation.
            if self._rotation is not None and offer.get("cipher_suites"):
                conn.trial = bad_server_certs.Trial(self._rotation.next_for(conn.rec.peer))
                context = conn.trial.served.context
            tls = context.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
            while True:
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    self._wait(tls, False, deadline)
                except ssl.SSLWantWriteError:
                    self._wait(tls, True, deadline)
            if conn.trial is not None:
                conn.trial.handshake = "completed"
            offer.update(negotiated_version=tls.version(), negotiated_cipher=(tls.cipher() or ("",))[0])
            der = tls.getpeercert(binary_form=True)
            if der:
                offer["client_certificate"] = _describe_cert(der)
            conn.rec.tls_offer = TlsOffer(**offer)
            return tls
        except _Stopped:
            conn.rec.outcome = "tls_failure"
            conn.rec.tls_offer = TlsOffer(**{**offer, "handshake_error": "listener stopped during the handshake"})
            raise
        except (OSError, ValueError) as exc:
            # A failed handshake is still an observation of the initiator: record it, then drop it.
            what = "TLS handshake timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
            offer["handshake_error"] = offer.get("handshake_error") or what[:300]
            if conn.trial is not None:
                conn.trial.handshake_failed(exc)
            conn.rec.outcome = "tls_failure"
            conn.rec.tls_offer = TlsOffer(**offer)
            return None

    # ------------------------------------------------------------------ the association

    def _associate(self, stream: socket.socket, conn: _Conn, srv: Any) -> None:
        """Read and check the A-ASSOCIATE-RQ, then relay the association to a pynetdicom acceptor."""
        rec = conn.rec
        deadline = time.monotonic() + self.request_timeout
        try:
            head = self._recv_exact(stream, ul_guard.HEADER, deadline)
        except TimeoutError:
            head = None
            rec.error(f"no A-ASSOCIATE-RQ within {self.request_timeout:.0f} s")
        if conn.trial is not None:  # did the product go on after the handshake with the served certificate?
            conn.trial.request = "received" if head is not None else "timed_out" if rec.errors else "closed"
        if head is None:
            rec.outcome = "no_request"
            if not rec.tls:  # a port check or an idle connect, not an association: counted, not recorded
                conn.unrecorded = "silent_timeout" if rec.errors else "closed_without_request"
            elif not rec.errors:
                rec.error("connection closed before an A-ASSOCIATE-RQ")
            return
        pdu_type, _r, length = struct.unpack(">BBI", head)
        refusal = ul_guard.check_header(ul_guard.PduHeader(0, pdu_type, length), first=True)
        if refusal is not None:
            rec.error(refusal.reason)
            rec.outcome = "aborted"
            self._answer(stream, refusal.answer)
            return
        try:
            body = self._recv_exact(stream, length, deadline)
        except TimeoutError:
            body = None
        if body is None:
            rec.outcome = "no_request"
            rec.error(f"A-ASSOCIATE-RQ of {length} octets not received whole")
            return
        rec.calling_ae, rec.called_ae = ul_guard.ae_titles(body)
        problem = ul_guard.check_associate_rq(body)
        if problem is not None:
            # PS3.8 §9.2 (Sta2, event 19: invalid PDU): A-ABORT, reason invalid-PDU-parameter-value.
            rec.error(f"malformed A-ASSOCIATE-RQ: {problem}")
            rec.outcome = "aborted"
            self._answer(stream, ul_guard.abort(6))
            return
        inner, outer = socket.socketpair()
        try:
            inner.setblocking(False)
            srv.finish_request(outer, conn.key)  # a pynetdicom acceptor thread now owns `outer`
            self._relay(stream, inner, conn, head + body)
        finally:
            with contextlib.suppress(OSError):
                inner.close()

    def _relay(self, peer: socket.socket, inner: socket.socket, conn: _Conn, first: bytes) -> None:
        """Copy octets both ways, looking at each PDU header: refuse what pynetdicom must not see."""
        rec = conn.rec
        from_peer, to_peer = ul_guard.PduStream(), ul_guard.PduStream()
        from_peer.feed(first)
        self._send(inner, first, time.monotonic() + self.idle_timeout)
        ended = False  # an A-ASSOCIATE-RJ, A-RELEASE-RP or A-ABORT has passed
        stray = 0
        last = time.monotonic()
        while True:
            if self._stop.is_set():
                if not ended:
                    rec.error("listener stopped during the association")
                    rec.outcome = "aborted"
                    self._answer(peer, ul_guard.abort(0))
                return
            pending = isinstance(peer, ssl.SSLSocket) and peer.pending() > 0
            fds = [peer.fileno()] if pending else fdwait.ready([peer.fileno(), inner.fileno()], False, _POLL)
            ready = [s for s in (peer, inner) if s.fileno() in fds]
            now = time.monotonic()
            if not ready:
                if now - last > self.idle_timeout:
                    rec.error(f"idle for {self.idle_timeout:.0f} s: association aborted")
                    if not ended:
                        rec.outcome = "aborted"
                    self._answer(peer, ul_guard.abort(0))
                    return
                continue
            last = now
            if inner in ready:
                data = self._recv(inner, _CHUNK, now + 1.0)
                if not data:  # pynetdicom closed its side (after RJ, RP or A-ABORT)
                    return
                for h in to_peer.feed(data):
                    if h.pdu_type == 2 and rec.outcome == "requested":
                        rec.outcome = "accepted"
                    elif h.pdu_type in (3, 6, 7):
                        rec.outcome = {3: "rejected", 6: "released", 7: "aborted"}[h.pdu_type] \
                            if not ended else rec.outcome
                        ended = True
                self._send(peer, data, now + self.idle_timeout)
            if peer in ready:
                try:
                    data = self._recv(peer, _CHUNK, now + self.idle_timeout)
                except TimeoutError:
                    data = b""
                if not data:
                    if not ended and rec.outcome in ("requested", "accepted"):
                        rec.outcome = "aborted"
                        rec.error("connection closed without A-RELEASE or A-ABORT (PS3.8 §7.1, §7.3)")
                    return
                headers = from_peer.feed(data)
                if ended:  # F10: nothing after the end reaches pynetdicom or makes a record
                    stray += len(headers)
                    if stray and len(rec.errors) < 20 and not any("after the association" in e for e in rec.errors):
                        rec.error("PDU received after the association ended: ignored")
                    continue
                cut = len(data)
                refusal = None
                for h in headers:
                    refusal = ul_guard.check_header(h, first=False)
                    if refusal is not None:
                        cut = max(0, h.offset)
                        break
                    if h.pdu_type == 7:
                        rec.outcome, ended = "aborted", True
                    elif h.pdu_type in (2, 3, 6):  # an acceptor's PDU from the requestor
                        refusal = ul_guard.Refusal(f"{ul_guard.PDU_TYPES[h.pdu_type]} sent by the requestor",
                                                   ul_guard.abort(2))
                        cut = max(0, h.offset)
                        break
                if cut:
                    self._send(inner, data[:cut], now + self.idle_timeout)
                if refusal is not None:
                    rec.error(refusal.reason)
                    rec.outcome = "aborted"
                    self._answer(peer, refusal.answer)
                    return

    # ------------------------------------------------------------------ association events

    def _conn(self, event: Any) -> _Conn | None:
        """The connection an event belongs to; None once it is finished (late events make no record)."""
        rq = event.assoc.requestor
        with self._lock:
            conn = self._conns.get((str(rq.address), int(rq.port or 0)))
        if conn is not None and conn.assoc is None:
            conn.assoc = event.assoc
        return conn

    def _on_open(self, event: Any) -> None:
        self._conn(event)

    def _on_requested(self, event: Any) -> None:
        conn = self._conn(event)
        if conn is None:
            return
        rec, assoc = conn.rec, event.assoc
        rq = assoc.requestor
        rec.calling_ae = str(rq.primitive.calling_ae_title).strip()
        rec.called_ae = str(rq.primitive.called_ae_title).strip()
        uid = rq.user_identity
        contexts = [PresentationContextResult(context_id=int(cx.context_id or 0), abstract_syntax=str(cx.abstract_syntax),
                                              name=name_of(str(cx.abstract_syntax)),
                                              transfer_syntaxes=[str(ts) for ts in cx.transfer_syntax])
                    for cx in rq.requested_contexts]
        rec.fields.update(
            implementation_class_uid=str(rq.implementation_class_uid) if rq.implementation_class_uid else None,
            implementation_version_name=rq.implementation_version_name or None,
            max_pdu_length=rq.maximum_length,
            proposed_contexts=contexts,
        )
        rec.fields["implementation"] = recognise(rec.fields["implementation_class_uid"])
        if uid is not None:
            rec.fields.update(user_identity_type=uid.user_identity_type,
                              positive_response_requested=bool(uid.positive_response_requested),
                              user_identity_primary_length=len(uid.primary_field or b""))
            if uid.user_identity_type in (1, 2):
                rec.fields["username"] = (uid.primary_field or b"").decode("utf-8", errors="replace")[:64]
            # pynetdicom never answers types 1/2 with a User Identity AC; an initiator that requested a
            # positive response (storescu --pos-response) would then abort. Answer every type.
            assoc.acse._check_user_identity = lambda: self._accept_identity(uid)

    @staticmethod
    def _accept_identity(req: UserIdentityNegotiation) -> tuple[bool, UserIdentityNegotiation | None]:
        if not req.positive_response_requested:
            return True, None
        rsp = UserIdentityNegotiation()
        rsp.server_response = b""
        return True, rsp

    def _on_user_id(self, event: Any) -> tuple[bool, bytes | None]:
        return True, None  # only reached if the override above is bypassed; never looks at the secret

    def _on_echo(self, event: Any) -> int:
        conn = self._conn(event)
        if conn is not None:
            conn.rec.services.append("C-ECHO")
        return 0x0000

    def _on_store(self, event: Any) -> int:
        conn = self._conn(event)
        if conn is None:
            return 0xA700
        rec = conn.rec
        if "C-STORE" not in rec.services:
            rec.services.append("C-STORE")
        rec.stored += 1
        if self.store_dir is not None:
            try:
                ds = event.dataset
                ds.file_meta = event.file_meta
                name = _SAFE.sub("_", str(ds.SOPInstanceUID))[:128] or f"instance-{rec.stored}"
                self.store_dir.mkdir(parents=True, exist_ok=True)
                ds.save_as(self.store_dir / f"{name}.dcm", enforce_file_format=True)
            except Exception:
                return 0xA700  # Out of resources (PS3.4 B.2.3): we could not keep it
        return 0x0000

    def _finish(self, conn: _Conn) -> None:
        """Freeze one connection's record into an Initiator and its Evidence, once (caller holds the lock)."""
        if conn.finished:
            return
        conn.finished = True
        self._conns.pop(conn.key, None)
        rec = conn.rec
        if conn.unrecorded is None and len(self._done) >= MAX_RECORDS:
            conn.unrecorded = "not_recorded_record_limit"
        if conn.unrecorded is not None:
            self._counts[conn.unrecorded] = self._counts.get(conn.unrecorded, 0) + 1
            return
        served = conn.trial.freeze() if conn.trial is not None else None
        init = Initiator(calling_ae=rec.calling_ae, called_ae=rec.called_ae, peer=rec.peer, port=rec.port,
                         tls=rec.tls, tls_offer=rec.tls_offer, services=rec.services, stored_instances=rec.stored,
                         outcome=rec.outcome, errors=rec.errors, served_certificate=served, **rec.fields)
        # A refused defective certificate is the observation the test wanted, not a failed capture.
        ok = (rec.outcome != "tls_failure" and not rec.errors) or (
            served is not None and served.kind != "control" and served.outcome == "refused")
        summary = (f"initiator {rec.peer}: {rec.calling_ae!r} -> {rec.called_ae!r} on port {rec.port}"
                   f"{' (TLS)' if rec.tls else ''}: {rec.outcome}")
        if served is not None:
            summary += f"; served certificate {served.kind.replace('_', ' ')}: {served.outcome} ({served.detail})"
        if init.user_identity_type:
            summary += f", user identity type {init.user_identity_type}"
        if rec.errors:
            summary += f"; {rec.errors[0]}"
        reason = None if ok else Reason.TLS_FAILURE if rec.outcome == "tls_failure" else Reason.PROTOCOL_ERROR
        ev = self.evidence.add("listen.dicom", f"{rec.peer}->{self.bind}:{rec.port}", ok=ok, summary=summary[:500],
                               reason=reason, data=init.model_dump(mode="json", exclude={"evidence"}),
                               duration_ms=(time.perf_counter() - rec.started) * 1000)
        self._done.append(init.model_copy(update={"evidence": [ev.id]}))
