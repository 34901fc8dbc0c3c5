"""The product as audit-trail collector: send it test audit messages (PS3.15 A.6 / A.7).

Opt-in only (``scan.intrusive.syslog_test_messages``): a test message lands in the product's audit log.

- TLS endpoint (``syslog-tls``): one valid DICOM audit message of exactly 32768 octets (the size PS3.15
  A.6 requires collectors to support), octet-counted (RFC 5425 §4.3), presenting the configured client
  certificate if any. Observed: the handshake (and whether it failed for want of a client certificate),
  and whether the collector kept the connection open after the frame (accepted) or closed/alerted.
- UDP endpoint (``syslog-udp``): one valid message of 2048 octets (RFC 5426 §3.2: receivers SHOULD accept
  2048) in one datagram. UDP gives no acknowledgement; an ICMP port-unreachable is observed when it comes.

The message is a Security Alert (A.5.3.11, EventTypeCode 110129 Security Configuration) naming dcsaudit
so that whoever reads the product's log sees what it was.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from typing import Any, Literal

from dcsaudit.auditmsg import build
from dcsaudit.auditmsg.build import Participant
from dcsaudit.context import AuditContext
from dcsaudit.models.audit import SyslogSendResult
from dcsaudit.models.core import Reason
from dcsaudit.models.endpoint import Endpoint

TLS_TEST_SIZE = 32768
UDP_TEST_SIZE = 2048


def build_test_message(size: int, scanner: str = "dcsaudit") -> bytes:
    """A schema-valid PS3.15 A.5 Security Alert syslog message of exactly ``size`` octets."""
    def make(pad: str) -> bytes:
        xml = build.audit_xml(
            "110113", action="E", outcome="0", type_codes=["110129"],
            participants=[Participant(user_id=scanner, requestor=True, user_name="dcsaudit test message",
                                      nap_id=socket.gethostname() or "localhost", nap_type="1")],
            source_id="dcsaudit", source_type="9",
            outcome_description="dcsaudit collector test message (PS3.15 A.6 size test) " + pad,
        )
        return build.syslog_message(xml, app_name="dcsaudit", procid="-")
    return build.padded_to(make, size)


def _client_context(ctx: AuditContext) -> tuple[ssl.SSLContext, bool]:
    """Client TLS context: verify with the configured CA if any; present the configured client cert."""
    creds = ctx.config.credentials
    sc = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    sc.minimum_version = ssl.TLSVersion.TLSv1_2
    verifying = creds.ca_file is not None
    if verifying:
        sc.load_verify_locations(cafile=str(creds.ca_file))
        sc.check_hostname = False  # products are addressed by IP; the chain is what is checked here
    else:
        sc.check_hostname = False
        sc.verify_mode = ssl.CERT_NONE
    if creds.tls_client is not None:
        password = creds.tls_client.key_password.resolve().get_secret_value() if creds.tls_client.key_password else None
        sc.load_cert_chain(str(creds.tls_client.cert_file), str(creds.tls_client.key_file), password=password)
    return sc, verifying


async def _send_tls(ctx: AuditContext, endpoint: Endpoint) -> SyslogSendResult:
    t = ctx.config.scan.timeouts
    target = endpoint.key
    msg = build_test_message(TLS_TEST_SIZE)
    result = SyslogSendResult(transport="tls", size=len(msg), framing="octet-counting")
    start = time.perf_counter()

    def done(ok: bool, summary: str, reason: Reason | None, **update: Any) -> SyslogSendResult:
        """The typed result, and its evidence (whose data is the same facts, for display)."""
        r = result.model_copy(update={"reason": reason, "outcome": summary, **update})
        ev = ctx.evidence.add("syslog.sender.tls", target, ok, summary, reason=reason,
                              data=r.model_dump(mode="json", exclude_none=True, exclude={"evidence", "outcome"}),
                              duration_ms=(time.perf_counter() - start) * 1000)
        return r.model_copy(update={"evidence": [ev.id]})

    try:
        sc, verifying = _client_context(ctx)
    except (OSError, ssl.SSLError, ValueError) as exc:
        return done(False, f"cannot load TLS credentials: {type(exc).__name__}", Reason.INTERNAL_ERROR)
    result = result.model_copy(update={"server_verified": verifying,
                                       "client_certificate_sent": ctx.config.credentials.tls_client is not None})
    writer: asyncio.StreamWriter | None = None
    try:
        async with ctx.limiter.slot(endpoint.host):
            try:
                reader, w = await asyncio.wait_for(
                    asyncio.open_connection(endpoint.host, endpoint.port, ssl=sc, server_hostname=None,
                                            ssl_handshake_timeout=t.tls_handshake),
                    timeout=t.connect + t.tls_handshake,
                )
            except ssl.SSLError as exc:
                txt = str(exc)
                why = Reason.CLIENT_CERTIFICATE_REQUIRED if "CERTIFICATE_REQUIRED" in txt.upper() else Reason.TLS_FAILURE
                return done(False, f"TLS handshake failed: {txt[:160]}", why)
            writer = w
            ssl_obj = w.get_extra_info("ssl_object")
            if ssl_obj is not None:
                result = result.model_copy(update={"tls_version": ssl_obj.version(),
                                                   "cipher": (ssl_obj.cipher() or ("",))[0]})
            w.write(build.octet_frame(msg))
            await asyncio.wait_for(w.drain(), timeout=t.read)
            result = result.model_copy(update={"sent": True, "delivered": True})
            # TLS 1.3 servers can refuse a client certificate after the handshake; a collector may
            # close on a frame it rejects. Either shows here as EOF/alert; silence means kept open.
            reason: Reason | None
            try:
                extra = await asyncio.wait_for(reader.read(1024), timeout=min(t.read, 2.0))
                if extra:
                    outcome, ok, reason = "collector sent data back (unexpected for syslog)", True, None
                else:
                    outcome, ok, reason = "collector closed the connection after the frame", True, Reason.RESET
            except TimeoutError:
                outcome, ok, reason = "frame sent; connection kept open (accepted, no alert)", True, None
            except (ssl.SSLError, ConnectionError) as exc:
                txt = str(exc)
                reason = Reason.CLIENT_CERTIFICATE_REQUIRED if "certificate required" in txt.lower() else Reason.RESET
                outcome, ok = f"collector refused after the frame: {txt[:120]}", False
            return done(ok, f"{TLS_TEST_SIZE}-octet test message over TLS: {outcome}", reason,
                        accepted=reason is None, delivered=ok)
    except TimeoutError:
        return done(False, "timed out", Reason.TIMEOUT)
    except ConnectionRefusedError:
        return done(False, "connection refused", Reason.REFUSED)
    except OSError as exc:
        return done(False, f"network error: {type(exc).__name__}", Reason.UNREACHABLE)
    finally:
        if writer is not None:
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), timeout=2.0)
            except (TimeoutError, OSError, ssl.SSLError):
                pass


def _send_udp_blocking(host: str, port: int, msg: bytes, wait: float) -> tuple[bool, str, Reason | None]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(wait)
        s.connect((host, port))  # connected so that an ICMP port-unreachable is reported to us
        s.send(msg)
        try:
            s.recv(1)
            return True, "collector answered on UDP (unexpected for syslog)", None
        except TimeoutError:
            return True, "datagram sent; no error came back (UDP has no acknowledgement)", None
        except ConnectionRefusedError:
            return False, "ICMP port unreachable: nothing listens", Reason.REFUSED


async def _send_udp(ctx: AuditContext, endpoint: Endpoint) -> SyslogSendResult:
    msg = build_test_message(UDP_TEST_SIZE)
    start = time.perf_counter()
    sent = False
    try:
        ok, summary, reason = await ctx.limiter.run_blocking(
            endpoint.host, _send_udp_blocking, endpoint.host, endpoint.port, msg, min(ctx.config.scan.timeouts.read, 1.0)
        )
        sent = True
    except OSError as exc:
        ok, summary, reason = False, f"network error: {type(exc).__name__}", Reason.UNREACHABLE
    summary = f"{UDP_TEST_SIZE}-octet test message over UDP: {summary}"
    result = SyslogSendResult(transport="udp", sent=sent, delivered=ok, size=len(msg), framing="datagram",
                              reason=reason, outcome=summary)
    ev = ctx.evidence.add("syslog.sender.udp", endpoint.key, ok, summary, reason=reason,
                          data=result.model_dump(mode="json", exclude_none=True, exclude={"evidence", "outcome"}),
                          duration_ms=(time.perf_counter() - start) * 1000)
    return result.model_copy(update={"evidence": [ev.id]})


def _transport(endpoint: Endpoint) -> Literal["tls", "udp"]:
    return "udp" if endpoint.protocol == "udp" or endpoint.service == "syslog-udp" else "tls"


async def probe_product_collector(ctx: AuditContext, endpoint: Endpoint) -> SyslogSendResult:
    """Send a test audit message to a product's collector endpoint. Never raises.

    The result belongs on the endpoint as ``Endpoint.syslog_send``; its ``evidence`` lists what was recorded.
    """
    transport = _transport(endpoint)
    if not ctx.config.scan.intrusive.syslog_test_messages:
        why = "test audit messages not sent (scan.intrusive.syslog_test_messages is false)"
        ev = ctx.evidence.add("syslog.sender", endpoint.key, False, why, reason=Reason.NOT_PERMITTED)
        return SyslogSendResult(transport=transport, reason=Reason.NOT_PERMITTED, outcome=why, evidence=[ev.id])
    try:
        if transport == "udp":
            return await _send_udp(ctx, endpoint)
        return await _send_tls(ctx, endpoint)
    except Exception as exc:  # a probe never raises out to the runner
        why = f"internal error: {type(exc).__name__}"
        ev = ctx.evidence.add("syslog.sender", endpoint.key, False, why, reason=Reason.INTERNAL_ERROR)
        return SyslogSendResult(transport=transport, reason=Reason.INTERNAL_ERROR, outcome=why, evidence=[ev.id])
