"""Runs one audit: inventory → identification → TLS / DICOM / audit-trail probes → checks → annex.

The runner owns concurrency (``Limiter``: overall and per host) and time bounds; probes never raise
out of it (architecture rule 3): anything unexpected becomes evidence with a reason and the audit
goes on. Data moves one way; checks and the annex builder only read what probes collected.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from dcsaudit import __version__, budgets
from dcsaudit.annex.builder import build_annex
from dcsaudit.auditmsg.correlate import correlate
from dcsaudit.checks import REGISTRY, AuditData
from dcsaudit.config import DeploymentConfig
from dcsaudit.context import AuditContext
from dcsaudit.models.audit import AuditTrail
from dcsaudit.models.core import Finding, Reason
from dcsaudit.models.dicom import ApplicationEntity, Initiator
from dcsaudit.models.endpoint import Endpoint
from dcsaudit.models.report import Report, RunInfo
from dcsaudit.policy import Policy
from dcsaudit.probes.dicom_assoc import NOT_FINISHED, aes_per_host, audit_application_entities
from dcsaudit.probes.identify import identify_all
from dcsaudit.probes.ports import inventory_host
from dcsaudit.probes.syslog_collector import SyslogCollector
from dcsaudit.probes.syslog_sender import probe_product_collector
from dcsaudit.probes.tls import audit_tls
from dcsaudit.probes.tls.audit import TlsAuditOptions

TLS_SERVICES = frozenset({"dicom-tls", "tls", "https", "syslog-tls"})


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
    targets = [e for e in endpoints if e.service in TLS_SERVICES]
    if not targets or not ctx.config.scan.tls_audit:
        return endpoints
    ctx.progress(f"TLS audit of {len(targets)} endpoint(s)")
    bound = ctx.config.scan.timeouts.endpoint
    o = ctx.config.scan.tls
    options = TlsAuditOptions(sslv2_sslv3=o.sslv2_sslv3, vulnerabilities=o.vulnerabilities, robot=o.robot,
                              connections_per_endpoint=o.connections_per_endpoint)
    results = await asyncio.gather(
        *(_bounded(ctx, "tls.audit", ep.key, audit_tls(ctx, ep, options), bound) for ep in targets))
    by_key = {ep.key: res for ep, res in zip(targets, results, strict=True) if res is not None}
    return [e.model_copy(update={"tls": by_key[e.key]}) if e.key in by_key else e for e in endpoints]


async def _dicom_stage(ctx: AuditContext, endpoints: list[Endpoint]) -> list[ApplicationEntity]:
    wanted = bool(ctx.config.application_entities) or any(e.service in ("dicom", "dicom-tls") for e in endpoints)
    if not wanted or not ctx.config.scan.dicom_audit:
        return []
    ctx.progress("DICOM association audit")
    # Every AE phase is bounded inside; this outer bound is their sum plus a margin, and when it fires
    # anyway the AEs that finished are kept (the sink fills as each one ends).
    bound = budgets.dicom_stage_seconds(ctx.config, aes_per_host(ctx, endpoints))
    sink: dict[int, ApplicationEntity] = {}
    await _bounded(ctx, "dicom.audit", "*", audit_application_entities(ctx, endpoints, sink), bound)
    cut = [i for i, ae in sink.items() if ae.error == NOT_FINISHED]
    if cut:
        ev = ctx.evidence.add("dicom.audit", "*", False, f"{len(cut)} AE(s) not audited within the stage budget of "
                              f"{bound:.0f} s; the {len(sink) - len(cut)} that finished are kept",
                              reason=Reason.TIMEOUT)
        for i in cut:
            sink[i] = sink[i].model_copy(update={"evidence": [ev.id]})
    return [sink[i] for i in sorted(sink)]


async def _collector_probe_stage(ctx: AuditContext, endpoints: list[Endpoint]) -> None:
    targets = [e for e in endpoints if e.service in ("syslog-tls", "syslog-udp")]
    if not targets:
        return
    bound = ctx.config.scan.timeouts.endpoint
    await asyncio.gather(*(_bounded(ctx, "syslog.send", ep.key, probe_product_collector(ctx, ep), bound) for ep in targets))


class _Collector:
    """The audit-trail collector run during a scan (issue 5), when configured."""

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

    async def stop(self) -> AuditTrail | None:
        if self.impl is None:
            return None
        window = self.ctx.config.collector.window_seconds
        self.ctx.progress(f"waiting {window:.0f} s for audit messages")
        await asyncio.sleep(window)
        trail: AuditTrail = await asyncio.get_running_loop().run_in_executor(None, self.impl.stop)
        return correlate(self.ctx.evidence.items(), trail, window)


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
