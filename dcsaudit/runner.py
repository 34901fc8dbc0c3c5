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
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

from dcsaudit import __version__, budgets
from dcsaudit.annex.builder import build_annex
from dcsaudit.auditmsg.correlate import correlate
from dcsaudit.checks import REGISTRY, AuditData
from dcsaudit.config import DeploymentConfig, Host
from dcsaudit.context import AuditContext
from dcsaudit.listeners.syslog_collector import SyslogCollector
from dcsaudit.models.audit import AuditTrail
from dcsaudit.models.core import Finding, Reason
from dcsaudit.models.dicom import ApplicationEntity, Initiator
from dcsaudit.models.endpoint import Endpoint
from dcsaudit.models.report import Report, RunInfo
from dcsaudit.policy import Policy
from dcsaudit.probes.dicom_assoc import NOT_FINISHED, aes_per_host, audit_application_entities
from dcsaudit.probes.identify import identify_all
from dcsaudit.probes.ports import inventory_host
from dcsaudit.probes.syslog_sender import probe_product_collector
from dcsaudit.probes.tls import audit_tls
from dcsaudit.probes.tls.audit import TlsAuditOptions
from dcsaudit.rules import tls_profiles
from dcsaudit.rules.services import DICOM_SERVICES, SYSLOG_SERVICES, TLS_SERVICES

T = TypeVar("T")
log = logging.getLogger(__name__)

def run_checks(data: AuditData, policy: Policy) -> list[Finding]:
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

    async def one(i: int, host: Host) -> None:
        per_host[i] = await inventory_host(ctx, host)
        got.endpoints = [ep for k in sorted(per_host) for ep in per_host[k]]

    await asyncio.gather(*(one(i, h) for i, h in enumerate(ctx.config.hosts)))


async def _identification(ctx: AuditContext, got: Collected) -> None:
    ctx.progress(f"identifying {sum(1 for e in got.endpoints if e.state == 'open')} open endpoint(s)")
    await identify_all(ctx, got.endpoints, sink=got.endpoints)


async def _dicom(ctx: AuditContext, got: Collected) -> None:
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

    await asyncio.gather(*(one(i) for i in targets))


async def _collector_probe(ctx: AuditContext, got: Collected) -> None:
    bound = budgets.collector_probe_seconds(ctx.config)

    async def one(i: int) -> None:
        ep = got.endpoints[i]
        result = await _bounded(ctx, "syslog.send", ep.key, probe_product_collector(ctx, ep), bound)
        if result is not None:
            got.endpoints[i] = ep.model_copy(update={"syslog_send": result})

    await asyncio.gather(*(one(i) for i in got.endpoints_where(SYSLOG_SERVICES)))


def _dicom_wanted(cfg: DeploymentConfig, got: Collected) -> bool:
    return cfg.scan.dicom_audit and (bool(cfg.application_entities) or bool(got.endpoints_where(DICOM_SERVICES)))


def _tls_hosts(got: Collected) -> list[str]:
    return [got.endpoints[i].host for i in got.endpoints_where(TLS_SERVICES)]


