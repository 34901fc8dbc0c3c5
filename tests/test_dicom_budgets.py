"""Stage budgets of the association audit: computed from the config, and what finished is kept."""

from __future__ import annotations

import asyncio

import pytest

from dcsaudit import budgets, runner
from dcsaudit.config import DeploymentConfig, parse_config
from dcsaudit.policy import load_policy
from dcsaudit.probes.dicom_assoc import NOT_FINISHED
from dcsaudit.runner import run_audit
from tests.peers.common import LOOPBACK
from tests.peers.dicom_peers import hostile_acceptor, pynetdicom_scp


def _config(aes: list[tuple[str, int]], **scan: object) -> DeploymentConfig:
    return parse_config({
        "deployment": "budgets", "hosts": [{"address": LOOPBACK, "tcp_ports": [p for _, p in aes]}],
        "application_entities": [{"ae_title": t, "host": LOOPBACK, "port": p} for t, p in aes],
        "scan": {"tls_audit": False, "udp": False, "use_nmap": False, **scan},
    })


@pytest.mark.timeout(60)
def test_short_endpoint_bound_keeps_the_timers_it_measured() -> None:
    # Given an endpoint bound of 2 s and a 5 s timer cap with timers measured (the stage used to be
    # bounded at endpoint x 2 = 4 s and threw the finished AE away)
    with pynetdicom_scp("BUDGET", acse_timeout=1, network_timeout=2) as port:
        cfg = _config([("BUDGET", port)], timeouts={"endpoint": 2, "connect": 1, "dicom": 2},
                      intrusive={"measure_timeouts": True}, dicom={"timer_cap_seconds": 5, "user_identity": False})
        report = asyncio.run(run_audit(cfg, load_policy("report-only")))
    # Then the AE is in the report with its measured timers
    [ae] = report.application_entities
    assert ae.error is None and ae.verification is True
    assert ae.artim_seconds is not None and 0.5 < ae.artim_seconds < 3
    assert ae.timeouts["idle_association"].seconds is not None


def test_stage_budget_is_the_sum_of_its_parts() -> None:
    # Given timers and max associations on, two AEs on a host, one association at a time
    cfg = _config([("A", 104), ("B", 105)], timeouts={"endpoint": 2}, intrusive={"measure_timeouts": True,
                  "max_associations": True, "max_associations_cap": 3}, dicom={"timer_cap_seconds": 5})
    ordinary = budgets.dicom_ordinary_seconds(cfg)
    intrusive = budgets.dicom_intrusive_seconds(cfg)
    # Then the host's budget holds both AEs' ordinary and intrusive parts, and the stage adds a margin
    assert ordinary >= 2 + 32 and intrusive >= 3 * 5
    assert budgets.dicom_host_seconds(cfg, 2) == 2 * ordinary + 2 * intrusive
    assert budgets.dicom_stage_seconds(cfg, [2, 1]) == 2 * ordinary + 2 * intrusive + budgets.MARGIN_SECONDS


@pytest.mark.timeout(60)
def test_stage_bound_keeps_finished_aes_and_says_what_was_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a fast acceptor and a silent one on the same host, and a stage budget cut to 1.5 s
    monkeypatch.setattr(runner.budgets, "dicom_stage_seconds", lambda cfg, hosts: 1.5)
    with pynetdicom_scp("FAST") as fast, hostile_acceptor("silent") as silent:
        cfg = _config([("FAST", fast), ("SILENT", silent)], timeouts={"connect": 1, "dicom": 3, "read": 1},
                      dicom={"user_identity": False, "associations_per_host": 2})
        report = asyncio.run(run_audit(cfg, load_policy("report-only")))
    by_title = {a.ae_title: a for a in report.application_entities}
    # Then the finished AE is kept whole, and the cut one is an error with its reason and evidence
    assert by_title["FAST"].error is None and by_title["FAST"].verification is True
    cut = by_title["SILENT"]
    assert cut.error == NOT_FINISHED and cut.verification is None
    [ev] = [e for e in report.evidence if e.id in cut.evidence]
    assert ev.reason == "timeout" and "kept" in ev.summary
