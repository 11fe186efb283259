"""Figures of the IRC bridge, printed (never asserted). Run on demand,
against the real servers and the real ferry binary (use a release build
for the figures):

    XMPP_LOAD_USERS=60 contrib/peers/start-peers.sh $PEERS_DIR   # load01..load60 for the fan-out
    cargo build --release
    cd tests && PEERS_DIR=… FERRY_BIN=../target/release/ferry \\
        $FERRY_VENVS/test/bin/python -m pytest irc/bench_irc.py -s -p no:cacheprovider

Figures (issue 3, item 11):

- XMPP -> IRC -> XMPP round trip through an IRC echo bot, median / p95
  over 200 samples, archive on (the default);
- 50 XMPP users in one channel receiving 50 IRC messages each, quiet and
  with the disk busy (a writer doing 4 MiB writes + fsync in a loop);
- ferry's RSS idle and with 50 connected users;
- join time of a channel on a cold connection (ngIRCd).
"""
import os
import re
import socket
import subprocess
import threading
import time

import pytest

from harness.bench import arrival, report, rss_kib, rss_split
from harness.stanza import has, message, presence, where

from irc_helpers import configure_server, irc_config, room_jid, unique

SAMPLES = int(os.environ.get("BENCH_SAMPLES", "200"))
USERS = int(os.environ.get("BENCH_USERS", "50"))
MESSAGES = int(os.environ.get("BENCH_MESSAGES", "50"))
COLD = int(os.environ.get("BENCH_COLD_JOINS", "10"))


class EchoBot(threading.Thread):
    """A minimal IRC bot: answers `ping N` in a channel with `pong N` at once."""

    def __init__(self, port, nick, chan):
        super().__init__(daemon=True, name="echo-bot")
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.nick, self.chan = nick, chan
        self.joined = threading.Event()
        self.sock.sendall(f"NICK {nick}\r\nUSER {nick} 0 * :echo\r\n".encode())
        self.stop = False

    def run(self):
        buf = b""
        pat = re.compile(rb"^:\S+ PRIVMSG (\S+) :ping (\d+)$")
        while not self.stop:
            data = self.sock.recv(65536)
            if not data:
                return
            buf += data
            while b"\r\n" in buf:
                line, buf = buf.split(b"\r\n", 1)
                if line.startswith(b"PING"):
                    self.sock.sendall(b"PONG" + line[4:] + b"\r\n")
                    continue
                m = pat.match(line)
                if m:
                    self.sock.sendall(b"PRIVMSG " + m.group(1) + b" :pong " + m.group(2) + b"\r\n")
                elif b" 001 " in line:
                    self.sock.sendall(f"JOIN {self.chan}\r\n".encode())
                elif b" 366 " in line:
                    self.joined.set()


def join_many(clients, room, nicks, timeout=60):
    """Sends every join at once, then waits for every self-presence."""
    marks = [c.mark() for c in clients]
    for c, n in zip(clients, nicks):
        c.send(f"<presence to='{room}/{n}'><x xmlns='http://jabber.org/protocol/muc'>"
               f"<history maxstanzas='0'/></x></presence>")
    for c, n, m in zip(clients, nicks, marks):
        c.wait_for(presence(frm=f"{room}/{n}") & has("muc_user:x/muc_user:status", code="110"),
                   since=m, timeout=timeout)


class DiskHog:
    """Keeps the disk busy: 4 MiB writes, each followed by fsync."""

    def __init__(self, path):
        self.path = path
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.written = 0

    def run(self):
        block = os.urandom(4 << 20)
        with open(self.path, "wb") as f:
            while not self.stop.is_set():
                f.write(block)
                f.flush()
                os.fsync(f.fileno())
                self.written += len(block)
                if f.tell() > (512 << 20):
                    f.seek(0)

    def __enter__(self):
        self.t.start()
        time.sleep(0.5)
        return self

    def __exit__(self, *a):
        self.stop.set()
        self.t.join()
        os.unlink(self.path)


@pytest.fixture(scope="module")
def bench_gw(ferry_module_factory, peers):
    # Flood control off: the figures measure the gateway, not the bucket.
    return ferry_module_factory(bridges={"irc": irc_config(peers, throttle_limit=-1)}, log_level="warn")


