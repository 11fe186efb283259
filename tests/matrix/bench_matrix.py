"""Figures of the Matrix bridge, printed (never asserted). Run on demand,
against the real servers and the real ferry binary (use a release build
for the figures):

    XMPP_LOAD_USERS=25 PEERS="xmpp matrix" contrib/peers/start-peers.sh $PEERS_DIR
    cargo build --release --features test-bridge
    cd tests && PEERS_DIR=… FERRY_BIN=$CARGO_TARGET_DIR/release/ferry \\
        $FERRY_VENVS/test/bin/python -m pytest matrix/bench_matrix.py -s -p no:cacheprovider

or `benches/matrix.sh`, which does all of that. Figures (issue 4, item 9):

- ferry's RSS with the Matrix bridge and no session, with 1 and with 20
  logged-in, synced Matrix sessions (each user has a direct chat and shares
  a room with the others), and the cost per session (also at the
  BENCH_CHECKPOINTS on the way, written as CSV to $BENCH_OUT, see
  harness/bench.py: CsvLog);
- Matrix -> XMPP latency: a message sent on Matrix (client-server API) until
  the XMPP client has it, median / p95;
- XMPP -> Matrix latency: a message sent by the XMPP client until the other
  Matrix user's /sync long-poll returns it, median / p95.
"""
import os
import threading
import time

import pytest

from harness.bench import CsvLog, arrival, memory_row, pct, report, rss_kib, rss_split
from harness.stanza import message, presence, text, where

from matrix_helpers import MatrixUser, contact_jid, matrix_config, wait_until

SAMPLES = int(os.environ.get("BENCH_SAMPLES", "100"))
USERS = int(os.environ.get("BENCH_USERS", "20"))
# RSS is also written down when this many sessions are logged in (and at USERS)
CHECKPOINTS = sorted({int(n) for n in os.environ.get("BENCH_CHECKPOINTS", "5 10 25 50").split()
                      if int(n) < USERS} | {USERS})
# How long to wait after the last login before measuring idle sessions:
# store_idle_secs + one sync long-poll + a margin.
IDLE_WAIT = float(os.environ.get("BENCH_IDLE_WAIT", "75"))
# Further idle measurements this long after the last login (seconds, for
# instance "240": the memory reclaimer trims malloc's free lists once a
# minute in steady state, so what idle sessions gave back shows by then).
IDLE_LATER = [float(x) for x in os.environ.get("BENCH_IDLE_LATER", "").split()]
FIELDS = ["rss_kib", "anon_kib", "file_kib", "per_session_kib", "median_ms", "p95_ms", "n"]


def latency_row(log, gateway, scenario, samples):
    """A CSV row of latency samples given in seconds."""
    import statistics
    ms = [x * 1000 for x in samples]
    if ms:
        log.row(gateway=gateway, scenario=scenario, users=1, n=len(ms),
                median_ms=f"{statistics.median(ms):.2f}", p95_ms=f"{pct(ms, 95):.2f}")


def settle(pid, seconds=5.0):
    """RSS once it stopped moving (sessions finish their first syncs)."""
    time.sleep(seconds)
    last = rss_kib(pid)
    for _ in range(10):
        time.sleep(1.0)
        now = rss_kib(pid)
        if abs(now - last) < 256:
            return now
        last = now
    return last


class Syncer(threading.Thread):
    """A Matrix user's /sync long-poll loop recording when each message
    body arrived."""

    def __init__(self, user):
        super().__init__(daemon=True)
        self.user = user
        self.seen = {}
        self.stop = False

    def run(self):
        while not self.stop:
            r = self.user.sync(timeout=10000)
            now = time.monotonic()
            for room in r.get("rooms", {}).get("join", {}).values():
                for ev in room.get("timeline", {}).get("events", []):
                    b = ev.get("content", {}).get("body")
                    if b is not None:
                        self.seen.setdefault(b, now)

    def wait(self, body, timeout=20):
        deadline = time.monotonic() + timeout
        while body not in self.seen:
            assert time.monotonic() < deadline, f"{body!r} never reached Matrix"
            time.sleep(0.002)
        return self.seen[body]


def register_load(client, domain, peers, user):
    m = client.position()
    client.register(domain, {"homeserver": peers.matrix_url, "username": user.user_id,
                             "password": user.password}, timeout=120)
    return m


def logged_in(client, domain, since):
    client.wait_for(presence(frm=domain) & where(
        lambda e: (text(e, "status") or "").startswith("Logged in"), "logged in"),
        since=since, timeout=120, take=False)


@pytest.fixture(scope="module")
def bench_gw(ferry_module_factory, peers):
    peers.require("synapse")
    keys = {"sync_timeout_secs": 30}
    if os.environ.get("BENCH_STORE_CACHE_KIB"):  # [matrix] store_cache_kib to compare
        keys["store_cache_kib"] = int(os.environ["BENCH_STORE_CACHE_KIB"])
    return ferry_module_factory(bridges={"matrix": matrix_config(**keys)},
                                log_level="warn")


