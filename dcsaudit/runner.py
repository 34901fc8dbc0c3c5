"""Runs one audit: inventory → identification → TLS / DICOM / audit-trail probes → checks → annex.

The runner owns concurrency (``Limiter``: overall and per host) and time bounds: the pipeline is the
table ``STAGES`` (name, wanted, run, budget), each budget computed once from the config in
:mod:`dcsaudit.budgets`. Probes never raise out of it: anything unexpected becomes evidence with a
reason and the audit goes on. Data moves one way; checks and the annex builder only read what the
probes collected.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from dcsaudit import __version__, budgets
from dcsaudit.config import DeploymentConfig, Host
from dcsaudit.context import AuditContext
from dcsaudit.models.audit import AuditTrail
from dcsaudit.models.core import Finding, Reason
from dcsaudit.models.dicom import ApplicationEntity, Initiator
from dcsaudit.models.endpoint import Endpoint
from dcsaudit.models.report import Report, RunInfo
from dcsaudit.policy import Policy
from dcsaudit.probes.identify import identify_all
from dcsaudit.probes.ports import inventory_host
from dcsaudit.probes.syslog_sender import probe_product_collector
from dcsaudit.probes.tls import audit_tls
from dcsaudit.probes.tls.audit import TlsAuditOptions
from dcsaudit.rules import tls_profiles
from dcsaudit.rules.services import DICOM_SERVICES, SYSLOG_SERVICES, TLS_SERVICES

# What only the end of a run needs (checks, annex, collector) is imported where it is used (issue 16).
if TYPE_CHECKING:
    from dcsaudit.checks import AuditData
    from dcsaudit.listeners.syslog_collector import SyslogCollector

T = TypeVar("T")
log = logging.getLogger(__name__)

def run_checks(data: AuditData, policy: Policy) -> list[Finding]:
    from dcsaudit.checks import REGISTRY

    findings: list[Finding] = []
    for spec in REGISTRY.all():
        severity = policy.severity.get(spec.id, spec.severity)
        findings.extend(spec.run(data, severity=severity, gating=policy.gates(spec.id, severity)))
    return findings


@dataclass
class Collected:
    """What the stages found so far. Each stage updates it as its parts finish, so a stage bound
    that fires keeps every finished part."""

    endpoints: list[Endpoint] = field(default_factory=list)
    aes: dict[int, ApplicationEntity] = field(default_factory=dict)  # target index -> AE

    def endpoints_where(self, services: frozenset[str]) -> list[int]:
        return [i for i, e in enumerate(self.endpoints) if e.service in services]


@dataclass(frozen=True)
class Stage:
    """One stage of the pipeline: whether the config wants it, what it does, its time budget."""

    name: str
    wanted: Callable[[DeploymentConfig, Collected], bool]
    run: Callable[[AuditContext, Collected], Awaitable[None]]
    budget: Callable[[DeploymentConfig, Collected], float]


async def _bounded(ctx: AuditContext, what: str, target: str, coro: Awaitable[T], timeout: float) -> T | None:
    """Await a probe within its time bound; a timeout or a bug becomes evidence, not a crash."""
    try:
        return await asyncio.wait_for(coro, timeout)
    except TimeoutError:
        ctx.evidence.add(what, target, False, f"{what} did not finish within {timeout:.0f} s", reason=Reason.TIMEOUT)
    except Exception as exc:
        ctx.evidence.add(what, target, False, f"{what} failed: {type(exc).__name__}: {exc}",
                         reason=Reason.INTERNAL_ERROR)
    return None


async def _inventory(ctx: AuditContext, got: Collected) -> None:
    ctx.progress(f"port inventory of {len(ctx.config.hosts)} host(s)")
    per_host: dict[int, list[Endpoint]] = {}
    if ctx.config.scan.tls_audit and ctx.config.scan.tls.vulnerabilities and ctx.config.scan.tls.robot:
        from dcsaudit.probes.tls.vulns import WorkerPool

        # ROBOT only (opt-in; the other vulnerability tests run in-process): one sslyze child imports sslyze
        # (about 0.4 s of CPU) while inventory and identification wait on the network; the TLS stage takes
        # it, or identification ends it when no TLS port was found.
        ctx.sslyze_workers = WorkerPool(1)
        await ctx.sslyze_workers.prewarm()

    async def one(i: int, host: Host) -> None:
        per_host[i] = await inventory_host(ctx, host)
        got.endpoints = [ep for k in sorted(per_host) for ep in per_host[k]]

    await asyncio.gather(*(one(i, h) for i, h in enumerate(ctx.config.hosts)))


async def _identification(ctx: AuditContext, got: Collected) -> None:
    ctx.progress(f"identifying {sum(1 for e in got.endpoints if e.state == 'open')} open endpoint(s)")
    try:
        await identify_all(ctx, got.endpoints, sink=got.endpoints)
    finally:
        if ctx.sslyze_workers is not None and not got.endpoints_where(TLS_SERVICES):
            await ctx.sslyze_workers.close()
            ctx.sslyze_workers = None


async def _dicom(ctx: AuditContext, got: Collected) -> None:
    from dcsaudit.probes.dicom_assoc import audit_application_entities  # pynetdicom/pydicom: only with DICOM

    ctx.progress("DICOM association audit")
    await audit_application_entities(ctx, got.endpoints, got.aes)


async def _tls(ctx: AuditContext, got: Collected) -> None:
    targets = got.endpoints_where(TLS_SERVICES)
    ctx.progress(f"TLS audit of {len(targets)} endpoint(s)")
    o = ctx.config.scan.tls
    options = TlsAuditOptions(sslv2_sslv3=o.sslv2_sslv3, vulnerabilities=o.vulnerabilities, robot=o.robot,
                              connections_per_endpoint=o.connections_per_endpoint)
    bound = budgets.tls_endpoint_seconds(ctx.config)

    async def one(i: int) -> None:
        ep = got.endpoints[i]
        start = time.perf_counter()
        result = await _bounded(ctx, "tls.audit", ep.key, audit_tls(ctx, ep, options), bound)
        log.info("TLS audit of %s: %s in %.2f s", ep.key, "done" if result is not None else "no result",
                 time.perf_counter() - start)
        if result is not None:
            got.endpoints[i] = ep.model_copy(update={"tls": result})

    if o.vulnerabilities and o.robot:
        from dcsaudit.probes.tls.vulns import WorkerPool

        # ROBOT's sslyze children import it while the enumeration runs (one may be ready since the
        # inventory); unused ones end with the stage.
        ctx.sslyze_workers = ctx.sslyze_workers or WorkerPool(len(targets))
        ctx.sslyze_workers.expect(len(targets))
        await ctx.sslyze_workers.prewarm()
    try:
        await asyncio.gather(*(one(i) for i in targets))
    finally:
        if ctx.sslyze_workers is not None:
            await ctx.sslyze_workers.close()
            ctx.sslyze_workers = None


async def _collector_probe(ctx: AuditContext, got: Collected) -> None:
    bound = budgets.collector_probe_seconds(ctx.config)

    async def one(i: int) -> None:
        ep = got.endpoints[i]
        result = await _bounded(ctx, "syslog.send", ep.key, probe_product_collector(ctx, ep), bound)
        if result is not None:
            got.endpoints[i] = ep.model_copy(update={"syslog_send": result})

    await asyncio.gather(*(one(i) for i in got.endpoints_where(SYSLOG_SERVICES)))


async def _client_certs(ctx: AuditContext, got: Collected) -> None:
    """Defective client certificates presented to each TLS server (issue 15 item 6), after the TLS audit
    (which says whether the server asks for one at all)."""
    from dcsaudit.probes import client_certs as cc

    o = ctx.config.scan.client_certs
    signer = None
    if o.signing_ca_cert is not None and o.signing_ca_key is not None:
        try:
            pw = o.signing_ca_key_password.resolve().get_secret_value().encode() if o.signing_ca_key_password else None
            signer = cc.load_signing_ca(str(o.signing_ca_cert), str(o.signing_ca_key), pw)
        except Exception as exc:  # a bad file is evidence; the unknown-CA trials still run
            ctx.evidence.add(cc.PROBE, "*", False, f"the signing CA could not be loaded: {type(exc).__name__}",
                             reason=Reason.NOT_AVAILABLE)
    certs = await asyncio.get_running_loop().run_in_executor(None, cc.make_certificates, signer)
    targets = got.endpoints_where(TLS_SERVICES)
    ctx.progress(f"client-certificate validation of {len(targets)} TLS endpoint(s)")
    bound = budgets.client_certs_endpoint_seconds(ctx.config)

    async def one(i: int) -> None:
        ep = got.endpoints[i]
        result = await _bounded(ctx, cc.PROBE, ep.key, cc.probe_client_certs(ctx, ep, certs), bound)
        if result is not None:
            got.endpoints[i] = got.endpoints[i].model_copy(update={"client_certs": result})

    await asyncio.gather(*(one(i) for i in targets))


async def _ntp(ctx: AuditContext, got: Collected) -> None:
    """NTP queries on every audited host with an ordinary UDP socket (issue 15 item 1): the raw-socket UDP
    inventory may not have run. An answer adds or updates the host's UDP endpoint."""
    from dcsaudit.probes.ntp import probe_ntp

    hosts = list(dict.fromkeys(e.host for e in got.endpoints))
    ports = ctx.config.scan.ntp.ports
    ctx.progress(f"NTP queries to {len(hosts)} host(s)")

    async def one(host: str, port: int) -> None:
        result = await _bounded(ctx, "ntp.query", f"{host}:{port}/udp", probe_ntp(ctx, host, port),
                                budgets.ntp_endpoint_seconds(ctx.config))
        if result is None:
            return
        i = next((k for k, e in enumerate(got.endpoints)
                  if e.host == host and e.port == port and e.protocol == "udp"), None)
        if i is not None:
            update: dict[str, object] = {"ntp": result}
            if result.answered:
                update.update(state="open", service="ntp",
                              evidence=list(dict.fromkeys([*got.endpoints[i].evidence, *result.evidence[:1]])))
            got.endpoints[i] = got.endpoints[i].model_copy(update=update)
        elif result.answered:
            got.endpoints.append(Endpoint(host=host, port=port, protocol="udp", state="open", service="ntp",
                                          service_detail="NTP mode-3 answer", ntp=result,
                                          evidence=result.evidence[:1]))

    await asyncio.gather(*(one(h, p) for h in hosts for p in ports))


