"""History store, fingerprints and diff rules on reports built from the models (no network; issue 13).

The real-scan drift (SQLite and PostgreSQL) is in test_history_scan.py; here each diff rule gets a
case that trips it and a case that does not.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dcsaudit.cli import main
from dcsaudit.history.commands import run_store_url
from dcsaudit.history.diff import diff_runs
from dcsaudit.history.fingerprints import finding_fingerprint, report_facts
from dcsaudit.history.store import describe, open_store
from dcsaudit.models.core import Finding
from dcsaudit.models.dicom import ApplicationEntity
from dcsaudit.models.endpoint import Endpoint
from dcsaudit.models.report import Report, RunInfo
from dcsaudit.models.tls import CertificateInfo, ProfileVerdict, TlsResult

T0 = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)
PROFILE = "BCP195_RFC8996"


def cert(sha: str = "aa" * 32, not_after: datetime | None = None) -> CertificateInfo:
    na = not_after or T0 + timedelta(days=365)
    return CertificateInfo(subject="CN=pacs", issuer="CN=ca", serial="01", sha256=sha, key_type="EC", key_bits=256,
                           signature_algorithm="ecdsa-with-SHA256", signature_hash="sha256",
                           not_before="2026-01-01T00:00:00+00:00", not_after=na.isoformat(),
                           days_to_expiry=(na - T0).days, expired=False, not_yet_valid=False, self_signed=False)


def tls(versions: dict[str, list[str]], verdict: str = "conforms", certificate: CertificateInfo | None = None,
        error: str | None = None) -> TlsResult:
    conforms = verdict != "does_not_conform"
    return TlsResult(protocols=versions, certificate=certificate or cert(), error=error,
                     profiles={PROFILE: ProfileVerdict(conforms=conforms, verdict=verdict,  # type: ignore[arg-type]
                                                       warnings=["w"] if verdict.endswith("deviations") else [])})


def ep(port: int, state: str = "open", service: str = "dicom-tls", plaintext: bool | None = False,
       t: TlsResult | None = None, evidence: str = "ev-1") -> Endpoint:
    return Endpoint(host="10.0.0.5", port=port, protocol="tcp", state=state, service=service,  # type: ignore[arg-type]
                    plaintext_dicom=plaintext, tls=t, evidence=[evidence])


def finding(check: str, status: str, target: str = "10.0.0.5:2762/tcp", gating: bool = False,
            severity: str = "high", suppressed: bool = False) -> Finding:
    return Finding(check_id=check, title=check, status=status, severity=severity, target=target,  # type: ignore[arg-type]
                   summary="s", gating=gating, suppressed=suppressed)


def report(endpoints: list[Endpoint], findings: list[Finding] = (), aes: list[ApplicationEntity] = (),  # type: ignore[assignment]
           deployment: str = "site", at: datetime = T0) -> Report:
    return Report(deployment=deployment, started_at=at, finished_at=at + timedelta(minutes=2),
                  run=RunInfo(tool_version="0.1.0", command="scan", policy="default", exit_status=0),
                  endpoints=list(endpoints), findings=list(findings), application_entities=list(aes))


MODERN = {"TLSv1.2": ["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"], "TLSv1.3": ["TLS_AES_128_GCM_SHA256"]}


def stored_diff(tmp_path: Path, a: Report, b: Report, days: int = 30) -> Any:
    with open_store(f"sqlite:///{tmp_path / 'h.sqlite'}") as store:
        ra, rb = store.save(a), store.save(b)
        return diff_runs(store.snapshot(ra), store.snapshot(rb), expiry_days=days)


def test_fingerprints_are_the_same_in_every_run_and_differ_between_deployments() -> None:
    # Given the same facts observed twice, with other evidence ids and times
    a = report([ep(2762, t=tls(MODERN), evidence="ev-0001")], [finding("tls.no_legacy_protocols", "pass")])
    b = report([ep(2762, t=tls(MODERN), evidence="ev-0777")], [finding("tls.no_legacy_protocols", "pass")],
               at=T0 + timedelta(days=1))
    # Then every fact and finding has the same key in both runs
    assert [f.key("site") for f in report_facts(a)] == [f.key("site") for f in report_facts(b)]
    assert finding_fingerprint("site", a.findings[0]) == finding_fingerprint("site", b.findings[0])
    # And another deployment's identical fact has another key
    assert report_facts(a)[0].key("site") != report_facts(a)[0].key("other site")


def test_no_change_no_regression(tmp_path: Path) -> None:
    a = report([ep(2762, t=tls(MODERN))], [finding("tls.no_legacy_protocols", "pass")])
    d = stored_diff(tmp_path, a, a)
    assert d.changes == [] and d.findings == [] and not d.regression


def test_legacy_tls_switched_on_is_a_regression_a_modern_version_is_not(tmp_path: Path) -> None:
    legacy = {**MODERN, "TLSv1.0": ["TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"]}
    d = stored_diff(tmp_path, report([ep(2762, t=tls({"TLSv1.2": MODERN["TLSv1.2"]}))]),
                    report([ep(2762, t=tls(legacy))]))
    gained = {c.after: c.regression for c in d.changes if c.what == "tls.versions"}
    assert gained == {"TLSv1.0": True, "TLSv1.3": False}
    assert d.regression


def test_weaker_profile_verdict_is_a_regression_a_stronger_one_is_not(tmp_path: Path) -> None:
    good, bad = report([ep(2762, t=tls(MODERN))]), report([ep(2762, t=tls(MODERN, "does_not_conform"))])
    worse = stored_diff(tmp_path / "w", good, bad)
    assert [(c.before, c.after, c.regression) for c in worse.changes] == [("conforms", "does_not_conform", True)]
    better = stored_diff(tmp_path / "b", bad, good)
    assert [c.regression for c in better.changes] == [False] and not better.regression


def test_failed_tls_audit_is_not_read_as_versions_lost(tmp_path: Path) -> None:
    # A TLS audit that failed (timeout) established nothing: no "TLSv1.3 lost" from missing facts
    d = stored_diff(tmp_path, report([ep(2762, t=tls(MODERN))]), report([ep(2762, t=tls({}, error="timeout"))]))
    assert not [c for c in d.changes if c.what.startswith("tls.")] and not d.regression


def test_plaintext_exposure_new_port_and_closed_port(tmp_path: Path) -> None:
    a = report([ep(2762, t=tls(MODERN)), ep(11112, state="closed", service="unknown", plaintext=None)])
    b = report([ep(2762, t=tls(MODERN)), ep(11112, service="dicom", plaintext=True), ep(8042, service="http")])
    d = stored_diff(tmp_path, a, b)
    texts = [c.text for c in d.changes]
    assert "plaintext DICOM newly exposed on 10.0.0.5:11112/tcp" in texts
    assert "port opened: 10.0.0.5:11112/tcp (closed -> open)" in texts
    assert "port opened: 10.0.0.5:8042/tcp (newly seen)" in texts
    assert d.regression
    back = stored_diff(tmp_path / "back", b, a)
    assert "port closed: 10.0.0.5:8042/tcp (not in run 2)" in [c.text for c in back.changes]
    assert not back.regression


def test_certificate_change_and_expiry_window(tmp_path: Path) -> None:
    soon = cert("bb" * 32, not_after=T0 + timedelta(days=10))
    d = stored_diff(tmp_path, report([ep(2762, t=tls(MODERN))]), report([ep(2762, t=tls(MODERN, certificate=soon))]))
    assert {c.what for c in d.changes if c.category == "certificate"} == {"tls.cert.sha256", "tls.cert.not_after"}
    assert [c.text for c in d.expiring] == ["10.0.0.5:2762/tcp: certificate expires in 9 day(s) (2026-11-11)"]
    far = stored_diff(tmp_path / "f", report([ep(2762, t=tls(MODERN))]), report([ep(2762, t=tls(MODERN))]), days=7)
    assert far.expiring == []


def test_ae_policy_change_is_named(tmp_path: Path) -> None:
    def ae(any_calling: bool) -> ApplicationEntity:
        return ApplicationEntity(ae_title="PACS", host="10.0.0.5", port=2762, tls=True, verification=True,
                                 accepts_any_calling_ae=any_calling)

    d = stored_diff(tmp_path, report([], aes=[ae(False)]), report([], aes=[ae(True)]))
    assert [c.text for c in d.changes] == ["PACS@10.0.0.5:2762: accepts_any_calling_ae: False -> True"]


def test_findings_new_resolved_still_failing_and_not_evaluated(tmp_path: Path) -> None:
    a = report([], [finding("a.resolved", "fail"), finding("b.still", "fail"), finding("c.gone", "fail"),
                    finding("d.new_suppressed", "pass")])
    b = report([], [finding("a.resolved", "pass"), finding("b.still", "fail"), finding("d.new_suppressed", "fail",
                                                                                         suppressed=True),
                    finding("e.new_gating", "fail", gating=True), finding("f.new_nongating", "error")])
    d = stored_diff(tmp_path, a, b)
    got = {f.check_id: (f.change, f.regression) for f in d.findings}
    assert got == {"a.resolved": ("resolved", False), "b.still": ("still_failing", False),
                   "c.gone": ("not_evaluated", False), "d.new_suppressed": ("new", False),
                   "e.new_gating": ("new", True), "f.new_nongating": ("new", False)}
    assert d.regression


def test_diff_and_history_cli_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = f"sqlite:///{tmp_path / 'nope.sqlite'}"
    assert main(["history", "--store", missing]) == 2
    assert "no history store" in capsys.readouterr().err
    url = f"sqlite:///{tmp_path / 'one.sqlite'}"
    with open_store(url) as store:
        store.save(report([]))
    assert main(["diff", "--store", url]) == 2
    assert "has 1 stored run(s); a diff needs two" in capsys.readouterr().err
    assert main(["diff", "--store", url, "7", "9"]) == 2
    assert main(["diff", "--store", "mysql://x@127.0.0.1/db"]) == 2


def test_history_text_and_store_from_a_file_reference(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'h.sqlite'}"
    ref = tmp_path / "store-url"
    ref.write_text(url + "\n")
    with open_store(f"{{file: {ref}}}") as store:
        store.save(report([ep(2762, t=tls(MODERN))], [finding("x.y", "fail", gating=True)]))
    capsys.readouterr()
    assert main(["history", "--store", f"{{file: {ref}}}"]) == 0
    out = capsys.readouterr().out
    assert "site" in out and out.splitlines()[1].split()[0] == "1"


def test_password_never_shown() -> None:
    assert "s3cret" not in describe("postgresql+psycopg://audit:s3cret@127.0.0.1:5432/dcsaudit")


def test_default_store_sits_beside_the_output_directories(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DCSAUDIT_STORE", raising=False)

    class A:
        store = None

    (tmp_path / "out" / "2026-11-01").mkdir(parents=True)  # preflight creates --out before the run
    assert run_store_url(A(), tmp_path / "out" / "2026-11-01", False, True) == \
        f"sqlite:///{tmp_path / 'out' / 'dcsaudit-history.sqlite'}"
    assert run_store_url(A(), tmp_path / "out", True, True) == f"sqlite:///{tmp_path / 'out' / 'dcsaudit-history.sqlite'}"
    assert run_store_url(A(), tmp_path / "out", False, False) is None
    monkeypatch.setenv("DCSAUDIT_STORE", "none")
    assert run_store_url(A(), tmp_path / "out", False, True) is None


def test_run_json_round_trip(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path / 'h.sqlite'}") as store:
        rid = store.save(report([ep(2762, t=tls(MODERN))], [finding("x.y", "fail", gating=True),
                                                           finding("x.z", "pass")]))
        [run] = store.runs()
    assert run.id == rid and (run.failed, run.passed, run.gating) == (1, 1, 1)
    assert json.loads(json.dumps(run.as_json()))["started_at"] == T0.isoformat()


def test_default_store_that_cannot_be_written_is_a_warning_an_explicit_one_exits_3(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dcsaudit.history.commands import store_run

    blocked = tmp_path / "file-not-dir"
    blocked.write_text("")
    url = f"sqlite:///{blocked / 'sub' / 'h.sqlite'}"  # its directory cannot be created
    assert store_run(report([]), url, tmp_path, quiet=True, explicit=False) is True
    assert "warning: run not kept in the default history store" in capsys.readouterr().err
    assert store_run(report([]), url, tmp_path, quiet=True, explicit=True) is False
    assert "cannot create the history store's directory" in capsys.readouterr().err


def _schema(url: str) -> dict[str, object]:
    """Tables, columns (type, nullable), primary keys, indexes and foreign keys, as the database reports them."""
    from sqlalchemy import create_engine, inspect

    engine = create_engine(url)
    try:
        insp = inspect(engine)
        out: dict[str, object] = {}
        for t in sorted(insp.get_table_names()):
            out[t] = {
                "columns": [(c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(t)],
                "pk": insp.get_pk_constraint(t)["constrained_columns"],
                "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in insp.get_indexes(t)),
                "fks": sorted((tuple(f["constrained_columns"]), f["referred_table"], tuple(f["referred_columns"]),
                               (f.get("options") or {}).get("ondelete")) for f in insp.get_foreign_keys(t)),
            }
        with engine.connect() as conn:
            from sqlalchemy import text

            out["alembic_version"] = [r[0] for r in conn.execute(text("SELECT version_num FROM alembic_version"))]
        return out
    finally:
        engine.dispose()


def _both_ways(fast_url: str, alembic_url: str) -> None:
    from dcsaudit.history import store as st

    for url, alembic_only in ((fast_url, False), (alembic_url, True)):
        engine = st._engine(st.resolve_url(url))
        assert not st._at_head(engine)  # an empty database
        st.migrate(engine, alembic_only=alembic_only)
        assert st._at_head(engine)  # from now on open_store does not touch Alembic
        engine.dispose()
    assert _schema(fast_url) == _schema(alembic_url)


def test_a_new_store_built_from_the_models_equals_the_migrations_and_is_stamped_at_head(tmp_path: Path) -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from dcsaudit.history import store as st

    cfg = Config()
    cfg.set_main_option("script_location", str(st.MIGRATIONS))
    assert ScriptDirectory.from_config(cfg).get_heads() == [st.HEAD_REVISION]
    _both_ways(f"sqlite:///{tmp_path / 'fast.sqlite'}", f"sqlite:///{tmp_path / 'alembic.sqlite'}")


def test_the_same_on_postgresql() -> None:
    from tests.peers.postgres import postgres_server

    with postgres_server() as server:
        _both_ways(server.new_database(), server.new_database())
