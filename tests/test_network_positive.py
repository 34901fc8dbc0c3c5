"""Positive cases of issue 15 facts that the other peers can only show negative: DNSSEC signatures (RFC 4035)
from a real authoritative server with a signed zone (NSD, zone signed in the test by BIND's dnssec-signzone),
and NTP mode-6 control queries (RFC 9327) answered by ntpsec's ntpd. Loopback only; each peer starts in
well under 2 s."""

from __future__ import annotations

from dcsaudit.annex.network_tables import n8_1
from dcsaudit.checks.base import AuditData
from tests.network_cells import cell_problems
from tests.peers.network_peers import DOMAIN, dnsmasq, nsd_signed, ntpsec
from tests.test_network_dns import _run, _statuses, _tcp
from tests.test_network_ntp import _row
from tests.test_network_ntp import _run as _run_ntp


def test_signed_zone_returns_rrsigs_with_the_do_bit() -> None:
    # Given NSD authoritative for a DNSSEC-signed dcsaudit.test, no recursion
    with nsd_signed() as port:
        # When the dns stage asks for the zone's SOA with the DO bit (and the other DNS facts)
        got, ctx = _run(("dns",), {"dns": {"ports": [port], "zone": f"{DOMAIN}."}}, [_tcp(port)])
    r = next(e for e in got.endpoints if e.protocol == "udp").dns
    # Then EDNS is answered, the DO bit echoed and the RRSIGs returned: DNSSEC supported
    assert r is not None and r.answers_udp and r.answers_tcp
    assert r.edns is True and r.dnssec_do is True and r.dnssec_signatures is True
    assert r.open_resolver is False  # authoritative only: REFUSED for a name outside its zone
    assert _statuses(got, ctx, "dns.not_open_resolver") == ["pass"]
    # And N.8-1 says so, citing the dns probe
    data = AuditData(endpoints=got.endpoints, evidence=ctx.evidence.items())
    row = next(r for r in n8_1(data).rows if r[0].value == "DNS server")
    assert f"{DOMAIN}.: RRSIG returned" in row[2].value, row[2].value
    assert not cell_problems(ctx.evidence.items(), [n8_1(data)], ("dns.",))


def test_unsigned_zone_returns_no_rrsig() -> None:
    # Given dnsmasq with the same (unsigned) local zone: the control for the case above
    with dnsmasq() as port:
        got, _ctx = _run(("dns",), {"dns": {"ports": [port], "zone": f"{DOMAIN}."}}, [_tcp(port)])
    r = next(e for e in got.endpoints if e.protocol == "udp").dns
    assert r is not None and r.dnssec_signatures is False


def test_ntpsec_answers_mode6_control_queries() -> None:
    # Given ntpsec's ntpd on 127.0.0.1:123, unsynchronised (no upstream), mode-6 allowed from loopback
    with ntpsec() as port:
        # When the ntp stage runs against the host
        got, ctx = _run_ntp(port, None)
    ep = next(e for e in got.endpoints if e.protocol == "udp")
    r = ep.ntp
    # Then the mode-3 answer is there (NTPv4, unsynchronised: leap 3) and the mode-6 READVAR was answered,
    # with more bytes out than in (the reflection the fact warns about)
    assert r is not None and r.answered and (r.version, r.mode, r.leap) == (4, 4, 3)
    assert r.mode6_answers is True and r.mode6_amplification is not None and r.mode6_amplification > 1
    assert r.mode7_answers is False  # ntpsec dropped mode 7 (monlist) altogether
    # And N.8-1 says so, citing ntp.* evidence only
    data = AuditData(endpoints=got.endpoints, evidence=ctx.evidence.items())
    server = _row(n8_1(data).rows, "NTP server")
    assert "answers mode-6 control queries" in server[2].value, server[2].value
    assert not cell_problems(ctx.evidence.items(), [n8_1(data)], ("ntp.",))
