"""Service identification by speaking each protocol (no ``nmap -sV``).

For every open TCP port up to two probes run, each on its own connection (the TLS one only when the
plaintext one got no DICOM answer within HTTP_STAGGER, or TLS is expected on the port):

* plaintext: an A-ASSOCIATE-RQ for Verification. Any A-ASSOCIATE-AC/RJ or A-ABORT proves DICOM
  (a reject still proves DICOM, PS3.8 §9.3); an ``HTTP/`` answer proves HTTP; a TLS alert proves the
  port wants TLS.
* TLS: a handshake with a permissive client (every version and suite, no verification: identification
  is not the TLS audit). On success the same A-ASSOCIATE-RQ goes inside TLS (DICOM over TLS), and an
  ``HTTP/`` answer means HTTPS.

A port that answers DICOM both in plaintext and inside TLS is reported as ``dicom-tls`` with
``plaintext_dicom = true``: the BCP 195 profiles ask for strict TLS.
"""

from __future__ import annotations

import asyncio
import ssl
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
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
                       timeout: float) -> Answer:
    """Send A-ASSOCIATE-RQ for Verification, classify the first answer; release politely when accepted."""
    writer.write(ul.encode_associate_rq(called, calling, [ul.ProposedContext(1, ul.VERIFICATION, (ul.IMPLICIT_LE,))]))
    await writer.drain()
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
# How long to listen for a post-handshake alert (TLS 1.3 client-certificate refusal) on loopback-to-LAN.
EARLY_ALERT_WAIT = 0.25
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


async def _speak_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, timeout: float) -> Answer:
    """A minimal HEAD request: some servers answer a non-HTTP request without a status line."""
    writer.write(f"HEAD / HTTP/1.0\r\nHost: {host}\r\nUser-Agent: dcsaudit\r\n\r\n".encode())
    await writer.drain()
    first = await asyncio.wait_for(reader.read(64), timeout)
    if first.startswith(b"HTTP/"):
        status = first.split(b"\r\n", 1)[0].decode("ascii", errors="replace")
        return Answer(True, "http", summary=f"HTTP answer to HEAD / ({status})", status_line=status)
    return Answer(False, "garbage" if first else "closed", Reason.PROTOCOL_ERROR,
                  "no HTTP status line in answer to HEAD /", first)


async def _one_exchange(ctx: AuditContext, host: str, port: int, sslctx: ssl.SSLContext | None, what: str,
                        speak: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[Answer]]) -> Answer:
    """One bounded connection (TLS when ``sslctx``) holding a limiter slot; any failure becomes an Answer."""
    t = ctx.config.scan.timeouts
    start = time.perf_counter()
    try:
        async with ctx.limiter.slot(host):
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=sslctx, server_hostname=None,
                                        ssl_handshake_timeout=t.tls_handshake if sslctx else None),
                t.connect + (t.tls_handshake if sslctx else 0))
            try:
                ans = await speak(reader, writer)
            finally:
                await _close(writer)
    except Exception as exc:
        ans = _failure(exc, what)
    ans.ms = (time.perf_counter() - start) * 1000
    return ans


async def probe_http(ctx: AuditContext, host: str, port: int, sslctx: ssl.SSLContext | None) -> Answer:
    """HTTP(S) probe on a fresh connection, used when the DICOM probe got a non-DICOM answer."""
    return await _one_exchange(ctx, host, port, sslctx, "HTTP HEAD request",
                               lambda r, w: _speak_http(r, w, host, ctx.config.scan.timeouts.read))


async def probe_plain(ctx: AuditContext, host: str, port: int) -> Answer:
    """A plaintext A-ASSOCIATE-RQ for Verification."""
    return await _one_exchange(
        ctx, host, port, None, "plaintext A-ASSOCIATE-RQ",
        lambda r, w: _speak_dicom(r, w, _called_ae(ctx, host, port), ctx.config.scan.calling_ae_title,
                                  ctx.config.scan.timeouts.read))


