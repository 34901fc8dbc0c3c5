"""Everything that can be checked before the first packet goes to a target (issue 12).

``dcsaudit scan`` calls :func:`preflight` after loading the config and the policy and before
``run_audit``: each mistake is a :class:`~dcsaudit.config.ConfigError` (exit 2) whose one-line
message names the field and the problem. Nothing here connects to a configured host: name lookups
go to the system resolver, secrets and certificate files are read locally, the output directory gets
a probe file, and collector ports are bound and released at once.

Messages never repeat a secret nor a secret *reference* (``{env: <the secret itself>}`` is a common
slip): they name the field. For "did you mean …?" suggestions see :func:`dcsaudit.config.closest`.
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import json
import os
import socket
import ssl
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from dcsaudit.config import (
    ConfigError,
    DeploymentConfig,
    Host,
    SecretRef,
    closest,
    host_problem,
    is_cidr,
)
from dcsaudit.policy import Policy

__all__ = ["MAX_ADDRESSES", "Options", "Ready", "closest", "preflight"]

# Bound on the addresses CIDR ranges and --targets may expand to: a /16 typed for a /28 must not
# start a scan of 65,534 hosts.
MAX_ADDRESSES = 1024
RESOLVE_SECONDS = 5.0  # per name; the resolver gets this long before the name counts as unresolved


@dataclass(frozen=True)
class Options:
    """The command-line side of preflight (``scan`` options)."""

    out: Path | None = None
    force: bool = False
    out_dir_per_run: bool = False
    allow_unresolved: bool = False
    targets_file: Path | None = None
    command: str = "scan"
    source: str = ""  # the config file, named in front of messages about its fields


@dataclass(frozen=True)
class Ready:
    """A config that passed preflight: hosts expanded, secrets readable, outputs writable."""

    config: DeploymentConfig
    out: Path | None
    unresolved: dict[str, str] = field(default_factory=dict)  # host -> why (only with --allow-unresolved)


# --- hosts ------------------------------------------------------------------------------------------

def read_targets(path: Path) -> list[str]:
    """``--targets FILE``: one address, host name or CIDR range a line; ``#`` starts a comment."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"--targets {path}: cannot read: {why}") from None
    out: list[str] = []
    for n, line in enumerate(text.splitlines(), 1):
        value = line.split("#", 1)[0].strip()
        if not value:
            continue
        problem = host_problem(value)
        if problem:
            raise ConfigError(f"--targets {path} line {n}: {problem}")
        out.append(value)
    if not out:
        raise ConfigError(f"--targets {path}: no address, host name or CIDR range in the file")
    return out


def _addresses(cidr: str) -> Iterator[str]:
    net = ipaddress.ip_network(cidr, strict=True)
    # Network and broadcast addresses of IPv4 ranges are not hosts (hosts() also handles /31 and /32).
    yield from (str(a) for a in (net.hosts() if net.version == 4 else net))


def expand_hosts(config: DeploymentConfig, targets: Iterable[str] = ()) -> DeploymentConfig:
    """CIDR ranges become one host each, ``--targets`` entries join the configured hosts; at most
    MAX_ADDRESSES in all. An address already listed keeps its first entry (and its ports)."""
    entries = [(f"hosts.{i}.address", h) for i, h in enumerate(config.hosts)]
    entries += [("--targets", Host(address=t)) for t in targets]
    hosts: dict[str, Host] = {}
    for where, h in entries:
        if not is_cidr(h.address):
            hosts.setdefault(h.address, h)
            continue
        net = ipaddress.ip_network(h.address, strict=True)
        size = net.num_addresses - (2 if net.version == 4 and net.prefixlen < 31 else 0)
        if len(hosts) + size > MAX_ADDRESSES:
            raise ConfigError(f"{where}: {h.address} expands to {size} addresses; at most {MAX_ADDRESSES} "
                              "hosts are audited in one run (split the range)")
        for a in _addresses(h.address):
            hosts.setdefault(a, h.model_copy(update={"address": a}))
    if len(hosts) > MAX_ADDRESSES:
        raise ConfigError(f"hosts: {len(hosts)} hosts after expansion; at most {MAX_ADDRESSES} in one run")
    return config.model_copy(update={"hosts": list(hosts.values())})


def _lookup(name: str) -> None:
    socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)


