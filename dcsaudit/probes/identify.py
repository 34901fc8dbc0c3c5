"""Service identification by speaking each protocol (no ``nmap -sV``).

For every open TCP port up to three probes run, each on its own connection (the TLS one only when the
plaintext one got no DICOM answer within HTTP_STAGGER, or TLS is expected on the port):

* plaintext: an A-ASSOCIATE-RQ for Verification. Any A-ASSOCIATE-AC/RJ or A-ABORT proves DICOM
  (a reject still proves DICOM, PS3.8 §9.3); an ``HTTP/`` answer proves HTTP; a TLS alert proves the
  port wants TLS. Still silent after HTTP_STAGGER: an HTTP ``GET /`` starts beside it.
* TLS: a handshake with a permissive client (every version and suite, no verification: identification
  is not the TLS audit). On success the same A-ASSOCIATE-RQ goes inside TLS (DICOM over TLS); still
  silent after HTTP_STAGGER, an HTTPS ``GET /`` starts beside it, and an ``HTTP/`` answer means HTTPS.

The first conclusive answer ends the probes still waiting, so a silent port costs one read timeout.
A limiter slot is held only while a probe works (connect, handshake, send), not while it waits.

A port that answers DICOM both in plaintext and inside TLS is reported as ``dicom-tls`` with
``plaintext_dicom = true``: the BCP 195 profiles ask for strict TLS.
"""

from __future__ import annotations

import asyncio
import ssl
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from dcsaudit.context import AuditContext
from dcsaudit.models.core import Reason
from dcsaudit.models.dicom import AbortInfo, RejectTriple
from dcsaudit.models.endpoint import (
    AnswerKind,
    DicomAnswer,
    Endpoint,
    HttpAnswer,
    Identification,
    IdentifyAnswer,
    PduName,
    Service,
    TlsHandshakeAnswer,
)
from dcsaudit.probes import dicom_ul as ul

A = TypeVar("A", bound=IdentifyAnswer)
# Server answers we recognise by their first bytes.
TLS_RECORD_TYPES = frozenset({0x15, 0x16})  # alert, handshake


@dataclass
class Answer:
    """What one probe connection saw; becomes a typed answer on ``Endpoint.identification``."""

    ok: bool = False  # the peer spoke the protocol we tried
    kind: AnswerKind = "error"
    reason: Reason | None = None
    summary: str = ""
    first_bytes: bytes | None = None  # the start of an answer that is not the protocol tried
    ms: float = 0.0
    # DICOM (A-ASSOCIATE-RQ, plaintext or inside TLS)
    called_ae: str = ""
    calling_ae: str = ""
    pdu: PduName | None = None
    reject: RejectTriple | None = None
    abort: AbortInfo | None = None
    implementation_class_uid: str | None = None
    implementation_version_name: str | None = None
    max_pdu_length: int | None = None
    context_accepted: bool | None = None
    # TLS handshake
    version: str | None = None
    cipher: str | None = None
    # HTTP
    status_line: str | None = None

    def _common(self) -> dict[str, Any]:
        return {"kind": self.kind, "ok": self.ok, "reason": self.reason,
                "first_bytes": self.first_bytes[:16].hex() if self.first_bytes is not None else None}

    def dicom(self) -> DicomAnswer:
        return DicomAnswer(
            **self._common(), called_ae=self.called_ae, calling_ae=self.calling_ae, pdu=self.pdu,
            reject=self.reject, abort=self.abort, implementation_class_uid=self.implementation_class_uid,
            implementation_version_name=self.implementation_version_name, max_pdu_length=self.max_pdu_length,
            context_accepted=self.context_accepted)

    def tls(self, bare_connect: bool) -> TlsHandshakeAnswer:
        return TlsHandshakeAnswer(**self._common(), version=self.version, cipher=self.cipher,
                                  bare_connect=bare_connect)

    def http(self, over_tls: bool) -> HttpAnswer:
        return HttpAnswer(**self._common(), status_line=self.status_line, over_tls=over_tls)


def _identify_context(ctx: AuditContext, with_credentials: bool = True) -> ssl.SSLContext:
    """Permissive client: accept any version/suite/certificate; present the client cert when configured."""
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    c.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    try:
        c.set_ciphers("ALL:@SECLEVEL=0")
    except ssl.SSLError:
        pass
    creds = ctx.config.credentials.tls_client
    if creds is not None and with_credentials:
        password = creds.key_password.resolve().get_secret_value() if creds.key_password else None
        c.load_cert_chain(str(creds.cert_file), str(creds.key_file), password=password)
    return c


