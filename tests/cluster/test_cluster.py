"""Two ferry instances behind a two-node ejabberd cluster, one shared
database: 20 users spread over both, then one instance stopped (SIGTERM),
one killed (SIGKILL), and both restarted one after the other, while the
users talk to an IRC user. What is asserted is what people notice: every
message reaches the IRC user exactly once (or its sender gets an error),
replies reach the users, and the IRC server never sees two connections for
one user (an IRC operator polls WHO during every move)."""
import collections
import re
import threading
import time

from harness.stanza import message

from cluster_helpers import LEASE_TIMEOUT, USERS
from helpers import register

PRIVMSG = re.compile(r"^:(\S+?)!\S+ PRIVMSG (\S+) :(.*)$")
WHO = re.compile(r" 352 \S+ \S+ (\S+) \S+ \S+ (\S+) \S+ :\d+ (.*)$")


class WhoMonitor(threading.Thread):
    """Polls `WHO load*` as an IRC operator; remembers the largest number
    of connections seen at once for one user (by realname: the bare JID)."""

    def __init__(self, op):
        super().__init__(daemon=True)
        self.op, self.stop_flag, self.polls = op, threading.Event(), 0
        self.worst = {}  # realname -> most connections at once

    def run(self):
        while not self.stop_flag.is_set():
            start = self.op.mark()
            self.op.send("WHO load*")
            self.op.wait_for(r" 315 ", timeout=10)
            counts = collections.Counter()
            for line in self.op.lines[start:]:
                if " 315 " in line:
                    break
                m = WHO.search(line)
                if m:
                    counts[m.group(3)] += 1
            for who, n in counts.items():
                self.worst[who] = max(self.worst.get(who, 0), n)
            self.polls += 1
            time.sleep(0.2)

    def finish(self):
        self.stop_flag.set()
        self.join(timeout=15)
        doubled = {w: n for w, n in self.worst.items() if n > 1}
        assert not doubled, f"two IRC connections at once for {doubled}"
        assert self.polls > 3, "the WHO monitor hardly ran"


def texts_seen(watcher, since=0):
    """{text: [(nick, index)]} of the private messages the watcher got."""
    seen = collections.defaultdict(list)
    for i, line in enumerate(list(watcher.lines[since:])):
        m = PRIVMSG.match(line)
        if m and m.group(2) == watcher.nick:
            seen[m.group(3)].append((m.group(1), i))
    return seen


