"""The same figures as bench_matrix.py, for matridge (slidge's Matrix
gateway, PyPI `matridge`), on the same Synapse and Prosody: the comparison
of issue 4, item 9. Run on demand (never collected by the suite), with
matridge installed in its own venv (0.4.1 runs on Python 3.11):

    python3.11 -m venv /tmp/matridge && /tmp/matridge/bin/pip install matridge==0.4.1
    XMPP_LOAD_USERS=25 PEERS="xmpp matrix" contrib/peers/start-peers.sh $PEERS_DIR
    cd tests && PEERS_DIR=… MATRIDGE_BIN=/tmp/matridge/bin/matridge \\
        $FERRY_VENVS/test/bin/python -m pytest matrix/bench_matridge.py -s -p no:cacheprovider

matridge runs as the unprivileged component `matrix2.<domain>` of the
peer scripts. Printed: matridge's RSS (the process and its children)
connected with no session, with 1 and with BENCH_USERS logged-in Matrix
sessions, and the cost per session; Matrix -> XMPP and XMPP -> Matrix
latency, median / p95, measured exactly as for ferry.
"""
import os
import shutil
import subprocess
import tempfile
import time

import pytest

from harness.bench import CsvLog, arrival, memory_row, report, rss_kib, tree_pids
from harness.stanza import message, presence, text, to_string, where
from harness.xmpp import StanzaError

from bench_matrix import CHECKPOINTS, FIELDS, IDLE_WAIT, SAMPLES, USERS, Syncer, latency_row
from matrix_helpers import MatrixUser


def tree_rss_kib(pid) -> int:
    """RSS of a process and its descendants."""
    total = rss_kib(pid)
    try:
        children = open(f"/proc/{pid}/task/{pid}/children").read().split()
    except OSError:
        children = []
    return total + sum(tree_rss_kib(int(c)) for c in children)


def settle_tree(pid, seconds=5.0):
    time.sleep(seconds)
    last = tree_rss_kib(pid)
    for _ in range(10):
        time.sleep(1.0)
        now = tree_rss_kib(pid)
        if abs(now - last) < 256:
            return now
        last = now
    return last


@pytest.fixture(scope="module")
def matridge(peers):
    peers.require("prosody", "synapse")
    binary = os.environ.get("MATRIDGE_BIN") or shutil.which("matridge")
    if not binary:
        pytest.fail("MATRIDGE_BIN is not set and no matridge in PATH: install it "
                    "(python3.11 -m venv DIR && DIR/bin/pip install matridge==0.4.1)")
    # slidge commits its SQLite database in rollback-journal mode, an
    # fsync for each of every session's 1 s sync polls: on a disk shared
    # with builds matridge spent its time in disk sleep and took minutes
    # per login past 45 accounts. MATRIDGE_HOME_PARENT=/dev/shm takes the
    # disk out of the comparison (tmpfs pages are not in the process's
    # RSS, as ferry's files on disk are not).
    home = tempfile.mkdtemp(prefix="matridge-bench-", dir=os.environ.get("MATRIDGE_HOME_PARENT"))
    jid = f"matrix2.{peers.domain}"
    log = open(os.path.join(home, "matridge.log"), "w")
    proc = subprocess.Popen(
        [binary, "--jid", jid, "--secret", peers.secret(jid), "--server", peers.host,
         "--port", str(peers.component_port), "--home-dir", home, "-q"],
        stdout=log, stderr=subprocess.STDOUT)
    time.sleep(5)
    assert proc.poll() is None, f"matridge exited: see {home}/matridge.log"
    yield proc, jid
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def logged_in(client, domain, since):
    client.wait_for(presence(frm=domain) & where(
        lambda e: (text(e, "status") or "").startswith("Logged in"), "logged in"),
        since=since, timeout=600, take=False)


