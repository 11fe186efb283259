"""One ferry instance against two (cluster mode, one database, one per
ejabberd node), on the same two-node ejabberd cluster and InspIRCd: the IRC
round trip and an IRC channel's fan-out to 20 XMPP members. Figures printed
(never asserted); docs/scaling.md has them and how to rerun:

    export PEERS_DIR=/tmp/ferry-bench-peers   # ports: contrib/peers/lib.sh's defaults, or export other *_PORT values
    XMPP_LOAD_USERS=20 PEERS="ejcluster irc" contrib/peers/start-peers.sh $PEERS_DIR
    cargo build --features test-bridge
    cd tests && $FERRY_VENVS/test/bin/python -m pytest cluster/bench_cluster.py -s -p no:cacheprovider

IRC flood control is off (throttle_limit = -1) as in tests/irc/bench_scale.py.

- rtt: BENCH_SAMPLES (30) round trips of one user, XMPP -> IRC user -> reply
  -> XMPP, one at a time;
- fan-out: the 20 users in one channel (half on each node), an IRC user
  writes BENCH_MESSAGES (100) lines at BENCH_RATE (20) a second; the time
  until every member got every line, and the CPU seconds the ferry
  processes spent meanwhile.
"""
import os
import time

import pytest

from harness.bench import pct, rss_kib
from harness.irc import IrcClient
from harness.stanza import message

from cluster_helpers import LOAD_PASSWORD, USERS
from irc_helpers import irc_config, unique

SAMPLES = int(os.environ.get("BENCH_SAMPLES", "30"))
MESSAGES = int(os.environ.get("BENCH_MESSAGES", "100"))
RATE = float(os.environ.get("BENCH_RATE", "20"))


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.parametrize("instances", [1, 2])
def test_bench_one_and_two_instances(instances, peers, ferry_factory, xmpp, tmp_path_factory):
    peers.require("ejabberd", "ejabberd2", "inspircd")
    data = tmp_path_factory.mktemp("bench-data")
    ports = [peers.ej_component_port, int(peers.env["EJ2_COMPONENT_PORT"])]
    ferries = []
    for i in range(instances):
        config = {"xmpp": {"port": ports[i]}, "storage": {"data_dir": str(data)}}
        if instances > 1:
            config["cluster"] = {"instance": "ab"[i]}
        ferries.append(ferry_factory(name=f"bench{instances}-{i}",
                                     bridges={"irc": irc_config(peers, throttle_limit=-1)},
                                     config=config, log_level="info"))
    domain = ferries[0].config.domain("irc")
    c2s = [peers.ej_c2s_port, int(peers.env["EJ2_C2S_PORT"])]
    users = {u: xmpp(u, password=LOAD_PASSWORD, port=c2s[i % 2]) for i, u in enumerate(USERS)}
    watcher = IrcClient(peers.irc_host, peers.irc_port, unique("bw")).connect()
    try:
        # round trip of one user
        to = f"{watcher.nick}%127.0.0.1@{domain}"
        u = users[USERS[1]]
        u.send_message(to, "warm")
        watcher.wait_for(r"PRIVMSG \S+ :warm", timeout=60)
        rtt = []
        for i in range(SAMPLES):
            t0 = time.monotonic()
            u.send_message(to, f"ping {i}")
            m = watcher.wait_for(rf"^:(\S+?)!\S+ PRIVMSG \S+ :ping {i}$", timeout=30)
            watcher.send(f"PRIVMSG {m.group(1)} :pong {i}")
            u.wait_for(message(frm=to, body=f"pong {i}"), timeout=30)
            rtt.append(time.monotonic() - t0)
        # fan-out to 20 members
        chan = "#" + unique("fan")
        watcher.join(chan)
        room = f"{chan}%127.0.0.1@{domain}"
        for name, c in users.items():
            c.join_muc(room, name, timeout=60)
        pids = [f.pid for f in ferries]
        cpu0 = sum(cpu_s(p) for p in pids)
        marks = {n: c.mark() for n, c in users.items()}
        t0 = time.monotonic()
        for i in range(MESSAGES):
            watcher.send(f"PRIVMSG {chan} :fan {i}")
            time.sleep(1 / RATE)
        sent = time.monotonic() - t0
        for n, c in users.items():
            c.wait_for(message(frm=f"{room}/{watcher.nick}", body=f"fan {MESSAGES - 1}"),
                       timeout=120, since=marks[n])
        done = time.monotonic() - t0
        cpu = sum(cpu_s(p) for p in pids) - cpu0
        got = [len(c.received(message(frm=f"{room}/{watcher.nick}"), since=marks[n])) for n, c in users.items()]
        rss = sum(rss_kib(p) for p in pids)
        print(f"\n[bench] {instances} instance(s): IRC round trip p50 {pct(rtt, 50) * 1000:.0f} ms, "
              f"p95 {pct(rtt, 95) * 1000:.0f} ms ({SAMPLES} samples); fan-out {MESSAGES} lines x {len(users)} "
              f"members sent over {sent:.1f} s, all delivered after {done:.1f} s "
              f"(min {min(got)} / max {max(got)} per member), ferry CPU {cpu:.2f} s, RSS {rss / 1024:.1f} MiB")
    finally:
        watcher.quit()
