"""Memory after users leave: the sessions of an on-demand bridge whose
users are offline, in no room and with nothing under way close after
`[limits] session_idle_timeout`, and the gateway forgets them, so its
memory goes back; they come back when the user does. The test asserts on
ferry_sessions and prints the RSS (more users with XMPP_LOAD_USERS=N
peers: load01..loadNN join too)."""
import re
import time

from harness.bench import rss_kib
from harness.stanza import message

from helpers import register, wait_until

IDLE = 2


def sessions(f):
    r = f.http("GET", "/metrics")
    m = re.search(r'^ferry_sessions\{bridge="test"\} (\d+)$', r.body.decode(), re.M)
    assert m, r.body.decode()
    return int(m.group(1))


def test_sessions_of_users_who_left_close_and_memory_goes_back(ferry_factory, xmpp, peers):
    names = ["alice", "bob", "carol", "admin"]
    load = int(peers.env.get("XMPP_LOAD_USERS", "0") or 0)
    names += [f"load{i:02}" for i in range(1, load + 1)]
    accounts = {n: (f"{n}pw" if not n.startswith("load") else "loadpw") for n in names}
    f = ferry_factory(bridges={"test": {"always_on": False, "accounts": accounts}},
                      config={"limits": {"session_idle_timeout": IDLE}}, log_level="info")
    d = f.config.domain("test")
    time.sleep(1)
    idle_rss = rss_kib(f.pid)
    clients = []
    for n in names:
        c = xmpp(n, password=accounts[n] if n.startswith("load") else None)
        register(c, d, account=n, password=accounts[n])
        clients.append(c)
    room = f"#idle{int(time.time()) % 100000}@{d}"
    for c in clients:
        c.join_muc(room, c.bare.split("@")[0])
        c.send_message(f"echo@{d}", "still here?")
    for c in clients:
        c.wait_for(message(frm=f"echo@{d}", body="still here?"), timeout=20)
    assert sessions(f) == len(clients)
    busy_rss = rss_kib(f.pid)
    # While a user is online, the session stays, however idle.
    time.sleep(IDLE * 2)
    assert sessions(f) == len(clients)
    # Everyone leaves the room and goes offline.
    for c in clients:
        c.leave_muc(room, c.bare.split("@")[0])
    for c in clients:
        c.send("<presence type='unavailable'/>")
    first = clients[0]
    wait_until(lambda: sessions(f) == 0, timeout=IDLE * 10, what="every session closed")
    time.sleep(2)  # malloc's trimming runs in the background
    left_rss = rss_kib(f.pid)
    print(f"\n[rss] {len(clients)} users: idle {idle_rss / 1024:.1f} MiB, all in a room "
          f"{busy_rss / 1024:.1f} MiB, {IDLE} s after they left {left_rss / 1024:.1f} MiB")
    # Coming back starts the session again, and it works.
    m = first.mark()
    first.send("<presence/>")
    first.send_message(f"echo@{d}", "back")
    first.wait_for(message(frm=f"echo@{d}", body="back"), since=m, timeout=20)
    assert sessions(f) == 1
