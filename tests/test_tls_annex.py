"""Annex tables N.8-3, N.11.2.5-1/-2/-3, N.11-4, N.11-5 built from constructed TLS results."""

from __future__ import annotations

from dcsaudit.annex.tls_tables import tables
from dcsaudit.checks.base import AuditData
from dcsaudit.models.core import Provenance
from dcsaudit.models.dicom import Initiator, TlsOffer
from dcsaudit.models.endpoint import Endpoint
from dcsaudit.rules import tls_profiles
from tests.test_tls_checks import bad, good


def _data(r, initiators=()):  # type: ignore[no-untyped-def]
    # Facts only, as the probe records them: the annex judges them with the rule book itself.
    ep = Endpoint(host="127.0.0.5", port=2762, protocol="tcp", state="open", service="dicom-tls", tls=r)
    return AuditData(endpoints=[ep], evidence=[], initiators=list(initiators))


def test_conformant_server_fills_the_tables() -> None:
    # Given a B.12/B.13-conformant receiver and a product that offered B.13 suites as sender
    offer = TlsOffer(versions=["TLSv1.3", "TLSv1.2"], cipher_suites=["TLS_AES_128_GCM_SHA256",
                     "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"], groups=["x25519"])
    ini = Initiator(calling_ae="MODALITY", called_ae="DCSAUDIT", peer="127.0.0.9", tls=True, tls_offer=offer,
                    evidence=["ev-7"])
    out = dict((t.id, (sec, t)) for sec, t in tables(_data(good(), [ini])))
    # Then N.8-3 says Y/Y for both current profiles, verified with evidence
    sec, n83 = out["N.8-3"]
    assert sec == "N.8.4.2"
    b12 = n83.rows[0]
    assert b12[0].value.startswith("BCP 195 RFC 8996 TLS")
    assert (b12[2].value, b12[3].value) == ("Y", "Y") and b12[3].provenance == Provenance.VERIFIED
    # And N.11.2.5-1 lists the TLS 1.3 suites in server order, including the corrected CCM row
    t13 = out["N.11.2.5-1"][1]
    assert [row[1].value for row in t13.rows][-2:] == ["TLS_AES_128_CCM_SHA256", "TLS_AES_128_CCM_8_SHA256"]
    assert [row[2].value for row in t13.rows] == ["1", "2", "3", "4", "5"]
    assert out["N.11-4"][1].rows[0][1].value == "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
    assert out["N.11.2.5-2"][1].rows[0][1].value == "ECDHE (x25519)"
    assert out["N.11.2.5-3"][1].rows[0][1].value.startswith("RSASSA-PSS")
    assert out["N.11-5"][1].columns == ["Parameter/Behavior", "Configurable", "Default Value", "Comments"]


def test_weak_server_gets_n_with_reasons_and_retired_rows() -> None:
    # Given a weak server and no captured sender, When tabulated
    out = {t.id: t for _s, t in tables(_data(bad()))}
    n83 = out["N.8-3"]
    # Then the receiver is N with the reason in the note, the sender not observed, retired profiles listed
    assert n83.rows[0][3].value == "N" and "TLS 1.0 accepted" in n83.rows[0][3].note
    assert n83.rows[0][2].provenance == Provenance.NOT_OBSERVED
    assert any(r[0].value.startswith("Basic TLS") for r in n83.rows)


def test_no_tls_endpoint_gives_empty_reasons() -> None:
    out = {t.id: t for _s, t in tables(AuditData(endpoints=[], evidence=[]))}
    assert out["N.11-4"].empty_reason and not out["N.11-4"].rows


def test_annex_ignores_stale_verdicts_and_judges_the_facts() -> None:
    # Given a weak server whose result carries verdicts that do not match its facts
    stale = tls_profiles.judged(good()).profiles
    r = bad().model_copy(update={"profiles": stale})
    # When tabulated, Then the receiver is judged from the facts (N), not from the carried verdicts
    out = {t.id: t for _s, t in tables(_data(r))}
    assert out["N.8-3"].rows[0][3].value == "N"


def test_judge_endpoints_fills_the_verdicts_for_the_report() -> None:
    # Given endpoints as the probes leave them (facts, no verdicts), one audited and one failed
    ok = Endpoint(host="127.0.0.5", port=2762, protocol="tcp", state="open", service="dicom-tls", tls=bad())
    failed = Endpoint(host="127.0.0.5", port=2763, protocol="tcp", state="open", service="dicom-tls",
                      tls=bad().model_copy(update={"error": "timeout", "protocols": {}}))
    plain = Endpoint(host="127.0.0.5", port=104, protocol="tcp", state="open", service="dicom")
    assert ok.tls is not None and ok.tls.profiles == {}
    # When judged for report.json
    j_ok, j_failed, j_plain = tls_profiles.judge_endpoints([ok, failed, plain])
    # Then the audited result carries the rule book's verdicts and retired profiles, the others nothing
    assert j_ok.tls is not None and j_ok.tls.profiles == tls_profiles.evaluate(bad())
    assert j_ok.tls.retired_profiles == tls_profiles.retired_profiles(bad()) != []
    assert j_failed.tls is not None and j_failed.tls.profiles == {} and j_failed.tls.retired_profiles == []
    assert j_plain == plain
