"""A-ASSOCIATE-RJ and A-ABORT bodies decoded through pynetdicom's PDU classes (PS3.8 §9.3.4, §9.3.8)."""

from __future__ import annotations

import pytest

from dcsaudit.probes.dicom_ul import PduError, decode_abort, decode_associate_rj


def test_reject_triple_and_abort_fields() -> None:
    # An RJ body: reserved, result, source, reason; an A-ABORT body: reserved, reserved, source, reason
    assert decode_associate_rj(bytes([0, 2, 3, 2])) == (2, 3, 2)
    assert decode_associate_rj(bytes([0, 1, 1, 7])) == (1, 1, 7)
    assert decode_abort(bytes([0, 0, 2, 6])) == (2, 6)


@pytest.mark.parametrize("body", [b"", b"\x00\x01\x01", b"\x00\x01\x01\x07\x00"])
def test_malformed_bodies_are_protocol_errors(body: bytes) -> None:
    with pytest.raises(PduError):
        decode_associate_rj(body)
    with pytest.raises(PduError):
        decode_abort(body)
