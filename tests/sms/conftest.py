"""Fixtures of the SMS suite: ferry with the [sms] bridge on sms.localhost
(privileged component) against the real Kannel (bearerbox, smsbox and its
fake SMSC), the smpp34 SMSC and the Twilio mock (a mock: Twilio cannot run
here)."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="module", autouse=True)
def sms_peers(peers):
    for p in ("bearerbox", "smsbox", "fakesmsc", "smsc", "twiliomock"):
        peers.require(p)
