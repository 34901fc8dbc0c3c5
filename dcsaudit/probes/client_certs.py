"""Does the product, as a TLS server, refuse client certificates it must refuse? (issue 15 item 6)

PS3.15 B.9/B.12 make the TLS peers authenticate each other with certificates; RFC 5280 §6 says how a
certificate path is validated (trust anchor, validity period, key usage). One handshake presents one
defective certificate — from an unknown CA, self-signed, expired, not yet valid, wrong key usage — and
records what the product did: a TLS alert or a closed connection (refused), or a session that went on
(accepted). In TLS 1.3 the server judges the client certificate after the client's Finished, so the
handshake completing proves nothing: the probe then asks for an application answer (an A-ASSOCIATE-RQ
for Verification on DICOM, ``GET /`` on HTTPS) or waits briefly for the alert.

Certificates are generated per run in memory (pyOpenSSL takes them as objects: nothing is written to
disk). Expired, not-yet-valid and wrong-key-usage certificates are signed by a CA the product trusts
when one is configured (``scan.client_certs.signing_ca_*``), so each has only its one defect; otherwise
they come from the unknown CA too and a refusal cannot say which defect was noticed (``isolated``).
Nothing is changed on the product: one handshake and at most one harmless request per certificate.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL

from dcsaudit.context import AuditContext
from dcsaudit.models.core import Reason
from dcsaudit.models.endpoint import Endpoint
from dcsaudit.models.network import (
    ClientCertKind,
    ClientCertOutcome,
    ClientCertRequest,
    ClientCertResult,
    ClientCertTrial,
)
from dcsaudit.probes import dicom_ul as ul

PROBE = "tls.client_certs"
T = TypeVar("T")
# How long to wait for a post-handshake refusal when the service has no request we can send.
SETTLE_SECONDS = 1.0
KINDS: tuple[ClientCertKind, ...] = ("untrusted_ca", "self_signed", "expired", "not_yet_valid", "wrong_key_usage")
# Defects a CA the product trusts can carry alone; the other two are about the issuer itself.
NEEDS_TRUSTED_SIGNER = frozenset({"expired", "not_yet_valid", "wrong_key_usage"})


@dataclass(frozen=True)
class Credential:
    cert: x509.Certificate
    key: CertificateIssuerPrivateKeyTypes
    chain: tuple[x509.Certificate, ...] = ()


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dcsaudit test (not trusted)")])


def _issue(cn: str, issuer: Credential | None, *, ca: bool = False, days: tuple[int, int] = (-1, 30),
           key_usage: str = "client", key: ec.EllipticCurvePrivateKey | None = None) -> Credential:
    """One certificate; ``issuer`` None makes it self-signed. ``days`` are offsets from now."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    subject = _name(cn)
    b = (x509.CertificateBuilder().subject_name(subject)
         .issuer_name(issuer.cert.subject if issuer else subject)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now + timedelta(days=days[0])).not_valid_after(now + timedelta(days=days[1]))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        b = b.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
    elif key_usage == "client":
        b = b.add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    else:  # wrong: nonRepudiation only (no digitalSignature) and serverAuth only (no clientAuth)
        b = b.add_extension(x509.KeyUsage(False, True, False, False, False, False, False, False, False), critical=True)
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    signer_key = issuer.key if issuer else key
    cert = b.sign(signer_key, hashes.SHA256())
    return Credential(cert, key, (issuer.cert,) if issuer and issuer.cert.subject != issuer.cert.issuer else ())


@dataclass(frozen=True)
class CertSet:
    """The defective certificates of one run (and the control, when one can be made)."""

    certs: dict[ClientCertKind, Credential]
    isolated: dict[ClientCertKind, bool]
    signing_ca: bool


def make_certificates(signing_ca: Credential | None) -> CertSet:
    unknown_ca = _issue("dcsaudit unknown CA", None, ca=True, days=(-1, 2))
    signer = signing_ca or unknown_ca
    certs: dict[ClientCertKind, Credential] = {
        "untrusted_ca": _issue("dcsaudit client (unknown CA)", unknown_ca),
        "self_signed": _issue("dcsaudit client (self-signed)", None),
        "expired": _issue("dcsaudit client (expired)", signer, days=(-30, -1)),
        "not_yet_valid": _issue("dcsaudit client (not yet valid)", signer, days=(30, 60)),
        "wrong_key_usage": _issue("dcsaudit client (wrong key usage)", signer, key_usage="wrong"),
    }
    if signing_ca is not None:
        certs["control"] = _issue("dcsaudit client (control)", signing_ca)
    isolated = {k: k not in NEEDS_TRUSTED_SIGNER or signing_ca is not None for k in certs}
    return CertSet(certs, isolated, signing_ca is not None)