def _called_ae(ctx: AuditContext, host: str, port: int) -> str:
    for ae in ctx.config.application_entities:
        if ctx.config.address_of(ae.host) == host and ae.port == port:
            return ae.ae_title
    return "ANY-SCP"


async def _read_exact(reader: asyncio.StreamReader, n: int, timeout: float) -> bytes:
    return await asyncio.wait_for(reader.readexactly(n), timeout)


def _parse_header(head: bytes) -> tuple[int, int] | None:
    """(type, length) of a plausible DICOM PDU header, or None (PS3.8 §9.3: types 1-7, reserved 0)."""
    pdu_type, reserved, length = struct.unpack(">BBI", head[:6])
    if pdu_type not in ul.PDU_NAMES or reserved != 0 or length > ul.MAX_PDU_ACCEPTED:
        return None
    if pdu_type in (3, 5, 6, 7) and length != 4:
        return None
    return pdu_type, length


async def _speak_dicom(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, called: str, calling: str,
                       timeout: float, sent: Callable[[], Awaitable[None]] | None = None) -> Answer:
    """Send A-ASSOCIATE-RQ for Verification, classify the first answer; release politely when accepted.
    ``sent`` runs once the request is on its way (the caller gives up its work slot there)."""
    writer.write(ul.encode_associate_rq(called, calling, [ul.ProposedContext(1, ul.VERIFICATION, (ul.IMPLICIT_LE,))]))
    await writer.drain()
    if sent is not None:
        await sent()
    ul.ack_at_once(reader)
    try:
        head = await _read_exact(reader, 6, timeout)
    except asyncio.IncompleteReadError as exc:
        if exc.partial.startswith(b"HTTP/"):
            return Answer(True, "http", summary="HTTP answer to an A-ASSOCIATE-RQ", called_ae=called,
                          calling_ae=calling)
        return Answer(False, "closed", Reason.RESET, "peer closed the connection without a DICOM answer",
                      exc.partial, called_ae=called, calling_ae=calling)
    if head.startswith(b"HTTP/"):
        return Answer(True, "http", summary="HTTP answer to an A-ASSOCIATE-RQ", called_ae=called, calling_ae=calling)
    if head[0] in TLS_RECORD_TYPES and head[1] == 0x03:
        return Answer(False, "tls-alert", Reason.PROTOCOL_ERROR, "peer answered with a TLS record: it expects TLS",
                      head, called_ae=called, calling_ae=calling)
    header = _parse_header(head)
    if header is None:
        return Answer(False, "garbage", Reason.PROTOCOL_ERROR, "answer is not a DICOM PDU", head, called_ae=called,
                      calling_ae=calling)
    pdu_type, length = header
    body = await _read_exact(reader, length, timeout)
    name = _PDU_NAME[pdu_type]
    ans = Answer(True, "dicom", called_ae=called, calling_ae=calling, pdu=name)
    if pdu_type == 2:
        try:
            info = ul.decode_associate_ac(body)
        except ul.PduError as exc:
            ans.ok, ans.kind, ans.reason, ans.summary = False, "garbage", Reason.PROTOCOL_ERROR, \
                f"malformed A-ASSOCIATE-AC: {exc}"
            return ans
        ans.implementation_class_uid = info.implementation_class_uid
        ans.implementation_version_name = info.implementation_version_name
        ans.max_pdu_length = info.max_pdu_length
        ans.context_accepted = any(res == 0 for res, _ in info.contexts.values())
        writer.write(ul.RELEASE_RQ)
        await writer.drain()
        try:  # A-RELEASE-RP is courtesy; identification does not depend on it
            await _read_exact(reader, 10, min(timeout, 1.0))
        except (TimeoutError, asyncio.IncompleteReadError, OSError):
            pass
        ans.summary = "A-ASSOCIATE-AC: DICOM association accepted"
    elif pdu_type == 3:
        try:
            result, source, reason = ul.decode_associate_rj(body)
        except ul.PduError as exc:
            ans.ok, ans.kind, ans.reason, ans.summary = False, "garbage", Reason.PROTOCOL_ERROR, str(exc)
            return ans
        rs, ss, ns = ul.describe_reject(result, source, reason)
        ans.reject = RejectTriple(result=result, source=source, reason=reason, result_str=rs, source_str=ss,
                                  reason_str=ns)
        ans.summary = f"A-ASSOCIATE-RJ (result {result}, source {source}, reason {reason}): DICOM, rejected"
    elif pdu_type == 7:
        try:
            source, reason = ul.decode_abort(body)
        except ul.PduError as exc:
            ans.ok, ans.kind, ans.reason, ans.summary = False, "garbage", Reason.PROTOCOL_ERROR, str(exc)
            return ans
        ans.abort = AbortInfo(source=source, reason=reason, reason_str=ul.ABORT_REASON.get(reason, "reserved"))
        ans.summary = f"A-ABORT (source {source}, reason {reason}): DICOM"
    else:
        ans.ok, ans.kind, ans.reason, ans.summary = False, "garbage", Reason.PROTOCOL_ERROR, \
            f"unexpected {name} as the first answer"
    return ans


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), 0.5)
    except (TimeoutError, OSError, ssl.SSLError):
        pass


