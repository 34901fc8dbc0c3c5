"""The TLS audit of one endpoint (RFC 8446, RFC 5246, RFC 9325): raw enumeration, certificate, client auth. Facts only:
the PS3.15 profile verdicts are the rule book's (``dcsaudit.rules.tls_profiles``), judged by the
checks and the annex.

Plan, chosen for speed (see docs/benchmarks-tls.md):
1. In parallel: SSLv2 hello, and suite elimination for SSLv3 .. TLS 1.3 (raw ClientHellos).
2. In parallel, on what was accepted: TLS 1.2 flight facts (certificate, CertificateRequest,
   renegotiation_info, extended_master_secret, encrypt_then_mac, compression), ECDHE groups, DHE size,
   TLS 1.2 signature schemes; TLS 1.3 encrypted flight (certificate, CertificateVerify scheme,
   CertificateRequest, required/optional by finishing without a certificate), groups via
   HelloRetryRequest, signature schemes; TLS 1.3 preference; TLS_FALLBACK_SCSV (RFC 7507) when more
   than one version is accepted.
3. Only if a TLS 1.2-only server asks for a certificate: one OpenSSL handshake without one (blocking,
   in the worker pool) tells required from optional; with configured credentials, one more proves that
   mutual TLS works.
4. Heartbleed / CCS injection / client renegotiation tests (``vulns``; sslyze's ROBOT opt-in), after the
   enumeration so that their connections do not compete with ours for the server's threads.

Raw hellos never need a client certificate: the server shows its ServerHello (and, in TLS 1.2, its
whole first flight) before it sees ours, so endpoints that require mutual TLS are enumerated fully
with or without credentials.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass
from typing import Any, Literal

from dcsaudit.context import AuditContext
from dcsaudit.models.core import Reason
from dcsaudit.models.endpoint import Endpoint
from dcsaudit.models.tls import TLS_VERSIONS, TlsFeatures, TlsResult, Vulnerabilities
from dcsaudit.probes.tls import certificate
from dcsaudit.probes.tls.engine import Outcome, Timeouts, exchange
from dcsaudit.probes.tls.enumerate import Enumerator, RawFindings, names
from dcsaudit.rules.tls_suites import alert_name

PROBE = "tls.audit"


@dataclass(frozen=True)
class TlsAuditOptions:
    """Knobs for the expensive parts. ROBOT costs seconds per endpoint; it is off unless asked for."""

    sslv2_sslv3: bool = True
    vulnerabilities: bool = True  # Heartbleed / CCS injection / client renegotiation, after the enumeration
    robot: bool = False
    connections_per_endpoint: int = 4


_REASONS: dict[str, Reason] = {
    "timeout": Reason.TIMEOUT, "refused": Reason.REFUSED, "reset": Reason.RESET,
    "unreachable": Reason.UNREACHABLE, "garbage": Reason.PROTOCOL_ERROR, "closed": Reason.TLS_FAILURE,
    "alert": Reason.TLS_FAILURE,
}


def _describe_failure(o: Outcome | None) -> tuple[str, Reason]:
    if o is None:
        return "no TLS version accepted", Reason.TLS_FAILURE
    if o.kind == "alert" and o.alert is not None:
        return f"no TLS version accepted (alert {o.alert.name})", Reason.TLS_FAILURE
    if o.kind == "garbage":
        return f"not a TLS server: {o.detail or 'unparsable answer'} (first bytes {o.first_bytes[:8].hex()})", Reason.PROTOCOL_ERROR
    if o.kind == "timeout":
        return "no answer to ClientHello before the read timeout", Reason.TIMEOUT
    if o.kind == "reset":
        return "connection reset during the handshake", Reason.RESET
    if o.kind == "closed":
        return "connection closed without a ServerHello", Reason.TLS_FAILURE
    return f"{o.kind}: {o.detail}", _REASONS.get(o.kind, Reason.TLS_FAILURE)


def _openssl_client_auth(host: str, port: int, timeout: float, ca: str | None,
                         cert: tuple[str, str, str | None] | None) -> tuple[bool, str]:
    """One TLS 1.2 handshake (blocking). Returns (handshake completed and server did not object, detail)."""
    import socket

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with _suppress_seclevel(ctx):
        pass
    if cert is not None:
        ctx.load_cert_chain(cert[0], cert[1], password=cert[2])
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw, \
                ctx.wrap_socket(raw, do_handshake_on_connect=False) as s:
            s.settimeout(timeout)
            s.do_handshake()
            s.settimeout(min(timeout, 0.3))
            try:
                s.recv(1)
            except (TimeoutError, ssl.SSLWantReadError):
                pass
            return True, "handshake completed"
    except ssl.SSLError as exc:
        return False, exc.reason or str(exc)
    except OSError as exc:
        return False, exc.strerror or type(exc).__name__


class _suppress_seclevel:
    """Let OpenSSL talk to weak servers: we audit them, we do not protect data with them."""

    def __init__(self, ctx: ssl.SSLContext) -> None:
        try:
            ctx.set_ciphers("ALL:@SECLEVEL=0")
        except ssl.SSLError:
            pass

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> Literal[False]:
        return False


async def audit_tls(ctx: AuditContext, endpoint: Endpoint, options: TlsAuditOptions | None = None) -> TlsResult:
    """Audit one TLS endpoint. Never raises: failures are ``TlsResult.error`` plus evidence with a Reason."""
    opts = options or TlsAuditOptions()
    target = f"{endpoint.host}:{endpoint.port}/tls"
    start = time.perf_counter()
    try:
        return await asyncio.wait_for(_audit(ctx, endpoint, opts, target, start),
                                      ctx.config.scan.timeouts.endpoint)
    except TimeoutError:
        ev = ctx.evidence.add(PROBE, target, False, "TLS audit exceeded the endpoint time bound",
                              reason=Reason.TIMEOUT, duration_ms=(time.perf_counter() - start) * 1000)
        return TlsResult(error="TLS audit exceeded the endpoint time bound", evidence=[ev.id])
    except Exception as exc:  # a bug must not end the audit of other endpoints
        ev = ctx.evidence.add(PROBE, target, False, f"TLS audit failed: {type(exc).__name__}: {exc}",
                              reason=Reason.INTERNAL_ERROR, duration_ms=(time.perf_counter() - start) * 1000)
        return TlsResult(error=f"internal error: {type(exc).__name__}: {exc}", evidence=[ev.id])


async def _audit(ctx: AuditContext, endpoint: Endpoint, opts: TlsAuditOptions, target: str,
                 start: float) -> TlsResult:
    host, port = endpoint.host, endpoint.port
    to = ctx.config.scan.timeouts
    t = Timeouts(connect=to.connect, read=min(to.read, to.tls_handshake))

    # Per-endpoint bound on top of the per-host one: DICOM servers often have small thread pools
    # (Orthanc: DicomThreadsCount 4), and queued handshakes would time out and look like refusals.
    endpoint_slots = asyncio.Semaphore(opts.connections_per_endpoint)
    timeouts: list[int] = []

    async def probe(hello: bytes, **kw: Any) -> Outcome:
        full = kw.pop("full_flight", False)
        for _attempt in range(2):  # a timeout mid-enumeration is retried once, never read as "refused"
            async with endpoint_slots, ctx.limiter.slot(host):
                out = await exchange(host, port, hello, t, full_flight=full, **kw)
            if out.kind != "timeout":
                break
        else:
            timeouts.append(1)
        return out

    sni = None if _is_ip(host) else host
    en = Enumerator(probe, sni)
    # One broad hello first: a silent, non-TLS or closed port is reported after one timeout, not
    # after a wave of parallel ones.
    first = await en.reachability()
    if first.kind in ("timeout", "garbage", "refused", "unreachable"):
        msg, reason = _describe_failure(first)
        ev = ctx.evidence.add(PROBE, target, False, msg, reason=reason, data={"handshakes": 1},
                              duration_ms=(time.perf_counter() - start) * 1000)
        return TlsResult(error=msg, evidence=[ev.id], handshakes=1, protocols={v: [] for v in TLS_VERSIONS},
                         duration_ms=round((time.perf_counter() - start) * 1000, 1))
    versions = ["TLSv1.3", "TLSv1.2", "TLSv1.1", "TLSv1.0"] + (["SSLv3"] if opts.sslv2_sslv3 else [])
    jobs: list[Any] = [en.version(v) for v in versions]
    if opts.sslv2_sslv3:
        jobs.append(en.sslv2())
    await asyncio.gather(*jobs)
    f = en.f
    accepted = [v for v in TLS_VERSIONS if v in f.versions and f.versions[v].accepted]
    if not accepted:
        msg, reason = _describe_failure(f.first_failure or _first_evidence(f))
        ev = ctx.evidence.add(PROBE, target, False, msg, reason=reason,
                              data={"handshakes": f.probes}, duration_ms=(time.perf_counter() - start) * 1000)
        return TlsResult(error=msg, evidence=[ev.id], handshakes=f.probes,
                         protocols={v: [] for v in TLS_VERSIONS},
                         duration_ms=round((time.perf_counter() - start) * 1000, 1))

    detail_jobs: list[Any] = []
    tls12ish = next((v for v in ("TLSv1.2", "TLSv1.1", "TLSv1.0", "SSLv3") if v in accepted), None)
    if tls12ish:
        detail_jobs.append(en.details_tls12(tls12ish))
    if "TLSv1.3" in accepted:
        detail_jobs.append(en.details_tls13())
    detail_jobs.append(en.fallback([v for v in accepted if v != "SSLv2"]))
    await asyncio.gather(*detail_jobs)

    evidence: list[str] = []
    # Client certificates.
    client_cert: Literal["required", "optional", "not_requested", "unknown"] = "unknown"
    creds = ctx.config.credentials.tls_client
    if f.certificate_request is False:
        client_cert = "not_requested"
    elif f.client_auth_tls13 is not None:
        client_cert = f.client_auth_tls13
    elif f.certificate_request and "TLSv1.2" in accepted:
        ok, detail = await ctx.limiter.run_blocking(host, _openssl_client_auth, host, port, to.tls_handshake, None, None)
        client_cert = "optional" if ok else "required"
        evidence.append(ctx.evidence.add(PROBE + ".client_auth", target, True,
                                         f"TLS 1.2 handshake without a client certificate: {detail}",
                                         data={"completed": ok},
                                         reason=None if ok else Reason.CLIENT_CERTIFICATE_REQUIRED).id)
    if creds is not None and f.certificate_request:
        pw = creds.key_password.resolve().get_secret_value() if creds.key_password else None
        ok, detail = await ctx.limiter.run_blocking(
            host, _openssl_client_auth, host, port, to.tls_handshake, None,
            (str(creds.cert_file), str(creds.key_file), pw))
        evidence.append(ctx.evidence.add(
            PROBE + ".client_auth", target, True,
            f"handshake with the configured client certificate: {detail}", data={"completed": ok},
            reason=None if ok else Reason.TLS_FAILURE).id)

    cert_info = None
    if f.certificates:
        try:
            cert_info = certificate.describe(host, f.certificates, ctx.config.credentials.ca_file)
        except ValueError as exc:
            evidence.append(ctx.evidence.add(PROBE + ".certificate", target, False, str(exc),
                                             reason=Reason.PROTOCOL_ERROR).id)

    protocols = {v: names(f.versions[v].suites) if v in f.versions else [] for v in TLS_VERSIONS}
    order_by_version = {v: f.versions[v].order for v in accepted if v != "SSLv2"}
    top = next((v for v in ("TLSv1.2", "TLSv1.3", "TLSv1.1", "TLSv1.0", "SSLv3") if v in order_by_version), None)
    pref = order_by_version.get(top, "unknown") if top else "unknown"
    if pref == "unknown":
        pref = next((o for o in order_by_version.values() if o != "unknown"), "unknown")
    groups = list(dict.fromkeys(f.groups13 + f.groups12 + ([f"DHE-{f.dhe_bits}"] if f.dhe_bits else [])))
    features = TlsFeatures(
        compression=f.compression, renegotiation_info=f.renegotiation_info,
        extended_master_secret=f.extended_master_secret, encrypt_then_mac=f.encrypt_then_mac,
        fallback_scsv=f.fallback_scsv, fallback_scsv_status=f.fallback_scsv_status,
        fallback_scsv_detail=f.fallback_scsv_detail, prefers_tls13=f.prefers_tls13,
    )
    vulns = Vulnerabilities(notes=["vulnerability tests not run (TlsAuditOptions.vulnerabilities off)"])
    if opts.vulnerabilities:
        from dcsaudit.probes.tls.vulns import check_vulnerabilities

        # After the enumeration, not alongside it: their connections would compete with ours for the
        # server's worker threads and make our handshakes time out. They get the audit's facts (versions,
        # suites, client-certificate requirement) and stay within the endpoint bound (issue 12 F1, issue 16).
        vulns, reneg = await check_vulnerabilities(
            ctx, host, port, protocols=protocols, client_cert=client_cert,
            robot=opts.robot, sni=sni, bound=to.endpoint - (time.perf_counter() - start) - 1.0)
        features = features.model_copy(update={"client_renegotiation": reneg})
    result = TlsResult(
        protocols=protocols, preference=pref, client_certificate=client_cert, groups=groups,
        signature_algorithms=list(dict.fromkeys(f.sigalgs13 + f.sigalgs12)), certificate=cert_info,
        preference_by_version=order_by_version, groups_tls13=f.groups13,
        groups_tls13_preference=f.groups13_order, groups_tls12=f.groups12,
        groups_tls12_preference=f.groups12_order, dhe_bits=f.dhe_bits,
        signature_algorithms_tls13=f.sigalgs13, signature_algorithms_tls13_preference=f.sigalgs13_order,
        signature_algorithms_tls12=f.sigalgs12, signature_algorithms_tls12_preference=f.sigalgs12_order,
        features=features, vulnerabilities=vulns, handshakes=f.probes,
    )
    elapsed = (time.perf_counter() - start) * 1000
    summary = (f"TLS: {', '.join(accepted)}; {sum(len(s) for s in protocols.values())} suites "
               f"({pref} order); client certificate {client_cert}; {f.probes} handshakes")
    main_ev = ctx.evidence.add(PROBE, target, True, summary, duration_ms=elapsed, data={
        "protocols": protocols, "preference": order_by_version, "groups": groups,
        "signature_algorithms": result.signature_algorithms, "features": features.model_dump(),
        "certificate_sha256": cert_info.sha256 if cert_info else None,
        "first_alerts": _alerts(f),
    })
    warnings = [f"{len(timeouts)} handshake(s) timed out twice; the lists may be incomplete"] if timeouts else []
    warnings += f.notes
    return result.model_copy(update={
        "warnings": warnings, "evidence": [main_ev.id, *evidence],
        "duration_ms": round(elapsed, 1),
    })


def _first_evidence(f: RawFindings) -> Outcome | None:
    for vr in f.versions.values():
        if vr.evidence:
            return vr.evidence[0]
    return None


def _alerts(f: RawFindings) -> dict[str, str]:
    out: dict[str, str] = {}
    for v, vr in f.versions.items():
        for o in vr.evidence:
            if not o.accepted:
                out[v] = alert_name(o.alert.description) if o.alert else o.kind
                break
    return out


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False
