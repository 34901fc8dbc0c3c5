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

One ``Redactor`` serves the whole run: ``--redact`` creates it before the audit starts, seeded from the
config, and installs it as the log filter's mapping (``dcsaudit.logs``), so a ``-v`` log line names
``host-1`` exactly where report.json does; address literals a log line reveals first are added to it.
``listen`` runs its collector's streamed files (messages.jsonl, received.log) through it too.
"""

from __future__ import annotations

import ipaddress
import json
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

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
    # Log records come from probe threads while the audit runs; the mapping grows under this lock.
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)

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

    def add_config(self, config: Any) -> None:
        """The configured values: hosts' addresses (not CIDR ranges) and names, AE titles and their
        hosts, and the ``redact:`` strings."""
        if config is None:
            return
        with self._lock:
            for h in config.hosts:
                self.add_host(h.address if "/" not in h.address else None)
                self.add_host(h.name)
            for ae in config.application_entities:
                self.add_ae(ae.ae_title)
                self.add_host(ae.host)
            for value in getattr(config, "redact", []) or []:
                self.add_extra(str(value))

    def log_text(self, message: str) -> str:
        """A log line redacted: the known values, and every address literal in it (added to the mapping
        first, so the report later uses the same placeholder)."""
        with self._lock:
            for address in addresses_in(message):
                self.add_host(address)
            return self.text(message)

    def pattern(self) -> re.Pattern[str]:
        with self._lock:
            return self._compiled()

    def _compiled(self) -> re.Pattern[str]:
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


def collect(report: Report, config: Any = None, into: Redactor | None = None) -> Redactor:
    """The redactor for one run: values from the report (observed) and the config (configured), added to
    ``into`` (the run's redactor, already holding what the log filter saw) or to a new one."""
    r = into if into is not None else Redactor()
    r.add_config(config)
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


def redact(report: Report, config: Any = None, extra: Iterable[str] = (),
           into: Redactor | None = None) -> tuple[Report, Redactor]:
    redactor = collect(report, config, into)
    for value in extra:
        redactor.add_extra(value)
    return redactor.report(report), redactor


# ``listen``'s collector streams two files into the output directory while it runs (see
# listeners/syslog_collector.py): messages.jsonl (one classified message a line) and received.log
# (records "LEN TRANSPORT FRAMING CONN AT PEER\n" + LEN payload bytes + "\n"). With --redact they are
# rewritten in place after the window closes: first read to add their peers and HOSTNAMEs to the run's
# mapping (so the report uses the same placeholders), then replaced by their redacted text.
MESSAGES_FILE, RECEIVED_FILE = "messages.jsonl", "received.log"
_HOSTNAME_5424 = re.compile(rb"^<[0-9]{1,3}>[0-9]{1,2} \S+ (\S+) ")
_HOSTNAME_3164 = re.compile(rb"^<[0-9]{1,3}>[A-Z][a-z]{2} [ 0-9][0-9] [0-9:]{8} (\S+) ")


def _received_records(f: IO[bytes]) -> Iterator[tuple[list[bytes], bytes]]:
    """(header fields, payload) of each received.log record, read one at a time (a week of ``listen`` may
    be larger than memory); a truncated or malformed tail ends the walk."""
    while True:
        line = f.readline()
        head = line.rstrip(b"\n").split(b" ", 5)
        try:
            size = int(head[0])
        except ValueError:
            return
        payload = f.read(size)
        if len(head) != 6 or len(payload) != size:
            return
        f.read(1)  # the newline after the payload
        yield head, payload


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", errors="surrogateescape")  # round-trips bytes that are not UTF-8


def _encode(text: str) -> bytes:
    return text.encode("utf-8", errors="surrogateescape")


def _json_lines(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            yield line.rstrip("\n")


def collect_collector_files(redactor: Redactor, out_dir: Path) -> list[Path]:
    """Adds the peers and HOSTNAMEs of the collector's files in ``out_dir`` to ``redactor``; returns them."""
    found = []
    jsonl = out_dir / MESSAGES_FILE
    if jsonl.is_file():
        found.append(jsonl)
        for line in _json_lines(jsonl):
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if isinstance(doc, dict):
                redactor.add_host(_host_of(str(doc.get("peer") or "")))
                hostname = doc.get("hostname")
                redactor.add_host(str(hostname) if hostname not in (None, "-") else None)
            for text in _strings(doc):
                for address in addresses_in(text):
                    redactor.add_host(address)
    received = out_dir / RECEIVED_FILE
    if received.is_file():
        found.append(received)
        with received.open("rb") as f:
            for head, payload in _received_records(f):
                redactor.add_host(_host_of(_decode(head[5])))
                m = _HOSTNAME_5424.match(payload) or _HOSTNAME_3164.match(payload)
                if m is not None and m.group(1) != b"-":
                    redactor.add_host(_decode(m.group(1)))
                for address in addresses_in(_decode(payload)):
                    redactor.add_host(address)
    return found


def _redacted_lines(redactor: Redactor, path: Path) -> Iterator[bytes]:
    if path.name == MESSAGES_FILE:
        for line in _json_lines(path):
            try:
                text = json.dumps(redactor._walk(json.loads(line)), ensure_ascii=False)
            except ValueError:
                text = redactor.text(line)
            yield _encode(text + "\n")
    else:
        with path.open("rb") as f:
            for head, payload in _received_records(f):
                body = _encode(redactor.text(_decode(payload)))
                peer = _encode(redactor.text(_decode(head[5])))
                yield b" ".join([b"%d" % len(body), *head[1:5], peer]) + b"\n" + body + b"\n"


def redact_collector_files(redactor: Redactor, files: Iterable[Path]) -> None:
    """Rewrites messages.jsonl and received.log redacted, streaming, and renames the result over the
    original (a reader sees the whole old file or the whole new one; received.log's lengths recomputed)."""
    from dcsaudit.output import atomic_write

    for path in files:
        atomic_write(path, _redacted_lines(redactor, path))
