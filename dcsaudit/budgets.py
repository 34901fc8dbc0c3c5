"""Time budgets of the audit's stages, computed once from the config.

Each budget is the sum of what its parts are allowed plus a margin, so an outer bound never fires
before the inner bounds it contains; when one does fire, the stage keeps what finished.
"""

from __future__ import annotations

import math

from dcsaudit.config import DeploymentConfig

MARGIN_SECONDS = 5.0


def _one_association(cfg: DeploymentConfig) -> float:
    t = cfg.scan.timeouts
    return t.connect + t.tls_handshake + 2 * t.dicom  # connect, TLS, ACSE answer, C-ECHO / release


def dicom_ordinary_seconds(cfg: DeploymentConfig) -> float:
    """One AE's non-intrusive probes: the endpoint bound plus one full busy-retry wait."""
    return cfg.scan.timeouts.endpoint + cfg.scan.dicom.busy_retry_seconds


def dicom_intrusive_seconds(cfg: DeploymentConfig) -> float:
    """One AE's opt-in measurements: three timers one after another, two max-associations runs."""
    intrusive = cfg.scan.intrusive
    total = 0.0
    if intrusive.measure_timeouts:
        total += 3 * (cfg.scan.dicom.timer_cap_seconds + _one_association(cfg)) + cfg.scan.dicom.busy_retry_seconds
    if intrusive.max_associations:
        total += 2 * (intrusive.max_associations_cap + 1) * _one_association(cfg) + cfg.scan.dicom.busy_retry_seconds
    return total


def dicom_intrusive_wanted(cfg: DeploymentConfig) -> bool:
    return cfg.scan.intrusive.measure_timeouts or cfg.scan.intrusive.max_associations


def dicom_host_seconds(cfg: DeploymentConfig, aes_on_host: int) -> float:
    """A host's AEs: ordinary probes ``associations_per_host`` at a time, then each AE's intrusive step alone."""
    waves = math.ceil(aes_on_host / cfg.scan.dicom.associations_per_host)
    return waves * dicom_ordinary_seconds(cfg) + aes_on_host * dicom_intrusive_seconds(cfg)


def dicom_stage_seconds(cfg: DeploymentConfig, aes_per_host: list[int]) -> float:
    """Hosts are audited in parallel: the slowest host bounds the stage."""
    return max((dicom_host_seconds(cfg, n) for n in aes_per_host), default=0.0) + MARGIN_SECONDS
