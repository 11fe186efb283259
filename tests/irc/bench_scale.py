"""Ferry against biboumi 9.0 at scale, side by side in one run, on the same
Prosody and InspIRCd (figures printed and written as CSV, never asserted;
docs/performance.md has the figures, the plots and how to rerun):

    export PEERS_DIR=/tmp/ferry-bench-peers   # ports: contrib/peers/lib.sh's defaults, or export other *_PORT values
    XMPP_LOAD_USERS=1000 XMPP_EXTRA_COMPONENTS="biboumi:biboumisecret" IRC_MAX_CONNECTIONS=1200 \\
        PEERS="xmpp irc" contrib/peers/start-peers.sh $PEERS_DIR
    apt-get install biboumi gnuplot-nox
    cargo build --profile profiling          # release code with line tables
    cd tests && FERRY_BIN=$CARGO_TARGET_DIR/profiling/ferry BENCH_OUT=/tmp/ferry-bench \\
        $FERRY_VENVS/test/bin/python -m pytest irc/bench_scale.py -s -p no:cacheprovider
    tests/bench/plot.sh /tmp/ferry-bench/scale-*.csv   # SVG + PNG next to the CSV

Scenarios (BENCH_SCENARIOS, default "rtt users scale"), each for each
gateway of BENCH_GATEWAYS (default "ferry biboumi"), each on a freshly
started gateway:

- rtt: XMPP -> IRC -> XMPP round trip through an IRC echo bot, idle
  gateway, BENCH_SAMPLES (200) samples BENCH_SPACING (0.02) s apart;
- users: RSS with N users (BENCH_ONE_CHANNEL, default "50 200") in one
  channel, each with its own IRC connection; per user = (RSS - idle) / N,
  and again BENCH_LATE_SECONDS (30) later (late_per_user_kib: what stays
  once the join burst has drained and freed memory was given back);
- scale: N users (BENCH_SCALE_USERS, default "250 500 1000") in channels of
  100 members, every one joined; RSS; once a round trip comes back (the
  join burst has drained: quiesce_s), IRC senders write
  BENCH_RATE (100) messages a second in all for BENCH_LOAD_SECONDS (30)
  while a probe member of the first channel measures round trips at
  BENCH_SPACING; every message must reach every member (counted), with
  the IRC -> XMPP delivery latency of each.

The clients are the lean load generator of harness/loadgen.py
(BENCH_CLIENTS_PER_PROCESS, default 250, per worker process; the CSV has
their CPU). Both gateways run with flood control off and their archive on
(biboumi: record_history as shipped, BENCH_BIBOUMI_HISTORY=0 turns it off).
BENCH_HEAPTRACK=DIR profiles ferry's heap (see FerryGw).
BENCH_GATEWAYS="ferry-before ferry biboumi" with BENCH_FERRY_BEFORE=PATH also
measures another ferry binary (the code before a change) in the same run.
Gateway "ferry-arenaN" (N a number) runs ferry with MALLOC_ARENA_MAX=N
("ferry-before-arenaN": the other binary so), to compare glibc's number
of malloc arenas in one run.
"""
import os
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest

from harness.bench import CsvLog, pct, rss_kib, status
from harness.loadgen import IrcBots, XmppPool

from irc_helpers import irc_config

SCENARIOS = os.environ.get("BENCH_SCENARIOS", "rtt users scale").split()
GATEWAYS = os.environ.get("BENCH_GATEWAYS", "ferry biboumi").split()
SAMPLES = int(os.environ.get("BENCH_SAMPLES", "200"))
SPACING = float(os.environ.get("BENCH_SPACING", "0.02"))
ONE_CHANNEL = [int(n) for n in os.environ.get("BENCH_ONE_CHANNEL", "50 200").split()]
SCALE = [int(n) for n in os.environ.get("BENCH_SCALE_USERS", "250 500 1000").split()]
RATE = float(os.environ.get("BENCH_RATE", "100"))
LOAD_SECONDS = float(os.environ.get("BENCH_LOAD_SECONDS", "30"))
PER_PROCESS = int(os.environ.get("BENCH_CLIENTS_PER_PROCESS", "250"))
DRAIN = float(os.environ.get("BENCH_DRAIN_SECONDS", "120"))  # most to wait for late deliveries
MEMBERS = 100
pytestmark = pytest.mark.timeout(7200)
BIBOUMI_HISTORY = os.environ.get("BENCH_BIBOUMI_HISTORY", "1") == "1"
LATE = float(os.environ.get("BENCH_LATE_SECONDS", "30"))  # RSS again this long after the joins

