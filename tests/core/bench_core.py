"""Figures of the core, printed (never asserted): run on demand with

    pytest tests/core/bench_core.py -s      # peers started with XMPP_LOAD_USERS=50

- 1:1 round trip through the echo bot (median / p95 over 200 messages)
- room message reflection latency (median / p95 over 200 messages)
- RSS of ferry idle with the test bridge, and with 50 logged-in users
"""
import time

import pytest

from harness.bench import report, rss_kib
from harness.stanza import message

from helpers import register

N = 200
LOAD_USERS = 50


def timed(client, send, match, n=N):
    out = []
    for i in range(n):
        m = client.position()
        t0 = time.monotonic()
        send(i)
        client.wait_for(match(i), since=m, timeout=10)
        # the harness records arrival times: use them rather than wake-up time
        out.append(client.times[-1] - t0 if client.times else time.monotonic() - t0)
    return out


def test_bench_round_trip_and_reflection(ferry_factory, xmpp):
    f = ferry_factory(log_level="info")
    d = f.config.domain("test")
    alice = xmpp("alice")
    register(alice, d)
    echo = f"echo@{d}"
    # warm up
    for i in range(10):
        alice.send_message(echo, f"warm {i}")
        alice.wait_for(message(frm=echo, body=f"warm {i}"))
    rtt = timed(alice, lambda i: alice.send_message(echo, f"rtt {i}"),
                lambda i: message(frm=echo, body=f"rtt {i}"))
    report("1:1 round trip via the echo bot", rtt)
    room = f"#bench@{d}"
    alice.join_muc(room, "alice")
    refl = timed(alice, lambda i: alice.send_message(room, f"refl {i}", type="groupchat"),
                 lambda i: message(frm=f"{room}/alice", body=f"refl {i}"))
    report("room message reflection", refl)


def test_bench_rss_idle_and_with_50_users(ferry_factory, xmpp, peers):
    accounts = {f"load{i:02}": "loadpw" for i in range(1, LOAD_USERS + 1)}
    if int(peers.env.get("XMPP_LOAD_USERS", "0") or 0) < LOAD_USERS:
        pytest.fail(f"start the peers with XMPP_LOAD_USERS={LOAD_USERS} (load01..load{LOAD_USERS})", pytrace=False)
    accounts.update({"alice": "alicepw"})
    f = ferry_factory(bridges={"test": {"accounts": accounts}}, log_level="info")
    d = f.config.domain("test")
    time.sleep(2)
    idle = rss_kib(f.pid)
    print(f"\n[bench] RSS idle with the test bridge: {idle / 1024:.1f} MiB")
    clients = []
    t0 = time.monotonic()
    for a in accounts:
        if a == "alice":
            continue
        c = xmpp(a, password="loadpw")
        register(c, d, account=a, password="loadpw")
        clients.append(c)
    reg = time.monotonic() - t0
    # every user talks once so every session is busy at least once
    for c in clients:
        c.send_message(f"echo@{d}", "hello")
    for c in clients:
        c.wait_for(message(frm=f"echo@{d}", body="hello"), timeout=20)
    time.sleep(2)
    loaded = rss_kib(f.pid)
    print(f"[bench] RSS with {len(clients)} logged-in users (registered, sessions up, one round trip each): "
          f"{loaded / 1024:.1f} MiB ({(loaded - idle) / max(1, len(clients)):.0f} KiB per user); "
          f"registering them took {reg:.1f} s")
