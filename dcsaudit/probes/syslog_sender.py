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
from typing import Any

from dcsaudit.auditmsg import build
from dcsaudit.auditmsg.build import Participant
from dcsaudit.context import AuditContext
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


async def _send_tls(ctx: AuditContext, endpoint: Endpoint) -> str:
    t = ctx.config.scan.timeouts
    target = endpoint.key
    msg = build_test_message(TLS_TEST_SIZE)
    data: dict[str, Any] = {"size": len(msg), "framing": "octet-counting"}
    start = time.perf_counter()
    try:
        sc, verifying = _client_context(ctx)
    except (OSError, ssl.SSLError, ValueError) as exc:
        return ctx.evidence.add("syslog.sender.tls", target, False, f"cannot load TLS credentials: {type(exc).__name__}",
                                reason=Reason.INTERNAL_ERROR, data=data).id
    data["server_verified"] = verifying
    data["client_certificate_sent"] = ctx.config.credentials.tls_client is not None
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
                return ctx.evidence.add("syslog.sender.tls", target, False, f"TLS handshake failed: {txt[:160]}",
                                        reason=why, data=data,
                                        duration_ms=(time.perf_counter() - start) * 1000).id
            writer = w
            ssl_obj = w.get_extra_info("ssl_object")
            if ssl_obj is not None:
                data["tls_version"] = ssl_obj.version()
                data["cipher"] = (ssl_obj.cipher() or ("",))[0]
            w.write(build.octet_frame(msg))
            await asyncio.wait_for(w.drain(), timeout=t.read)
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
            data["accepted"] = reason is None
            return ctx.evidence.add("syslog.sender.tls", target, ok, f"32768-octet test message over TLS: {outcome}",
                                    reason=reason, data=data, duration_ms=(time.perf_counter() - start) * 1000).id
    except TimeoutError:
        return ctx.evidence.add("syslog.sender.tls", target, False, "timed out", reason=Reason.TIMEOUT, data=data,
                                duration_ms=(time.perf_counter() - start) * 1000).id
    except ConnectionRefusedError:
        return ctx.evidence.add("syslog.sender.tls", target, False, "connection refused", reason=Reason.REFUSED,
                                data=data).id
    except OSError as exc:
        return ctx.evidence.add("syslog.sender.tls", target, False, f"network error: {type(exc).__name__}",
                                reason=Reason.UNREACHABLE, data=data).id
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


async def _send_udp(ctx: AuditContext, endpoint: Endpoint) -> str:
    msg = build_test_message(UDP_TEST_SIZE)
    start = time.perf_counter()
    try:
        ok, summary, reason = await ctx.limiter.run_blocking(
            endpoint.host, _send_udp_blocking, endpoint.host, endpoint.port, msg, min(ctx.config.scan.timeouts.read, 1.0)
        )
    except OSError as exc:
        ok, summary, reason = False, f"network error: {type(exc).__name__}", Reason.UNREACHABLE
    return ctx.evidence.add("syslog.sender.udp", endpoint.key, ok, f"{UDP_TEST_SIZE}-octet test message over UDP: {summary}",
                            reason=reason, data={"size": len(msg), "framing": "datagram"},
                            duration_ms=(time.perf_counter() - start) * 1000).id


async def probe_product_collector(ctx: AuditContext, endpoint: Endpoint) -> list[str]:
    """Send test audit messages to a product's collector endpoint; return the Evidence ids. Never raises."""
    if not ctx.config.scan.intrusive.syslog_test_messages:
        ev = ctx.evidence.add("syslog.sender", endpoint.key, False,
                              "test audit messages not sent (scan.intrusive.syslog_test_messages is false)",
                              reason=Reason.NOT_PERMITTED)
        return [ev.id]
    try:
        if endpoint.protocol == "udp" or endpoint.service == "syslog-udp":
            return [await _send_udp(ctx, endpoint)]
        return [await _send_tls(ctx, endpoint)]
    except Exception as exc:  # a probe never raises out to the runner
        ev = ctx.evidence.add("syslog.sender", endpoint.key, False, f"internal error: {type(exc).__name__}",
                              reason=Reason.INTERNAL_ERROR)
        return [ev.id]
