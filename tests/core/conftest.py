"""Fixtures shared by the suites of the core (tests/core): one ferry with
the test network per module, its domain, and alice registered with it. A
module that needs another ferry defines its own `gw`."""
import pytest

from helpers import register


@pytest.fixture(scope="module")
def gw(ferry_module_factory):
    return ferry_module_factory()


@pytest.fixture(scope="module")
def domain(gw):
    return gw.config.domain("test")


@pytest.fixture
def alice_r(xmpp, domain):
    """alice, registered with the test network."""
    c = xmpp("alice")
    register(c, domain)
    return c


@pytest.fixture
def user(alice_r):
    """The user most tests need: alice, registered."""
    return alice_r
