"""Bounded, fixed-seed mutation fuzzing of every parser that reads what a peer sends (issue 12).

The harness and the targets are in :mod:`tests.fuzz_targets`; a long run (>= 1,000,000 executions per
parser) is documented in docs/fuzzing.md."""

from __future__ import annotations

import pytest

from tests.fuzz_targets import Target, fuzz, targets

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about the odd UIDs it is fed

ITERATIONS = {"rfc5424": 5000, "xml_body": 1500, "classify": 1000, "deframer": 3000, "ul_gate": 3000,
              "dicom_ul": 5000, "tls_wire": 5000}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("target", targets(), ids=lambda t: t.name)
def test_parser_raises_nothing_unexpected(target: Target) -> None:
    # Given mutated valid inputs (fixed seed), When each is parsed, Then only the documented errors occur
    got = fuzz(target, ITERATIONS[target.name], seed=0)
    # And the mutations reach both outcomes where the parser has an error type (they are not all rejected)
    assert got["ok"] > 0
    if target.allowed:
        assert got["allowed_error"] > 0


def test_gate_lets_through_only_what_pynetdicom_decodes() -> None:
    # The gate's second check is pynetdicom's decoder: whatever passes the gate decodes there too
    import random

    from pynetdicom.pdu import A_ASSOCIATE_RQ

    from dcsaudit.listeners import ul_guard
    from tests.fuzz_targets import mutate

    (gate,) = [t for t in targets() if t.name == "ul_gate"]
    rng = random.Random(7)
    passed = 0
    for _ in range(2000):
        data = mutate(rng, gate.seeds[0], gate.seeds)
        if len(data) > 6 and ul_guard.check_associate_rq(data[6:]) is None:
            pdu = A_ASSOCIATE_RQ()
            pdu.decode(bytes([1, 0]) + len(data[6:]).to_bytes(4, "big") + data[6:])
            pdu.to_primitive()
            passed += 1
    assert passed > 0
