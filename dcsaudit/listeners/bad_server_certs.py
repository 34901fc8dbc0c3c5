"""``dcsaudit listen --tls-cert-tests``: does the product, as a TLS client, refuse server certificates it must
refuse? (issue 15 item 6, the client side; PS3.15 B.9/B.12, RFC 5280 §6, RFC 6125 §6 for the host name)

For each peer address, the TLS connections that send a ClientHello are served in turn: the control (the
listener's own certificate), then one from an unknown CA, a self-signed one, an expired one and one for
another host name; after that the control again, so the product can work normally. A connection that
sends no ClientHello (a port check) gets nothing from the cycle. Each served connection is recorded: which
certificate, how the handshake ended, the alert the product sent, and whether an A-ASSOCIATE-RQ followed
(the product went on with the association: a finding for a defective certificate).

The expired and wrong-host certificates are signed by a CA the product trusts when one is given
(``--tls-cert-signing-ca``/``--tls-cert-signing-key``), so each has only its one defect; otherwise they come
from the unknown CA too and a refusal does not say which defect was noticed (``isolated`` false).
Certificates are made per run with ``cryptography`` (:mod:`dcsaudit.certs`); Python's ``ssl`` loads them
from files, which live in the listener's private temporary directory (0600 keys) and go when it stops.
"""

from __future__ import annotations

import hashlib
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from dcsaudit import certs
from dcsaudit.models.network import SERVER_CERT_KINDS, ServedCertificate, ServerCertKind

SEQUENCE: tuple[ServerCertKind, ...] = ("control", *SERVER_CERT_KINDS)
# RFC 6761 §6.4: names under .invalid never resolve, so this certificate names no host the product can reach.
WRONG_HOST = "wrong-host.invalid"
MAX_PEERS = 4096  # rotation state kept per peer address; beyond that new peers get the control only


@dataclass(frozen=True)
class SigningCa:
    """A CA the product trusts (PEM certificate and unencrypted key), to sign single-defect certificates."""

    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class Served:
    kind: ServerCertKind
    context: ssl.SSLContext
    isolated: bool
    subject: str
    sha256: str


def load_signing_ca(ca: SigningCa) -> tuple[x509.Certificate, certs.IssuerKey]:
    cert = x509.load_pem_x509_certificate(ca.cert_file.read_bytes())
    key = serialization.load_pem_private_key(ca.key_file.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError("the signing CA key must be an EC or RSA key")
    return cert, key


def _cert_of(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


class Rotation:
    """Which certificate each new TLS connection from a peer gets (thread-safe)."""

    def __init__(self, make_context: Callable[[Path, Path], ssl.SSLContext], control: tuple[Path, Path] | None,
                 directory: Path, hosts: list[str], signing_ca: SigningCa | None) -> None:
        """``control``: the listener's own certificate and key files (None: one is issued here, by the
        signing CA when there is one). Raises OSError/ValueError if the signing CA cannot be loaded."""
        signer = load_signing_ca(signing_ca) if signing_ca is not None else None
        unknown_ca = certs.issue("dcsaudit unknown CA (not trusted)", ca=True, days=2)
        made: dict[ServerCertKind, tuple[x509.Certificate, certs.PrivateKey]] = {
            "untrusted_ca": certs.issue("dcsaudit listener (unknown CA)", hosts=hosts, days=2, issuer=unknown_ca),
            "self_signed": certs.issue("dcsaudit listener (self-signed)", hosts=hosts, days=2),
            "expired": certs.issue("dcsaudit listener (expired)", hosts=hosts, days=-1, not_before_days=-30,
                                   issuer=signer or unknown_ca),
            # No subjectAltName: the name a client can match is the CN alone (RFC 6125 §6.4.4), and it is wrong.
            "wrong_host_name": certs.issue(WRONG_HOST, days=2, issuer=signer or unknown_ca),
        }
        if control is None:
            cert, key = certs.issue("dcsaudit listener", hosts=hosts, days=2, issuer=signer)
            control = certs.write_pem(cert, key, directory, "control")
        self._served: dict[ServerCertKind, Served] = {
            "control": self._entry("control", make_context(*control), _cert_of(control[0]), True)}
        for kind, (cert, key) in made.items():
            files = certs.write_pem(cert, key, directory, kind)
            isolated = kind in ("untrusted_ca", "self_signed") or signer is not None
            self._served[kind] = self._entry(kind, make_context(*files), cert, isolated)
        self._next: dict[str, int] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _entry(kind: ServerCertKind, context: ssl.SSLContext, cert: x509.Certificate, isolated: bool) -> Served:
        der = cert.public_bytes(serialization.Encoding.DER)
        return Served(kind, context, isolated, cert.subject.rfc4514_string(), hashlib.sha256(der).hexdigest())

    def next_for(self, peer: str) -> Served:
        """The certificate for this peer's next TLS connection: the cycle once, then the control."""
        with self._lock:
            i = self._next.get(peer, 0)
            if peer in self._next or len(self._next) < MAX_PEERS:
                self._next[peer] = i + 1
            else:
                i = len(SEQUENCE)
        return self._served[SEQUENCE[i] if i < len(SEQUENCE) else "control"]


def alert_of(exc: BaseException) -> str | None:
    """The TLS alert the peer sent, from OpenSSL's reason (e.g. ``TLSV1_ALERT_UNKNOWN_CA``)."""
    reason = getattr(exc, "reason", None)
    return reason if isinstance(reason, str) and "ALERT" in reason else None


@dataclass
class Trial:
    """One served connection, filled in as it goes; frozen into a :class:`ServedCertificate` at the end."""

    served: Served
    handshake: Literal["completed", "failed", "timed_out", "interrupted"] = "interrupted"
    alert: str | None = None
    error: str = ""
    request: Literal["received", "closed", "timed_out", "none"] = "none"

    def handshake_failed(self, exc: BaseException) -> None:
        self.handshake = "timed_out" if isinstance(exc, TimeoutError) else "failed"
        self.alert = alert_of(exc)
        self.error = f"{type(exc).__name__}: {exc}"[:200]

    def freeze(self) -> ServedCertificate:
        outcome: Literal["accepted", "refused", "undetermined"]
        if self.handshake == "failed":
            outcome = "refused"
            detail = f"the handshake failed: {self.alert or self.error or 'connection closed'}"
        elif self.handshake != "completed":
            outcome = "undetermined"
            detail = ("the handshake did not end in time" if self.handshake == "timed_out"
                      else "the listener stopped during the handshake")
        elif self.request == "received":
            outcome, detail = "accepted", "the handshake completed and the product sent an A-ASSOCIATE-RQ"
        elif self.request == "closed":
            outcome, detail = "refused", "the handshake completed, then the product closed without an A-ASSOCIATE-RQ"
        else:
            outcome = "undetermined"
            detail = "the handshake completed, but neither an A-ASSOCIATE-RQ nor a close followed in time"
        s = self.served
        return ServedCertificate(kind=s.kind, isolated=s.isolated, subject=s.subject, sha256=s.sha256,
                                 handshake=self.handshake, alert=self.alert, associate_rq=self.request == "received",
                                 outcome=outcome, detail=detail)