_PDU_NAME: dict[int, PduName] = {1: "A-ASSOCIATE-RQ", 2: "A-ASSOCIATE-AC", 3: "A-ASSOCIATE-RJ", 4: "P-DATA-TF",
                                  5: "A-RELEASE-RQ", 6: "A-RELEASE-RP", 7: "A-ABORT"}
assert {k: str(v) for k, v in _PDU_NAME.items()} == ul.PDU_NAMES

# The registered dicom-tls port (PS3.15 B.9–B.12: 2762 is recommended for DICOM over TLS).
DICOM_TLS_PORT = 2762
# How long a plaintext PDU may go unanswered before an HTTP probe starts beside it.
HTTP_STAGGER = 0.3
# How long to listen for a post-handshake alert (TLS 1.3 client-certificate refusal) on loopback-to-LAN;
# sooner when the handshake itself was fast (STALL_FACTOR times its duration, at least STALL_FLOOR).
EARLY_ALERT_WAIT = 0.25
# How long the HTTPS probe's handshake may make no progress while the DICOM probe's TLS connection is
# open before we conclude the server serves one connection at a time (openssl s_server does).
HANDSHAKE_STALL = 0.3
# ... or, sooner, after this many times the first handshake's own duration (never under STALL_FLOOR): on a
# fast network a second handshake that takes four times the first is the server making it wait.
STALL_FACTOR, STALL_FLOOR = 4.0, 0.05
# A connect or TLS handshake that takes longer than this is the peer making us wait: the slot goes back.
WORK_HOLD = 0.3
# Handshake failures that still prove a TLS server (it answered with a TLS alert).
_TLS_ALERT_MARKERS = ("ALERT", "NO_PROTOCOLS_AVAILABLE", "UNSUPPORTED_PROTOCOL", "NO_SHARED_CIPHER",
                      "NO_CIPHERS_AVAILABLE", "VERSION_TOO_LOW")
_CLIENT_CERT_MARKERS = ("CERTIFICATE_REQUIRED", "PEER_DID_NOT_RETURN_A_CERTIFICATE", "BAD_CERTIFICATE",
                        "UNKNOWN_CA", "CERTIFICATE_UNKNOWN")


def _failure(exc: BaseException, what: str) -> Answer:
    if isinstance(exc, TimeoutError):
        return Answer(False, "silent", Reason.TIMEOUT, f"{what}: no answer before the timeout")
    if isinstance(exc, ConnectionRefusedError):
        return Answer(False, "refused", Reason.REFUSED, f"{what}: connection refused")
    if isinstance(exc, ConnectionResetError | BrokenPipeError | asyncio.IncompleteReadError):
        return Answer(False, "closed", Reason.RESET, f"{what}: connection reset or closed by the peer")
    if isinstance(exc, ssl.SSLError):
        if any(m in str(exc).upper() for m in _CLIENT_CERT_MARKERS):
            # TLS 1.3: the server refuses a missing client certificate after the handshake completed.
            return Answer(False, "client-cert", Reason.CLIENT_CERTIFICATE_REQUIRED,
                          f"{what}: server requires a client certificate ({exc.reason})")
        return Answer(False, "tls-error", Reason.TLS_FAILURE, f"{what}: {exc.reason or exc}")
    return Answer(False, "error", Reason.PROTOCOL_ERROR, f"{what}: {type(exc).__name__}: {exc}")


