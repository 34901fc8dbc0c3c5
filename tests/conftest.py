"""Fixtures shared by all tests. Peers run on 127.0.0.1 only, on free ports, and are always stopped."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.peers.common import TestPKI


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return TestPKI(Path(tmp_path_factory.mktemp("pki")))