async def _dicomweb(ctx: AuditContext, got: Collected) -> None:
    """DICOMweb capability and access-control checks on HTTP(S) endpoints (issue 15 item 5)."""
    from dcsaudit.probes.dicomweb import PROBE, probe_dicomweb

    targets = got.endpoints_where(WEB_SERVICES)
    ctx.progress(f"DICOMweb checks of {len(targets)} HTTP(S) endpoint(s)")
    bound = budgets.dicomweb_endpoint_seconds(ctx.config)

    async def one(i: int) -> None:
        ep = got.endpoints[i]
        result = await _bounded(ctx, PROBE, ep.key, probe_dicomweb(ctx, ep), bound)
        if result is not None:
            got.endpoints[i] = got.endpoints[i].model_copy(update={"dicomweb": result})

    await asyncio.gather(*(one(i) for i in targets))


WEB_SERVICES = frozenset({"http", "https"})


async def _ldap(ctx: AuditContext, got: Collected) -> None:
    """LDAP / LDAPS facts on the configured LDAP ports the inventory found open (issue 15 item 4)."""
    from dcsaudit.probes.ldap import probe_ldap

    targets = _ldap_targets(ctx.config, got)
    ctx.progress(f"LDAP checks of {len(targets)} endpoint(s)")
    bound = budgets.ldap_endpoint_seconds(ctx.config)

    async def one(i: int, ldaps: bool) -> None:
        ep = got.endpoints[i]
        result = await _bounded(ctx, "ldap.root_dse", ep.key, probe_ldap(ctx, ep.host, ep.port, ldaps), bound)
        if result is not None:
            got.endpoints[i] = got.endpoints[i].model_copy(update={"ldap": result})

    await asyncio.gather(*(one(i, ldaps) for i, ldaps in targets))