# The pipeline, in order. Associations come before the TLS audit: each of its full handshakes can hold
# one of the product's association slots until the product's ARTIM timer fires (pynetdicom does), and
# the association audit would then see (2, 3, 2) local-limit-exceeded rejects caused by the scan itself.
# A new probe family is one row here, its services in dcsaudit/rules/services.py and its own modules.
STAGES: tuple[Stage, ...] = (
    Stage("inventory", lambda cfg, got: True, _inventory,
          lambda cfg, got: budgets.inventory_seconds(cfg)),
    Stage("identify", lambda cfg, got: True, _identification,
          lambda cfg, got: budgets.identification_seconds(cfg, [e.host for e in got.endpoints if e.state == "open"])),
    Stage("dicom.audit", _dicom_wanted, _dicom,
          lambda cfg, got: budgets.dicom_stage_seconds(cfg, aes_per_host(cfg, got.endpoints))),
    Stage("tls.audit", lambda cfg, got: cfg.scan.tls_audit and bool(got.endpoints_where(TLS_SERVICES)), _tls,
          lambda cfg, got: budgets.tls_stage_seconds(cfg, _tls_hosts(got))),
    Stage("syslog.send", lambda cfg, got: bool(got.endpoints_where(SYSLOG_SERVICES)), _collector_probe,
          lambda cfg, got: budgets.collector_probe_seconds(cfg) + budgets.MARGIN_SECONDS),
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


def _mark_unfinished(ctx: AuditContext, got: Collected) -> None:
    """AEs the DICOM stage's bound cut off get its timeout as their evidence."""
    cut = [i for i, ae in got.aes.items() if ae.error == NOT_FINISHED]
    if cut:
        ev = ctx.evidence.add("dicom.audit", "*", False, f"{len(cut)} AE(s) not audited within the stage budget; "
                              f"the {len(got.aes) - len(cut)} that finished are kept", reason=Reason.TIMEOUT)
        for i in cut:
            got.aes[i] = got.aes[i].model_copy(update={"evidence": [ev.id]})


class _Collector:
    """The audit-trail collector run during a scan (RFC 5425/5426), when configured."""

    def __init__(self, ctx: AuditContext) -> None:
        self.ctx = ctx
        self.impl: SyslogCollector | None = None

    def start(self) -> None:
        cfg = self.ctx.config.collector
        if not cfg.enabled:
            return
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

    async def stop(self, aes: list[ApplicationEntity]) -> AuditTrail | None:
        if self.impl is None:
            return None
        window = self.ctx.config.collector.window_seconds
        self.ctx.progress(f"waiting {window:.0f} s for audit messages")
        await asyncio.sleep(window)
        trail: AuditTrail = await asyncio.get_running_loop().run_in_executor(None, self.impl.stop)
        return correlate(self.ctx.evidence.items(), trail, window, application_entities=aes)


async def run_audit(
    config: DeploymentConfig,
    policy: Policy,
    *,
    command: str = "scan",
    progress: Callable[[str], None] | None = None,
    initiators: list[Initiator] | None = None,
    extra_trail: AuditTrail | None = None,
) -> Report:
    """The whole pipeline for one deployment. Never raises for network conditions."""
    started = datetime.now(UTC)
    loop = asyncio.get_running_loop()
    # Blocking probes (nmap, nassl, pynetdicom) run in this pool; its size is the overall bound.
    loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(
        max_workers=config.scan.concurrency.overall, thread_name_prefix="probe"))
    ctx = AuditContext.create(config, progress)

    collector = _Collector(ctx)
    collector.start()
    got = Collected()
    for stage in STAGES:
        await run_stage(ctx, stage, got)
    _mark_unfinished(ctx, got)
    endpoints, aes = got.endpoints, [got.aes[i] for i in sorted(got.aes)]
    trail = await collector.stop(aes)
    if extra_trail is not None:
        trail = extra_trail if trail is None else AuditTrail(messages=trail.messages + extra_trail.messages)
    return assemble_report(ctx, policy, started, command, endpoints, aes, initiators or [], trail)


def assemble_report(
    ctx: AuditContext,
    policy: Policy,
    started: datetime,
    command: str,
    endpoints: list[Endpoint],
    aes: list[ApplicationEntity],
    initiators: list[Initiator],
    trail: AuditTrail | None,
) -> Report:
    """Checks and annex over what was collected; shared by ``scan``, ``demo`` and ``listen``."""
    ctx.progress("checks and annex")
    # The rule book's profile verdicts on the TLS facts, for readers of report.json (probes record facts only).
    endpoints = tls_profiles.judge_endpoints(endpoints)
    data = AuditData(endpoints=endpoints, evidence=ctx.evidence.items(), application_entities=aes,
                     initiators=initiators, audit_trail=trail, declared=ctx.config.declared)
    findings = run_checks(data, policy)
    annex = build_annex(data)
    return Report(
        deployment=ctx.config.deployment,
        started_at=started,
        finished_at=datetime.now(UTC),
        run=RunInfo(tool_version=__version__, command=command, policy=policy.name),
        endpoints=endpoints,
        findings=findings,
        evidence=data.evidence,
        application_entities=aes,
        initiators=initiators,
        audit_trail=trail,
        annex=annex,
    )
