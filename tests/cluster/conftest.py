"""Fixtures of the cluster suite: a two-node ejabberd cluster (group
`ejcluster` of contrib/peers), two ferry instances "a" and "b" sharing one
database, each connected to its own node, and 20 users (load01..load20)
logged in on both nodes.

Both instances serve the same component domains (test.localhost and
irc.localhost); ejabberd's `domain_balancing` (bare_source) gives each
user's stanzas to one of them, and the leases decide where the users'
network sessions run."""
import os
import sqlite3
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
for d in (HERE, HERE.parent / "irc", HERE.parent / "core"):
    sys.path.insert(0, str(d))

from cluster_helpers import LEASE_TIMEOUT, LOAD_PASSWORD, USERS  # noqa: E402
from harness.ferry import _psql, database_name, fresh_database  # noqa: E402
from harness.irc import IrcClient  # noqa: E402
from irc_helpers import irc_config, unique  # noqa: E402


class Cluster:
    """The two instances and what the tests look at."""

    def __init__(self, peers, a, b, data_dir, url):
        self.peers = peers
        self.instances = {"a": a, "b": b}
        self.data_dir = Path(data_dir)
        self.url = url  # the shared PostgreSQL database, or None: shared SQLite files

    @property
    def test_domain(self):
        return self.instances["a"].config.domain("test")

    @property
    def irc_domain(self):
        return self.instances["a"].config.domain("irc")

    def owners(self, bridge):
        """{bare JID: instance} of the live leases in BRIDGE's database."""
        if self.url:
            out = _psql(self.url, "-d", database_name(self.url), "-F", "|", "-c",
                        f"SELECT jid, owner FROM ferry_{bridge}.leases WHERE owner <> '' "
                        "AND expires > (extract(epoch FROM now()) * 1000)::bigint")
            return dict(line.split("|", 1) for line in out.splitlines() if "|" in line)
        db = sqlite3.connect(f"file:{self.data_dir / (bridge + '.db')}?mode=ro", uri=True, timeout=10)
        try:
            rows = db.execute(
                "SELECT jid, owner FROM leases WHERE owner <> '' "
                "AND expires > CAST(strftime('%s','now') AS INTEGER) * 1000").fetchall()
        finally:
            db.close()
        return dict(rows)


@pytest.fixture(scope="module")
def cluster(peers, ferry_module_factory, tmp_path_factory):
    peers.require("ejabberd", "ejabberd2", "inspircd")
    data = tmp_path_factory.mktemp("cluster-data")
    ports = {"a": peers.ej_component_port, "b": int(peers.env["EJ2_COMPONENT_PORT"])}
    # PostgreSQL when the peers run it (tests/run.sh does), else (or with
    # CLUSTER_STORAGE=sqlite) the SQLite files of one data directory
    # (instances on one machine)
    pg = peers.env.get("FERRY_TEST_PG_URL") if os.environ.get("CLUSTER_STORAGE") != "sqlite" else None
    url = fresh_database(pg) if pg else None
    print(f"cluster suite: shared state in {url or 'SQLite files of ' + str(data)}")
    made = {}
    for name in ("a", "b"):
        made[name] = ferry_module_factory(
            name=f"ferry-{name}",
            bridges={
                "test": {"accounts": {u: LOAD_PASSWORD for u in USERS}, "always_on": False},
                "irc": irc_config(peers),
            },
            config={
                "xmpp": {"port": ports[name]},
                "storage": {"data_dir": str(data), **({"url": url} if url else {})},
                "cluster": {"instance": name, "lease_timeout": LEASE_TIMEOUT},
            },
        )
    return Cluster(peers, made["a"], made["b"], data, url)


@pytest.fixture(scope="module")
def users(peers, cluster, xmpp_module):
    """The 20 users, half on each ejabberd node."""
    ports = [peers.ej_c2s_port, int(peers.env["EJ2_C2S_PORT"])]
    return {u: xmpp_module(u, password=LOAD_PASSWORD, port=ports[i % 2]) for i, u in enumerate(USERS)}


@pytest.fixture(scope="module")
def watcher(peers):
    """The IRC user every load user talks to."""
    c = IrcClient(peers.irc_host, peers.irc_port, unique("watch")).connect()
    yield c
    c.quit()


@pytest.fixture(scope="module")
def operator(peers):
    """An IRC operator (sees every connection with WHO)."""
    c = IrcClient(peers.irc_host, peers.irc_port, unique("op")).connect()
    name, password = peers.irc_oper
    c.send(f"OPER {name} {password}")
    c.wait_for(r"^:\S+ 381 ")
    yield c
    c.quit()