async def _dns(ctx: AuditContext, got: Collected) -> None:
    """DNS server checks on every audited host (issue 15 item 2), with ordinary sockets like NTP; an
    answer adds or updates the host's UDP endpoint."""
    from dcsaudit.probes.dns import probe_dns

    hosts = list(dict.fromkeys(e.host for e in got.endpoints))
    ctx.progress(f"DNS queries to {len(hosts)} host(s)")

    async def one(host: str, port: int) -> None:
        tcp_open = any(e.host == host and e.port == port and e.protocol == "tcp" and e.state == "open"
                       for e in got.endpoints)
        result = await _bounded(ctx, "dns.recursion", f"{host}:{port}/udp", probe_dns(ctx, host, port, tcp_open=tcp_open),
                                budgets.dns_endpoint_seconds(ctx.config))
        if result is None:
            return
        i = next((k for k, e in enumerate(got.endpoints)
                  if e.host == host and e.port == port and e.protocol == "udp"), None)
        if i is not None:
            update: dict[str, object] = {"dns": result}
            if result.answers_udp:
                update.update(state="open", evidence=list(dict.fromkeys([*got.endpoints[i].evidence,
                                                                          *result.evidence[:1]])))
            got.endpoints[i] = got.endpoints[i].model_copy(update=update)
        elif result.answers_udp:
            got.endpoints.append(Endpoint(host=host, port=port, protocol="udp", state="open",
                                          service_detail="DNS answer", dns=result, evidence=result.evidence[:1]))

    await asyncio.gather(*(one(h, p) for h in hosts for p in ctx.config.scan.dns.ports))


