"""What every probe receives: the config, the evidence log, the connection limits, progress."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dcsaudit.config import DeploymentConfig
from dcsaudit.evidence import EvidenceLog
from dcsaudit.limits import Limiter

if TYPE_CHECKING:
    from dcsaudit.probes.tls.vulns import WorkerPool


def _no_progress(message: str) -> None:
    return None


@dataclass
class AuditContext:
    config: DeploymentConfig
    evidence: EvidenceLog
    limiter: Limiter
    progress: Callable[[str], None] = field(default=_no_progress)
    # sslyze children started ahead of the TLS stage's vulnerability tests (probes/tls/vulns.py)
    sslyze_workers: WorkerPool | None = None

    @classmethod
    def create(cls, config: DeploymentConfig, progress: Callable[[str], None] | None = None) -> AuditContext:
        c = config.scan.concurrency
        return cls(config=config, evidence=EvidenceLog(), limiter=Limiter(c.overall, c.per_host),
                   progress=progress or _no_progress)