def resolve_names(config: DeploymentConfig, allow_unresolved: bool) -> tuple[DeploymentConfig, dict[str, str]]:
    """Every host name must resolve. Unresolvable: a config error, or with ``--allow-unresolved`` the
    host (and its AEs) is left out of the scan and reported as an error finding that gates."""
    names = [(i, h.address) for i, h in enumerate(config.hosts) if not _is_ip(h.address)]
    if not names:
        return config, {}
    unresolved: dict[str, str] = {}
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=min(16, len(names)), thread_name_prefix="resolve")
    try:
        futures = {pool.submit(_lookup, name): (i, name) for i, name in names}
        done, pending = concurrent.futures.wait(futures, timeout=RESOLVE_SECONDS)
        for fut in pending:
            unresolved[futures[fut][1]] = f"no answer from the resolver within {RESOLVE_SECONDS:.0f} s"
        for fut in done:
            exc = fut.exception()
            if exc is not None:
                unresolved[futures[fut][1]] = (exc.strerror if isinstance(exc, OSError) and exc.strerror
                                               else type(exc).__name__)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # a hung resolver thread is abandoned, not awaited
    if not unresolved:
        return config, {}
    if not allow_unresolved:
        i, name = next((i, n) for i, n in names if n in unresolved)
        raise ConfigError(f"hosts.{i}.address: {name!r} does not resolve ({unresolved[name]}); fix the name, "
                          "or pass --allow-unresolved to report it as an error finding")
    gone = set(unresolved)
    gone |= {h.name for h in config.hosts if h.address in unresolved and h.name}
    kept = [h for h in config.hosts if h.address not in unresolved]
    aes = [ae for ae in config.application_entities if ae.host not in gone]
    return config.model_copy(update={"hosts": kept, "application_entities": aes}), unresolved


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


# --- secrets and certificate files --------------------------------------------------------------------

def secret_refs(config: DeploymentConfig) -> Iterator[tuple[str, SecretRef]]:
    creds = config.credentials
    if creds.tls_client is not None and creds.tls_client.key_password is not None:
        yield "credentials.tls_client.key_password", creds.tls_client.key_password
    uid = creds.user_identity
    if uid is not None:
        for name in ("passcode", "kerberos_ticket", "saml_assertion", "jwt"):
            ref = getattr(uid, name)
            if ref is not None:
                yield f"credentials.user_identity.{name}", ref


def check_secrets(config: DeploymentConfig) -> None:
    """Every reference resolves now (env set, file readable, not empty); values are never printed."""
    for where, ref in secret_refs(config):
        try:
            ref.resolve()
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    uid = config.credentials.user_identity
    if uid is not None and uid.passcode is not None and not uid.username:
        raise ConfigError("credentials.user_identity.username: a passcode needs a username (PS3.7 D.3.3.7 type 2)")


def _readable(where: str, path: Path) -> None:
    try:
        with path.open("rb") as f:
            f.read(1)
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {path}: {exc.strerror}") from None


def _load_chain(cert_where: str, key_where: str, pw_where: str, cert: Path, key: Path,
                password: SecretRef | None) -> None:
    """Certificate and key parse and belong together; the password (if any) opens the key. Never
    prompts on a terminal: an encrypted key without a password is a config error."""
    _readable(cert_where, cert)
    _readable(key_where, key)
    asked = False

    def pw() -> bytes:
        nonlocal asked
        asked = True
        return password.resolve().get_secret_value().encode() if password is not None else b""

    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(str(cert), str(key), password=pw)
    except ssl.SSLError as exc:
        if asked and password is None:
            raise ConfigError(f"{key_where}: the key is encrypted; give its password as {pw_where}") from None
        if asked:
            raise ConfigError(f"{pw_where}: does not open {key_where} (wrong password, or not the key's)") from None
        if "KEY_VALUES_MISMATCH" in str(exc) or "key values mismatch" in str(exc):
            raise ConfigError(f"{key_where}: does not belong to the certificate in {cert_where}") from None
        raise ConfigError(f"{cert_where} / {key_where}: not a usable PEM certificate and key "
                          f"({_ssl_reason(exc)})") from None


def _ssl_reason(exc: ssl.SSLError) -> str:
    return str(exc.reason or exc.__class__.__name__).lower().replace("_", " ")