async def probe_tls(ctx: AuditContext, host: str, port: int, sslctx: ssl.SSLContext) -> tuple[Answer, Answer | None]:
    """TLS handshake, then an A-ASSOCIATE-RQ inside it. Returns (handshake, inner answer)."""
    t = ctx.config.scan.timeouts
    start = time.perf_counter()
    inner: Answer | None = None
    try:
        async with ctx.limiter.slot(host):
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=sslctx, server_hostname=None,
                                        ssl_handshake_timeout=t.tls_handshake),
                t.connect + t.tls_handshake)
            try:
                sslobj = writer.get_extra_info("ssl_object")
                # cipher() still answers when a post-handshake alert already closed the session
                # (version() is then None).
                suite, version, _bits = sslobj.cipher() or ("?", None, 0)
                version = sslobj.version() or version
                hs = Answer(True, "tls", summary=f"TLS handshake completed ({version}, {suite})",
                            version=version, cipher=suite)
                hs.ms = (time.perf_counter() - start) * 1000
                try:
                    if version == "TLSv1.3":
                        # A TLS 1.3 server refuses a missing client certificate only after our Finished.
                        # Listen briefly before sending: once we have sent data, its close may come as
                        # a reset that destroys the alert before we read it.
                        try:
                            early = await asyncio.wait_for(reader.read(64), EARLY_ALERT_WAIT)
                        except TimeoutError:
                            early = None
                        if early is not None:
                            return hs, Answer(False, "closed" if not early else "banner",
                                              None if early else Reason.RESET,
                                              "server closed right after the handshake" if not early
                                              else "server spoke first inside TLS (not DICOM)",
                                              early)
                    inner = await _speak_dicom(reader, writer, _called_ae(ctx, host, port),
                                               ctx.config.scan.calling_ae_title, t.read)
                except Exception as exc:
                    inner = _failure(exc, "A-ASSOCIATE-RQ inside TLS")
            finally:
                await _close(writer)
            return hs, inner
    except ssl.SSLError as exc:
        msg = f"{exc.reason or ''} {exc}".upper()
        ms = (time.perf_counter() - start) * 1000
        if any(m in msg for m in _CLIENT_CERT_MARKERS):
            return Answer(True, "tls", Reason.CLIENT_CERTIFICATE_REQUIRED,
                          f"TLS server requires a client certificate ({exc.reason})", ms=ms), None
        if any(m in msg for m in _TLS_ALERT_MARKERS):
            return Answer(True, "tls-alert", Reason.TLS_FAILURE,
                          f"TLS server refused the handshake ({exc.reason})", ms=ms), None
        return Answer(False, "not-tls", Reason.TLS_FAILURE, f"not a TLS answer ({exc.reason})", ms=ms), None
    except Exception as exc:
        ans = _failure(exc, "TLS handshake")
        ans.ms = (time.perf_counter() - start) * 1000
        return ans, None


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


async def identify_endpoint(ctx: AuditContext, ep: Endpoint, sslctx: ssl.SSLContext) -> Endpoint:
    """Identify one open TCP endpoint; never raises.

    The TLS probe waits for the plaintext answer (at most HTTP_STAGGER): when the port answered
    plaintext DICOM it is not sent at all, unless TLS is expected there. A ClientHello is garbage to a
    plaintext DICOM acceptor, and some (pynetdicom) keep one of their few association slots for such a
    connection until their ARTIM timer fires, even after it closed: the audit would then be the reason
    the product looks busy.
    """
    if ep.protocol != "tcp" or ep.state != "open":
        return ep
    plain_task = asyncio.ensure_future(probe_plain(ctx, ep.host, ep.port))
    tls_task: asyncio.Future[tuple[Answer, Answer | None]] | None = None
    if _tls_expected(ctx, ep.host, ep.port):
        tls_task = asyncio.ensure_future(probe_tls(ctx, ep.host, ep.port, sslctx))
    # Many HTTP servers wait for a line end that a PDU never sends. DICOM acceptors answer at once, so
    # when the plaintext probe is still silent after a moment, a HEAD request starts beside it
    # (staggered like Happy Eyeballs) instead of after the whole read timeout.
    http_task: asyncio.Future[Answer] | None = None
    done, _ = await asyncio.wait({plain_task}, timeout=HTTP_STAGGER)
    if tls_task is None and not (done and plain_task.result().kind == "dicom"):
        tls_task = asyncio.ensure_future(probe_tls(ctx, ep.host, ep.port, sslctx))
    if not done:
        http_task = asyncio.ensure_future(probe_http(ctx, ep.host, ep.port, None))
        await asyncio.wait({plain_task, http_task}, return_when=asyncio.FIRST_COMPLETED)
        if http_task.done() and not plain_task.done() and http_task.result().kind == "http":
            plain_task.cancel()  # an HTTP server: no need to wait out the PDU's read timeout
    try:
        plain = await plain_task
    except asyncio.CancelledError:
        if http_task is None or not http_task.done():
            raise  # we are being cancelled ourselves
        plain = Answer(False, "silent", None, "plaintext A-ASSOCIATE-RQ: no answer before HTTP answered")
    if tls_task is not None:
        hs, inner = await tls_task
    else:
        hs, inner = Answer(False, "not-probed", Reason.SKIPPED, "no TLS handshake: the port answered plaintext DICOM "
                           "and TLS is not expected there (a ClientHello could hold one of the acceptor's association "
                           "slots until its ARTIM timer)"), None
    http = await http_task if http_task is not None else None
    # What classification reads: the DICOM answers, or the HTTP answer where that is what spoke.
    plain_seen, inner_seen = plain, inner
    http_over_tls = False
    if hs.ok and inner is not None and inner.kind in ("garbage", "closed", "silent"):
        http, http_over_tls = await probe_http(ctx, ep.host, ep.port, sslctx), True
        if http.kind in ("http", "client-cert"):
            inner_seen = http
    elif not hs.ok and plain.kind in ("garbage", "closed", "silent"):
        if http is None:  # the PDU got a non-HTTP answer quickly: still worth one HEAD
            http = await probe_http(ctx, ep.host, ep.port, None)
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
    out = sink if sink is not None else list(endpoints)

    async def one(i: int, ep: Endpoint) -> None:
        out[i] = await identify_endpoint(ctx, ep, sslctx)

    await asyncio.gather(*(one(i, ep) for i, ep in enumerate(list(endpoints))))
    return list(out)
