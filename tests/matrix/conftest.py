"""Fixtures of the Matrix suite: a ferry with the [matrix] bridge on
matrix.localhost (privileged component) talking to the peers' Synapse."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from matrix_helpers import matrix_config  # noqa: E402


@pytest.fixture
def gw(ferry_factory, peers):
    peers.require("synapse")
    return ferry_factory(bridges={"matrix": matrix_config()})


@pytest.fixture
def domain(gw):
    return gw.config.domain("matrix")
