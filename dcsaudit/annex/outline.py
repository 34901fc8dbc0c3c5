"""The outline of PS3.2 2024d Annex N sections N.6, N.7, N.8 and N.11: every section and table, in order.

Extracted from the standard's text by ``scripts/annex_outline.py`` into ``dcsaudit/data/annex_n_outline.json``
(data, so a new edition is a regenerated file, not a code change). The builder walks it so that the
annex keeps every section and table of the template in the standard's numbering and order; PS3.2
Annex N asks for sections that do not apply to be kept and marked rather than dropped.

Pure: imports nothing of dcsaudit (the config loader uses it to check declared table ids).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Literal


@dataclass(frozen=True)
class Entry:
    kind: Literal["section", "table"]
    id: str
    title: str


@cache
def entries() -> tuple[Entry, ...]:
    raw = json.loads(resources.files("dcsaudit.data").joinpath("annex_n_outline.json").read_text("utf-8"))
    return tuple(Entry(kind=e["kind"], id=e["id"], title=e["title"]) for e in raw["entries"])


@cache
def table_ids() -> tuple[str, ...]:
    return tuple(e.id for e in entries() if e.kind == "table")


@cache
def section_ids() -> tuple[str, ...]:
    return tuple(e.id for e in entries() if e.kind == "section")


def section_of_table(table_id: str) -> str | None:
    """The section a table of the standard sits in (the last section heading before its caption)."""
    current = None
    for e in entries():
        if e.kind == "section":
            current = e.id
        elif e.id == table_id:
            return current
    return None


def depth(section_id: str) -> int:
    """N.7 -> 1, N.6.1 -> 2, N.7.3.2.8.10.1 -> 6."""
    return section_id.count(".")


# Why a section or table with nothing observed and nothing declared stays empty, by id prefix (longest
# prefix wins). Said once per empty section/table so a reader knows whether a probe could have seen it.
NOT_PROBED: tuple[tuple[str, str], ...] = (
    ("N.6.2", "no presentation context of this service was accepted from the audit's list, and nothing was declared"),
    ("N.6.3", "DICOMweb services are not probed by this version of dcsaudit; nothing was declared"),
    ("N.6.4", "media storage is not observable from the network; nothing was declared"),
    ("N.6.5", "Real-Time Video is not probed by this version of dcsaudit; nothing was declared"),
    ("N.7.2.1.1", "the sequencing of real-world activities is product behaviour a network scan cannot see"),
    ("N.7.2.1.3", "association initiation by the product is observed only by `dcsaudit listen`, and none was "
                  "captured for this activity"),
    ("N.7.2.1.4", "the real-world activities behind accepted associations are not visible on the wire"),
    ("N.7-5", "the acceptor's transfer syntax preference is not probed (the audit proposes each context with "
              "the transfer syntaxes it needs, not competing lists)"),
    ("N.7-6", "the acceptor's transfer syntax preference is not probed"),
    ("N.7-7", "the acceptor's transfer syntax preference is not probed"),
    ("N.7.3.1.1", "the product's behaviour as initiator on communication failures needs the product to "
                  "initiate (not provoked by this audit)"),
    ("N.7.3.2", "DIMSE status codes are not measured: the audit sends no DIMSE request other than C-ECHO"),
    ("N.7.3.3", "DICOMweb services are not probed by this version of dcsaudit"),
    ("N.8.2", "external network requirements (NTP, DHCP, DNS, LDAP) are not probed by this version of dcsaudit; "
              "nothing was declared"),
    ("N.8.4.3", "media storage security is not observable from the network"),
    ("N.8.4.4", "attribute confidentiality (de-identification) is not observable from the network"),
    ("N.8.4.5", "digital signatures inside instances are not observable from the network"),
    ("N.8.4.6", "no additional security profile is probed"),
    ("N.8.6", "DICOMweb security is not probed by this version of dcsaudit"),
    ("N.8.7", "not observable from the network"),
    ("N.11.1", "external network requirement details are not probed by this version of dcsaudit"),
    ("N.11.2.1", "Online Electronic Storage Secure Use is product behaviour a network scan cannot see"),
    ("N.11.2.6", "attribute confidentiality (de-identification) is not observable from the network"),
    ("N.11.2.7", "digital signatures inside instances are not observable from the network"),
    ("N.11.2.8", "no additional security profile is probed"),
)


def why_empty(ident: str) -> str:
    """The reason an entry (section id or table id) has nothing in this annex."""
    for prefix, why in NOT_PROBED:  # a table with its own reason
        if prefix == ident:
            return why
    key = ident
    if "-" in ident:  # a table: judged by its section
        key = section_of_table(ident) or ident
    best = ""
    reason = "nothing was observed in this audit and nothing was declared"
    for prefix, why in NOT_PROBED:
        if (key == prefix or key.startswith(prefix + ".")) and len(prefix) > len(best):
            best, reason = prefix, why
    return reason