async def _dns_sd(ctx: AuditContext, got: Collected) -> None:
    """DNS-SD adverts of DICOM services (issue 15 item 3), kept on the audited endpoints they name."""
    from dcsaudit.models.network import DnsSdAdvert
    from dcsaudit.probes.dns import browse

    o = ctx.config.scan.dns_sd
    assert o.server is not None and o.domain is not None
    ctx.progress(f"DNS-SD lookup of DICOM services in {o.domain}")
    adverts, notes = await ctx.limiter.run_blocking(o.server, browse, o.server, o.port, o.domain,
                                                    ctx.config.scan.timeouts.read)
    where = f"{o.server}:{o.port}/udp"
    ctx.evidence.add("dns.sd", where, bool(adverts) or not notes,
                     f"DNS-SD in {o.domain}: {len(adverts)} DICOM advert(s)" + (f"; {'; '.join(notes)}" if notes else ""),
                     reason=Reason.TIMEOUT if notes and not adverts else None)
    for a in adverts:
        hosts = [h for h in a.addresses if any(e.host == h for e in got.endpoints)]
        i = next((k for k, e in enumerate(got.endpoints) if e.host in hosts and e.port == a.port
                  and e.protocol == "tcp" and e.state == "open"), None)
        ev = ctx.evidence.add("dns.sd", where, True, f"{a.service_type} {a.instance} -> {a.target}:{a.port} "
                              f"({', '.join(a.addresses) or 'no address'}), TXT {a.txt}",
                              data={"instance": a.instance, "target": a.target, "port": a.port, "txt": a.txt})
        advert = DnsSdAdvert(service_type=a.service_type, instance=a.instance, target=a.target, addresses=a.addresses,
                             port=a.port, txt=a.txt, ae_title=a.txt.get("aet"), port_observed_open=i is not None,
                             evidence=[ev.id])
        if i is None:  # the advertised port is not open: keep it on the host's first endpoint
            i = next((k for k, e in enumerate(got.endpoints) if e.host in hosts), None)
        if i is None:
            ctx.evidence.add("dns.sd", where, True, f"{a.instance} names {a.target} ({', '.join(a.addresses)}), "
                             "which is not an audited host: not compared", reason=Reason.SKIPPED)
            continue
        got.endpoints[i] = got.endpoints[i].model_copy(update={"dns_sd": [*got.endpoints[i].dns_sd, advert]})


