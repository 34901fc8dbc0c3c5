"""Vendor declarations: one key format, checked at load, reconciled with observations in one place."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dcsaudit.annex import declarations
from dcsaudit.annex.builder import build_annex
from dcsaudit.checks.base import AuditData
from dcsaudit.cli import main
from dcsaudit.config import parse_config
from dcsaudit.models.core import Cell, Evidence, Provenance
from dcsaudit.models.dicom import ApplicationEntity, MeasuredTimeout

T0 = "2026-01-01T00:00:00Z"
MAX = "Maximum number of simultaneous Associations accepted"
ARTIM = "ARTIM timeout (no A-ASSOCIATE-RQ after TCP connect)"


def _ev(i: int, probe: str, target: str) -> Evidence:
    return Evidence.model_validate({"id": f"ev-{i:04d}", "probe": probe, "target": target, "at": T0, "ok": True,
                                    "summary": "x"})


def _two_aes() -> AuditData:
    """One product, one AE title on two ports, each with a measured limit and ARTIM timer."""
    aes = []
    evidence = []
    for n, port in enumerate((11112, 2762)):
        base = 10 * (n + 1)
        evidence += [_ev(base, "dicom.assoc", f"127.0.0.1:{port}/dicom"), _ev(base + 1, "dicom.timers", f"127.0.0.1:{port}/dicom")]
        aes.append(ApplicationEntity(
            ae_title="PACS", host="127.0.0.1", port=port, tls=port == 2762, max_associations=4 + n,
            max_associations_evidence=[f"ev-{base:04d}"],
            timeouts={"artim": MeasuredTimeout(seconds=30.0, cap_seconds=60, evidence=f"ev-{base + 1:04d}")}))
    return AuditData(endpoints=[], evidence=evidence, application_entities=aes)


def _cell(data: AuditData, table: str, row: str, col: int) -> Cell:
    for s in build_annex(data).sections:
        for t in s.tables:
            if t.id == table:
                for r in t.rows:
                    if r[0].value == row:
                        return r[col]
    raise AssertionError(f"{table} {row} not rendered")


def _with(data: AuditData, declared: dict[str, dict[str, str]]) -> AuditData:
    cfg_checked = parse_config({"deployment": "d", "hosts": [{"address": "127.0.0.1"}], "declared": declared})
    return AuditData(endpoints=data.endpoints, evidence=data.evidence,
                     application_entities=data.application_entities, declared=cfg_checked.declared)


def test_declared_only_cell_is_d() -> None:
    # Given a declaration for a value no probe observed
    data = _with(AuditData(endpoints=[], evidence=[]), {"N.6-1": {MAX: "10"}})
    # Then the cell shows D with the declared value and no evidence
    c = _cell(data, "N.6-1", MAX, 2)
    assert (c.provenance, c.value, c.declared, c.evidence) == (Provenance.DECLARED, "10", "10", [])


def test_configurable_default_is_shown_beside_the_site_value_not_against_it() -> None:
    # Given observed limits 4 and 5 on the site, a vendor default of 8, configurable by service
    data = _with(_two_aes(), {"N.6-1": {MAX: "8", f"{MAX} | Configurable": "SERVICE"}})
    c = _cell(data, "N.6-1", MAX, 2)
    # Then both are shown and nothing is contradicted
    assert c.provenance is Provenance.VERIFIED and c.declared == "8" and "vendor default: 8" in c.note
    assert "4 (PACS@127.0.0.1:11112)" in c.value or "127.0.0.1:11112: 4" in c.value


def test_fixed_row_that_differs_is_contradicted_per_ae() -> None:
    # Given the vendor says the limit is FIXED at 4, and one port observes 5
    data = _with(_two_aes(), {"N.6-1": {MAX: "4", f"{MAX} | Configurable": "FIXED"}})
    c = _cell(data, "N.6-1", MAX, 2)
    assert c.provenance is Provenance.CONTRADICTED and c.declared == "4"
    # And a declaration qualified for each port agrees with both: verified
    data = _with(_two_aes(), {"N.6-1": {f"{MAX} @ 11112": "4", f"{MAX} @ 2762": "5",
                                        f"{MAX} | Configurable": "FIXED"}})
    c = _cell(data, "N.6-1", MAX, 2)
    assert c.provenance is Provenance.VERIFIED and c.evidence


def test_same_value_on_every_ae_matches_a_plain_declaration() -> None:
    data = _with(_two_aes(), {"N.6-1": {ARTIM: "30 s", f"{ARTIM} | Configurable": "FIXED"}})
    c = _cell(data, "N.6-1", ARTIM, 2)
    assert c.provenance is Provenance.VERIFIED and c.declared == "30 s"


@pytest.mark.parametrize(("declared", "needle"), [
    ({"N.6-1": {"Maximum number of simultanous Associations accepted": "10"}},
     "did you mean 'Maximum number of simultaneous Associations accepted'?"),
    ({"N.6-01": {MAX: "10"}}, "did you mean 'N.6-1'?"),
    ({"N.6-1": {f"{MAX} | Default": "10"}}, f"did you mean '{MAX} | Default Value'?"),
    ({"N.8-3": {"BCP 195 RFC 8996 TLS Secure Transport Connection Profile Sender": "Y"}}, "did you mean"),
    ({"N.8-2": {"Basic User Identity Association": "Y"}}, "several value columns"),
])
def test_misspelt_declaration_exits_2_naming_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     declared: dict[str, dict[str, str]], needle: str) -> None:
    cfg = tmp_path / "d.yaml"
    cfg.write_text(yaml.safe_dump({"deployment": "d", "hosts": [{"address": "127.0.0.1", "tcp_ports": [9]}],
                                   "declared": declared}))
    # When scanned, Then the config is refused before any probe, in one line that names the key
    assert main(["scan", str(cfg), "--out", str(tmp_path / "out"), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "declared" in err[0] and needle in err[0], err
    table, keys = next(iter(declared.items()))
    assert table in err[0]
    if table in declarations.catalog():  # a bad key in a good table is named itself
        assert next(iter(keys)) in err[0]


def test_skeleton_filled_in_is_accepted_with_every_key(tmp_path: Path) -> None:
    # Given the skeleton `dcsaudit declarations --yaml` prints, with every key uncommented and filled in
    out = subprocess.run([sys.executable, "-m", "dcsaudit.cli", "declarations", "--yaml"], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    filled = re.sub(r'^(\s+)# (".*"): ""$', r'\1\2: "x"', out, flags=re.M)
    doc = yaml.safe_load(filled)
    n = sum(len(v) for v in doc["declared"].values())
    assert n == len(declarations.valid_keys()) > 100
    # When loaded as a deployment's declarations, Then every key is accepted
    cfg = parse_config({"deployment": "d", "hosts": [{"address": "127.0.0.1"}], "declared": doc["declared"]})
    assert sum(len(v) for v in cfg.declared.values()) == n
    # And each lands in a cell of the annex (as D: nothing was observed)
    annex = build_annex(AuditData(endpoints=[], evidence=[], declared=cfg.declared))
    shown = sum(1 for s in annex.sections for t in s.tables for r in t.rows for c in r
                if c.provenance is Provenance.DECLARED)
    assert shown == n


def test_key_list_names_every_declarable_table() -> None:
    out = subprocess.run([sys.executable, "-m", "dcsaudit.cli", "declarations"], capture_output=True, text=True,
                         timeout=60, check=True).stdout.splitlines()
    assert {line.split("\t")[0] for line in out} == set(declarations.catalog())
    assert f"N.6-1\t{MAX}" in out and f"N.6-1\t{MAX} | Configurable" in out


def test_qualified_declaration_applies_to_a_row_that_names_its_endpoint() -> None:
    # Given N.11-5 rows labelled per endpoint, and declarations for two ports, only one of them audited
    from dcsaudit.models.core import AnnexTable

    spec = declarations.catalog()["N.11-5"]
    table = AnnexTable(id="N.11-5", title="t", columns=list(spec.columns), rows=[[
        Cell(value="TLS versions accepted (127.0.0.1:2762)", provenance=Provenance.LABEL),
        Cell(value="", provenance=Provenance.NOT_VERIFIABLE, note="n"),
        Cell(value="TLSv1.2, TLSv1.3", provenance=Provenance.VERIFIED, evidence=["ev-0001"]),
        Cell(value="", provenance=Provenance.NOT_VERIFIABLE, note="n")]])
    got = declarations._apply_table(table, spec, {"TLS versions accepted @ 2762": "TLSv1.3",
                                                  "TLS versions accepted | Configurable": "FIXED",
                                                  "TLS versions accepted @ 11112": "TLSv1.2"})
    # Then the declaration for its port is compared (and contradicts), the other port's is not used
    c = got.rows[0][2]
    assert c.provenance is Provenance.CONTRADICTED and c.declared == "TLSv1.3"