def test_bench_irc(bench_gw, peers, xmpp, tmp_path):
    f = bench_gw
    domain = f.config.domain("irc")
    pid = f.proc.pid
    time.sleep(1.0)
    idle = rss_kib(pid)
    print(f"\n[bench] ferry RSS idle: {idle / 1024:.1f} MiB ({idle} KiB; {rss_split(pid)})", flush=True)

    # -------------------------------------------------------------- round trip
    chan = "#" + unique("rtt")
    bot = EchoBot(peers.irc_port, unique("echo"), chan)
    bot.start()
    assert bot.joined.wait(10)
    alice = xmpp("alice")
    r = room_jid(chan, domain)
    alice.join_muc(r, "alice", history={"maxstanzas": 0})
    samples = []
    for i in range(SAMPLES + 10):
        m = alice.mark()
        t0 = time.monotonic()
        alice.send_message(r, f"ping {i}", type="groupchat")
        st = alice.wait_for(message(frm=f"{r}/{bot.nick}", body=f"pong {i}"), since=m, timeout=10)
        arrived = arrival(alice, st)
        if i >= 10:  # warm-up
            samples.append(arrived - t0)
        time.sleep(0.02)
    report("round trip XMPP->IRC->XMPP (archive on)", samples)
    bot.stop = True

    # -------------------------------------------------------------- cold join on ngIRCd
    cold = []
    for i in range(COLD):
        u = xmpp(f"load{51 + i:02d}", password=peers.env.get("XMPP_LOAD_PASSWORD", "loadpw"))
        configure_server(u, domain, "127.0.0.2", {"ports": [str(peers.ngircd_port)], "tls_ports": []})
        room = room_jid("#" + unique("cold"), domain, server="127.0.0.2")
        m = u.mark()
        t0 = time.monotonic()
        u.send(f"<presence to='{room}/c{i}'><x xmlns='http://jabber.org/protocol/muc'>"
               f"<history maxstanzas='0'/></x></presence>")
        st = u.wait_for(presence(frm=f"{room}/c{i}") & has("muc_user:x/muc_user:status", code="110"),
                        since=m, timeout=10)
        cold.append(arrival(u, st) - t0)
        u.leave_muc(room, f"c{i}")
    report("join on a cold IRC connection (ngIRCd)", cold)

    # -------------------------------------------------------------- 50 users, fan-out
    chan = "#" + unique("load")
    room = room_jid(chan, domain)
    snick = unique("snd")
    sender = EchoBot(peers.irc_port, snick, chan)
    sender.start()
    assert sender.joined.wait(10)
    clients = [xmpp(f"load{i:02d}", password=peers.env.get("XMPP_LOAD_PASSWORD", "loadpw"))
               for i in range(1, USERS + 1)]
    t0 = time.monotonic()
    join_many(clients, room, [f"u{i}" for i in range(USERS)])
    print(f"\n[bench] {USERS} users joined in {time.monotonic() - t0:.2f} s "
          f"(InspIRCd registers new connections on its 1 s tick)", flush=True)
    time.sleep(1.0)
    loaded = rss_kib(pid)
    print(f"[bench] ferry RSS with {USERS} connected users: {loaded / 1024:.1f} MiB; "
          f"{(loaded - idle) / USERS:.1f} KiB per user ({rss_split(pid)})", flush=True)

    def fan_out(tag):
        marks = [c.mark() for c in clients]
        t0 = time.monotonic()
        payload = "".join(f"PRIVMSG {chan} :{tag} {k}\r\n" for k in range(MESSAGES)).encode()
        sender.sock.sendall(payload)
        last = 0.0
        for c, m in zip(clients, marks):
            st = c.wait_for(message(frm=f"{room}/{snick}", body=f"{tag} {MESSAGES - 1}"), since=m, timeout=120)
            got = [s for s in c.received(message(frm=f"{room}/{snick}"))
                   if (s.findtext("{jabber:client}body") or "").startswith(tag + " ")]
            assert len(got) >= MESSAGES, (c.name, len(got))
            last = max(last, arrival(c, st))
        return last - t0

    quiet = fan_out("quiet")
    print(f"[bench] fan-out {USERS} users x {MESSAGES} IRC messages: {quiet:.3f} s", flush=True)
    with DiskHog(str(tmp_path / "disk-hog")) as hog:
        busy = fan_out("busy")
        written = hog.written
    print(f"[bench] fan-out {USERS} users x {MESSAGES} IRC messages, disk busy "
          f"({written >> 20} MiB written with fsync meanwhile): {busy:.3f} s", flush=True)
    final = rss_kib(pid)
    print(f"[bench] ferry RSS after the fan-outs: {final / 1024:.1f} MiB", flush=True)
    sender.stop = True
    sender.sock.close()