def _ldap_targets(cfg: DeploymentConfig, got: Collected) -> list[tuple[int, bool]]:
    o = cfg.scan.ldap
    return [(i, e.port in o.ldaps_ports) for i, e in enumerate(got.endpoints)
            if e.protocol == "tcp" and e.state == "open" and e.port in {*o.ports, *o.ldaps_ports}]


def _dicom_wanted(cfg: DeploymentConfig, got: Collected) -> bool:
    return cfg.scan.dicom_audit and (bool(cfg.application_entities) or bool(got.endpoints_where(DICOM_SERVICES)))


def _tls_hosts(got: Collected) -> list[str]:
    return [got.endpoints[i].host for i in got.endpoints_where(TLS_SERVICES)]


# The pipeline, in order. Associations come before the TLS audit: each of its full handshakes can hold
# one of the product's association slots until the product's ARTIM timer fires (pynetdicom does), and
# the association audit would then see (2, 3, 2) local-limit-exceeded rejects caused by the scan itself.
# A new probe family is one row here, its services in dcsaudit/rules/services.py and its own modules.
def _aes_per_host(cfg: DeploymentConfig, got: Collected) -> list[int]:
    from dcsaudit.probes.dicom_assoc import aes_per_host

    return aes_per_host(cfg, got.endpoints)


STAGES: tuple[Stage, ...] = (
    Stage("inventory", lambda cfg, got: True, _inventory,
          lambda cfg, got: budgets.inventory_seconds(cfg)),
    Stage("identify", lambda cfg, got: True, _identification,
          lambda cfg, got: budgets.identification_seconds(cfg, [e.host for e in got.endpoints if e.state == "open"])),
    Stage("dicom.audit", _dicom_wanted, _dicom,
          lambda cfg, got: budgets.dicom_stage_seconds(cfg, _aes_per_host(cfg, got))),
    # Before the TLS audit: openssl s_server answers the next connection ~1 s late after the
    # client-initiated renegotiation test; the web checks do not use the TLS facts.
    Stage("dicomweb", lambda cfg, got: cfg.scan.dicomweb.enabled and bool(got.endpoints_where(WEB_SERVICES)),
          _dicomweb, lambda cfg, got: budgets.dicomweb_stage_seconds(
              cfg, [got.endpoints[i].host for i in got.endpoints_where(WEB_SERVICES)])),
    Stage("tls.audit", lambda cfg, got: cfg.scan.tls_audit and bool(got.endpoints_where(TLS_SERVICES)), _tls,
          lambda cfg, got: budgets.tls_stage_seconds(cfg, _tls_hosts(got))),
    Stage("syslog.send", lambda cfg, got: bool(got.endpoints_where(SYSLOG_SERVICES)), _collector_probe,
          lambda cfg, got: budgets.collector_probe_seconds(cfg) + budgets.MARGIN_SECONDS),
    Stage("tls.client_certs", lambda cfg, got: cfg.scan.client_certs.enabled and bool(got.endpoints_where(TLS_SERVICES)),
          _client_certs, lambda cfg, got: budgets.client_certs_stage_seconds(cfg, _tls_hosts(got))),
    Stage("ntp", lambda cfg, got: cfg.scan.ntp.enabled and bool(got.endpoints), _ntp,
          lambda cfg, got: budgets.ntp_stage_seconds(cfg, [e.host for e in got.endpoints])),
    Stage("ldap", lambda cfg, got: cfg.scan.ldap.enabled and bool(_ldap_targets(cfg, got)), _ldap,
          lambda cfg, got: budgets.ldap_stage_seconds(cfg, [got.endpoints[i].host for i, _ in _ldap_targets(cfg, got)])),
    Stage("dns", lambda cfg, got: cfg.scan.dns.enabled and bool(got.endpoints), _dns,
          lambda cfg, got: budgets.dns_stage_seconds(cfg)),
    Stage("dns.sd", lambda cfg, got: cfg.scan.dns_sd.domain is not None, _dns_sd,
          lambda cfg, got: budgets.dns_sd_stage_seconds(cfg)),
)


