"""N.8-2 Consumer/Receiver: when does a rejected invalid identity prove the type is supported?"""

from __future__ import annotations

from dcsaudit.checks import AuditData

from dcsaudit.annex.dicom_tables import tables
from dcsaudit.models.core import Provenance
from dcsaudit.models.dicom import ApplicationEntity, UserIdentityResult


def receiver_cells(types: dict[str, str]) -> dict[str, tuple[str, Provenance]]:
    ae = ApplicationEntity(ae_title="PACS", host="127.0.0.1", port=104, tls=True, verification=True,
                           user_identity=UserIdentityResult(types=types), evidence=["ev-1"])  # type: ignore[arg-type]
    [n82] = [t for _, t in tables(AuditData(endpoints=[], evidence=[], application_entities=[ae])) if t.id == "N.8-2"]
    return {row[0].value: (row[2].value, row[2].provenance) for row in n82.rows[:4]}


def test_rejecting_every_type_leaves_kerberos_not_verifiable() -> None:
    # Given an acceptor that rejects every identity type with invalid credentials
    cells = receiver_cells({t: "rejected" for t in "12345"})
    # Then a Kerberos "Y" is not claimed: the wire cannot tell support from blanket refusal
    assert cells["Kerberos Identity Negotiation Association"][1] == Provenance.NOT_VERIFIABLE


def test_rejecting_one_type_while_ignoring_others_proves_support() -> None:
    # Given an acceptor that ignores types 1, 3, 4, 5 but rejects a bad type 2 passcode
    cells = receiver_cells({"1": "ignored", "2": "rejected", "3": "ignored", "4": "ignored", "5": "ignored"})
    # Then passcode support is verified and Kerberos is verified as not supported
    assert cells["User Identity Plus Passcode Association"] == ("Y", Provenance.VERIFIED)
    assert cells["Kerberos Identity Negotiation Association"] == ("N", Provenance.VERIFIED)
