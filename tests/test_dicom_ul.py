"""A-ASSOCIATE-RJ and A-ABORT bodies (PS3.8 §9.3.4, §9.3.8), decoded as pynetdicom's PDU classes decode them."""

from __future__ import annotations

import itertools
import struct

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


def test_the_decoders_agree_with_pynetdicoms_pdu_classes() -> None:
    # Given every value the standard defines for each field, values it does not, and junk in reserved octets
    from pynetdicom.pdu import A_ABORT_RQ, A_ASSOCIATE_RJ

    values = (0, 1, 2, 3, 4, 5, 6, 7, 8, 0x7F, 0xFF)
    for reserved, a, b, c in itertools.product((0, 0xFF), values, values, values):
        body = bytes([reserved, a, b, c])
        rj, ab = A_ASSOCIATE_RJ(), A_ABORT_RQ()
        rj.decode(struct.pack(">BBI", 3, 0, 4) + body)
        ab.decode(struct.pack(">BBI", 7, 0, 4) + body)
        # Then ours read the same fields as pynetdicom's
        assert decode_associate_rj(body) == (rj.result, rj.source, rj.reason_diagnostic)
        assert decode_abort(body) == (ab.source, ab.reason_diagnostic)
