"""Shared test fixtures."""
from __future__ import annotations

import pytest


@pytest.fixture
def rng(request):
    """A numpy generator seeded from the test's name: fresh data per test, reproducible per run."""
    import zlib

    import numpy as np

    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))