async def run_stage(ctx: AuditContext, stage: Stage, got: Collected) -> None:
    """Run one stage within its budget; when the bound fires, what finished stays in ``got``."""
    if not stage.wanted(ctx.config, got):
        log.info("stage %s: nothing to do", stage.name)
        return
    bound = stage.budget(ctx.config, got)
    start = time.perf_counter()
    await _bounded(ctx, stage.name, "*", stage.run(ctx, got), bound)
    log.info("stage %s: %.2f s (budget %.0f s)", stage.name, time.perf_counter() - start, bound)


def _mark_unfinished(ctx: AuditContext, got: Collected, interrupted: str | None = None) -> None:
    """AEs the DICOM stage's bound (or an interruption) cut off get that as their evidence and error."""
    if not got.aes:
        return
    from dcsaudit.probes.dicom_assoc import NOT_FINISHED

    cut = [i for i, ae in got.aes.items() if ae.error == NOT_FINISHED]
    if cut:
        why = f"interrupted ({interrupted})" if interrupted else "not audited within the stage budget"
        ev = ctx.evidence.add("dicom.audit", "*", False, f"{len(cut)} AE(s) {why}; "
                              f"the {len(got.aes) - len(cut)} that finished are kept",
                              reason=Reason.SKIPPED if interrupted else Reason.TIMEOUT)
        for i in cut:
            update: dict[str, object] = {"evidence": [ev.id]}
            if interrupted:
                update["error"] = f"not audited: the run was interrupted ({interrupted})"
            got.aes[i] = got.aes[i].model_copy(update=update)


# After SIGTERM/SIGINT, what runs is cancelled and given this long to end; what does not end (a
# blocking probe in a thread) is abandoned, so the partial report is written within seconds.
GRACE_SECONDS = 2.0
COLLECTOR_STOP_SECONDS = 3.0


