"""Names and keywords of DICOM UIDs (PS3.6 Annex A), from pydicom's UID dictionary, without importing pydicom.

A scan needs only the names of the SOP classes and transfer syntaxes it proposes and reads back, but
``import pydicom`` costs 0.3 s (its package initialisation loads the pixel-data decoders), and pynetdicom
0.45 s. The dictionary itself is a pure-data module of pydicom (``_uid_dict.py``, generated from PS3.6):
it is loaded here on its own from pydicom's installed package, in ≈ 10 ms. Should a pydicom release move
or reshape it, pydicom's public ``UID`` class is used instead, at the usual import cost.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

# pydicom's entry: (name, type, info, retired, keyword)
Entry = tuple[str, str, str, str, str]
SOP_CLASS_TYPES = frozenset({"SOP Class", "Meta SOP Class"})
# Transfer syntaxes newer than pydicom 3.0's dictionary (PS3.6 Table A-1), which pynetdicom 3.0 adds to it
# when imported; the audit used to see them through pynetdicom. A test compares with pynetdicom's additions.
SUPPLEMENT: dict[str, Entry] = {
    "1.2.840.10008.1.2.4.110": ("JPEG XL Lossless", "Transfer Syntax", "", "", "JPEGXLLossless"),
    "1.2.840.10008.1.2.4.111": ("JPEG XL JPEG Recompression", "Transfer Syntax", "", "", "JPEGXLJPEGRecompression"),
    "1.2.840.10008.1.2.4.112": ("JPEG XL", "Transfer Syntax", "", "", "JPEGXL"),
    "1.2.840.10008.1.2.8.1": ("Deflated Image Frame Compression", "Transfer Syntax", "", "",
                              "DeflatedImageFrameCompression"),
}


@functools.cache
def _table() -> dict[str, Entry] | None:
    """pydicom's ``UID_dictionary``, loaded from its file; None when it is not where pydicom 3 keeps it."""
    spec = importlib.util.find_spec("pydicom")  # finds the package without running its __init__
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location) / "_uid_dict.py"
        module_spec = importlib.util.spec_from_file_location("dcsaudit._pydicom_uid_dict", path)
        if not path.is_file() or module_spec is None or module_spec.loader is None:
            continue
        module = importlib.util.module_from_spec(module_spec)
        try:
            module_spec.loader.exec_module(module)
        except (OSError, SyntaxError, ImportError):
            return None
        table = getattr(module, "UID_dictionary", None)
        if isinstance(table, dict) and all(isinstance(v, tuple) and len(v) == 5 for v in table.values()):
            return {**SUPPLEMENT, **table}
        return None
    return None


def keyword(uid: str) -> str:
    """The UID's keyword (e.g. ``CTImageStorage``), or "" when the dictionary does not have it."""
    table = _table()
    if table is None:
        from pydicom.uid import UID

        return UID(uid).keyword or (SUPPLEMENT[uid][4] if uid in SUPPLEMENT else "")
    entry = table.get(uid)
    return entry[4] if entry else ""


def name(uid: str) -> str:
    """The UID's name (e.g. ``CT Image Storage``), or the UID itself, as pydicom's ``UID.name``."""
    table = _table()
    if table is None:
        from pydicom.uid import UID

        return SUPPLEMENT[uid][0] if uid in SUPPLEMENT and UID(uid).name == uid else UID(uid).name
    entry = table.get(uid)
    return entry[0] if entry else uid


def sop_class_keywords() -> dict[str, str] | None:
    """Keyword -> UID of every SOP class (and meta SOP class) in the dictionary; None without the table."""
    table = _table()
    if table is None:
        return None
    return {e[4]: uid for uid, e in table.items() if e[1] in SOP_CLASS_TYPES and e[4]}
