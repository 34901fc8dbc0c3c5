"""Redaction for publication (``--redact``): every IP address, host name and AE title of the deployment,
configured or observed, becomes a placeholder (``host-1``, ``AE-1``; strings from the config's
``redact:`` section become ``redacted-1``) consistently: the same input gets the same placeholder in
every output of the run, because the placeholders replace the values in the Report itself, before
report.json, the annexes, the documents and the manifest are written from it.

What is collected: endpoint hosts, AE titles and hosts, unreachable hosts, audit-message peers and
syslog HOSTNAMEs, the collector's bind address, initiators' calling AE titles, peers and user names,
certificate subject CNs and subject alternative names, every IPv4/IPv6 literal in any string of the
report (a section number such as "§4.1.2.5" is not an address), and from the config its hosts'
addresses and names, its AE titles and its ``redact:`` strings. Host names and addresses match without
regard to case; AE titles (PS3.5: case-sensitive) match exactly.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from dcsaudit.models.report import Report

_IPV4 = re.compile(r"(?<![0-9.§])(?<!§ )(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?![0-9]|\.[0-9])")
_IPV6 = re.compile(r"(?<![0-9A-Za-z:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![0-9A-Za-z:])")
_CN = re.compile(r"(?:^|,)\s*CN=([^,]+)")
# Not names of the deployment: loopback spellings stay meaningful ("localhost" is redacted only as a
# host name the deployment's certificates or config use).
_BOUNDARY_BEFORE = r"(?<![A-Za-z0-9_])"
_BOUNDARY_AFTER = r"(?![A-Za-z0-9_]|\.[A-Za-z0-9])"


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _host_of(peer: str) -> str:
    """"10.0.0.5:40888" -> "10.0.0.5"; "[fe80::1]:104" -> "fe80::1"."""
    if peer.startswith("["):
        return peer[1:].split("]", 1)[0]
    host, sep, port = peer.rpartition(":")
    return host if sep and port.isdigit() and host.count(":") == 0 else peer


def addresses_in(text: str) -> Iterator[str]:
    """IPv4 and IPv6 literals in ``text`` (validated: "1.2.3.999" or "03:11:04" are not addresses)."""
    for m in _IPV4.finditer(text):
        try:
            yield str(ipaddress.IPv4Address(m.group(0)))
        except ValueError:
            continue
    for m in _IPV6.finditer(text):
        candidate = m.group(0)
        if not any(c not in ":" for c in candidate):
            continue
        try:
            ipaddress.IPv6Address(candidate)
        except ValueError:
            continue
        yield candidate


@dataclass
class Redactor:
    hosts: dict[str, str] = field(default_factory=dict)  # lower-cased host name or address -> placeholder
    aes: dict[str, str] = field(default_factory=dict)  # AE title (exact) -> placeholder
    extra: dict[str, str] = field(default_factory=dict)  # lower-cased config string -> placeholder
    _pattern: re.Pattern[str] | None = None

    def add_host(self, value: str | None) -> None:
        value = (value or "").strip().strip("[]")
        if value and value.lower() not in self.hosts and not value.startswith("*"):
            self.hosts[value.lower()] = f"host-{len(self.hosts) + 1}"
            self._pattern = None

    def add_ae(self, value: str | None) -> None:
        value = (value or "").strip()
        if value and value not in self.aes:
            self.aes[value] = f"AE-{len(self.aes) + 1}"
            self._pattern = None

    def add_extra(self, value: str) -> None:
        if value.strip() and value.lower() not in self.extra:
            self.extra[value.lower()] = f"redacted-{len(self.extra) + 1}"
            self._pattern = None

    def originals(self) -> list[str]:
        return [*self.hosts, *self.aes, *self.extra]

    def pattern(self) -> re.Pattern[str]:
        if self._pattern is None:
            alternatives = [(v, f"(?i:{re.escape(v)})") for v in (*self.hosts, *self.extra)]
            alternatives += [(v, re.escape(v)) for v in self.aes]
            alternatives.sort(key=lambda a: -len(a[0]))  # the longest first: "pacs.lab" before "pacs"
            body = "|".join(a for _, a in alternatives) or r"(?!x)x"
            self._pattern = re.compile(f"{_BOUNDARY_BEFORE}(?:{body}){_BOUNDARY_AFTER}")
        return self._pattern

    def _replace(self, m: re.Match[str]) -> str:
        text = m.group(0)
        return self.aes.get(text) or self.hosts.get(text.lower()) or self.extra.get(text.lower()) or text

    def text(self, value: str) -> str:
        return self.pattern().sub(self._replace, value)

    def _walk(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(str(k)): self._walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._walk(v) for v in value]
        return value

    def report(self, report: Report) -> Report:
        """The report with every collected value replaced, in every string field and mapping key."""
        return Report.model_validate(self._walk(report.model_dump(mode="json")))


def collect(report: Report, config: Any = None) -> Redactor:
    """The redactor for one run: values from the report (observed) and the config (configured)."""
    r = Redactor()
    if config is not None:
        for h in config.hosts:
            r.add_host(h.address if "/" not in h.address else None)
            r.add_host(h.name)
        for ae in config.application_entities:
            r.add_ae(ae.ae_title)
            r.add_host(ae.host)
        for value in getattr(config, "redact", []) or []:
            r.add_extra(str(value))
    for ep in report.endpoints:
        r.add_host(ep.host)
        cert = ep.tls.certificate if ep.tls is not None else None
        if cert is not None:
            for name in (*cert.san_dns, *cert.san_ip):
                r.add_host(name)
            for m in _CN.finditer(cert.subject):
                if re.fullmatch(r"[A-Za-z0-9.-]+", m.group(1).strip()):  # a host name, not "ACME PACS CA"
                    r.add_host(m.group(1))
    for host in report.run.unreachable_hosts:
        r.add_host(host)
    for ae in report.application_entities:
        r.add_ae(ae.ae_title)
        r.add_host(ae.host)
    for ini in report.initiators:
        r.add_ae(ini.calling_ae)
        r.add_host(_host_of(ini.peer))
        if ini.username:
            r.add_extra(ini.username)
    if report.audit_trail is not None:
        r.add_host(report.audit_trail.bind)
        for msg in report.audit_trail.messages:
            r.add_host(_host_of(msg.peer))
            r.add_host(msg.hostname if msg.hostname not in (None, "-") else None)
    for text in _strings(report.model_dump(mode="json")):
        for address in addresses_in(text):
            r.add_host(address)
    return r


def redact(report: Report, config: Any = None, extra: Iterable[str] = ()) -> tuple[Report, Redactor]:
    redactor = collect(report, config)
    for value in extra:
        redactor.add_extra(value)
    return redactor.report(report), redactor
