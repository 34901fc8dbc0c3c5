"""rsyslog (with rsyslog-gnutls) as a real syslog peer on loopback.

- :func:`rsyslog_forwarder`: rsyslog takes messages on a plain TCP input (octet-counted frames) and
  forwards them to a collector over TLS (omfwd, StreamDriver gtls, mode 1, octet-counted framing,
  client certificate from the global DefaultNetstreamDriver* files) and/or over UDP.
- :func:`rsyslog_tls_receiver`: rsyslog as an RFC 5425 collector (imtcp with gtls) writing each message
  to a file, one per line; the benchmark's reference.

Configs live in a temporary directory; rsyslogd runs in the foreground (``-n -f CONF -i PIDFILE``) and
is always stopped. Only 127.0.0.1 is ever used.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.peers.common import LOOPBACK, free_port, require_program, running

# RFC 5424 out again, without the trailing LF of RSYSLOG_SyslogProtocol23Format (octet-counting
# carries the length; an LF would become part of the message).
_FWD_TEMPLATE = (
    'template(name="dcs5424" type="string" string="<%PRI%>1 %TIMESTAMP:::date-rfc3339% %HOSTNAME% '
    '%APP-NAME% %PROCID% %MSGID% %STRUCTURED-DATA% %msg%")'
)


@dataclass
class RsyslogPeer:
    proc: subprocess.Popen[bytes]
    port: int  # the input (forwarder) or the TLS listener (receiver)
    workdir: Path
    out_file: Path | None = None

    def send_octet_counted(self, messages: list[bytes], timeout: float = 10.0) -> None:
        """Feed messages into the forwarder's plain-TCP input, octet-counted (RFC 6587 §3.4.1)."""
        with socket.create_connection((LOOPBACK, self.port), timeout=timeout) as s:
            s.sendall(b"".join(str(len(m)).encode() + b" " + m for m in messages))

    def received_lines(self) -> list[bytes]:
        if self.out_file is None or not self.out_file.exists():
            return []
        return self.out_file.read_bytes().splitlines()

    def log(self) -> str:
        return (self.workdir / "rsyslog.stderr").read_text(errors="replace") if (self.workdir / "rsyslog.stderr").exists() else ""


def _globals(workdir: Path, ca: Path | None, cert: Path | None, key: Path | None, max_size: str) -> str:
    parts = [f'workDirectory="{workdir}"', f'maxMessageSize="{max_size}"']
    if ca is not None:
        parts.append(f'DefaultNetstreamDriverCAFile="{ca}"')
    if cert is not None and key is not None:
        parts.append(f'DefaultNetstreamDriverCertFile="{cert}"')
        parts.append(f'DefaultNetstreamDriverKeyFile="{key}"')
    return "global(" + " ".join(parts) + ")"


@contextmanager
def _rsyslogd(workdir: Path, conf: str, port: int) -> Iterator[subprocess.Popen[bytes]]:
    exe = require_program("rsyslogd")
    conf_file = workdir / "rsyslog.conf"
    conf_file.write_text(conf)
    # Check the config first so that a mistake is reported, not a timeout.
    check = subprocess.run([exe, "-N1", "-f", str(conf_file)], capture_output=True, timeout=30)
    if check.returncode != 0:
        raise RuntimeError(f"rsyslog config rejected: {check.stderr.decode(errors='replace')[-2000:]}")
    with running([exe, "-n", "-f", str(conf_file), "-i", str(workdir / "rsyslogd.pid")], port=port) as proc:
        yield proc


@contextmanager
def rsyslog_forwarder(
    workdir: Path,
    *,
    tls_port: int | None,
    udp_port: int | None,
    ca_file: Path | None = None,
    client_cert: Path | None = None,
    client_key: Path | None = None,
    auth_mode: str = "x509/certvalid",
    max_size: str = "64k",
) -> Iterator[RsyslogPeer]:
    """rsyslog relaying what it gets on a plain TCP input to a collector (TLS and/or UDP)."""
    workdir.mkdir(parents=True, exist_ok=True)
    in_port = free_port()
    actions = []
    if tls_port is not None:
        actions.append(
            f'action(type="omfwd" target="{LOOPBACK}" port="{tls_port}" protocol="tcp" template="dcs5424" '
            f'StreamDriver="gtls" StreamDriverMode="1" StreamDriverAuthMode="{auth_mode}" '
            'TCP_Framing="octet-counted" queue.type="LinkedList" queue.size="20000" '
            'action.resumeRetryCount="-1" action.resumeInterval="1")'
        )
    if udp_port is not None:
        actions.append(
            f'action(type="omfwd" target="{LOOPBACK}" port="{udp_port}" protocol="udp" template="dcs5424")'
        )
    conf = "\n".join([
        _globals(workdir, ca_file, client_cert, client_key, max_size),
        _FWD_TEMPLATE,
        'module(load="imtcp" MaxSessions="20")',
        f'input(type="imtcp" port="{in_port}" address="{LOOPBACK}" ruleset="fwd")',
        'ruleset(name="fwd") {',
        *actions,
        "}",
    ]) + "\n"
    with _rsyslogd(workdir, conf, in_port) as proc:
        yield RsyslogPeer(proc=proc, port=in_port, workdir=workdir)


@contextmanager
def rsyslog_tls_receiver(
    workdir: Path,
    *,
    ca_file: Path,
    server_cert: Path,
    server_key: Path,
    auth_mode: str = "anon",
    max_size: str = "64k",
) -> Iterator[RsyslogPeer]:
    """rsyslog as an RFC 5425 collector (imtcp + gtls), one line per message in ``out.log``."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    out = workdir / "out.log"
    conf = "\n".join([
        _globals(workdir, ca_file, server_cert, server_key, max_size),
        'template(name="raw" type="string" string="%rawmsg%\\n")',
        f'module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="{auth_mode}" '
        'MaxSessions="50")',
        f'input(type="imtcp" port="{port}" address="{LOOPBACK}" ruleset="store")',
        'ruleset(name="store") {',
        f'action(type="omfile" file="{out}" template="raw" flushOnTXEnd="on" asyncWriting="off")',
        "}",
    ]) + "\n"
    with _rsyslogd(workdir, conf, port) as proc:
        yield RsyslogPeer(proc=proc, port=port, workdir=workdir, out_file=out)


def wait_until(predicate: object, timeout: float, interval: float = 0.02) -> bool:
    """Poll ``predicate()`` until true or ``timeout`` seconds pass (bounded, never forever)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(interval)
    return bool(predicate())  # type: ignore[operator]
