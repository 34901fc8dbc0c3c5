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
    server = [row for row in t13.rows if "as TLS client" not in row[0].value]
    assert [row[1].value for row in server][-2:] == ["TLS_AES_128_CCM_SHA256", "TLS_AES_128_CCM_8_SHA256"]
    assert [row[2].value for row in server] == ["1", "2", "3", "4", "5"]
    # And the product's own offer follows as TLS client, in its order, citing only its capture
    client = [row for row in t13.rows if "as TLS client" in row[0].value]
    assert [(r[1].value, r[2].value, r[1].evidence) for r in client] == [("TLS_AES_128_GCM_SHA256", "1", ["ev-7"])]
    assert "(MODALITY from 127.0.0.9)" in client[0][0].value
    # B.13 asks servers, not clients, to support all five TLS 1.3 suites: one suite is enough as client
    assert "Modified BCP 195 RFC 8996 TLS" in client[0][0].value
    assert n83.rows[1][2].value == "Y" and n83.rows[1][2].evidence == ["ev-7"]
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


def _client(calling: str, offer: TlsOffer, ev: str, peer: str = "127.0.0.9") -> Initiator:
    return Initiator(calling_ae=calling, called_ae="DCSAUDIT", peer=peer, tls=True, tls_offer=offer, evidence=[ev])


def test_client_hello_fills_the_client_rows_in_the_products_order() -> None:
    # Given only a product's ClientHello (no TLS server audited): GREASE and the SCSV are no suites
    offer = TlsOffer(versions=["TLSv1.3", "TLSv1.2"], cipher_suites=[
        "GREASE_0x0A0A", "TLS_AES_128_CCM_8_SHA256", "TLS_AES_256_GCM_SHA384",
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_EMPTY_RENEGOTIATION_INFO_SCSV"],
        groups=["x25519", "secp256r1"], signature_algorithms=["ecdsa_secp256r1_sha256", "rsa_pss_rsae_sha256"])
    out = {t.id: t for _s, t in tables(AuditData(endpoints=[], evidence=[], initiators=[_client("MOD", offer, "ev-3")]))}
    # Then each client table lists the offer in its order, 1..n, citing the capture only
    def col(tid: str) -> list[tuple[str, str]]:
        return [(r[1].value, r[2].value) for r in out[tid].rows if r[1].evidence == ["ev-3"] == r[2].evidence]
    assert col("N.11.2.5-1") == [("TLS_AES_128_CCM_8_SHA256", "1"), ("TLS_AES_256_GCM_SHA384", "2")]
    assert col("N.11-4") == [("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "1")]
    assert col("N.11.2.5-2") == [("ECDHE (x25519)", "1"), ("ECDHE (secp256r1)", "2")]
    assert [v for v, _ in col("N.11.2.5-3")] == ["ECDSA (ecdsa_secp256r1_sha256)", "RSASSA-PSS (rsa_pss_rsae_sha256)"]
    assert all(len(out[t].rows) == len(col(t)) for t in ("N.11.2.5-1", "N.11-4", "N.11.2.5-2", "N.11.2.5-3"))
    # And as TLS client it conforms to both current profiles (servers, not clients, need all TLS 1.3 suites)
    n83 = out["N.8-3"]
    assert [r[2].value for r in n83.rows[:2]] == ["Y", "Y"]
    assert "Modified BCP 195 RFC 8996 TLS" in out["N.11-4"].rows[0][0].value


def test_legacy_client_is_judged_as_client_and_y_cites_only_conforming_offers() -> None:
    # Given one legacy ClientHello (TLS 1.0-1.2, static RSA CBC suites, SHA-1 signatures) and one modern one
    legacy = TlsOffer(versions=["TLSv1.2", "TLSv1.1", "TLSv1.0"], cipher_suites=[
        "TLS_RSA_WITH_AES_128_CBC_SHA", "TLS_RSA_WITH_3DES_EDE_CBC_SHA"], signature_algorithms=["rsa_pkcs1_sha1"])
    modern = TlsOffer(versions=["TLSv1.3", "TLSv1.2"], cipher_suites=[
        "TLS_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"], groups=["x25519"],
        signature_algorithms=["rsa_pss_rsae_sha256"])
    only_legacy = {t.id: t for _s, t in tables(AuditData(endpoints=[], evidence=[],
                                                           initiators=[_client("OLD", legacy, "ev-1")]))}
    # Then the legacy sender is N with its reasons, and has no TLS 1.3 rows (with the reason)
    b12 = only_legacy["N.8-3"].rows[0][2]
    assert (b12.value, b12.evidence) == ("N", ["ev-1"]) and "TLS 1.0" in b12.note and "as TLS client" in b12.note
    assert not only_legacy["N.11.2.5-1"].rows
    assert "none in the product's ClientHello" in only_legacy["N.11.2.5-1"].empty_reason
    assert [r[1].value for r in only_legacy["N.11-4"].rows] == ["TLS_RSA_WITH_AES_128_CBC_SHA",
                                                               "TLS_RSA_WITH_3DES_EDE_CBC_SHA"]
    # And with both captured, Y rests on the conforming connection only
    both = {t.id: t for _s, t in tables(AuditData(endpoints=[], evidence=[], initiators=[
        _client("OLD", legacy, "ev-1"), _client("NEW", modern, "ev-2", peer="127.0.0.10")]))}
    assert (both["N.8-3"].rows[0][2].value, both["N.8-3"].rows[0][2].evidence) == ("Y", ["ev-2"])


def test_tls13_only_client_is_not_faulted_for_legacy_sha1_schemes_listed_for_certificates() -> None:
    # RFC 8446 §4.2.3 lets a TLS 1.3 client list the SHA-1 schemes last; RFC 9155 forbids them only with TLS 1.2
    offer = TlsOffer(versions=["TLSv1.3"], cipher_suites=["TLS_AES_128_GCM_SHA256"], groups=["x25519"],
                     signature_algorithms=["ecdsa_secp256r1_sha256", "rsa_pkcs1_sha1"])
    out = {t.id: t for _s, t in tables(AuditData(endpoints=[], evidence=[], initiators=[_client("M", offer, "e")]))}
    assert "sha1" not in out["N.8-3"].rows[0][2].note
    offer12 = offer.model_copy(update={"versions": ["TLSv1.3", "TLSv1.2"]})
    out = {t.id: t for _s, t in tables(AuditData(endpoints=[], evidence=[], initiators=[_client("M", offer12, "e")]))}
    assert "rsa_pkcs1_sha1" in out["N.8-3"].rows[0][2].note
