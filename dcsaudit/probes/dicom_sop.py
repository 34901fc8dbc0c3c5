"""SOP classes proposed by the association audit, and which service each belongs to (PS3.4, PS3.6 Annex A).

Names are pydicom keywords (e.g. ``StudyRootQueryRetrieveInformationModelFind``) or dotted UIDs. Only
presentation contexts are negotiated: no DIMSE operation other than C-ECHO is ever sent, so no patient
data leaves or enters the audited system.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pydicom._uid_dict import UID_dictionary

Service = Literal["verification", "storage", "query_retrieve", "worklist", "mpps", "storage_commitment", "other"]

_UID = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")
_BY_KEYWORD = {v[4]: k for k, v in UID_dictionary.items() if v[4]}

# PS3.4 Annex C (Q/R), K (MWL), F (MPPS), J (Storage Commitment) and B (Storage) UID families.
_QR_PREFIXES = ("1.2.840.10008.5.1.4.1.2.",)
_WORKLIST = {"1.2.840.10008.5.1.4.31"}


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
    if uid == "1.2.840.10008.1.20.1":
        return "storage_commitment"
    if uid.startswith("1.2.840.10008.5.1.4.1.1."):
        return "storage"
    return "other"


def name_of(uid: str) -> str:
    entry = UID_dictionary.get(uid)
    return str(entry[4] or entry[0]) if entry else uid


def _pynetdicom_alias(name: str) -> str | None:
    """pynetdicom's names (e.g. ModalityWorklistInformationFind) where they differ from pydicom keywords."""
    from pynetdicom import sop_class

    value = getattr(sop_class, name, None)
    return str(value) if isinstance(value, str) and _UID.match(value) else None


def resolve(names: list[str]) -> tuple[list[SopClass], list[str]]:
    """Resolve keywords/UIDs to SOP classes; returns (resolved, unknown names). Verification comes first."""
    out: list[SopClass] = []
    unknown: list[str] = []
    seen: set[str] = set()
    for name in ["Verification", *names]:
        uid = name if _UID.match(name) else _BY_KEYWORD.get(name) or _pynetdicom_alias(name)
        if uid is None:
            unknown.append(name)
            continue
        if uid not in seen:
            seen.add(uid)
            out.append(SopClass(uid, name_of(uid), service_of(uid)))
    return out[:127], unknown  # PS3.8 §9.3.2.2: odd context ids 1..255