def test_bench_matridge(matridge, peers, xmpp):
    proc, domain = matridge
    pid = proc.pid
    load_pw = peers.env.get("XMPP_LOAD_PASSWORD", "loadpw")
    # The first client makes the component known (disco) before measuring.
    first_client = xmpp("load01", password=load_pw)
    deadline = time.monotonic() + 180
    while True:  # matridge takes a while to start and connect
        assert proc.poll() is None, "matridge exited (see matridge.log in its home dir)"
        r = first_client.iq("<query xmlns='http://jabber.org/protocol/disco#info'/>",
                            to=domain, allow_error=True)
        if r.get("type") == "result":
            break
        assert time.monotonic() < deadline, "matridge never connected to the XMPP server"
        time.sleep(1)
    log = CsvLog("matridge", FIELDS)
    idle = settle_tree(pid, 2.0)
    log.row(gateway="matridge", scenario="sessions", users=0, **memory_row(tree_pids(pid)))
    print(f"\n[bench] matridge RSS, no session: {idle / 1024:.1f} MiB", flush=True)

    peer = MatrixUser.register(peers.matrix_url, "benchpeer")
    shared = peer.create_room(name="bench room", preset="public_chat")
    for i in range(20):
        peer.send(shared, f"history {i}")

    def user_with_rooms():
        u = MatrixUser.register(peers.matrix_url, "bench")
        u.join(shared)
        room = peer.create_dm(u.user_id)
        return u, room

    def register(client, user):
        m = client.position()
        for attempt in range(3):  # matridge gives up when Synapse is slow to answer it (a loaded machine)
            try:
                client.register(domain, {"homeserver": peers.matrix_url, "username": user.user_id,
                                         "password": user.password, "device": "matridge"}, timeout=600)
                return m
            except StanzaError as e:
                if attempt == 2:
                    raise
                print(f"[bench] matridge registration failed, trying again: {e}", flush=True)
                time.sleep(5)
        return m

    first, first_dm = user_with_rooms()
    since = register(first_client, first)
    logged_in(first_client, domain, since)
    one = settle_tree(pid)
    log.row(gateway="matridge", scenario="sessions", users=1, per_session_kib=one - idle,
            **memory_row(tree_pids(pid)))
    print(f"[bench] matridge RSS with 1 Matrix session: {one / 1024:.1f} MiB "
          f"(+{(one - idle) / 1024:.1f} MiB)", flush=True)

    # matridge 0.4 has no 1:1 chats: a direct chat is a group (MUC) whose
    # JID is the room id in lower case (slidge's choice); join it and talk there.
    room_local = first_dm.split(":", 1)[0].lower()
    dm_jid = None
    for st in first_client.stanzas:
        for x in st.iter("{jabber:x:conference}x"):
            if (x.get("jid") or "").split("@", 1)[0] == room_local:
                dm_jid = x.get("jid")
    syncer = Syncer(peer)
    syncer.start()
    try:
        assert dm_jid, "matridge sent no invitation to the direct chat"
        first_client.join_muc(dm_jid, "load01", timeout=60)
        first_client.send_message(dm_jid, "warm up", type="groupchat")
        syncer.wait("warm up", timeout=60)
        m2x = []
        for i in range(SAMPLES + 5):
            m = first_client.mark()
            t0 = time.monotonic()
            peer.send(first_dm, f"m2x {i}")
            st = first_client.wait_for(message(body=f"m2x {i}"), since=m, timeout=30)
            if i >= 5:
                m2x.append(arrival(first_client, st) - t0)
        report("matridge Matrix -> XMPP latency (direct chat as a MUC)", m2x)
        latency_row(log, "matridge", "matrix-to-xmpp", m2x)
        x2m = []
        for i in range(SAMPLES + 5):
            t0 = time.monotonic()
            first_client.send_message(dm_jid, f"x2m {i}", type="groupchat")
            t1 = syncer.wait(f"x2m {i}", timeout=30)
            if i >= 5:
                x2m.append(t1 - t0)
        report("matridge XMPP -> Matrix latency (direct chat as a MUC)", x2m)
        latency_row(log, "matridge", "xmpp-to-matrix", x2m)
    except (AssertionError, Exception) as e:  # the figures are optional, memory is not
        print(f"[bench] matridge latency not measured: {e}", flush=True)
        for st in first_client.stanzas[-8:]:
            print(f"[bench]   last stanzas: {to_string(st)[:400]}", flush=True)
    syncer.stop = True

    # Accounts log in one after the other: matridge (matrix-nio) gives a
    # login 60 s, and a burst of logins while every earlier session
    # syncs the shared room's joins queued them past that on this
    # machine's Synapse (internal-server-error, the login never retried).
    # Idle memory, which is what is compared, does not depend on the pace.
    clients = [first_client]
    n = 1
    for checkpoint in CHECKPOINTS:
        for i in range(n + 1, checkpoint + 1):
            c = xmpp(f"load{i:02d}", password=load_pw)
            u, _ = user_with_rooms()
            logged_in(c, domain, register(c, u))
            clients.append(c)
        n = checkpoint
        many = settle_tree(pid, 8.0)
        log.row(gateway="matridge", scenario="sessions", users=n,
                per_session_kib=f"{(many - one) / max(1, n - 1):.0f}", **memory_row(tree_pids(pid)))
    print(f"[bench] matridge RSS with {USERS} Matrix sessions: {many / 1024:.1f} MiB; "
          f"{(many - idle) / USERS / 1024:.2f} MiB per session", flush=True)
    # The same sessions once nothing happened for a while (as for ferry,
    # whose idle sessions drop their clients).
    time.sleep(IDLE_WAIT)
    idle_many = settle_tree(pid, 2.0)
    log.row(gateway="matridge", scenario="sessions-idle", users=n,
            per_session_kib=f"{(idle_many - one) / max(1, n - 1):.0f}", **memory_row(tree_pids(pid)))
    print(f"[bench] matridge RSS with {USERS} idle Matrix sessions ({IDLE_WAIT:.0f} s later): "
          f"{idle_many / 1024:.1f} MiB", flush=True)
