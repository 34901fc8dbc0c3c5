"""LDAP facts (RFC 4511-4513) from a real OpenLDAP slapd on loopback through the runner's ``ldap`` stage:
anonymous bind allowed / refused, plaintext simple bind of the configured test account accepted / refused,
StartTLS and LDAPS sessions; Table N.11-1 and the LDAP row of N.8-1 (issue 15 item 4)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from dcsaudit.annex.network_tables import n8_1, n11_1
from dcsaudit.checks import REGISTRY
from dcsaudit.checks.base import AuditData
from dcsaudit.config import parse_config
from dcsaudit.context import AuditContext
from dcsaudit.models.core import Provenance
from dcsaudit.models.endpoint import Endpoint
from dcsaudit.runner import STAGES, Collected, run_stage
from tests.network_cells import cell_problems
from tests.peers.common import LOOPBACK, TestPKI
from tests.peers.network_peers import SlapdPeer, slapd

PASSWORD_ENV = "DCSAUDIT_TEST_LDAP_PASSWORD"


def _stage(peer: SlapdPeer, account: bool) -> tuple[list[Endpoint], AuditContext]:
    ldap: dict[str, Any] = {"ports": [peer.ldap_port], "ldaps_ports": [peer.ldaps_port] if peer.ldaps_port else []}
    if account:
        ldap.update(bind_dn=peer.admin_dn, bind_password={"env": PASSWORD_ENV})
    cfg = parse_config({"deployment": "t", "hosts": [{"address": LOOPBACK}],
                        "scan": {"timeouts": {"read": 2.0, "connect": 1.0}, "ldap": ldap}})
    ctx = AuditContext.create(cfg)
    # The inventory found the LDAP port(s) open.
    eps = [Endpoint(host=LOOPBACK, port=p, protocol="tcp", state="open", service="tls" if p == peer.ldaps_port
                    else "unknown") for p in (peer.ldap_port, peer.ldaps_port) if p]
    got = Collected(endpoints=eps)
    asyncio.run(run_stage(ctx, next(s for s in STAGES if s.name == "ldap"), got))
    return got.endpoints, ctx


def _status(eps: list[Endpoint], ctx: AuditContext, cid: str) -> list[str]:
    spec = REGISTRY.get(cid)
    assert spec is not None
    return [f.status for f in spec.run(AuditData(endpoints=eps, evidence=ctx.evidence.items()))]


def test_open_slapd_with_starttls_and_ldaps(pki: TestPKI, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given slapd allowing anonymous binds and plaintext simple binds, with StartTLS and an LDAPS port
    monkeypatch.setenv(PASSWORD_ENV, "test-only")
    with slapd(pki=pki, admin_password="test-only") as peer:
        # When the ldap stage runs with the configured test account
        eps, ctx = _stage(peer, account=True)
    plain, ldaps = (e.ldap for e in eps)
    assert plain is not None and ldaps is not None
    # Then the root DSE facts are read
    assert plain.answered and plain.versions == [3] and plain.naming_contexts == ["dc=example,dc=org"]
    assert plain.starttls_offered is True
    # And the anonymous bind and the plaintext simple bind are accepted
    assert plain.anonymous_bind == "accepted" and plain.simple_bind_plaintext == "accepted"
    assert plain.simple_bind_result == 0
    # And StartTLS and LDAPS each negotiated a TLS session showing the test server certificate
    assert plain.tls is not None and plain.tls.error is None and plain.tls.version in ("TLSv1.2", "TLSv1.3")
    assert ldaps.ldaps and ldaps.tls is not None and ldaps.tls.certificate is not None
    assert ldaps.simple_bind_plaintext is None  # never tried inside LDAPS: it proves nothing about plaintext
    assert _status(eps, ctx, "ldap.anonymous_bind_refused") == ["fail", "fail"]
    assert _status(eps, ctx, "ldap.no_plaintext_simple_bind") == ["fail"]
    assert _status(eps, ctx, "ldap.tls_available") == ["pass", "pass"]
    # And the password never appears in the evidence
    assert "test-only" not in repr(ctx.evidence.items())
    data = AuditData(endpoints=eps, evidence=ctx.evidence.items())
    t = n11_1(data)
    by = {r[0].value: r[1] for r in t.rows}
    assert by[f"Anonymous bind ({LOOPBACK}:{peer.ldap_port})"].value == "accepted"
    assert by[f"Simple bind without TLS ({LOOPBACK}:{peer.ldap_port})"].value == "accepted"
    assert by[f"StartTLS ({LOOPBACK}:{peer.ldap_port})"].value.startswith("TLSv1.")
    assert by[f"LDAPS ({LOOPBACK}:{peer.ldaps_port})"].provenance == Provenance.VERIFIED
    ldap_row = next(r for r in n8_1(data).rows if r[0].value == "LDAP server")
    assert ldap_row[1].value == "yes" and "anonymous bind accepted" in ldap_row[2].value
    assert not cell_problems(ctx.evidence.items(), [t, n8_1(data)], ("ldap.", "ntp."))


def test_locked_down_slapd_refuses_anonymous_and_plaintext_binds(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given slapd with "disallow bind_anon" and "security simple_bind=128", without TLS
    monkeypatch.setenv(PASSWORD_ENV, "test-only")
    with slapd(anonymous=False, plaintext_simple_bind=False, admin_password="test-only") as peer:
        eps, ctx = _stage(peer, account=True)
    (r,) = (e.ldap for e in eps)
    assert r is not None and r.answered
    # Then both binds are refused, the simple one with confidentialityRequired (13)
    assert r.anonymous_bind == "refused" and r.simple_bind_plaintext == "refused" and r.simple_bind_result == 13
    assert r.starttls_offered is False and r.tls is None
    assert _status(eps, ctx, "ldap.anonymous_bind_refused") == ["pass"]
    assert _status(eps, ctx, "ldap.no_plaintext_simple_bind") == ["pass"]
    assert _status(eps, ctx, "ldap.tls_available") == ["fail"]  # no StartTLS, no LDAPS


def test_without_an_account_no_simple_bind_is_tried() -> None:
    # Given slapd and no configured test account
    with slapd() as peer:
        eps, ctx = _stage(peer, account=False)
    (r,) = (e.ldap for e in eps)
    assert r is not None and r.simple_bind_plaintext is None
    assert not [e for e in ctx.evidence.items() if e.probe == "ldap.simple_bind"]
    assert _status(eps, ctx, "ldap.no_plaintext_simple_bind") == []
    t = n11_1(AuditData(endpoints=eps, evidence=ctx.evidence.items()))
    simple = next(r for r in t.rows if r[0].value.startswith("Simple bind without TLS"))
    assert simple[1].provenance == Provenance.NOT_OBSERVED and "no test account" in simple[1].note