def _open_cap() -> int:
    """Connections identification may hold open at once: a quarter of the file-descriptor limit."""
    try:
        import resource

        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, ValueError, OSError):
        return 256
    if soft == resource.RLIM_INFINITY:
        return 4096
    return max(16, min(4096, soft // 4))


@dataclass
class _Probing:
    """What the probes of one identification run share: the context, the permissive TLS client, and a
    bound on the connections open at once (a limiter slot is held only for work, see ``_WorkSlot``)."""

    ctx: AuditContext
    sslctx: ssl.SSLContext
    open_connections: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(_open_cap()))


class _WorkSlot:
    """A limiter slot held while a probe works (connect, TLS handshake, send) and given back while it only
    waits for the peer. A port that makes us wait out a timeout must not starve the other ports of its
    host (issue 16: at 200 endpoints, ports came out ``unknown`` after queueing for a slot). What stays
    bounded: connections being opened per host (``scan.concurrency.per_host``), connections open at
    once (``_Probing.open_connections``) and, per port, identification's at most three connections."""

    def __init__(self, ctx: AuditContext, host: str) -> None:
        self._cm = ctx.limiter.slot(host)
        self._held = False

    async def __aenter__(self) -> _WorkSlot:
        await self._cm.__aenter__()
        self._held = True
        return self

    async def release(self) -> None:
        if self._held:
            self._held = False
            await self._cm.__aexit__(None, None, None)

    async def __aexit__(self, *exc: object) -> None:
        await self.release()

    async def open(self, run: _Probing, host: str, port: int, tls: bool) -> tuple[asyncio.StreamReader,
                                                                                    asyncio.StreamWriter]:
        """Connect (and handshake), bounded by the connect (+ handshake) timeout. A connection or handshake
        still pending after WORK_HOLD is the peer making us wait, and the slot goes back meanwhile."""
        t = run.ctx.config.scan.timeouts
        pending = asyncio.ensure_future(asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=run.sslctx if tls else None, server_hostname=None,
                                    ssl_handshake_timeout=t.tls_handshake if tls else None),
            t.connect + (t.tls_handshake if tls else 0)))
        try:
            done, _ = await asyncio.wait({pending}, timeout=WORK_HOLD)
            if not done:
                await self.release()
            return await pending
        finally:
            await _cancel(pending)


# At most this much of an HTTP answer is read: the status line is all identification needs.
HTTP_READ_LIMIT = 256


def _host_header(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def _speak_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, port: int,
                      timeout: float, sent: Callable[[], Awaitable[None]]) -> Answer:
    """``GET /`` with ``Host`` and ``Connection: close`` (RFC 9112 §3.2, §9.6). Some servers answer only a
    complete GET, not HEAD or a PDU (openssl s_server -WWW, embedded web servers). The read is bounded:
    at most HTTP_READ_LIMIT bytes, until the status line ends, within ``timeout``."""
    writer.write(f"GET / HTTP/1.1\r\nHost: {_host_header(host, port)}\r\nUser-Agent: dcsaudit\r\nAccept: */*\r\n"
                 "Connection: close\r\n\r\n".encode())
    await writer.drain()
    await sent()
    first = b""
    try:
        async with asyncio.timeout(timeout):
            while len(first) < HTTP_READ_LIMIT and b"\n" not in first:
                if len(first) >= 5 and not first.startswith(b"HTTP/"):
                    break  # not an HTTP answer: no need to read on
                chunk = await reader.read(HTTP_READ_LIMIT - len(first))
                if not chunk:
                    break
                first += chunk
    except TimeoutError:
        if not first:
            raise
    if first.startswith(b"HTTP/"):
        status = first.split(b"\n", 1)[0].rstrip(b"\r")[:120].decode("ascii", errors="replace")
        return Answer(True, "http", summary=f"HTTP answer to GET / ({status})", status_line=status)
    return Answer(False, "garbage" if first else "closed", Reason.PROTOCOL_ERROR,
                  "no HTTP status line in answer to GET /", first)


Speak = Callable[[asyncio.StreamReader, asyncio.StreamWriter, Callable[[], Awaitable[None]]], Awaitable[Answer]]


async def _one_exchange(run: _Probing, host: str, port: int, tls: bool, what: str, speak: Speak,
                        connected: asyncio.Event | None = None, connecting: asyncio.Event | None = None) -> Answer:
    """One bounded connection (TLS when ``tls``); its work slot is given back once the request is sent.
    ``connecting`` is set once it holds its slots and connects, ``connected`` once the connection (and
    handshake) stands. Any failure becomes an Answer."""
    start = time.perf_counter()
    try:
        async with run.open_connections, _WorkSlot(run.ctx, host) as slot:
            if connecting is not None:
                connecting.set()
            reader, writer = await slot.open(run, host, port, tls)
            if connected is not None:
                connected.set()
            try:
                ans = await speak(reader, writer, slot.release)
            finally:
                await _close(writer)
    except Exception as exc:
        ans = _failure(exc, what)
    ans.ms = (time.perf_counter() - start) * 1000
    return ans