def check_tls_files(config: DeploymentConfig) -> None:
    creds = config.credentials
    if creds.ca_file is not None:
        _readable("credentials.ca_file", creds.ca_file)
        try:
            ssl.create_default_context(cafile=str(creds.ca_file))
        except ssl.SSLError as exc:
            raise ConfigError(f"credentials.ca_file: {creds.ca_file} holds no usable PEM certificate "
                              f"({_ssl_reason(exc)})") from None
    tc = creds.tls_client
    if tc is not None:
        _load_chain("credentials.tls_client.cert_file", "credentials.tls_client.key_file",
                    "credentials.tls_client.key_password", tc.cert_file, tc.key_file, tc.key_password)
    col = config.collector
    if col.enabled and (col.cert_file is None) != (col.key_file is None):
        raise ConfigError("collector.key_file: collector.cert_file and collector.key_file go together")
    if col.enabled and col.cert_file is not None and col.key_file is not None:
        _load_chain("collector.cert_file", "collector.key_file", "collector.key_file", col.cert_file,
                    col.key_file, None)


# --- collector ports ----------------------------------------------------------------------------------

def check_collector_ports(config: DeploymentConfig) -> None:
    """The collector's ports can be bound now (bound and released at once; nothing listens)."""
    col = config.collector
    if not col.enabled:
        return
    family = socket.AF_INET6 if ":" in col.bind else socket.AF_INET
    ports: list[tuple[str, int, int]] = [("collector.tls_port", col.tls_port, socket.SOCK_STREAM)]
    if col.udp_port is not None:
        ports.append(("collector.udp_port", col.udp_port, socket.SOCK_DGRAM))
    for where, port, kind in ports:
        try:
            with socket.socket(family, kind) as s:
                if kind == socket.SOCK_STREAM:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((col.bind, port))
        except PermissionError:
            raise ConfigError(f"{where}: cannot bind {col.bind} port {port}: permission denied (ports below "
                              "1024 need privileges; choose a port above 1024 and point the product at it)"
                              ) from None
        except OSError as exc:
            raise ConfigError(f"{where}: cannot bind {col.bind} port {port}: {exc.strerror}") from None


# --- outputs ------------------------------------------------------------------------------------------

def run_directory(base: Path, now: datetime | None = None) -> Path:
    """``--out-dir-per-run``: a new timestamped sub-directory of ``base`` (never an existing one)."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    for n in range(1, 1000):
        candidate = base / (stamp if n == 1 else f"{stamp}-{n}")
        if not candidate.exists():
            return candidate
    raise ConfigError(f"--out-dir-per-run: {base} already has 999 runs stamped {stamp}")


def _previous_command(report: Path) -> str | None:
    try:
        run = json.loads(report.read_text(encoding="utf-8")).get("run", {})
    except (OSError, ValueError, AttributeError):
        return None
    return run.get("command") if isinstance(run, dict) else None


def check_out(options: Options) -> Path | None:
    """``--out`` exists or can be created, takes a file, and holds no previous report unless
    ``--force`` (the demo may replace a previous demo's report). Returns the directory to write."""
    out = options.out
    if out is None:
        return None
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out, prefix=".dcsaudit-probe-")
        try:
            os.write(fd, b"probe")
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        raise ConfigError(f"--out: {out} is not a writable directory: {exc.strerror}") from None
    if options.out_dir_per_run:
        return run_directory(out)
    previous = out / "report.json"
    if previous.exists() and not options.force:
        if options.command == "demo" and _previous_command(previous) == "demo":
            return out
        raise ConfigError(f"--out: {out} holds report.json from a previous run; pass --force to overwrite it, "
                          "or --out-dir-per-run to write a timestamped sub-directory")
    return out


# --- the whole preflight ----------------------------------------------------------------------------

def check_policy(policy: Policy) -> None:
    from dcsaudit.checks import REGISTRY

    policy.check_ids(spec.id for spec in REGISTRY.all())


def preflight(config: DeploymentConfig, policy: Policy, options: Options) -> Ready:
    """All checks, cheapest first; the first failure raises ConfigError (one line, names the field)."""
    try:
        check_policy(policy)
        targets = read_targets(options.targets_file) if options.targets_file is not None else []
        config = expand_hosts(config, targets)
        check_secrets(config)
        check_tls_files(config)
        check_collector_ports(config)
        out = check_out(options)
        config, unresolved = resolve_names(config, options.allow_unresolved)
    except ConfigError as exc:
        msg = str(exc)
        if options.source and not msg.startswith(("--", "policy ")):
            raise ConfigError(f"{options.source}: {msg}") from None
        raise
    return Ready(config=config, out=out, unresolved=unresolved)
