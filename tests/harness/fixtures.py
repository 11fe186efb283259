"""pytest fixtures of the harness (loaded by tests/conftest.py).

peers                 the running servers (harness.peers.Peers); the test
                      errors out clearly when they are not running
ferry_bin             path of the ferry binary under test ($FERRY_BIN)
ferry_factory         make(...) -> a started Ferry, stopped after the test
ferry_module_factory  the same, shared by the tests of a module
xmpp                  make(user, **kw) -> a logged-in XmppClient (user of
                      peers.env: admin, alice, bob, carol), disconnected
                      after the test
alice, bob, carol, admin   one logged-in client each
irc                   make(nick, server="inspircd"|"ngircd") -> a
                      registered IrcClient
"""
import itertools
import os
import socket
from pathlib import Path

import pytest

from . import ferry as ferry_mod
from .ferry import Ferry, FerryConfig
from .irc import IrcClient
from .peers import REPO, Peers, PeersNotRunning
from .xmpp import XmppClient

# clients alive in the current test (their last stanzas are attached to failures)
ACTIVE_CLIENTS = []

_http_ports = itertools.count(int(os.environ.get("FERRY_HTTP_PORT", "15780")))


def free_http_port() -> int:
    """The next free port from $FERRY_HTTP_PORT on."""
    for _ in range(200):
        port = next(_http_ports)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port for ferry's HTTP listener")


@pytest.fixture(scope="session")
def peers() -> Peers:
    try:
        return Peers.load()
    except PeersNotRunning as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="session")
def ferry_bin() -> Path:
    path = os.environ.get("FERRY_BIN")
    if path:
        p = Path(path)
    else:
        target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
        p = target / "debug" / "ferry"
    if not p.is_file():
        pytest.fail(f"no ferry binary at {p}: build it with `cargo build --features test-bridge` "
                    "or run tests/run.sh (FERRY_BIN overrides the path)", pytrace=False)
    return p


def _make_factory(peers, ferry_bin, tmp_path_factory, label):
    made = []
    counter = itertools.count(1)

    def make(bridges=None, config=None, http=True, start=True, name=None, wait=True, timeout=30,
             env=None, log_level="debug") -> Ferry:
        """Starts a ferry.

        bridges: {section: {keys}}; default {"test": {}}. "domain" defaults
                 to SECTION.localhost (privileged on Prosody; use e.g.
                 "test2.localhost" for an unprivileged component) and
                 "secret" to that component's secret.
        config:  {section: {key: value}} merged over the defaults
                 (e.g. {"limits": {"max_message_bytes": 4096}}).
        http:    give it an HTTP listener on a free port (needed to wait
                 for readiness through /health, and for webhooks).
        """
        n = next(counter)
        name = name or f"ferry-{label}-{n}"
        work = tmp_path_factory.mktemp(name)
        cfg = FerryConfig(peers, work / "data", http_port=free_http_port() if http else None,
                          log_level=log_level)
        cfg.update("access", admins=[peers.jid("admin")])
        for section, keys in (bridges if bridges is not None else {"test": {}}).items():
            cfg.bridge(section, **keys)
        for section, keys in (config or {}).items():
            cfg.update(section, **keys)
        f = Ferry(ferry_bin, cfg, work, name=name, env=env)
        made.append(f)
        if start:
            f.start(wait=wait, timeout=timeout)
        return f

    def finish():
        errors = []
        for f in made:
            try:
                f.stop()
            except Exception as e:  # noqa: BLE001 - stop the others, then report
                errors.append(str(e))
            if f in ferry_mod.ACTIVE:
                ferry_mod.ACTIVE.remove(f)
        if errors:
            raise AssertionError("; ".join(errors))

    return make, finish


@pytest.fixture
def ferry_factory(peers, ferry_bin, tmp_path_factory):
    make, finish = _make_factory(peers, ferry_bin, tmp_path_factory, "t")
    yield make
    finish()


@pytest.fixture(scope="module")
def ferry_module_factory(peers, ferry_bin, tmp_path_factory):
    make, finish = _make_factory(peers, ferry_bin, tmp_path_factory, "m")
    yield make
    finish()


def _client_factory(peers):
    made = []

    def make(user, password=None, resource=None, features=(), presence=True, port=None, host=None):
        """A client logged in as USER@domain (password from peers.env unless
        given). `features` are extra disco features it advertises (with
        XEP-0115 caps), e.g. ["http://jabber.org/protocol/rosterx"]."""
        jid = peers.jid(user) if "@" not in user else user
        if resource:
            jid += "/" + resource
        c = XmppClient(jid, password or peers.password(user.split("@")[0]), host or peers.host,
                       port or peers.c2s_port, features=features, presence=presence,
                       name=user if not resource else f"{user}/{resource}")
        c.connect()
        made.append(c)
        ACTIVE_CLIENTS.append(c)
        return c

    def finish():
        for c in made:
            try:
                c.disconnect()
            finally:
                if c in ACTIVE_CLIENTS:
                    ACTIVE_CLIENTS.remove(c)

    return make, finish


@pytest.fixture
def xmpp(peers):
    make, finish = _client_factory(peers)
    yield make
    finish()


@pytest.fixture(scope="module")
def xmpp_module(peers):
    make, finish = _client_factory(peers)
    yield make
    finish()


@pytest.fixture
def alice(xmpp):
    return xmpp("alice")


@pytest.fixture
def bob(xmpp):
    return xmpp("bob")


@pytest.fixture
def carol(xmpp):
    return xmpp("carol")


@pytest.fixture
def admin(xmpp):
    return xmpp("admin")


@pytest.fixture
def irc(peers):
    made = []

    def make(nick, server="inspircd", **kw) -> IrcClient:
        peers.require(server)
        port = peers.irc_port if server == "inspircd" else peers.ngircd_port
        c = IrcClient(peers.irc_host, port, nick, **kw).connect()
        made.append(c)
        return c

    yield make
    for c in made:
        c.quit()
