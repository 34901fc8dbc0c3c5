"""User Identity Negotiation probes and their classification (PS3.7 D.3.3.7, PS3.15 B.4–B.7, PS3.2 N.8.5.2).

Method (standards digest §2.4): a baseline without identity, then types 1–5 with positive-response-
requested and *invalid* credentials (random user, random passcode, bogus Kerberos ticket, bogus SAML
assertion, unsigned JWT), then — when the config gives them — valid credentials. Per type:

* A-ASSOCIATE-AC with a User Identity AC item (0x59) → ``accepted``
* A-ASSOCIATE-AC without 0x59 → ``ignored`` (PS3.7: an acceptor without support just accepts)
* A-ASSOCIATE-RJ → ``rejected`` (the triple is kept; PS3.7 D.3.3.7.3 wants rejected-permanent,
  source 2 ACSE — pynetdicom sends transient, which is flagged as ``transient`` coding)

A type 2 passcode is sent without TLS only when ``scan.intrusive.passcode_over_plaintext`` allows it.
The contract map ``types`` holds the outcome with valid credentials where they were tested, else the
outcome with invalid ones. Secrets are resolved only here, never logged, never stored.
"""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass

from dcsaudit.config import ConfigError, UserIdentityCredentials
from dcsaudit.models.dicom import AssociationAttempt, RejectTriple, UidOutcome, UserIdentityResult
from dcsaudit.probes.dicom_ul import UserIdentityRQ

TYPE_NAMES = {1: "username", 2: "username and passcode", 3: "Kerberos service ticket", 4: "SAML assertion",
              5: "JSON Web Token"}


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


def outcome_of(attempt: AssociationAttempt) -> UidOutcome | None:
    if attempt.outcome == "accepted":
        return "accepted" if attempt.user_identity_response else "ignored"
    if attempt.outcome == "rejected":
        return "rejected"
    return None  # no protocol answer: the type stays not_tested


def reject_coding(triples: list[RejectTriple]) -> str:
    if not triples:
        return "none"
    if all(t.result == 1 and t.source == 2 for t in triples):
        return "conformant"
    if all(t.source == 2 for t in triples) and any(t.result == 2 for t in triples):
        return "transient"
    return "non_standard"


def classify(baseline: AssociationAttempt | None, invalid: dict[int, AssociationAttempt],
             valid: dict[int, AssociationAttempt], notes: list[str]) -> UserIdentityResult:
    """Turn the probe attempts into the N.8-9 answer: not supported / supported, not enforced / enforced."""
    types: dict[str, UidOutcome] = {str(t): "not_tested" for t in range(1, 6)}
    valid_out: dict[str, UidOutcome] = {}
    triples: dict[str, RejectTriple] = {}
    for t, a in invalid.items():
        o = outcome_of(a)
        if o is not None:
            types[str(t)] = o
        if a.reject is not None:
            triples[str(t)] = a.reject
    for t, a in valid.items():
        o = outcome_of(a)
        if o is not None:
            valid_out[str(t)] = o
            types[str(t)] = o
    notes = list(notes)
    invalid_outcomes = {outcome_of(a) for a in invalid.values()} - {None}
    enforced: bool | None = None
    support = "unknown"
    if baseline is not None and baseline.outcome == "accepted":
        enforced = False
        if invalid_outcomes & {"rejected", "accepted"} or "accepted" in valid_out.values():
            support = "supported_not_enforced"
        elif invalid_outcomes:
            support = "not_supported"
        for t, a in invalid.items():
            if outcome_of(a) == "accepted" and t != 1:
                notes.append(f"type {t} ({TYPE_NAMES[t]}) with invalid credentials got a positive response")
    elif baseline is not None and baseline.outcome == "rejected" and baseline.reject is not None:
        if baseline.reject.source == 1 and baseline.reject.reason in (3, 7):
            notes.append("the baseline was rejected for its AE titles; enforcement cannot be judged")
        elif invalid_outcomes & {"ignored", "accepted"}:
            enforced = False
            support = "supported_not_enforced"
            notes.append("an association without identity is rejected, but one with invalid credentials is accepted")
        elif "rejected" in invalid_outcomes:
            enforced = True
            support = "enforced"
            if not valid:
                notes.append("no valid credentials configured: acceptance of a valid identity not verified")
            elif not set(valid_out.values()) & {"accepted", "ignored"}:
                notes.append("every association was rejected, including with the configured valid credentials")
    return UserIdentityResult(types=types, enforced=enforced, support=support,
                              valid_credentials=valid_out, reject_triples=triples,
                              reject_coding=reject_coding(list(triples.values())),
                              notes=notes)
