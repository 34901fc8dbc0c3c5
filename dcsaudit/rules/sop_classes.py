"""SOP classes proposed by the association audit, and which service each belongs to (PS3.4, PS3.6 Annex A).

Names are pydicom keywords (e.g. ``StudyRootQueryRetrieveInformationModelFind``) or dotted UIDs. Only
presentation contexts are negotiated: no DIMSE operation other than C-ECHO is ever sent, so no patient
data leaves or enters the audited system.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Literal

from dcsaudit.rules import uid_dictionary

Service = Literal["verification", "storage", "query_retrieve", "worklist", "mpps", "ups", "ian",
                  "storage_commitment", "other"]

_UID = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")


@functools.cache
def _by_keyword() -> dict[str, str]:
    """Keyword -> UID of every SOP class in pydicom's UID dictionary (PS3.6 Annex A), read without importing
    pydicom; where that is not possible, of every SOP class pynetdicom knows (public APIs of both)."""
    table = uid_dictionary.sop_class_keywords()
    if table is not None:
        return table
    from pydicom.uid import UID
    from pynetdicom import sop_class

    uids = [str(v) for v in vars(sop_class).values() if isinstance(v, sop_class.SOPClass)]
    return {kw: uid for uid in uids if (kw := UID(uid).keyword)}

# PS3.4 Annex C (Q/R), K (MWL), F (MPPS), CC (UPS), R (IAN), J (Storage Commitment) and B (Storage) UID
# families (PS3.6 Annex A). UPS: Push/Watch/Pull/Event/Query (34.6.1-5) and the retired trial classes (34.4.x).
_QR_PREFIXES = ("1.2.840.10008.5.1.4.1.2.",)
_WORKLIST = {"1.2.840.10008.5.1.4.31"}
_UPS_PREFIXES = ("1.2.840.10008.5.1.4.34.6.", "1.2.840.10008.5.1.4.34.4.")
_IAN = {"1.2.840.10008.5.1.4.33"}


@dataclass(frozen=True)
class SopClass:
    uid: str
    name: str
    service: Service


def service_of(uid: str) -> Service:
    if uid == "1.2.840.10008.1.1":
        return "verification"
    if uid.startswith(_QR_PREFIXES):
        return "query_retrieve"
    if uid in _WORKLIST:
        return "worklist"
    if uid == "1.2.840.10008.3.1.2.3.3":
        return "mpps"
    if uid.startswith(_UPS_PREFIXES):
        return "ups"
    if uid in _IAN:
        return "ian"
    if uid == "1.2.840.10008.1.20.1":
        return "storage_commitment"
    if uid.startswith("1.2.840.10008.5.1.4.1.1."):
        return "storage"
    return "other"


def name_of(uid: str) -> str:
    """The keyword of a UID, else its name, else the UID itself (pydicom's dictionary)."""
    return uid_dictionary.keyword(uid) or uid_dictionary.name(uid)


def _pynetdicom_name(name: str) -> str | None:
    """The UID pynetdicom gives a name its dictionary lacks: pynetdicom's own names (e.g.
    ModalityWorklistInformationFind) and SOP classes newer than pydicom's dictionary. pynetdicom is
    imported (0.45 s) only for such a name."""
    from pynetdicom import sop_class

    value = getattr(sop_class, name, None)
    return str(value) if isinstance(value, str) and _UID.match(value) else None


def resolve(names: list[str]) -> tuple[list[SopClass], list[str]]:
    """Resolve keywords/UIDs to SOP classes; returns (resolved, unknown names). Verification comes first."""
    out: list[SopClass] = []
    unknown: list[str] = []
    seen: set[str] = set()
    for name in ["Verification", *names]:
        uid = name if _UID.match(name) else _by_keyword().get(name) or _pynetdicom_name(name)
        if uid is None:
            unknown.append(name)
            continue
        if uid not in seen:
            seen.add(uid)
            out.append(SopClass(uid, name_of(uid), service_of(uid)))
    return out[:127], unknown  # PS3.8 §9.3.2.2: odd context ids 1..255