class Interruption:
    """SIGTERM (how schedulers and Kubernetes stop a job) and SIGINT stop the audit, not the report.

    The first signal cancels the step that runs now (a stage, the collector window); the runner then
    assembles the report from what finished, marked ``run.complete: false`` with the reason. A second
    signal ends the process at once with the default action (the outputs are written atomically, so
    the previous ones stay whole). Only the main thread can own signal handlers: elsewhere this
    object does nothing and ``reason`` stays None.
    """

    def __init__(self) -> None:
        self.reason: str | None = None
        self.step = "start"
        self._started = time.monotonic()
        self._fired: asyncio.Event | None = None
        self._installed: list[tuple[signal.Signals, object]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def install(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._fired = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                previous = signal.getsignal(sig)
                self._loop.add_signal_handler(sig, self._fire, sig)
            except (ValueError, RuntimeError, NotImplementedError):  # not the main thread, or no signals
                continue
            self._installed.append((sig, previous))

    def uninstall(self) -> None:
        for sig, previous in self._installed:
            assert self._loop is not None
            self._loop.remove_signal_handler(sig)
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(sig, previous)  # type: ignore[arg-type]
        self._installed.clear()

    def _fire(self, sig: signal.Signals) -> None:
        if self.reason is not None:  # the second signal: stop now, the default way
            self.uninstall()
            signal.signal(sig, signal.SIG_DFL)
            os.kill(os.getpid(), sig)
            return
        self.reason = f"{sig.name} received during {self.step} after {time.monotonic() - self._started:.0f} s"
        log.warning("%s: stopping the probes and writing a partial report", self.reason)
        if self._fired is not None:
            self._fired.set()

    async def run(self, step: str, coro: Awaitable[None]) -> None:
        """Run one step unless the run is already interrupted; a signal cancels it (bounded)."""
        if self.reason is not None or self._fired is None:
            if self._fired is None:  # not installed: no signal can arrive here, just run
                await coro
            else:
                coro.close()  # type: ignore[attr-defined]
            return
        self.step = step
        task = asyncio.ensure_future(coro)
        fired = asyncio.ensure_future(self._fired.wait())
        try:
            await asyncio.wait({task, fired}, return_when=asyncio.FIRST_COMPLETED)
            if not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=GRACE_SECONDS)
        finally:
            fired.cancel()
            if not task.done():
                task.cancel()  # a step still running when the outer task is cancelled ends with it
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


class _Collector:
    """The audit-trail collector run during a scan (RFC 5425/5426), when configured."""

    def __init__(self, ctx: AuditContext) -> None:
        self.ctx = ctx
        self.impl: SyslogCollector | None = None

    def start(self) -> None:
        cfg = self.ctx.config.collector
        if not cfg.enabled:
            return
        from dcsaudit.listeners.syslog_collector import SyslogCollector

        try:
            self.impl = SyslogCollector(cfg.bind, cfg.tls_port, cfg.udp_port, self.ctx.evidence,
                            cert_file=cfg.cert_file, key_file=cfg.key_file,
                            ca_file=self.ctx.config.credentials.ca_file)
            self.impl.start()
        except Exception as exc:  # e.g. port in use, or UDP 514 without privileges
            self.ctx.evidence.add("syslog.collector", f"{cfg.bind}", False,
                                  f"collector could not start: {type(exc).__name__}: {exc}",
                                  reason=Reason.NOT_AVAILABLE)
            self.impl = None

    async def stop(self, aes: list[ApplicationEntity], stop: Interruption) -> AuditTrail | None:
        if self.impl is None:
            return None
        window = self.ctx.config.collector.window_seconds
        if stop.reason is None:
            self.ctx.progress(f"waiting {window:.0f} s for audit messages")
        await stop.run("the audit-message window", asyncio.sleep(window))
        try:
            # Bounded when interrupted: the partial report must not wait for the collector's threads.
            trail: AuditTrail = await asyncio.wait_for(
                asyncio.get_running_loop().run_in_executor(None, self.impl.stop),
                COLLECTOR_STOP_SECONDS if stop.reason else None)
        except TimeoutError:
            self.ctx.evidence.add("syslog.collector", self.ctx.config.collector.bind, False,
                                  f"collector did not stop within {COLLECTOR_STOP_SECONDS:.0f} s after the "
                                  "interruption; its messages are not in this report", reason=Reason.TIMEOUT)
            return None
        from dcsaudit.auditmsg.correlate import correlate

        return correlate(self.ctx.evidence.items(), trail, window, application_entities=aes)


def run_audit_blocking(config: DeploymentConfig, policy: Policy, **options: Any) -> Report:
    """``run_audit`` in a fresh event loop (``asyncio.run``), for the command line.

    The loop's main task returns nothing and the report is handed over beside it: at the end of
    ``asyncio.run`` CPython's ``signal.getsignal(SIGINT)`` formats ``repr`` of asyncio's SIGINT handler (a
    ``ValueError`` message in ``signal._int_to_enum``), which holds the main task and with it the task's
    result: a whole report's repr, four times, 45 ms for one endpoint and more with every one added.
    """
    box: list[Report] = []

    async def main() -> None:
        box.append(await run_audit(config, policy, **options))

    asyncio.run(main())
    return box[0]


async def run_audit(
    config: DeploymentConfig,
    policy: Policy,
    *,
    command: str = "scan",
    progress: Callable[[str], None] | None = None,
    initiators: list[Initiator] | None = None,
    extra_trail: AuditTrail | None = None,
    unresolved: dict[str, str] | None = None,
) -> Report:
    """The whole pipeline for one deployment. Never raises for network conditions.

    ``unresolved``: hosts preflight could not resolve (``--allow-unresolved``), reported as errors.
    SIGTERM/SIGINT end it early with a partial report (``run.complete`` false, see :class:`Interruption`).
    """
    started = datetime.now(UTC)
    loop = asyncio.get_running_loop()
    # Blocking probes (nmap, nassl, pynetdicom) run in this pool; its size is the overall bound.
    executor = concurrent.futures.ThreadPoolExecutor(
        max_workers=config.scan.concurrency.overall, thread_name_prefix="probe")
    loop.set_default_executor(executor)
    ctx = AuditContext.create(config, progress)

    stop = Interruption()
    stop.install()
    try:
        collector = _Collector(ctx)
        collector.start()
        got = Collected()
        for stage in STAGES:
            await stop.run(f"stage {stage.name}", run_stage(ctx, stage, got))
        _mark_unfinished(ctx, got, stop.reason)
        endpoints, aes = got.endpoints, [got.aes[i] for i in sorted(got.aes)]
        trail = await collector.stop(aes, stop)
        if extra_trail is not None:
            trail = extra_trail if trail is None else AuditTrail(messages=trail.messages + extra_trail.messages)
        if stop.reason is not None:
            ctx.evidence.add("run", "*", False, f"run interrupted: {stop.reason}; the report holds what finished",
                             reason=Reason.SKIPPED)
            # Threads of abandoned probes are not waited for (asyncio.run would join the default executor).
            executor.shutdown(wait=False, cancel_futures=True)
            loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(max_workers=1))
        return assemble_report(ctx, policy, started, command, endpoints, aes, initiators or [], trail,
                               hosts=[h.address for h in config.hosts], unresolved=unresolved,
                               interrupted=stop.reason)
    finally:
        stop.uninstall()


