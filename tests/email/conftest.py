"""Fixtures of the email suite: a ferry with the [email] bridge on
email.localhost (privileged component) talking to the peers' Postfix and
Dovecot, shared by a module's tests (each test uses its own mailboxes)."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from email_helpers import email_config, register  # noqa: E402


@pytest.fixture(scope="module")
def gw(ferry_module_factory, peers):  # noqa: F811 (test_email_restart has its own)
    peers.require("postfix", "dovecot")
    return ferry_module_factory(bridges={"email": email_config(peers)})


@pytest.fixture(scope="module")
def domain(gw):
    return gw.config.domain("email")


@pytest.fixture(scope="module")
def me_groups(xmpp_module, domain, peers, gw):
    """alice with her own mailbox, registered once for the module."""
    alice = xmpp_module("alice")
    mb = register(alice, domain, peers)
    return alice, mb