async def probe_http(run: _Probing, host: str, port: int, tls: bool, connected: asyncio.Event | None = None,
                     connecting: asyncio.Event | None = None) -> Answer:
    """HTTP(S) ``GET /`` on a fresh connection."""
    return await _one_exchange(run, host, port, tls, "HTTPS GET request" if tls else "HTTP GET request",
                               lambda r, w, sent: _speak_http(r, w, host, port, run.ctx.config.scan.timeouts.read,
                                                              sent), connected, connecting)


async def probe_plain(run: _Probing, host: str, port: int) -> Answer:
    """A plaintext A-ASSOCIATE-RQ for Verification."""
    ctx = run.ctx
    return await _one_exchange(
        run, host, port, False, "plaintext A-ASSOCIATE-RQ",
        lambda r, w, sent: _speak_dicom(r, w, _called_ae(ctx, host, port), ctx.config.scan.calling_ae_title,
                                        ctx.config.scan.timeouts.read, sent))


@dataclass
class _TlsOutcome:
    """What the TLS probe saw so far: kept when the probe is cancelled because HTTPS answered first."""

    hs: Answer | None = None
    inner: Answer | None = None
    sent: asyncio.Event = field(default_factory=asyncio.Event)  # the A-ASSOCIATE-RQ is on its way inside TLS


async def probe_tls(run: _Probing, host: str, port: int, out: _TlsOutcome) -> None:
    """TLS handshake, then an A-ASSOCIATE-RQ inside it; fills ``out`` (handshake, inner answer)."""
    ctx = run.ctx
    t = ctx.config.scan.timeouts
    start = time.perf_counter()

    async def mark_sent() -> None:
        out.sent.set()

    try:
        async with run.open_connections, _WorkSlot(ctx, host) as slot:
            reader, writer = await slot.open(run, host, port, True)
            try:
                sslobj = writer.get_extra_info("ssl_object")
                # cipher() still answers when a post-handshake alert already closed the session
                # (version() is then None).
                suite, version, _bits = sslobj.cipher() or ("?", None, 0)
                version = sslobj.version() or version
                out.hs = Answer(True, "tls", summary=f"TLS handshake completed ({version}, {suite})",
                                version=version, cipher=suite, ms=(time.perf_counter() - start) * 1000)
                await slot.release()  # the handshake was the work; from here on we mostly wait
                try:
                    if version == "TLSv1.3":
                        # A TLS 1.3 server refuses a missing client certificate only after our Finished.
                        # Listen briefly before sending: once we have sent data, its close may come as
                        # a reset that destroys the alert before we read it.
                        try:
                            early = await asyncio.wait_for(reader.read(64), _scaled_wait(out.hs, EARLY_ALERT_WAIT))
                        except TimeoutError:
                            early = None
                        if early is not None:
                            out.inner = Answer(False, "closed" if not early else "banner",
                                               None if early else Reason.RESET,
                                               "server closed right after the handshake" if not early
                                               else "server spoke first inside TLS (not DICOM)", early)
                            return
                    out.inner = await _speak_dicom(reader, writer, _called_ae(ctx, host, port),
                                                   ctx.config.scan.calling_ae_title, t.read, mark_sent)
                except Exception as exc:
                    out.inner = _failure(exc, "A-ASSOCIATE-RQ inside TLS")
            finally:
                await _close(writer)
    except ssl.SSLError as exc:
        msg = f"{exc.reason or ''} {exc}".upper()
        ms = (time.perf_counter() - start) * 1000
        if any(m in msg for m in _CLIENT_CERT_MARKERS):
            out.hs = Answer(True, "tls", Reason.CLIENT_CERTIFICATE_REQUIRED,
                            f"TLS server requires a client certificate ({exc.reason})", ms=ms)
        elif any(m in msg for m in _TLS_ALERT_MARKERS):
            out.hs = Answer(True, "tls-alert", Reason.TLS_FAILURE, f"TLS server refused the handshake ({exc.reason})",
                            ms=ms)
        else:
            out.hs = Answer(False, "not-tls", Reason.TLS_FAILURE, f"not a TLS answer ({exc.reason})", ms=ms)
    except Exception as exc:
        if out.hs is None:
            out.hs = _failure(exc, "TLS handshake")
            out.hs.ms = (time.perf_counter() - start) * 1000