def wait_texts(watcher, texts, timeout, since=0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = texts_seen(watcher, since)
        missing = [t for t in texts if t not in seen]
        if not missing:
            return seen
        time.sleep(0.2)
    raise AssertionError(f"the IRC user did not get {missing}")


def errors_since(users, marks):
    return {u: c.received(message(type="error"), since=marks[u]) for u, c in users.items()
            if c.received(message(type="error"), since=marks[u])}


def to_watcher(cluster, watcher):
    return f"{watcher.nick}%127.0.0.1@{cluster.irc_domain}"


def test_twenty_users_are_served_by_both_instances(cluster, users):
    d = cluster.test_domain
    for u, c in users.items():
        register(c, d, account=u, password="loadpw")
    for u, c in users.items():
        c.send_message(f"echo@{d}", f"hello {u}")
    for u, c in users.items():
        c.wait_for(message(frm=f"echo@{d}", body=f"hello {u}"), timeout=20)
    owners = cluster.owners("test")
    mine = {u: owners.get(f"{u}@localhost") for u in USERS}
    print("test bridge leases:", collections.Counter(mine.values()))
    assert set(mine.values()) == {"a", "b"}, mine


def test_sigterm_hands_users_over_without_an_error(cluster, users, watcher, operator):
    to = to_watcher(cluster, watcher)
    start = watcher.mark()
    for u, c in users.items():
        c.send_message(to, f"r1 {u}")
    wait_texts(watcher, [f"r1 {u}" for u in USERS], timeout=60, since=start)
    owners = cluster.owners("irc")
    on_a = [u for u in USERS if owners.get(f"{u}@localhost") == "a"]
    print(f"IRC sessions: {len(on_a)} on a, {len(USERS) - len(on_a)} on b")
    assert on_a and len(on_a) < len(USERS), owners

    monitor = WhoMonitor(operator)
    monitor.start()
    marks = {u: c.mark() for u, c in users.items()}
    a = cluster.instances["a"]
    since = len(a.log())
    stopping = threading.Thread(target=a.stop)
    t0 = time.monotonic()
    stopping.start()
    # ejabberd 23.01 drops what it routes to a component connection in the
    # instant it removes the route of a closed stream (see docs/scaling.md):
    # the messages below start once instance a has left the server, while
    # its sessions close and hand the users over.
    a.wait_for_log(r"component stream left the server", timeout=10, since=since)
    time.sleep(0.05)
    sent = []
    for k in range(3):
        for u, c in users.items():
            c.send_message(to, f"r2 {k} {u}")
            sent.append(f"r2 {k} {u}")
        time.sleep(0.5)
    stopping.join()
    for u, c in users.items():
        c.send_message(to, f"r3 {u}")
        sent.append(f"r3 {u}")
    seen = wait_texts(watcher, sent, timeout=40, since=start)
    print(f"SIGTERM: every message delivered {time.monotonic() - t0:.1f} s after the signal")
    time.sleep(1.5)
    seen = texts_seen(watcher, start)
    doubled = {t: v for t, v in seen.items() if len(v) > 1}
    assert not doubled, doubled
    assert not errors_since(users, marks)
    # replies reach the users of the instance that left
    for u in on_a:
        watcher.send(f"PRIVMSG {u} :back {u}")
    for u in on_a:
        users[u].wait_for(message(frm=to, body=f"back {u}"), timeout=20)
    monitor.finish()
    assert set(cluster.owners("irc").values()) == {"b"}
    cluster.instances["a"].start()


def test_sigkill_users_are_back_within_the_lease_timeout(cluster, users, watcher, operator):
    to = to_watcher(cluster, watcher)
    start = watcher.mark()
    # every user on b first (after the last test a holds nobody)
    for u, c in users.items():
        c.send_message(to, f"k0 {u}")
    wait_texts(watcher, [f"k0 {u}" for u in USERS], timeout=60, since=start)
    owners = cluster.owners("irc")
    on_b = [u for u in USERS if owners.get(f"{u}@localhost") == "b"]
    assert on_b, owners

    monitor = WhoMonitor(operator)
    monitor.start()
    marks = {u: c.mark() for u, c in users.items()}
    cluster.instances["b"].kill()
    t0 = time.monotonic()
    # What ejabberd routed to the dead connection before it saw the socket
    # close (a few milliseconds) is gone with it: ejabberd neither bounces
    # nor keeps those stanzas (see docs/scaling.md). Messages from then on:
    time.sleep(0.5)
    sent = {}
    for u in on_b:
        users[u].send_message(to, f"k1 {u}")
        sent[f"k1 {u}"] = u
    arrived = {}
    deadline = t0 + LEASE_TIMEOUT + 30
    while len(arrived) < len(sent) and time.monotonic() < deadline:
        seen = texts_seen(watcher, start)
        errors = errors_since(users, marks)
        for t, u in sent.items():
            if t not in arrived and (t in seen or u in errors):
                arrived[t] = time.monotonic() - t0
        time.sleep(0.1)
    assert len(arrived) == len(sent), f"neither delivered nor refused: {set(sent) - set(arrived)}"
    worst = max(arrived.values())
    print(f"SIGKILL: {len(on_b)} users back, the last one's message {worst:.1f} s after the kill "
          f"(lease timeout {LEASE_TIMEOUT} s)")
    time.sleep(1.5)
    seen = texts_seen(watcher, start)
    errors = errors_since(users, marks)
    for t, u in sent.items():
        assert len(seen.get(t, [])) + (1 if u in errors else 0) == 1, (t, seen.get(t), errors.get(u))
    monitor.finish()
    cluster.instances["b"].start()


def test_rolling_restart_loses_nothing(cluster, users, watcher, operator):
    to = to_watcher(cluster, watcher)
    start = watcher.mark()
    marks = {u: c.mark() for u, c in users.items()}
    monitor = WhoMonitor(operator)
    monitor.start()
    stop, talking = threading.Event(), threading.Event()
    talking.set()
    sent = {}

    def talk():
        i = 0
        while not stop.is_set():
            talking.wait()
            u = USERS[i % len(USERS)]
            users[u].send_message(to, f"roll {i} {u}")
            sent[f"roll {i} {u}"] = u
            i += 1
            time.sleep(0.1)

    talker = threading.Thread(target=talk, daemon=True)
    talker.start()
    for name in ("a", "b"):
        f = cluster.instances[name]
        # quiet only for the instant the instance leaves the server (what
        # ejabberd routes to it then is lost by ejabberd, see the SIGTERM
        # test); the users talk while its sessions close and move, and
        # while it starts again
        talking.clear()
        time.sleep(0.3)
        since = len(f.log())
        stopping = threading.Thread(target=f.stop)
        stopping.start()
        f.wait_for_log(r"component stream left the server", timeout=10, since=since)
        talking.set()
        stopping.join()
        time.sleep(1)
        f.start()
        time.sleep(1)
    stop.set()
    talker.join()
    errors = errors_since(users, marks)
    expected = [t for t, u in sent.items()]
    deadline = time.monotonic() + LEASE_TIMEOUT + 30
    while time.monotonic() < deadline:
        seen = texts_seen(watcher, start)
        if all(t in seen for t in expected):
            break
        time.sleep(0.2)
    time.sleep(1.5)
    seen = texts_seen(watcher, start)
    lost = [t for t in expected if t not in seen]
    doubled = {t: v for t, v in seen.items() if len(v) > 1}
    print(f"rolling restart: {len(expected)} messages, {len(lost)} not delivered, "
          f"{sum(len(v) for v in errors.values())} errors")
    assert not doubled, doubled
    assert not lost, f"lost during the rolling restart: {lost[:10]} (errors: {errors})"
    assert not errors
    monitor.finish()
    # the test bridge still answers every user
    d = cluster.test_domain
    for u, c in users.items():
        c.send_message(f"echo@{d}", f"again {u}")
    for u, c in users.items():
        c.wait_for(message(frm=f"echo@{d}", body=f"again {u}"), timeout=30)