def test_bench_matrix(bench_gw, peers, xmpp):
    f = bench_gw
    domain = f.config.domain("matrix")
    pid = f.proc.pid
    log = CsvLog("matrix", FIELDS)
    idle = settle(pid, 2.0)
    log.row(gateway="ferry", scenario="sessions", users=0, **memory_row([pid]))
    print(f"\n[bench] ferry RSS, Matrix bridge, no session: {idle / 1024:.1f} MiB "
          f"({rss_split(pid)})", flush=True)

    # A room all the users share, and a peer each one has a direct chat with.
    peer = MatrixUser.register(peers.matrix_url, "benchpeer")
    shared = peer.create_room(name="bench room", preset="public_chat")
    for i in range(20):
        peer.send(shared, f"history {i}")
    load_pw = peers.env.get("XMPP_LOAD_PASSWORD", "loadpw")

    def user_with_rooms():
        u = MatrixUser.register(peers.matrix_url, "bench")
        u.join(shared)
        room = peer.create_dm(u.user_id)
        return u, room

    # ---------------------------------------------------------------- one session
    first_client = xmpp("load01", password=load_pw)
    first, first_dm = user_with_rooms()
    since = register_load(first_client, domain, peers, first)
    logged_in(first_client, domain, since)
    one = settle(pid)
    log.row(gateway="ferry", scenario="sessions", users=1, per_session_kib=one - idle, **memory_row([pid]))
    print(f"[bench] ferry RSS with 1 Matrix session: {one / 1024:.1f} MiB "
          f"(+{(one - idle) / 1024:.1f} MiB; {rss_split(pid)})", flush=True)

    # ---------------------------------------------------------------- latency (session 1)
    peer_jid = contact_jid(peer.user_id, domain)
    wait_until(lambda: peer_jid in first_client.roster(), timeout=60, what="the peer in the roster")
    first_client.send_message(peer_jid, "warm up")
    syncer = Syncer(peer)
    syncer.start()
    syncer.wait("warm up", timeout=60)
    m2x = []
    for i in range(SAMPLES + 5):
        m = first_client.mark()
        t0 = time.monotonic()
        peer.send(first_dm, f"m2x {i}")
        st = first_client.wait_for(message(frm=peer_jid, body=f"m2x {i}"), since=m, timeout=20)
        if i >= 5:
            m2x.append(arrival(first_client, st) - t0)
    report("Matrix -> XMPP latency (send on Matrix until the XMPP client has it)", m2x)
    latency_row(log, "ferry", "matrix-to-xmpp", m2x)
    x2m = []
    for i in range(SAMPLES + 5):
        t0 = time.monotonic()
        first_client.send_message(peer_jid, f"x2m {i}")
        t1 = syncer.wait(f"x2m {i}")
        if i >= 5:
            x2m.append(t1 - t0)
    report("XMPP -> Matrix latency (send on XMPP until Matrix /sync returns it)", x2m)
    latency_row(log, "ferry", "xmpp-to-matrix", x2m)
    syncer.stop = True

    # ---------------------------------------------------------------- USERS sessions
    clients = [first_client]
    n = 1
    for checkpoint in CHECKPOINTS:
        marks = []
        for i in range(n + 1, checkpoint + 1):
            c = xmpp(f"load{i:02d}", password=load_pw)
            u, _ = user_with_rooms()
            marks.append((c, register_load(c, domain, peers, u)))
            clients.append(c)
        for c, since in marks:
            logged_in(c, domain, since)
        n = checkpoint
        many = settle(pid, 8.0)
        log.row(gateway="ferry", scenario="sessions", users=n,
                per_session_kib=f"{(many - one) / max(1, n - 1):.0f}", **memory_row([pid]))
    print(f"[bench] ferry RSS with {USERS} Matrix sessions: {many / 1024:.1f} MiB; "
          f"{(many - idle) / USERS / 1024:.2f} MiB per session, "
          f"{(many - one) / max(1, USERS - 1) / 1024:.2f} MiB per session after the first "
          f"({rss_split(pid)})", flush=True)
    # Idle accounts close their stores ([matrix] store_idle_secs, 30 s by
    # default, checked between two long-polls of sync_timeout_secs): the
    # same sessions once nothing happened for that long.
    start = time.monotonic()
    for wait in [IDLE_WAIT] + [w for w in IDLE_LATER if w > IDLE_WAIT]:
        time.sleep(max(0.0, start + wait - time.monotonic()))
        idle_many = settle(pid, 2.0)
        log.row(gateway="ferry", scenario="sessions-idle" if wait == IDLE_WAIT else f"sessions-idle-{wait:.0f}s",
                users=n, per_session_kib=f"{(idle_many - one) / max(1, n - 1):.0f}", **memory_row([pid]))
        print(f"[bench] ferry RSS with {USERS} idle Matrix sessions ({wait:.0f} s later): "
              f"{idle_many / 1024:.1f} MiB ({rss_split(pid)})", flush=True)
    # Every session receives one message in the shared room (and opens its
    # stores again to deliver it).
    peer.send(shared, "to everyone")
    time.sleep(5)
    final = rss_kib(pid)
    log.row(gateway="ferry", scenario="sessions-woken", users=n, **memory_row([pid]))
    print(f"[bench] ferry RSS after a message to {USERS} sessions: {final / 1024:.1f} MiB", flush=True)