TlsPath = tuple[Answer, Answer | None, Answer | None]


async def _cancel(task: asyncio.Future[Any] | None) -> None:
    """Cancel a probe we no longer need and let it close its connection (our own cancellation still propagates)."""
    if task is not None and not task.done():
        task.cancel()
        await asyncio.wait({task})


def _scaled_wait(handshake: Answer | None, ceiling: float) -> float:
    """A wait for the server's next move, scaled to how long its handshake took (which includes the
    network's round trips): STALL_FACTOR times that, within [STALL_FLOOR, ceiling]."""
    if handshake is None or handshake.ms <= 0:
        return ceiling
    return min(ceiling, max(STALL_FLOOR, STALL_FACTOR * handshake.ms / 1000))


async def tls_path(run: _Probing, host: str, port: int, stagger_https: bool) -> TlsPath:
    """(handshake, DICOM answer inside TLS, HTTPS answer). With ``stagger_https``, an HTTPS ``GET /`` starts
    HTTP_STAGGER after the A-ASSOCIATE-RQ inside TLS went unanswered (DICOM acceptors answer at once; web
    servers wait for a request line), and the first conclusive answer ends the other probe: a silent
    TLS port costs one read timeout, not two. Without it (a configured DICOM AE), HTTPS is tried only
    after a non-DICOM answer, so a slow acceptor gets no second connection.

    A server that serves one connection at a time (openssl s_server) does not start the HTTPS handshake
    while the DICOM probe's connection is open; after a stall (``_scaled_wait``) the DICOM probe is cut short so
    the HTTPS one can run. When HTTPS then does not answer HTTP, the DICOM probe runs again in full:
    the cut never turns a slow DICOM acceptor into a non-DICOM port.
    """
    out = _TlsOutcome()
    task = asyncio.ensure_future(probe_tls(run, host, port, out))
    https_task: asyncio.Future[Answer] | None = None
    https: Answer | None = None
    cut = False
    try:
        if stagger_https:
            sent = asyncio.ensure_future(out.sent.wait())
            await asyncio.wait({task, sent}, return_when=asyncio.FIRST_COMPLETED)
            await _cancel(sent)
            if not task.done():
                await asyncio.wait({task}, timeout=HTTP_STAGGER)
            if not task.done():
                handshake, connecting = asyncio.Event(), asyncio.Event()
                https_task = asyncio.ensure_future(probe_http(run, host, port, True, handshake, connecting))
                # The stall clock starts when the HTTPS probe connects: queueing for our own slots is not
                # the server making it wait.
                began = asyncio.ensure_future(connecting.wait())
                await asyncio.wait({task, https_task, began}, return_when=asyncio.FIRST_COMPLETED)
                await _cancel(began)
                shook = asyncio.ensure_future(handshake.wait())
                done, _ = await asyncio.wait({task, https_task, shook}, timeout=_scaled_wait(out.hs, HANDSHAKE_STALL),
                                             return_when=asyncio.FIRST_COMPLETED)
                await _cancel(shook)
                if not done:  # neither answered nor handshook: one connection at a time
                    cut = True
                    await _cancel(task)
                    out.inner = Answer(False, "silent", None, "A-ASSOCIATE-RQ inside TLS: no answer, and the server "
                                       "did not start a second handshake while this connection was open (it "
                                       "serves one connection at a time); cut short for the HTTPS probe")
                await asyncio.wait({task, https_task}, return_when=asyncio.FIRST_COMPLETED)
                if not task.done() and https_task.result().kind == "http":
                    await _cancel(task)
                    out.inner = Answer(False, "silent", None, "A-ASSOCIATE-RQ inside TLS: no answer before HTTPS "
                                       "answered")
        await asyncio.wait({task})
        if not task.cancelled():
            task.result()  # re-raises a bug in probe_tls: the stage bound records it
        assert out.hs is not None
        hs, inner = out.hs, out.inner
        if https_task is not None:
            if inner is not None and inner.kind == "dicom" and not https_task.done():
                await _cancel(https_task)  # DICOM answered first: the HTTPS probe is not needed
            else:
                https = await https_task
        elif hs.ok and inner is not None and inner.kind in ("garbage", "closed", "silent"):
            https = await probe_http(run, host, port, True)
        if cut and (https is None or https.kind != "http"):
            again = _TlsOutcome()
            await probe_tls(run, host, port, again)
            if again.hs is not None:
                hs, inner = again.hs, again.inner
        return hs, inner, https
    finally:
        await _cancel(task)
        await _cancel(https_task)