def assemble_report(
    ctx: AuditContext,
    policy: Policy,
    started: datetime,
    command: str,
    endpoints: list[Endpoint],
    aes: list[ApplicationEntity],
    initiators: list[Initiator],
    trail: AuditTrail | None,
    *,
    hosts: list[str] | None = None,
    unresolved: dict[str, str] | None = None,
    interrupted: str | None = None,
) -> Report:
    """Checks and annex over what was collected; shared by ``scan``, ``demo`` and ``listen``.

    ``hosts``: the configured hosts the inventory was to reach (a host that answered nothing fails
    ``inventory.host_reachable``); ``interrupted`` (the reason) marks the report ``run.complete`` false.
    """
    from dcsaudit.annex.builder import build_annex
    from dcsaudit.checks import AuditData

    ctx.progress("checks and annex")
    # The rule book's profile verdicts on the TLS facts, for readers of report.json (probes record facts only).
    endpoints = tls_profiles.judge_endpoints(endpoints)
    unresolved = unresolved or {}
    hosts = hosts or []
    data = AuditData(endpoints=endpoints, evidence=ctx.evidence.items(), application_entities=aes,
                     initiators=initiators, audit_trail=trail, declared=ctx.config.declared,
                     hosts=hosts, unresolved_hosts=unresolved)
    findings = run_checks(data, policy)
    annex = build_annex(data)
    unreachable = sorted({f.target for f in findings
                          if f.check_id == "inventory.host_reachable" and f.status in ("fail", "error")})
    return Report(
        deployment=ctx.config.deployment,
        started_at=started,
        finished_at=datetime.now(UTC),
        run=RunInfo(tool_version=__version__, command=command, policy=policy.name, complete=interrupted is None,
                    interrupted=interrupted, hosts=len(hosts) + len(unresolved), unreachable_hosts=unreachable),
        endpoints=endpoints,
        findings=findings,
        evidence=data.evidence,
        application_entities=aes,
        initiators=initiators,
        audit_trail=trail,
        annex=annex,
    )
