"""The initiator side of the annex from a real `dcsaudit listen` capture: DCMTK storescu over TLS fills N.7-1
(as requestor), N.6-6 (Calling AE Title), N.8-2 (Creator/Sender), N.8-8 and the N.11.2.5 client tables, each
cell citing the evidence of the captured association and nothing else."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from dcsaudit.models.core import AnnexTable, Provenance
from dcsaudit.models.report import Report
from tests.annex_invariants import evidence_violations, mark_violations
from tests.peers.common import LOOPBACK, TestPKI, free_port, require_program, stop, wait_for_port
from tests.test_listen_dicom import synthetic_instance

MINE = ("N.6-", "N.7-1", "N.7-2", "N.7-9", "N.8-2", "N.8-8", "N.8-9", "N.11.2.5-", "N.11-4")


def _tables(report: Report, table_id: str) -> list[AnnexTable]:
    return [t for s in report.annex.sections for t in s.tables if t.id == table_id and t.rows]


def _row(table: AnnexTable, label: str) -> list:  # type: ignore[type-arg]
    [row] = [r for r in table.rows if r[0].value == label]
    return row


@pytest.fixture(scope="module")
def listen_report(pki: TestPKI, tmp_path_factory: pytest.TempPathFactory) -> Report:
    storescu = require_program("storescu")
    tmp = tmp_path_factory.mktemp("listen-annex")
    port, out = free_port(), tmp / "out"
    # Given dcsaudit listening on a DICOM TLS port for a few seconds
    proc = subprocess.Popen(
        [sys.executable, "-m", "dcsaudit.cli", "listen", "--dicom-tls-port", str(port), "--tls-cert",
         str(pki.server_cert), "--tls-key", str(pki.server_key), "--tls-ca", str(pki.ca_file), "--duration", "6",
         "--out", str(out), "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for_port(port)
        # When DCMTK storescu stores one synthetic instance over TLS with a client certificate and a type 1
        # identity asking for a positive response
        r = subprocess.run([storescu, "+tls", str(pki.client_key), str(pki.client_cert), "+cf", str(pki.ca_file),
                            "-aet", "MODALITY1", "-aec", "DCSAUDIT", "--user", "bob", "--pos-response", LOOPBACK,
                            str(port), str(synthetic_instance(tmp / "sc.dcm"))],
                           capture_output=True, text=True, timeout=30, env={**os.environ, "TCP_NODELAY": "1"})
        assert r.returncode == 0, r.stderr
        _stdout, stderr = proc.communicate(timeout=40)
    finally:
        stop(proc)
    assert proc.returncode in (0, 1), stderr.decode()
    return Report.model_validate(json.loads((out / "report.json").read_text()))


@pytest.mark.timeout(90)
def test_listen_capture_fills_the_initiator_side(listen_report: Report) -> None:
    report = listen_report
    # (wait_for_port's bare connection is recorded too, as a failed TLS handshake without an A-ASSOCIATE-RQ)
    [init] = [i for i in report.initiators if i.calling_ae == "MODALITY1"]
    assert all(i.outcome == "tls_failure" for i in report.initiators if i is not init), report.initiators
    assert init.tls and init.tls_offer is not None and init.tls_offer.cipher_suites
    captured = set(init.evidence)
    assert captured and all(e.probe.startswith("listen") for e in report.evidence if e.id in captured)

    # Then N.7-1 gives the requestor's implementation identity and PDU size, citing that association only
    [n71] = _tables(report, "N.7-1")
    uid = _row(n71, "Implementation Class UID")[1]
    assert (uid.provenance, uid.value) == (Provenance.VERIFIED, init.implementation_class_uid)
    assert uid.value.startswith("1.2.276.0.7230010.3") and set(uid.evidence) == captured
    assert "Requestor" in uid.note
    ver = _row(n71, "Implementation Version Name")[1]
    assert ver.value == init.implementation_version_name and set(ver.evidence) == captured
    pdu = _row(n71, "Maximum PDU Length")[1]
    assert pdu.value == str(init.max_pdu_length) and set(pdu.evidence) == captured

    # And N.6-6 names the Calling AE Title the product used for Storage
    [n66] = _tables(report, "N.6-6")
    calling = _row(n66, "Calling AE Title (SCU)")
    assert calling[2].value == "MODALITY1" and set(calling[2].evidence) == captured
    storage = [c for c in init.proposed_contexts if c.abstract_syntax.startswith("1.2.840.10008.5.1.4.1.1.")]
    assert f"proposed {len({c.abstract_syntax for c in storage})} SOP class(es)" in calling[3].value

    # And N.8-8 says a type 1 identity with a positive-response request was sent
    [n88] = _tables(report, "N.8-8")
    assert [c.value for c in _row(n88, "User-Identity-Type")[1:]] == ["Y", "1"]
    assert [c.value for c in _row(n88, "Positive-response-requested")[1:]] == ["Y", "1"]
    assert all(set(c.evidence) == captured for c in _row(n88, "User-Identity-Type")[1:])

    # And N.8-2's Creator/Sender column: Y for Basic User Identity, N for the others (the capture is the control)
    [n82] = [t for t in _tables(report, "N.8-2")]
    basic = _row(n82, "Basic User Identity Association")[1]
    kerberos = _row(n82, "Kerberos Identity Negotiation Association")[1]
    assert (basic.value, set(basic.evidence)) == ("Y", captured)
    assert (kerberos.value, set(kerberos.evidence)) == ("N", captured) and "1 captured association" in kerberos.note

    # And the N.11.2.5 client tables list the ClientHello's offer in the product's own order
    offer = init.tls_offer
    for table_id, expected_in in (("N.11.2.5-1", offer.cipher_suites), ("N.11.2.5-2", offer.groups),
                                  ("N.11.2.5-3", offer.signature_algorithms), ("N.11-4", offer.cipher_suites)):
        [t] = _tables(report, table_id)
        client = [r for r in t.rows if "as TLS client (MODALITY1 from 127.0.0.1)" in r[0].value]
        assert client, table_id
        assert [r[2].value for r in client] == [str(n) for n in range(1, len(client) + 1)]
        assert all(set(c.evidence) == captured for r in client for c in r[1:])
        values = [r[1].value for r in client]
        assert all(any(item in v for item in expected_in) for v in values), (table_id, values)
    t13 = [r[1].value for r in _tables(report, "N.11.2.5-1")[0].rows if "as TLS client" in r[0].value]
    assert t13 == [s for s in offer.cipher_suites if s.startswith("TLS_AES_") or s.startswith("TLS_CHACHA20_")]

    # And every cell of these tables keeps the mark rules and cites evidence that fits
    mine = [p for p in mark_violations(report) + evidence_violations(report) if p.split(" — ")[-1].startswith(MINE)
            or p.startswith(MINE)]
    assert not mine, "\n".join(mine)