def load_signing_ca(cert_file: str, key_file: str, password: bytes | None) -> Credential:
    """The deployment's test CA (PEM certificate and key) that signs the single-defect certificates."""
    with open(cert_file, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    with open(key_file, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=password)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError("the signing CA key must be an EC or RSA key")
    return Credential(cert, key)


@dataclass
class Attempt:
    outcome: ClientCertOutcome
    version: str | None = None
    alert: str | None = None
    answer: str | None = None
    detail: str = ""


def _pump(conn: SSL.Connection, sock: socket.socket, fn: Callable[[], T], deadline: float) -> T:
    """Drive a non-blocking pyOpenSSL call to completion or the deadline (TimeoutError)."""
    for _ in range(10_000):  # bounded: each round waits for the socket or ends at the deadline
        want: tuple[list[socket.socket], list[socket.socket]]
        try:
            return fn()
        except SSL.WantReadError:
            want = ([sock], [])
        except SSL.WantWriteError:
            want = ([], [sock])
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        select.select(want[0], want[1], [], left)
    raise TimeoutError


def _reason(exc: SSL.Error) -> str:
    parts = exc.args[0] if exc.args and isinstance(exc.args[0], list) else []
    reasons = [p[2] for p in parts if isinstance(p, tuple) and len(p) == 3 and p[2]]
    return "; ".join(reasons) or str(exc) or type(exc).__name__


def _request(service: str, host: str, port: int, called_ae: str, calling_ae: str) -> bytes | None:
    if service == "dicom-tls":
        return ul.encode_associate_rq(called_ae, calling_ae, [ul.ProposedContext(1, ul.VERIFICATION,
                                                                                 (ul.IMPLICIT_LE,))])
    if service == "https":
        h = f"[{host}]" if ":" in host else host
        return f"GET / HTTP/1.1\r\nHost: {h}:{port}\r\nUser-Agent: dcsaudit\r\nConnection: close\r\n\r\n".encode()
    return None


def _classify_answer(service: str, data: bytes) -> tuple[ClientCertOutcome, str]:
    if service == "dicom-tls" and data:
        name = ul.PDU_NAMES.get(data[0], f"PDU type {data[0]}")
        return ("accepted" if data[0] == 0x02 else "association_rejected" if data[0] in (0x03, 0x07)
                else "accepted"), str(name)
    if data.startswith(b"HTTP/"):
        return "accepted", data.split(b"\r\n", 1)[0][:80].decode("latin-1")
    return "accepted", f"{len(data)} byte(s) of application data"


def attempt(host: str, port: int, cred: Credential, *, service: str, sni: str | None, connect_timeout: float,
            handshake_timeout: float, read_timeout: float, called_ae: str = "ANY-SCP",
            calling_ae: str = "DCSAUDIT") -> Attempt:
    """One connection presenting ``cred`` (blocking; run it in the worker pool). Never raises."""
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.set_verify(SSL.VERIFY_NONE, lambda *a: True)  # we audit the server's judgement, not ours
    try:
        ctx.set_cipher_list(b"ALL:@SECLEVEL=0")
    except SSL.Error:
        pass
    ctx.use_certificate(cred.cert)
    ctx.use_privatekey(cred.key)
    for extra in cred.chain:
        ctx.add_extra_chain_cert(extra)
    try:
        sock = socket.create_connection((host, port), timeout=connect_timeout)
    except TimeoutError:
        return Attempt("undetermined", detail="TCP connect timed out")
    except OSError as exc:
        return Attempt("undetermined", detail=f"TCP connect failed: {exc.strerror or type(exc).__name__}")
    sock.setblocking(False)
    conn = SSL.Connection(ctx, sock)
    conn.set_connect_state()
    if sni:
        conn.set_tlsext_host_name(sni.encode("idna"))
    try:
        try:
            _pump(conn, sock, conn.do_handshake, time.monotonic() + handshake_timeout)
        except TimeoutError:
            return Attempt("undetermined", detail="no end of the handshake before the timeout")
        except SSL.ZeroReturnError:
            return Attempt("refused", detail="connection closed during the handshake")
        except SSL.SysCallError as exc:
            return Attempt("refused", detail=f"connection closed during the handshake ({exc.args[-1]})")
        except SSL.Error as exc:
            reason = _reason(exc)
            return Attempt("refused", alert=reason, detail=f"handshake failed: {reason}")
        version = conn.get_protocol_version_name()
        request = _request(service, host, port, called_ae, calling_ae)
        wait = read_timeout if request else SETTLE_SECONDS
        try:
            if request:
                _pump(conn, sock, lambda: conn.sendall(request), time.monotonic() + read_timeout)
            data = _pump(conn, sock, lambda: conn.recv(256), time.monotonic() + wait)
        except TimeoutError:
            what = "no answer to the request" if request else "no refusal"
            return Attempt("accepted", version, detail=f"handshake completed; {what} within {wait:.1f} s, the "
                           "session stays open")
        except SSL.ZeroReturnError:
            return Attempt("refused", version, detail="handshake completed, then the server closed the session "
                           "(close_notify) without an answer")
        except SSL.SysCallError as exc:
            return Attempt("refused", version, detail=f"handshake completed, then the connection closed without an "
                           f"answer ({exc.args[-1]})")
        except SSL.Error as exc:
            reason = _reason(exc)
            return Attempt("refused", version, alert=reason, detail=f"handshake completed, then refused: {reason}")
        if not data:
            return Attempt("refused", version, detail="handshake completed, then the connection closed")
        outcome, answer = _classify_answer(service, data)
        if service == "dicom-tls" and data[:1] == b"\x02":
            try:  # release politely: one A-RELEASE-RQ, the answer is not needed
                _pump(conn, sock, lambda: conn.sendall(ul.RELEASE_RQ), time.monotonic() + 1.0)
                _pump(conn, sock, lambda: conn.recv(64), time.monotonic() + 1.0)
            except (TimeoutError, SSL.Error):
                pass
        return Attempt(outcome, version, answer=answer, detail=f"handshake completed; the server answered {answer}")
    finally:
        try:
            conn.shutdown()
        except SSL.Error:
            pass
        sock.close()


def _requested(ep: Endpoint) -> ClientCertRequest:
    return ep.tls.client_certificate if ep.tls is not None and ep.tls.error is None else "unknown"


def _called_ae(ctx: AuditContext, ep: Endpoint) -> str:
    for ae in ctx.config.application_entities:
        if ctx.config.address_of(ae.host) == ep.host and ae.port == ep.port:
            return ae.ae_title
    return "ANY-SCP"


def _configured_control(ctx: AuditContext) -> Credential | None:
    creds = ctx.config.credentials.tls_client
    if creds is None:
        return None
    pw = creds.key_password.resolve().get_secret_value().encode() if creds.key_password else None
    with open(creds.cert_file, "rb") as f:
        certs = x509.load_pem_x509_certificates(f.read())
    with open(creds.key_file, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=pw)
    return Credential(certs[0], key, tuple(certs[1:]))  # type: ignore[arg-type]


async def probe_client_certs(ctx: AuditContext, ep: Endpoint, certs: CertSet) -> ClientCertResult:
    """Present each defective certificate once to one TLS endpoint. Never raises for network conditions."""
    requested = _requested(ep)
    if requested == "not_requested":
        ev = ctx.evidence.add(PROBE, ep.key, True, "the server does not ask for a client certificate: a "
                              "defective one would never be sent, so nothing was tried", reason=Reason.SKIPPED)
        return ClientCertResult(requested=requested, signing_ca=certs.signing_ca, evidence=[ev.id])
    to = ctx.config.scan.timeouts
    sni = None if _is_ip(ep.host) else ep.host
    called = _called_ae(ctx, ep)
    evidence: list[str] = []

    async def one(kind: ClientCertKind, cred: Credential, isolated: bool) -> ClientCertTrial:
        start = time.perf_counter()
        a = await ctx.limiter.run_blocking(
            ep.host, attempt, ep.host, ep.port, cred, service=ep.service, sni=sni, connect_timeout=to.connect,
            handshake_timeout=to.tls_handshake, read_timeout=to.read, called_ae=called,
            calling_ae=ctx.config.scan.calling_ae_title)
        what = "the control certificate" if kind == "control" else f"a client certificate ({kind.replace('_', ' ')})"
        ev = ctx.evidence.add(
            PROBE, ep.key, a.outcome != "undetermined", f"{what}: {a.outcome} — {a.detail}",
            reason=Reason.TIMEOUT if a.outcome == "undetermined" and "timed out" in a.detail else
            Reason.TLS_FAILURE if a.outcome == "undetermined" else None,
            data={"kind": kind, "outcome": a.outcome, "tls_version": a.version, "alert": a.alert,
                  "isolated": isolated, "subject": cred.cert.subject.rfc4514_string()},
            duration_ms=(time.perf_counter() - start) * 1000)
        evidence.append(ev.id)
        return ClientCertTrial(kind=kind, outcome=a.outcome, isolated=isolated, tls_version=a.version,
                               alert=a.alert, answer=a.answer, detail=a.detail, evidence=ev.id)

    control: ClientCertTrial | None = None
    try:
        good = _configured_control(ctx) or certs.certs.get("control")
    except (OSError, ValueError, TypeError) as exc:
        good = None
        evidence.append(ctx.evidence.add(PROBE, ep.key, False, f"the configured client certificate could not be "
                                         f"loaded: {type(exc).__name__}", reason=Reason.NOT_AVAILABLE).id)
    if good is not None:
        control = await one("control", good, True)
    # One after another: small servers (openssl s_server, modalities) serve one connection at a time.
    trials = [await one(k, certs.certs[k], certs.isolated[k]) for k in KINDS]
    return ClientCertResult(requested=requested, signing_ca=certs.signing_ca, control=control, trials=trials,
                            evidence=evidence)


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
