"""User Identity Negotiation probe credentials (PS3.7 D.3.3.7, PS3.15 B.4–B.7, PS3.2 N.8.5.2).

Method: a baseline without identity, then types 1–5 with positive-response-requested and *invalid*
credentials (random user, random passcode, bogus Kerberos ticket, bogus SAML assertion, unsigned
JWT), then — when the config gives them — valid credentials. What the answers prove is decided in
:mod:`dcsaudit.rules.association_answers` (per type: no identity vs invalid vs valid credentials).

A type 2 passcode is sent without TLS only when ``scan.intrusive.passcode_over_plaintext`` allows it.
Secrets are resolved only here, never logged, never stored.
"""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass

from dcsaudit.config import ConfigError, UserIdentityCredentials
from dcsaudit.probes.dicom_ul import UserIdentityRQ


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def invalid_identity(identity_type: int) -> UserIdentityRQ:
    """Credentials that no acceptor should accept: random, unsigned, syntactically plausible."""
    tag = secrets.token_hex(6)
    if identity_type == 1:
        return UserIdentityRQ(1, f"dcsaudit-{tag}".encode())
    if identity_type == 2:
        return UserIdentityRQ(2, f"dcsaudit-{tag}".encode(), secrets.token_urlsafe(18).encode())
    if identity_type == 3:
        # Not a valid RFC 4120 AP-REQ: an ASN.1 APPLICATION 14 tag followed by random bytes.
        return UserIdentityRQ(3, b"\x6e\x20" + secrets.token_bytes(32))
    if identity_type == 4:
        xml = (f'<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_dcsaudit{tag}" '
               f'Version="2.0" IssueInstant="2000-01-01T00:00:00Z"><saml:Issuer>dcsaudit</saml:Issuer>'
               f'<saml:Subject><saml:NameID>dcsaudit-{tag}</saml:NameID></saml:Subject></saml:Assertion>')
        return UserIdentityRQ(4, xml.encode())
    header = _b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    claims = _b64url(json.dumps({"sub": f"dcsaudit-{tag}", "iss": "dcsaudit", "exp": 946684800}).encode())
    return UserIdentityRQ(5, f"{header}.{claims}.".encode())


@dataclass(frozen=True)
class ValidIdentity:
    identity_type: int
    rq: UserIdentityRQ


def valid_identities(creds: UserIdentityCredentials | None, *, passcode_allowed: bool) -> tuple[list[ValidIdentity], list[str]]:
    """Valid identities from the config (resolved now), and notes on what was left out and why."""
    out: list[ValidIdentity] = []
    notes: list[str] = []
    if creds is None:
        return out, notes
    try:
        if creds.username:
            out.append(ValidIdentity(1, UserIdentityRQ(1, creds.username.encode())))
            if creds.passcode is not None:
                if passcode_allowed:
                    pw = creds.passcode.resolve().get_secret_value().encode()
                    out.append(ValidIdentity(2, UserIdentityRQ(2, creds.username.encode(), pw)))
                else:
                    notes.append("valid type 2 not sent: no TLS and scan.intrusive.passcode_over_plaintext is false")
        for t, ref in ((3, creds.kerberos_ticket), (4, creds.saml_assertion), (5, creds.jwt)):
            if ref is not None:
                out.append(ValidIdentity(t, UserIdentityRQ(t, ref.resolve().get_secret_value().encode())))
    except ConfigError as exc:  # the message names the reference, never the value
        notes.append(f"valid credentials unavailable: {exc}")
    return out, notes