FIELDS = ["channels", "rss_kib", "anon_kib", "file_kib", "idle_kib", "per_user_kib", "join_s", "quiesce_s",
          "rtt_n", "rtt_lost", "rtt_median_ms", "rtt_p95_ms", "rate", "load_s", "expected", "delivered",
          "drain_s", "fanout_median_ms", "fanout_p95_ms", "gen_processes", "gen_clients_per_process",
          "gen_cpu_max_pct", "gateway_cpu_pct", "prosody_cpu_pct", "late_rss_kib", "late_per_user_kib",
          "idle_anon_kib", "per_user_anon_kib", "late_per_user_anon_kib"]
# per_user_kib counts the code pages the first joins bring in (file-backed,
# the same for 1 user or 1,000) as if each user cost its share of them;
# per_user_anon_kib is the growth of anonymous memory (heap, stacks) only.


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def settle(pid, first=2.0):
    """RSS once it stopped moving (ferry gives freed memory back within ~1 s)."""
    time.sleep(first)
    last = rss_kib(pid)
    for _ in range(10):
        time.sleep(1.0)
        now = rss_kib(pid)
        if abs(now - last) < 128:
            break
        last = now
    return status(pid)


HEAPTRACK = os.environ.get("BENCH_HEAPTRACK")
HEAPTRACK_LIB = "/usr/lib/heaptrack"


class FerryGw:
    """ferry's IRC bridge on irc.localhost. With BENCH_HEAPTRACK=DIR it runs
    under heaptrack (Debian's), and `stop` kills it at once after the
    measurement, so that what heaptrack_print calls "leaked" is the live
    heap at that moment: DIR/<gateway>-<label>.gz (heaptrack_print -f …)."""
    name = "ferry"
    binary = None  # FERRY_BIN

    def __init__(self, factory, peers):
        self.factory, self.peers = factory, peers
        self.f = None
        self.raw = None

    arenas = None  # MALLOC_ARENA_MAX for this run (None: as ferry sets it)

    def start(self, label="run"):
        env = {"MALLOC_ARENA_MAX": str(self.arenas)} if self.arenas else None
        if HEAPTRACK:
            Path(HEAPTRACK).mkdir(parents=True, exist_ok=True)
            self.raw = Path(HEAPTRACK) / f"{self.name}-{label}.raw"
            env = {**(env or {}), "LD_PRELOAD": f"{HEAPTRACK_LIB}/libheaptrack_preload.so",
                   "DUMP_HEAPTRACK_OUTPUT": str(self.raw)}
            if not self.name.endswith("+heaptrack"):
                self.name += "+heaptrack"
        self.f = self.factory(bridges={"irc": irc_config(self.peers, throttle_limit=-1)}, log_level="warn",
                              timeout=60, env=env, start=False)
        if self.binary:
            self.f.binary = self.binary
        self.f.start(timeout=60)
        self.domain = self.f.config.domain("irc")
        self.pid = self.f.proc.pid

    def stop(self):
        if not self.raw:
            self.f.stop(timeout=60)
            return
        self.f.kill()
        out = self.raw.with_suffix(".gz")
        with open(self.raw, "rb") as src, open(out, "wb") as dst:
            interp = subprocess.Popen([f"{HEAPTRACK_LIB}/libexec/heaptrack_interpret"], stdin=src,
                                      stdout=subprocess.PIPE)
            subprocess.run(["gzip", "-c"], stdin=interp.stdout, stdout=dst, check=True)
            interp.wait()
        self.raw.unlink()
        print(f"[bench] heap profile: heaptrack_print -f {out}", flush=True)

    def room(self, chan):
        return f"{chan}%127.0.0.1@{self.domain}"


