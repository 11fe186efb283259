"""Fixtures of the IRC suite: one ferry with the [irc] bridge on
irc.localhost (privileged component), reaching InspIRCd as `127.0.0.1` and
ngIRCd as `127.0.0.2` (through each user's server options, set with the
`configure` command the way a user would)."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from irc_helpers import irc_config  # noqa: E402


@pytest.fixture(scope="module")
def gw(ferry_module_factory, peers):
    return ferry_module_factory(bridges={"irc": irc_config(peers)})


@pytest.fixture(scope="module")
def domain(gw):
    return gw.config.domain("irc")
