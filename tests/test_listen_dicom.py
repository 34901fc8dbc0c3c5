"""``dcsaudit listen`` captures real initiators: DCMTK echoscu/storescu (plain, TLS, user identity) and pynetdicom."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from dcsaudit.evidence import EvidenceLog
from dcsaudit.listeners.dicom_scp import DicomListener
from tests.peers.common import TestPKI, require_program


def synthetic_instance(path: Path) -> Path:
    """A tiny synthetic Secondary Capture object (no real patient data)."""
    ds = Dataset()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = "SYNTHETIC^TEST", "TEST0001", "OT"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def listener(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[DicomListener]:
    pki: TestPKI | None = getattr(request, "param", None) and request.getfixturevalue("pki")
    lst = DicomListener("127.0.0.1", 0, 0, EvidenceLog(), tls_cert=pki.server_chain if pki else None,
                        tls_key=pki.server_key if pki else None, tls_ca=pki.ca_file if pki else None,
                        store_dir=tmp_path / "store")
    lst.start()
    try:
        yield lst
    finally:
        lst.stop()


def run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, env={**os.environ, "TCP_NODELAY": "1"})


@pytest.mark.timeout(30)
def test_storescu_plain_with_username_and_passcode(listener: DicomListener, tmp_path: Path) -> None:
    # Given storescu sending a type 2 identity with positive-response-requested, over plaintext
    prog = require_program("storescu")
    assert listener.dicom_port
    r = run([prog, "-aet", "MODALITY1", "-aec", "PACS", "--user", "alice", "--password", "S3cret-pw", "--pos-response",
             "127.0.0.1", str(listener.dicom_port), str(synthetic_instance(tmp_path / "sc.dcm"))])
    # When the listener stops
    evidence = listener.evidence
    (init,) = listener.stop()
    # Then the store succeeded (our empty User Identity AC satisfied --pos-response) and all was recorded
    assert r.returncode == 0, r.stderr
    assert (init.calling_ae, init.called_ae, init.tls) == ("MODALITY1", "PACS", False)
    assert init.implementation == "DCMTK" and init.implementation_version_name == "OFFIS_DCMTK_367"
    assert init.user_identity_type == 2 and init.positive_response_requested is True and init.username == "alice"
    assert init.services == ["C-STORE"] and init.stored_instances == 1
    assert any(c.name == "SecondaryCaptureImageStorage" for c in init.proposed_contexts)
    assert len(list((tmp_path / "store").glob("*.dcm"))) == 1
    # And the passcode is nowhere
    assert "S3cret-pw" not in init.model_dump_json()
    assert all("S3cret-pw" not in e.model_dump_json() for e in evidence.items())


@pytest.mark.timeout(30)
def test_echoscu_plain(listener: DicomListener) -> None:
    prog = require_program("echoscu")
    r = run([prog, "-aet", "ECHOER", "127.0.0.1", str(listener.dicom_port)])
    (init,) = listener.stop()
    assert r.returncode == 0, r.stderr
    assert init.services == ["C-ECHO"] and init.user_identity_type is None and init.calling_ae == "ECHOER"
    assert [c.name for c in init.proposed_contexts] == ["Verification"]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("listener", [True], indirect=True)
def test_storescu_tls_with_client_certificate(listener: DicomListener, pki: TestPKI, tmp_path: Path) -> None:
    # Given storescu over TLS with a client certificate and a type 1 identity
    prog = require_program("storescu")
    r = run([prog, "+tls", str(pki.client_key), str(pki.client_cert), "+cf", str(pki.ca_file),
             "--user", "bob", "--pos-response", "127.0.0.1", str(listener.dicom_tls_port),
             str(synthetic_instance(tmp_path / "sc.dcm"))])
    (init,) = listener.stop()
    # Then the ClientHello offer, the negotiated version and the client certificate are recorded
    assert r.returncode == 0, r.stderr
    assert init.tls is True and init.tls_offer is not None
    offer = init.tls_offer
    assert "TLSv1.2" in offer.versions and offer.cipher_suites and offer.groups and offer.signature_algorithms
    assert offer.negotiated_version in ("TLSv1.2", "TLSv1.3")
    import hashlib
    import ssl

    der = ssl.PEM_cert_to_DER_cert(pki.client_cert.read_text())
    assert offer.client_certificate is not None
    assert offer.client_certificate["sha256"] == hashlib.sha256(der).hexdigest()
    assert init.user_identity_type == 1 and init.username == "bob"


@pytest.mark.timeout(30)
def test_echoscu_tls_failed_handshake_is_still_recorded(listener: DicomListener) -> None:
    # Given a TLS client that offers only TLS 1.0/1.1 (DCMTK's AES profile allows TLS 1.0+; we require 1.2)
    prog = require_program("echoscu")
    run([prog, "+tla", "-ic", "+pa", "--cipher", "TLS_RSA_WITH_AES_128_CBC_SHA", "127.0.0.1",
         str(listener.dicom_tls_port)])
    inits = listener.stop()
    # Then either the handshake worked (recorded with its offer) or it failed and was recorded as tls_failure
    assert len(inits) == 1 and inits[0].tls is True and inits[0].tls_offer is not None
    assert "TLS_RSA_WITH_AES_128_CBC_SHA" in inits[0].tls_offer.cipher_suites


@pytest.mark.timeout(30)
def test_pynetdicom_scu_with_jwt(listener: DicomListener) -> None:
    # Given a pynetdicom SCU sending a type 5 JWT identity with positive-response-requested
    from pynetdicom import AE
    from pynetdicom.pdu_primitives import UserIdentityNegotiation
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    token = b"eyJhbGciOiJub25lIn0.eyJzdWIiOiJ0ZXN0In0."
    uid = UserIdentityNegotiation()
    uid.user_identity_type = 5
    uid.positive_response_requested = True
    uid.primary_field = token
    scu = AE(ae_title="PYSCU")
    scu.add_requested_context(Verification)
    scu.acse_timeout = scu.dimse_timeout = scu.network_timeout = 5
    assoc = scu.associate("127.0.0.1", listener.dicom_port or 0, ae_title="LISTENER", ext_neg=[uid])
    assert assoc.is_established
    status = assoc.send_c_echo()
    # The listener answered the positive-response request (empty server response)
    assert assoc.acceptor.user_identity is not None
    assoc.release()
    (init,) = listener.stop()
    # Then the JWT type, the flag and the token length are recorded, not the token
    assert status.Status == 0
    assert init.user_identity_type == 5 and init.positive_response_requested is True
    assert init.user_identity_primary_length == len(token) and init.username is None
    assert token.decode() not in init.model_dump_json()
    assert init.implementation == "pynetdicom" and init.services == ["C-ECHO"]