def classify(port: int, plain: Answer, hs: Answer, inner: Answer | None,
             syslog_ports: frozenset[int] = frozenset({6514})) -> tuple[Service, str, bool | None]:
    """(service, detail, plaintext_dicom) from the probe answers. Pure: tested without a network."""
    plain_dicom = plain.kind == "dicom"
    tls = hs.ok
    if tls and inner is not None and inner.kind == "dicom":
        detail = "DICOM association inside TLS"
        if plain_dicom:
            detail += "; the same port also accepts plaintext DICOM"
        return "dicom-tls", detail, plain_dicom
    if plain_dicom:
        return "dicom", "DICOM Upper Layer without TLS", True
    if tls and inner is not None and inner.kind == "http":
        return "https", "HTTP inside TLS", False
    if plain.kind == "http":
        return "http", "HTTP without TLS", False
    if tls:
        if hs.reason is Reason.CLIENT_CERTIFICATE_REQUIRED or (inner is not None and inner.kind == "client-cert"):
            what = "TLS server that requires a client certificate; payload not reachable without one"
        elif hs.kind == "tls-alert":
            what = "TLS server (refused our handshake)"
        else:
            what = "TLS server; payload is neither DICOM nor HTTP"
        if port in syslog_ports and (inner is None or inner.kind in ("silent", "client-cert", "closed")):
            return "syslog-tls", what + f"; port {port} and silence to DICOM/HTTP are consistent with an RFC 5425 receiver (inferred)", False
        return "tls", what, False
    return "unknown", f"no known protocol answered (plaintext: {plain.kind}; TLS: {hs.kind})", None


def _tls_expected(ctx: AuditContext, host: str, port: int) -> bool:
    """The config says this port speaks TLS (an AE with ``tls: true``), or it is the dicom-tls port 2762."""
    if port == DICOM_TLS_PORT:
        return True
    return any(ae.tls and ae.port == port and ctx.config.address_of(ae.host) == host
               for ae in ctx.config.application_entities)


def _configured_ae(ctx: AuditContext, host: str, port: int) -> bool:
    return any(ae.port == port and ctx.config.address_of(ae.host) == host for ae in ctx.config.application_entities)


def _tls_conclusive(path: TlsPath) -> bool:
    hs, inner, https = path
    return hs.ok and ((inner is not None and inner.kind == "dicom") or (https is not None and https.kind == "http"))


