"""Checks on the port inventory and service identification (PS3.2 N.8.3; PS3.15 B.12/B.13 strict TLS)."""

from __future__ import annotations

from collections.abc import Iterator

from dcsaudit.checks.base import AuditData, Verdict, check


@check(id="inventory.plaintext_dicom", title="DICOM reachable without TLS", severity="high",
       references=["PS3.15 B.12", "PS3.2 N.8.3", "RFC 9325 §3.2"])
def plaintext_dicom(data: AuditData) -> Iterator[Verdict]:
    """Patient data over plaintext DICOM can be read and altered on the network."""
    dicom = [e for e in data.endpoints if e.service in ("dicom", "dicom-tls")]
    for ep in dicom:
        if ep.service == "dicom":
            yield Verdict("fail", ep.key, "accepts DICOM associations without TLS", ep.evidence)
        else:
            yield Verdict("pass", ep.key, "DICOM only inside TLS" if not ep.plaintext_dicom
                          else "DICOM inside TLS (plaintext judged by inventory.dicom_tls_also_plaintext)", ep.evidence)


@check(id="inventory.dicom_tls_also_plaintext", title="DICOM TLS port also accepts plaintext DICOM",
       severity="high", references=["PS3.15 B.12 (strict TLS preferred over opportunistic)", "PS3.2 N.8.3"])
def tls_port_also_plaintext(data: AuditData) -> Iterator[Verdict]:
    for ep in data.endpoints:
        if ep.service != "dicom-tls":
            continue
        if ep.plaintext_dicom:
            yield Verdict("fail", ep.key, "the same port serves DICOM over TLS and plaintext DICOM", ep.evidence)
        else:
            yield Verdict("pass", ep.key, "plaintext A-ASSOCIATE-RQ got no DICOM answer", ep.evidence)


@check(id="inventory.http_without_tls", title="HTTP service without TLS", severity="medium",
       references=["PS3.18 (DICOMweb over TLS)", "RFC 9325 §3.2"])
def http_without_tls(data: AuditData) -> Iterator[Verdict]:
    for ep in data.endpoints:
        if ep.service == "http":
            yield Verdict("fail", ep.key, "serves HTTP in plaintext", ep.evidence)
        elif ep.service == "https":
            yield Verdict("pass", ep.key, "serves HTTP only inside TLS", ep.evidence)


@check(id="inventory.unidentified_open_port", title="Open port with no identified service", severity="low",
       references=["PS3.2 N.8.3"])
def unidentified(data: AuditData) -> Iterator[Verdict]:
    """Every open port should be explained in the Conformance Statement's firewall list."""
    for ep in data.endpoints:
        if ep.protocol == "tcp" and ep.state == "open":
            if ep.service == "unknown":
                yield Verdict("fail", ep.key, f"open, but no known protocol answered ({ep.service_detail})", ep.evidence)
            else:
                yield Verdict("pass", ep.key, f"identified as {ep.service}", ep.evidence)


@check(id="inventory.host_reachable", title="Configured host answered the inventory", severity="high",
       references=["PS3.2 N.8.3"])
def host_reachable(data: AuditData) -> Iterator[Verdict]:
    """A configured host that answered on no port was not audited at all: a nightly audit of a device
    that vanished must fail, never pass by having nothing to judge. A port that answered "closed"
    (TCP RST) is an answer: the host is there. A name that did not resolve cannot be judged: error."""
    hosts: dict[str, list[str]] = {h: [] for h in data.hosts}
    evidence: dict[str, list[str]] = {}
    for ep in data.endpoints:
        hosts.setdefault(ep.host, []).append(ep.state)
        evidence.setdefault(ep.host, []).extend(ep.evidence[:1])
    for host, why in sorted(data.unresolved_hosts.items()):
        yield Verdict("error", host, f"not audited: the name did not resolve ({why})")
    for host, states in sorted(hosts.items()):
        if host in data.unresolved_hosts:
            continue
        ev = evidence.get(host, [])[:3]
        if "open" in states:
            yield Verdict("pass", host, f"{states.count('open')} open port(s)", ev)
        elif "closed" in states:
            yield Verdict("pass", host, "reachable (ports answered closed), no open port among those scanned", ev)
        elif states:
            yield Verdict("fail", host, f"unreachable: none of {len(states)} port(s) answered (host down, gone, "
                          "or every port filtered); nothing was audited", ev)
        else:
            yield Verdict("not_applicable", host, "no port configured to scan")
