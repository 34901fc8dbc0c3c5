"""UID names and SOP-class keywords read from pydicom's dictionary without importing pydicom (a scan never pays
pydicom's 0.3 s), agreeing with pydicom's and pynetdicom's public APIs."""

from __future__ import annotations

import json
import subprocess
import sys

from dcsaudit.config import DicomProbeOptions
from dcsaudit.rules import uid_dictionary
from dcsaudit.rules.sop_classes import name_of, resolve


def test_names_and_keywords_agree_with_pydicoms_uid_class() -> None:
    # Given every UID in pydicom's dictionary as the audit saw it when it imported pynetdicom (which adds the
    # transfer syntaxes pydicom lacks), and UIDs it does not have
    import pynetdicom  # noqa: F401  (its additions to pydicom's dictionary)
    from pydicom._uid_dict import UID_dictionary
    from pydicom.uid import UID

    uids = [*UID_dictionary, "1.2.3.4", "2.25.1234", ""]
    # Then our keyword and name are pydicom's
    assert [uid_dictionary.keyword(u) for u in uids] == [UID(u).keyword for u in uids]
    assert [uid_dictionary.name(u) for u in uids] == [UID(u).name for u in uids]


def test_every_sop_class_pynetdicom_knows_resolves_to_the_same_uid() -> None:
    # Given every SOP class pynetdicom defines, by its pydicom keyword and by pynetdicom's own name
    from pydicom.uid import UID
    from pynetdicom import sop_class

    classes = {k: str(v) for k, v in vars(sop_class).items() if isinstance(v, sop_class.SOPClass)}
    by_keyword = {UID(u).keyword: u for u in classes.values() if UID(u).keyword}
    for names in (by_keyword, classes):
        for name, uid in names.items():
            # When each is resolved
            resolved, unknown = resolve([name])
            # Then it is known and has pynetdicom's UID (Verification comes first)
            assert unknown == [] and resolved[-1].uid == uid, name


def test_default_sop_classes_resolve_and_are_named_by_keyword() -> None:
    resolved, unknown = resolve(list(DicomProbeOptions().sop_classes))
    assert unknown == [] and resolved[0].name == "Verification"
    assert name_of("1.2.840.10008.5.1.4.1.1.2") == "CTImageStorage"
    assert name_of("1.2.3.4") == "1.2.3.4"


def test_unknown_names_stay_unknown() -> None:
    # A transfer syntax keyword is not a SOP class; a typo is nothing
    assert resolve(["ExplicitVRLittleEndian", "CTImageStorag"])[1] == ["ExplicitVRLittleEndian", "CTImageStorag"]


def test_the_dictionary_loads_without_pydicom() -> None:
    code = ("import json, sys; from dcsaudit.rules import uid_dictionary as u, sop_classes as s; "
            "r = s.resolve(['CTImageStorage', 'ModalityWorklistInformationModelFind']); "
            "print(json.dumps({'uids': [x.uid for x in r[0]], 'unknown': r[1], "
            "'modules': [m for m in sys.modules if m.split('.')[0] in ('pydicom', 'pynetdicom')]}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    got = json.loads(out.stdout)
    assert got == {"uids": ["1.2.840.10008.1.1", "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.31"],
                   "unknown": [], "modules": []}