async def identify_endpoint(run: _Probing, ep: Endpoint) -> Endpoint:
    """Identify one open TCP endpoint; never raises.

    The TLS probe waits for the plaintext answer (at most HTTP_STAGGER): when the port answered
    plaintext DICOM it is not sent at all, unless TLS is expected there. A ClientHello is garbage to a
    plaintext DICOM acceptor, and some (pynetdicom) keep one of their few association slots for such a
    connection until their ARTIM timer fires, even after it closed: the audit would then be the reason
    the product looks busy. Probes still waiting when another gave a conclusive answer are ended.
    """
    if ep.protocol != "tcp" or ep.state != "open":
        return ep
    ctx = run.ctx
    host, port = ep.host, ep.port
    stagger_https = not _configured_ae(ctx, host, port)
    plain_task = asyncio.ensure_future(probe_plain(run, host, port))
    tls_task: asyncio.Future[TlsPath] | None = None
    http_task: asyncio.Future[Answer] | None = None
    expected = _tls_expected(ctx, host, port)
    try:
        if expected:
            tls_task = asyncio.ensure_future(tls_path(run, host, port, stagger_https))
        # Many HTTP servers wait for a line end that a PDU never sends. DICOM acceptors answer at once, so
        # when the plaintext probe is still silent after a moment, a GET starts beside it (staggered like
        # Happy Eyeballs) instead of after the whole read timeout.
        done, _ = await asyncio.wait({plain_task}, timeout=HTTP_STAGGER)
        if tls_task is None and not (done and plain_task.result().kind == "dicom"):
            tls_task = asyncio.ensure_future(tls_path(run, host, port, stagger_https))
        if not done:
            http_task = asyncio.ensure_future(probe_http(run, host, port, False))
        # The first conclusive answer ends a silent PDU: HTTP in plaintext, or DICOM / HTTP inside TLS. Where
        # TLS is expected, the plaintext answer is a fact of its own (a DICOM-TLS port that also accepts
        # plaintext DICOM), so TLS does not end it there.
        ended_by = ""
        while not plain_task.done():
            waiting = {t for t in (plain_task, http_task, tls_task) if t is not None and not t.done()}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if http_task is not None and http_task.done() and http_task.result().kind == "http":
                ended_by = "HTTP"
            elif not expected and tls_task is not None and tls_task.done() and _tls_conclusive(tls_task.result()):
                ended_by = "TLS"
            if ended_by and not plain_task.done():
                await _cancel(plain_task)
                break
        if plain_task.cancelled():
            plain = Answer(False, "silent", None, f"plaintext A-ASSOCIATE-RQ: no answer before {ended_by} answered")
        else:
            plain = plain_task.result()
        if tls_task is not None:
            hs, inner, https = await tls_task
        else:
            hs, inner, https = Answer(False, "not-probed", Reason.SKIPPED, "no TLS handshake: the port answered "
                                      "plaintext DICOM and TLS is not expected there (a ClientHello could hold one "
                                      "of the acceptor's association slots until its ARTIM timer)"), None, None
        if http_task is not None and ended_by == "TLS":
            await _cancel(http_task)  # the TLS side answered; a plaintext GET cannot change the result
        http = await http_task if http_task is not None and not http_task.cancelled() else None
    finally:
        await _cancel(plain_task)
        await _cancel(http_task)
        await _cancel(tls_task)
    # What classification reads: the DICOM answers, or the HTTP answer where that is what spoke.
    plain_seen, inner_seen = plain, inner
    http_over_tls = False
    if https is not None:
        http, http_over_tls = https, True
        if https.kind in ("http", "client-cert"):
            inner_seen = https
    elif not hs.ok and plain.kind in ("garbage", "closed", "silent"):
        if http is None:  # the PDU got a non-HTTP answer quickly: still worth one GET
            http = await probe_http(run, host, port, False)
        if http.kind == "http":
            plain_seen = http
    ids = list(ep.evidence)

    def record(probe: str, ans: Answer, typed: A) -> A:
        """Evidence for one answer; the typed answer (with its evidence id) is the result, its dump the
        evidence's display data. ``bare_connect`` is the probes' own convention (ports.py writes it too)
        that the association audit waits on."""
        shown = typed.model_dump(mode="json", exclude_none=True, exclude={"evidence", "bare_connect", "ok", "reason"})
        display = {**shown, "bare_connect": bare and probe == "identify.tls"}
        ev = ctx.evidence.add(probe, ep.key, ans.ok, ans.summary, reason=ans.reason, data=display,
                              duration_ms=ans.ms)
        ids.append(ev.id)
        return typed.model_copy(update={"evidence": ev.id})

    # A failed handshake left a connection without a request (see identify_endpoint).
    bare = hs.kind not in ("tls", "not-probed")
    identification = Identification(
        dicom=record("identify.dicom", plain, plain.dicom()),
        tls=record("identify.tls", hs, hs.tls(bare)),
        dicom_in_tls=record("identify.dicom_in_tls", inner, inner.dicom()) if inner is not None else None,
        http=record("identify.http", http, http.http(http_over_tls)) if http is not None else None,
    )
    service, detail, plain_dicom = classify(ep.port, plain_seen, hs, inner_seen,
                                            frozenset(ctx.config.scan.syslog_tls_ports))
    return ep.model_copy(update={"service": service, "service_detail": detail, "plaintext_dicom": plain_dicom,
                                 "identification": identification, "evidence": ids})


async def identify_all(ctx: AuditContext, endpoints: list[Endpoint],
                       sink: list[Endpoint] | None = None) -> list[Endpoint]:
    """Identify every endpoint; never raises. ``sink`` (same length) gets each result as it finishes,
    so a caller's bound keeps the endpoints already identified."""
    try:
        sslctx = _identify_context(ctx)
    except (OSError, ssl.SSLError, ValueError) as exc:
        ctx.evidence.add("identify.tls", "*", False, f"cannot load the TLS client credentials: {type(exc).__name__}",
                         reason=Reason.INTERNAL_ERROR)
        sslctx = _identify_context(ctx, with_credentials=False)
    run = _Probing(ctx, sslctx)
    out = sink if sink is not None else list(endpoints)

    async def one(i: int, ep: Endpoint) -> None:
        out[i] = await identify_endpoint(run, ep)

    await asyncio.gather(*(one(i, ep) for i, ep in enumerate(list(endpoints))))
    return list(out)
