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


def per_host_counts(hosts: list[str]) -> list[int]:
    """How many items each distinct host has, in first-seen order."""
    return [hosts.count(h) for h in dict.fromkeys(hosts)]


def inventory_seconds(cfg: DeploymentConfig) -> float:
    """nmap (its own bound + 5 s to exit), then a connect-scan fallback per_host ports at a time, and NTP."""
    t, per_host = cfg.scan.timeouts, cfg.scan.concurrency.per_host
    ports = max((len(cfg.tcp_ports_for(h)) for h in cfg.hosts), default=0)
    return t.nmap + 5 + math.ceil(ports / per_host) * t.connect + t.read + MARGIN_SECONDS


def identification_seconds(cfg: DeploymentConfig, open_hosts: list[str]) -> float:
    """Up to three connections an endpoint, one after another at worst, ``per_host`` connections at once."""
    t, per_host = cfg.scan.timeouts, cfg.scan.concurrency.per_host
    per_endpoint = 3 * (t.connect + t.tls_handshake + t.read) + 1.0
    waves = max((math.ceil(3 * n / per_host) for n in per_host_counts(open_hosts)), default=0)
    return waves * per_endpoint + MARGIN_SECONDS


def tls_endpoint_seconds(cfg: DeploymentConfig) -> float:
    return cfg.scan.timeouts.endpoint


def tls_stage_seconds(cfg: DeploymentConfig, tls_hosts: list[str]) -> float:
    """Endpoints of a host share its connection bound, ``connections_per_endpoint`` each."""
    per_host, each = cfg.scan.concurrency.per_host, cfg.scan.tls.connections_per_endpoint
    waves = max((math.ceil(n * each / per_host) for n in per_host_counts(tls_hosts)), default=0)
    return waves * tls_endpoint_seconds(cfg) + MARGIN_SECONDS


def collector_probe_seconds(cfg: DeploymentConfig) -> float:
    return cfg.scan.timeouts.endpoint


def client_certs_endpoint_seconds(cfg: DeploymentConfig) -> float:
    """Six handshakes one after another (five defective certificates and a control), each with one request."""
    t = cfg.scan.timeouts
    return 6 * (t.connect + t.tls_handshake + t.read + 2.0) + 1.0


def client_certs_stage_seconds(cfg: DeploymentConfig, tls_hosts: list[str]) -> float:
    """Each endpoint holds one of its host's ``per_host`` slots at a time; hosts run in parallel."""
    per_host = cfg.scan.concurrency.per_host
    waves = max((math.ceil(n / per_host) for n in per_host_counts(tls_hosts)), default=0)
    return waves * client_certs_endpoint_seconds(cfg) + 1.0 + MARGIN_SECONDS


def ntp_endpoint_seconds(cfg: DeploymentConfig) -> float:
    """A mode-3 query and two control queries (each up to the read timeout), and one NTS-KE handshake."""
    t = cfg.scan.timeouts
    return 3 * t.read + t.connect + 1.0


def ntp_stage_seconds(cfg: DeploymentConfig, hosts: list[str]) -> float:
    """Every host and NTP port in parallel, ``per_host`` at a time on one host."""
    n = len(dict.fromkeys(hosts))
    waves = math.ceil(len(cfg.scan.ntp.ports) / cfg.scan.concurrency.per_host) if n else 0
    return waves * ntp_endpoint_seconds(cfg) + MARGIN_SECONDS


def dicomweb_endpoint_seconds(cfg: DeploymentConfig) -> float:
    """Each base path once, then two more requests without and three with credentials, one after another;
    each request is a connect and at most a few reads of ``read`` seconds."""
    t = cfg.scan.timeouts
    requests = len(cfg.scan.dicomweb.base_paths) + 2 + (3 if cfg.scan.dicomweb.auth else 0)
    return requests * (t.connect + 2 * t.read) + 1.0


def dicomweb_stage_seconds(cfg: DeploymentConfig, web_hosts: list[str]) -> float:
    per_host = cfg.scan.concurrency.per_host
    waves = max((math.ceil(n / per_host) for n in per_host_counts(web_hosts)), default=0)
    return waves * dicomweb_endpoint_seconds(cfg) + MARGIN_SECONDS


def ldap_endpoint_seconds(cfg: DeploymentConfig) -> float:
    """Root DSE, anonymous bind, the optional simple bind and StartTLS: four connections one after another."""
    t = cfg.scan.timeouts
    return 4 * (t.connect + t.tls_handshake + t.read) + 1.0


def ldap_stage_seconds(cfg: DeploymentConfig, ldap_hosts: list[str]) -> float:
    per_host = cfg.scan.concurrency.per_host
    waves = max((math.ceil(n / per_host) for n in per_host_counts(ldap_hosts)), default=0)
    return waves * ldap_endpoint_seconds(cfg) + MARGIN_SECONDS


def dns_endpoint_seconds(cfg: DeploymentConfig) -> float:
    """Recursion over UDP and TCP, SOA with DO, AXFR: four queries one after another."""
    t = cfg.scan.timeouts
    return 4 * (t.connect + t.read) + 1.0


def dns_stage_seconds(cfg: DeploymentConfig) -> float:
    """Every host in parallel, its DNS ports ``per_host`` at a time."""
    waves = math.ceil(len(cfg.scan.dns.ports) / cfg.scan.concurrency.per_host)
    return waves * dns_endpoint_seconds(cfg) + MARGIN_SECONDS


def dns_sd_stage_seconds(cfg: DeploymentConfig) -> float:
    """Two PTR queries, then per instance (at most 32 per type) SRV, TXT, A and AAAA, one after another."""
    from dcsaudit.probes.dns import MAX_INSTANCES  # the bound lives with the loop it bounds

    return (2 + 2 * MAX_INSTANCES * 4) * cfg.scan.timeouts.read + MARGIN_SECONDS
