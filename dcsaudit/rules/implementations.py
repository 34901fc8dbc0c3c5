"""Recognise the implementation behind an Implementation Class UID (PS3.7 D.3.3.2) from its UID root.

The roots live in ``dcsaudit/data/implementation_uids.yaml``, each citing where it comes from, so they
can be corrected without touching code.
"""

from __future__ import annotations

import functools
from importlib import resources

from dcsaudit import packaged_yaml


@functools.cache
def _roots() -> tuple[tuple[str, str], ...]:
    text = resources.files("dcsaudit").joinpath("data/implementation_uids.yaml").read_text(encoding="utf-8")
    entries = packaged_yaml.load(text) or []
    pairs = [(str(e["root"]), str(e["implementation"])) for e in entries]
    return tuple(sorted(pairs, key=lambda p: len(p[0]), reverse=True))


def recognise(implementation_class_uid: str | None) -> str | None:
    """The implementation whose root is the longest prefix (on a component boundary) of the UID."""
    if not implementation_class_uid:
        return None
    uid = implementation_class_uid.strip()
    for root, name in _roots():
        if uid == root or uid.startswith(root + "."):
            return name
    return None
