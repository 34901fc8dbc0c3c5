"""DNS (RFC 1035, RFC 5358, RFC 5936) and DNS-SD (RFC 6763) facts from real dnsmasq peers on loopback
(issue 15 items 2 and 3): open resolver or not, zone transfer refused or allowed, DICOM adverts compared
with what the audit observed. Recursion goes to a second loopback dnsmasq, never further."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from dcsaudit.annex.network_tables import n8_1, n11_1_4
from dcsaudit.checks import REGISTRY
from dcsaudit.checks.base import AuditData
from dcsaudit.config import parse_config
from dcsaudit.context import AuditContext
from dcsaudit.models.core import Provenance
from dcsaudit.models.dicom import ApplicationEntity
from dcsaudit.models.endpoint import Endpoint, Service
from dcsaudit.runner import STAGES, Collected, run_stage
from tests.network_cells import cell_problems
from tests.peers.common import LOOPBACK
from tests.peers.network_peers import DOMAIN, DnsAdvert, dnsmasq

RECURSION_NAME = "dcsaudit-recursion-check.example."


def _run(stage_names: tuple[str, ...], scan: dict[str, Any], endpoints: list[Endpoint]) -> tuple[Collected, AuditContext]:
    cfg = parse_config({"deployment": "t", "hosts": [{"address": LOOPBACK}],
                        "scan": {"timeouts": {"read": 1.5, "connect": 1.0}, **scan}})
    ctx = AuditContext.create(cfg)
    got = Collected(endpoints=endpoints)
    for name in stage_names:
        asyncio.run(run_stage(ctx, next(s for s in STAGES if s.name == name), got))
    return got, ctx


def _tcp(port: int, service: Service = "unknown") -> Endpoint:
    return Endpoint(host=LOOPBACK, port=port, protocol="tcp", state="open", service=service)


def _statuses(got: Collected, ctx: AuditContext, cid: str, aes: list[ApplicationEntity] | None = None) -> list[str]:
    spec = REGISTRY.get(cid)
    assert spec is not None
    data = AuditData(endpoints=got.endpoints, evidence=ctx.evidence.items(), application_entities=aes or [])
    return [f.status for f in spec.run(data)]


def test_forwarding_dnsmasq_is_an_open_resolver_and_gives_its_zone_away() -> None:
    # Given a dnsmasq that forwards other names to a second loopback dnsmasq, and allows AXFR of its zone
    with dnsmasq(answer_all="example") as upstream, dnsmasq(upstream=upstream, allow_axfr=True) as port:
        # When the dns stage runs with the product's zone configured (TCP 53-equivalent seen open)
        got, ctx = _run(("dns",), {"dns": {"ports": [port], "zone": f"{DOMAIN}."}}, [_tcp(port)])
    udp = next(e for e in got.endpoints if e.protocol == "udp")
    r = udp.dns
    assert r is not None and r.answers_udp and r.answers_tcp
    # Then it recursed for the outside name, answered with EDNS, and started the zone transfer
    assert r.open_resolver is True and r.recursion_available is True
    assert r.edns is True and r.dnssec_do is True and r.dnssec_signatures is False
    assert r.axfr == "allowed"
    assert _statuses(got, ctx, "dns.not_open_resolver") == ["fail"]
    assert _statuses(got, ctx, "dns.zone_transfer_refused") == ["fail"]
    data = AuditData(endpoints=got.endpoints, evidence=ctx.evidence.items())
    row = next(r for r in n8_1(data).rows if r[0].value == "DNS server")
    assert row[1].value == "yes" and "open resolver" in row[2].value and "AXFR allowed" in row[2].value
    assert not cell_problems(ctx.evidence.items(), [n8_1(data)], ("dns.",))


def test_non_forwarding_dnsmasq_refuses_recursion_and_transfer() -> None:
    # Given a dnsmasq with only its local zone (no upstream), not authoritative for AXFR
    with dnsmasq() as port:
        got, ctx = _run(("dns",), {"dns": {"ports": [port], "zone": f"{DOMAIN}."}}, [_tcp(port)])
    r = next(e for e in got.endpoints if e.protocol == "udp").dns
    assert r is not None and r.open_resolver is False and r.axfr == "refused"
    assert "REFUSED" in (r.recursion_detail or "")
    assert _statuses(got, ctx, "dns.not_open_resolver") == ["pass"]
    assert _statuses(got, ctx, "dns.zone_transfer_refused") == ["pass"]


def test_a_host_without_dns_gets_no_dns_endpoint() -> None:
    # Given a UDP port where nothing answers (bound, never read)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind((LOOPBACK, 0))
        got, ctx = _run(("dns",), {"dns": {"ports": [silent.getsockname()[1]]}}, [_tcp(1)])
    assert [e.protocol for e in got.endpoints] == ["tcp"]
    row = next(r for r in n8_1(AuditData(endpoints=got.endpoints, evidence=ctx.evidence.items())).rows
               if r[0].value == "DNS server")
    assert row[1].provenance == Provenance.NOT_OBSERVED


def test_dns_sd_adverts_are_compared_with_what_answers() -> None:
    # Given DNS-SD adverts: PACS (plain DICOM, aet STORESCP) on an open port, SECURE advertised as TLS on a
    # port that answers plaintext DICOM, and GONE on a port that is not open
    plain, secure, gone = 11112, 2762, 4242
    adverts = (DnsAdvert("PACS", "_dicom._tcp", f"pacs.{DOMAIN}", plain, ("aet=STORESCP", "txtvers=1")),
               DnsAdvert("SECURE", "_dicom-tls._tcp", f"pacs.{DOMAIN}", secure, ("aet=SECURE",)),
               DnsAdvert("GONE", "_dicom._tcp", f"pacs.{DOMAIN}", gone, ("aet=OLD",)))
    with dnsmasq(adverts=adverts) as port:
        # When the dns.sd stage runs against the audited endpoints (DNS stage off)
        got, ctx = _run(("dns.sd",), {"dns": {"enabled": False},
                                      "dns_sd": {"server": LOOPBACK, "port": port, "domain": f"{DOMAIN}."}},
                        [_tcp(plain, "dicom"), _tcp(secure, "dicom")])
    # (dnsmasq serves names in lower case; DNS names compare case-insensitively, RFC 4343)
    by_instance = {a.instance.split(".")[0].upper(): (e.port, a) for e in got.endpoints for a in e.dns_sd}
    assert set(by_instance) == {"PACS", "SECURE", "GONE"}
    assert by_instance["PACS"][1].ae_title == "STORESCP" and by_instance["PACS"][1].txt["txtvers"] == "1"
    assert by_instance["PACS"][1].addresses == [LOOPBACK] and by_instance["PACS"][1].port_observed_open
    assert not by_instance["GONE"][1].port_observed_open
    # Then the check passes PACS (AE STORESCP observed), fails SECURE (not TLS) and GONE (not open)
    aes = [ApplicationEntity(ae_title="STORESCP", host=LOOPBACK, port=plain, tls=False)]
    spec = REGISTRY.get("dns_sd.matches_observed")
    assert spec is not None
    found = {f.summary.split(".")[0].upper(): f.status
             for f in spec.run(AuditData(endpoints=got.endpoints, evidence=ctx.evidence.items(),
                                         application_entities=aes))}
    assert found == {"PACS": "pass", "SECURE": "fail", "GONE": "fail"}
    # And a wrong AE title is caught
    aes_wrong = [ApplicationEntity(ae_title="OTHER", host=LOOPBACK, port=plain, tls=False)]
    assert "fail" in [f.status for f in spec.run(AuditData(endpoints=got.endpoints, evidence=ctx.evidence.items(),
                                                           application_entities=aes_wrong))]
    # But a title the audit only guessed, on a port that accepts any Called AE Title, shows no mismatch (the
    # advertised title is accepted like any other)
    aes_guess = [ApplicationEntity(ae_title="ANY-SCP", host=LOOPBACK, port=plain, tls=False, configured=False,
                                   accepts_any_called_ae=True)]
    assert {f.summary.split(".")[0].upper(): f.status
            for f in spec.run(AuditData(endpoints=got.endpoints, evidence=ctx.evidence.items(),
                                        application_entities=aes_guess))}["PACS"] == "pass"
    t = n11_1_4(AuditData(endpoints=got.endpoints, evidence=ctx.evidence.items(), application_entities=aes))
    assert len(t.rows) == 3
    assert not cell_problems(ctx.evidence.items(), [t], ("dns.",))
