"""Runs one audit: inventory → identification → TLS / DICOM / audit-trail probes → checks → annex.

The runner owns concurrency (``Limiter``: overall and per host) and time bounds; probes never raise
out of it (architecture rule 3): anything unexpected becomes evidence with a reason and the audit
goes on. Data moves one way; checks and the annex builder only read what probes collected.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from dcsaudit import __version__
from dcsaudit.annex.builder import build_annex
from dcsaudit.checks import REGISTRY, AuditData
from dcsaudit.config import DeploymentConfig
from dcsaudit.context import AuditContext
from dcsaudit.models.audit import AuditTrail
from dcsaudit.models.core import Finding, Reason
from dcsaudit.models.dicom import ApplicationEntity, Initiator
from dcsaudit.models.endpoint import Endpoint
from dcsaudit.models.report import Report, RunInfo
from dcsaudit.policy import Policy
from dcsaudit.probes.identify import identify_all
from dcsaudit.probes.ports import inventory_host

TLS_SERVICES = frozenset({"dicom-tls", "tls", "https", "syslog-tls"})


def _optional(module: str, attr: str) -> Any | None:
    """A capability that may be absent from this build; its absence is recorded, never hidden."""
    try:
        return getattr(importlib.import_module(module), attr, None)
    except ModuleNotFoundError:
        return None


def run_checks(data: AuditData, policy: Policy) -> list[Finding]:
    findings: list[Finding] = []
    for spec in REGISTRY.all():
        severity = policy.severity.get(spec.id, spec.severity)
        findings.extend(spec.run(data, severity=severity, gating=policy.gates(spec.id, severity)))
    return findings


async def _bounded(ctx: AuditContext, what: str, target: str, coro: Any, timeout: float) -> Any:
    """Await a probe within its time bound; a timeout or a bug becomes evidence, not a crash."""
    try:
        return await asyncio.wait_for(coro, timeout)
    except TimeoutError:
        ctx.evidence.add(what, target, False, f"{what} did not finish within {timeout:.0f} s", reason=Reason.TIMEOUT)
    except Exception as exc:
        ctx.evidence.add(what, target, False, f"{what} failed: {type(exc).__name__}: {exc}",
                         reason=Reason.INTERNAL_ERROR)
    return None


async def _tls_stage(ctx: AuditContext, endpoints: list[Endpoint]) -> list[Endpoint]:
    audit_tls = _optional("dcsaudit.probes.tls", "audit_tls")
    targets = [e for e in endpoints if e.service in TLS_SERVICES]
    if not targets or not ctx.config.scan.tls_audit:
        return endpoints
    if audit_tls is None:
        for ep in targets:
            ctx.evidence.add("tls.audit", ep.key, False, "TLS audit is not available in this build",
                             reason=Reason.NOT_AVAILABLE)
        return endpoints
    ctx.progress(f"TLS audit of {len(targets)} endpoint(s)")
    bound = ctx.config.scan.timeouts.endpoint
    results = await asyncio.gather(*(_bounded(ctx, "tls.audit", ep.key, audit_tls(ctx, ep), bound) for ep in targets))
    by_key = {ep.key: res for ep, res in zip(targets, results, strict=True) if res is not None}
    return [e.model_copy(update={"tls": by_key[e.key]}) if e.key in by_key else e for e in endpoints]


async def _dicom_stage(ctx: AuditContext, endpoints: list[Endpoint]) -> list[ApplicationEntity]:
    audit_aes = _optional("dcsaudit.probes.dicom_assoc", "audit_application_entities")
    wanted = bool(ctx.config.application_entities) or any(e.service in ("dicom", "dicom-tls") for e in endpoints)
    if not wanted or not ctx.config.scan.dicom_audit:
        return []
    if audit_aes is None:
        ctx.evidence.add("dicom.audit", "*", False, "DICOM association audit is not available in this build",
                         reason=Reason.NOT_AVAILABLE)
        return []
    ctx.progress("DICOM association audit")
    bound = ctx.config.scan.timeouts.endpoint * 2
    result = await _bounded(ctx, "dicom.audit", "*", audit_aes(ctx, endpoints), bound)
    return list(result or [])


async def _collector_probe_stage(ctx: AuditContext, endpoints: list[Endpoint]) -> None:
    probe = _optional("dcsaudit.probes.syslog_sender", "probe_product_collector")
    targets = [e for e in endpoints if e.service in ("syslog-tls", "syslog-udp")]
    if probe is None or not targets:
        return
    bound = ctx.config.scan.timeouts.endpoint
    await asyncio.gather(*(_bounded(ctx, "syslog.send", ep.key, probe(ctx, ep), bound) for ep in targets))


class _Collector:
    """The audit-trail collector run during a scan (issue 5), when configured."""

    def __init__(self, ctx: AuditContext) -> None:
        self.ctx = ctx
        self.impl: Any = None

    def start(self) -> None:
        cfg = self.ctx.config.collector
        if not cfg.enabled:
            return
        cls = _optional("dcsaudit.probes.syslog_collector", "SyslogCollector")
        if cls is None:
            self.ctx.evidence.add("syslog.collector", "*", False, "the syslog collector is not available in this build",
                                  reason=Reason.NOT_AVAILABLE)
            return
        try:
            self.impl = cls(cfg.bind, cfg.tls_port, cfg.udp_port, self.ctx.evidence,
                            cert_file=cfg.cert_file, key_file=cfg.key_file,
                            ca_file=self.ctx.config.credentials.ca_file)
            self.impl.start()
        except Exception as exc:  # e.g. port in use, or UDP 514 without privileges
            self.ctx.evidence.add("syslog.collector", f"{cfg.bind}", False,
                                  f"collector could not start: {type(exc).__name__}: {exc}",
                                  reason=Reason.NOT_AVAILABLE)
            self.impl = None

    async def stop(self) -> AuditTrail | None:
        if self.impl is None:
            return None
        window = self.ctx.config.collector.window_seconds
        self.ctx.progress(f"waiting {window:.0f} s for audit messages")
        await asyncio.sleep(window)
        trail: AuditTrail = await asyncio.get_running_loop().run_in_executor(None, self.impl.stop)
        correlate = _optional("dcsaudit.auditmsg.correlate", "correlate")
        if correlate is not None:
            trail = correlate(self.ctx.evidence.items(), trail, window)
        return trail


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

    ctx.progress(f"port inventory of {len(config.hosts)} host(s)")
    per_host = await asyncio.gather(*(inventory_host(ctx, h) for h in config.hosts))
    endpoints = [ep for eps in per_host for ep in eps]

    ctx.progress(f"identifying {sum(1 for e in endpoints if e.state == 'open')} open endpoint(s)")
    endpoints = await identify_all(ctx, endpoints)
    # Associations before the TLS audit: each of its full handshakes can hold one of the product's
    # association slots until the product's ARTIM timer fires (pynetdicom does), and the association
    # audit would then see (2, 3, 2) local-limit-exceeded rejects caused by the scan itself.
    aes = await _dicom_stage(ctx, endpoints)
    endpoints = await _tls_stage(ctx, endpoints)
    await _collector_probe_stage(ctx, endpoints)
    trail = await collector.stop()
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