class BiboumiGw:
    """biboumi 9.0 (Debian) as biboumi.localhost: its own config and
    SQLite database in a temporary directory; every load user's options
    for 127.0.0.1 (InspIRCd's port, no TLS, flood control off) written in
    its database as its `configure` command would."""
    name = "biboumi"

    def __init__(self, peers, workdir, users):
        self.peers, self.dir, self.users = peers, Path(workdir), users
        self.proc = None
        self.domain = "biboumi.localhost"
        if not BIBOUMI_HISTORY:
            self.name = "biboumi-nohistory"
        secret = dict(c.split(":", 1) for c in peers.env.get("XMPP_EXTRA_COMPONENTS", "").split()).get("biboumi")
        if not secret:
            raise RuntimeError('start the peers with XMPP_EXTRA_COMPONENTS="biboumi:biboumisecret"')
        self.secret = secret

    def start(self, label="run"):
        self.dir.mkdir(parents=True, exist_ok=True)
        db = self.dir / "biboumi.sqlite"
        for p in self.dir.glob("biboumi.sqlite*"):
            p.unlink()
        log = self.dir / "biboumi.log"
        if log.exists():
            log.unlink()
        cfg = self.dir / "biboumi.cfg"
        cfg.write_text(f"hostname={self.domain}\npassword={self.secret}\nxmpp_server_ip=127.0.0.1\n"
                       f"port={self.peers.component_port}\nadmin=admin@localhost\ndb_name={db}\n"
                       f"realname_customization=true\nrealname_from_jid=false\nidentd_port=0\n"
                       f"log_level=1\nlog_file={log}\npolicy_directory=/etc/biboumi\n")
        self.proc = subprocess.Popen(["biboumi", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        deadline = time.monotonic() + 30
        while not (log.exists() and "Authenticated with the XMPP server" in log.read_text(errors="replace")):
            if self.proc.poll() is not None:
                raise RuntimeError(f"biboumi exited: {log.read_text(errors='replace') if log.exists() else ''}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("biboumi did not authenticate with Prosody within 30 s")
            time.sleep(0.05)
        con = sqlite3.connect(db)
        con.executemany(
            "insert into ircserveroptions_ (owner_, server_, pass_, tlsports_, ports_, username_, realname_,"
            " verifycert_, trustedfingerprint_, encodingout_, encodingin_, maxhistorylength_, address_, nick_,"
            " saslpassword_, throttlelimit_) values (?, '127.0.0.1', '', '', ?, '', '', 0, '', '', '', 20,"
            " '', '', '', -1)",
            [(f"{u}@{self.peers.domain}", f"{self.peers.irc_port};") for u in self.users])
        if not BIBOUMI_HISTORY:
            con.executemany("insert into globaloptions_ (owner_, maxhistorylength_, recordhistory_, persistent_)"
                            " values (?, 20, 0, 0)", [(f"{u}@{self.peers.domain}",) for u in self.users])
        con.commit()
        con.close()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def room(self, chan):
        return f"{chan}%127.0.0.1@{self.domain}"


def load_users(n):
    return [f"load{i:02d}" for i in range(1, n + 1)]


@pytest.fixture(scope="module")
def out():
    return CsvLog("scale", FIELDS)


class FerryBeforeGw(FerryGw):
    """Another ferry binary (BENCH_FERRY_BEFORE: a build of the code before
    a change), measured in the same run as "ferry-before"."""
    name = "ferry-before"
    binary = os.environ.get("BENCH_FERRY_BEFORE")


def gateways(peers, ferry_factory, tmp_path, n):
    for g in GATEWAYS:
        base, _, arenas = g.partition("-arena")
        if arenas and not arenas.isdigit():
            raise ValueError(f"unknown gateway {g}")
        if base in ("ferry", "ferry-before"):
            if base == "ferry-before" and not FerryBeforeGw.binary:
                continue
            gw = FerryGw(ferry_factory, peers) if base == "ferry" else FerryBeforeGw(ferry_factory, peers)
            if arenas:
                gw.arenas, gw.name = int(arenas), g
            yield gw
        elif g == "biboumi":
            yield BiboumiGw(peers, tmp_path / "biboumi", load_users(n))
        else:
            raise ValueError(f"unknown gateway {g}")


def need_users(peers, n):
    have = int(peers.env.get("XMPP_LOAD_USERS", "0") or 0)
    if have < n:
        pytest.fail(f"the peers have {have} load users, the benchmark needs {n}: start them with XMPP_LOAD_USERS={n}")


def tag(gw):
    """IRC nicks unique to this gateway's run (the previous run's may linger)."""
    return f"{gw.name[0]}{int(time.time()) % 100000}"


@pytest.mark.skipif("rtt" not in SCENARIOS, reason="BENCH_SCENARIOS")
def test_round_trip(peers, ferry_factory, tmp_path, out):
    need_users(peers, 1)
    for gw in gateways(peers, ferry_factory, tmp_path, 1):
        gw.start("rtt")
        t = tag(gw)
        chan = f"#rtt{t}"
        bots = IrcBots(peers.irc_host, peers.irc_port, [], [chan], prefix=t)
        pool = XmppPool(peers, [], probe_user=("load01", gw.room(chan), f"{t}p"))
        try:
            j = pool.join(60)
            assert j["joined"] == 1, j
            s = pool.probe(SAMPLES, SPACING, warmup=10)
            ok = [x * 1000 for x in s if x is not None]
            import statistics
            out.row(gateway=gw.name, scenario=f"rtt@{SPACING * 1000:g}ms", users=1, channels=1,
                    rtt_n=len(ok), rtt_lost=len(s) - len(ok),
                    rtt_median_ms=f"{statistics.median(ok):.2f}", rtt_p95_ms=f"{pct(ok, 95):.2f}")
        finally:
            pool.close()
            bots.close()
            gw.stop()


@pytest.mark.skipif("users" not in SCENARIOS, reason="BENCH_SCENARIOS")
@pytest.mark.parametrize("n", ONE_CHANNEL)
def test_users_in_one_channel(peers, ferry_factory, tmp_path, out, n):
    need_users(peers, n)
    for gw in gateways(peers, ferry_factory, tmp_path, n):
        gw.start(f"one-channel-{n}")
        t = tag(gw)
        chan = f"#one{t}"
        bots = IrcBots(peers.irc_host, peers.irc_port, [chan], [], prefix=t)
        users = [(u, gw.room(chan), f"{t}u{i}") for i, u in enumerate(load_users(n))]
        pool = None
        try:
            idle = settle(gw.pid, 1.0)
            pool = XmppPool(peers, users, clients_per_process=PER_PROCESS)
            j = pool.join(180)
            assert j["joined"] == n, j
            s = settle(gw.pid)
            late = {}
            if LATE and not HEAPTRACK:
                time.sleep(LATE)
                late = status(gw.pid)
            out.row(gateway=gw.name, scenario="one-channel", users=n, channels=1, rss_kib=s["VmRSS"],
                    anon_kib=s["RssAnon"], file_kib=s.get("RssFile", 0) + s.get("RssShmem", 0),
                    idle_kib=idle["VmRSS"], per_user_kib=f"{(s['VmRSS'] - idle['VmRSS']) / n:.1f}",
                    join_s=f"{j['seconds']:.2f}", late_rss_kib=late.get("VmRSS", ""),
                    late_per_user_kib=f"{(late['VmRSS'] - idle['VmRSS']) / n:.1f}" if late else "",
                    idle_anon_kib=idle["RssAnon"], per_user_anon_kib=f"{(s['RssAnon'] - idle['RssAnon']) / n:.1f}",
                    late_per_user_anon_kib=f"{(late['RssAnon'] - idle['RssAnon']) / n:.1f}" if late else "")
        finally:
            if pool:
                pool.close()
            bots.close()
            gw.stop()


@pytest.mark.skipif("scale" not in SCENARIOS, reason="BENCH_SCENARIOS")
@pytest.mark.parametrize("n", SCALE)
def test_scale(peers, ferry_factory, tmp_path, out, n):
    need_users(peers, n)
    import statistics
    channels = max(1, n // MEMBERS)
    prosody = int((peers.dir / "pids" / "prosody.pid").read_text().split()[0])
    for gw in gateways(peers, ferry_factory, tmp_path, n):
        gw.start(f"scale-{n}")
        t = tag(gw)
        chans = [f"#s{t}c{k}" for k in range(channels)]
        bots = IrcBots(peers.irc_host, peers.irc_port, chans, [chans[0]], prefix=t)
        names = load_users(n)
        users = [(u, gw.room(chans[min(i // MEMBERS, channels - 1)]), f"{t}u{i}") for i, u in enumerate(names)]
        probe, users = users[0], users[1:]
        pool = None
        try:
            idle = settle(gw.pid, 1.0)
            pool = XmppPool(peers, users, clients_per_process=PER_PROCESS, probe_user=probe)
            j = pool.join(300)
            assert j["joined"] == n, {**j, "failed": j["failed"][:10]}
            s = settle(gw.pid)
            # Wait until the join burst (every user receives every occupant's
            # presence) has drained: a round trip comes back at all.
            q0 = time.monotonic()
            while time.monotonic() - q0 < DRAIN and pool.probe(1, 0.0, warmup=0)[0] is None:
                pass
            quiesce = time.monotonic() - q0
            members = {}
            for _, room, _ in users:
                members[room] = members.get(room, 0) + 1
            pool.count_start("L ")
            g0, p0, t0 = cpu_seconds(gw.pid), cpu_seconds(prosody), time.monotonic()
            sent = {}
            th = threading.Thread(target=lambda: sent.update(bots.load(RATE, LOAD_SECONDS)))
            th.start()
            rtts = pool.probe(10 ** 6, SPACING, warmup=0, seconds=LOAD_SECONDS)
            th.join()
            wall = time.monotonic() - t0
            g1, p1 = cpu_seconds(gw.pid), cpu_seconds(prosody)
            # every member of channel k must get every line sent there
            expected = sum(sent["sent"][k] * members.get(gw.room(c), 0) for k, c in enumerate(chans))
            d0 = time.monotonic()
            got = 0
            while time.monotonic() - d0 < DRAIN:
                got = pool.peek()
                if got >= expected:
                    break
                time.sleep(0.5)
            drain = time.monotonic() - d0
            r = pool.count_stop()
            delivered = sum(c for _, _, c in r["counts"])
            ok = [x * 1000 for x in rtts if x is not None]
            lat = [x * 1000 for x in r["lat"]]
            gen_cpu = max(c / w for c, w in zip(r["cpu"], r["wall"])) * 100
            scenario = "scale" if RATE == 100 else f"scale@{RATE:g}/s"
            out.row(gateway=gw.name, scenario=scenario, users=n, channels=channels, rss_kib=s["VmRSS"],
                    anon_kib=s["RssAnon"], file_kib=s.get("RssFile", 0) + s.get("RssShmem", 0),
                    idle_kib=idle["VmRSS"], per_user_kib=f"{(s['VmRSS'] - idle['VmRSS']) / n:.1f}",
                    idle_anon_kib=idle["RssAnon"], per_user_anon_kib=f"{(s['RssAnon'] - idle['RssAnon']) / n:.1f}",
                    join_s=f"{j['seconds']:.2f}", quiesce_s=f"{quiesce:.1f}", rtt_n=len(ok), rtt_lost=len(rtts) - len(ok),
                    rtt_median_ms=f"{statistics.median(ok):.2f}" if ok else "",
                    rtt_p95_ms=f"{pct(ok, 95):.2f}" if ok else "", rate=RATE,
                    load_s=f"{sent['seconds']:.1f}", expected=expected, delivered=delivered,
                    drain_s=f"{drain:.1f}",
                    fanout_median_ms=f"{statistics.median(lat):.2f}" if lat else "",
                    fanout_p95_ms=f"{pct(lat, 95):.2f}" if lat else "",
                    gen_processes=len(pool.load_conns) + 1, gen_clients_per_process=PER_PROCESS,
                    gen_cpu_max_pct=f"{gen_cpu:.0f}", gateway_cpu_pct=f"{(g1 - g0) / wall * 100:.0f}",
                    prosody_cpu_pct=f"{(p1 - p0) / wall * 100:.0f}")
        finally:
            if pool:
                pool.close()
            bots.close()
            gw.stop()
