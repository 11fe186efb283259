"""A lean load generator for the gateway benchmarks: many XMPP clients
and IRC bots in a few worker processes, cheap enough that it is never the
bottleneck (a slixmpp client per user does not scale to 1,000 users).

Each XMPP client is a raw socket under asyncio speaking just enough XMPP
(stream, SASL PLAIN, resource binding, directed presence, messages); its
reader is expat fed with the bytes as they come, keeping of each stanza only
what the benchmarks look at (name, from/type, body, MUC status codes).
A worker process runs many clients on one event loop and is driven by the
benchmark through a pipe:

    pool = XmppPool(peers, users, clients_per_process=250)   # [(user, room, nick)]
    pool.join(timeout=120) -> {"joined": n, "seconds": s, "failed": [...]}
    pool.count_start("L ") ... pool.count_stop() -> per-client counts, latencies
    pool.probe(...)       # round trips from one client, in its own process
    pool.cpu()            # CPU seconds and wall time of each worker
    pool.close()

IrcBots runs the IRC side in its own process: an echo bot (`ping N` ->
`pong N`) and one sender per channel writing `L <seq> <unix time>` lines at
a given total rate. Timestamps in the lines let every receiver compute the
IRC -> XMPP delivery latency (one machine, one clock).
"""
import asyncio
import base64
import multiprocessing as mp
import os
import re
import time
import xml.parsers.expat
from xml.sax.saxutils import escape, quoteattr

STREAM = ("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
          "xmlns:stream='http://etherx.jabber.org/streams' to={} version='1.0'>")


class Stanza:
    """What the benchmarks read of a stanza."""
    __slots__ = ("name", "attrs", "body", "codes", "children")

    def __init__(self, name, attrs):
        self.name, self.attrs, self.body, self.codes, self.children = name, attrs, None, (), ()

    def __repr__(self):
        return f"<{self.name} {self.attrs} body={self.body!r} codes={self.codes}>"


class Reader:
    """Splits an XMPP stream into Stanza objects with expat (C), keeping
    only the top-level element, its <body/> text, status codes and the
    names of its children."""

    def __init__(self):
        self.out = []
        self.depth = 0
        self.cur = None
        self.in_body = False
        self.text = []
        p = xml.parsers.expat.ParserCreate()
        p.buffer_text = True
        p.StartElementHandler = self._start
        p.EndElementHandler = self._end
        p.CharacterDataHandler = self._chars
        self.p = p

    def feed(self, data):
        self.p.Parse(data, False)
        out, self.out = self.out, []
        return out

    def _start(self, name, attrs):
        self.depth += 1
        if self.depth == 2:
            self.cur = Stanza(name, attrs)
            self.cur.children = []
            self.cur.codes = []
        elif self.depth >= 3 and self.cur is not None:
            if self.depth == 3:
                self.cur.children.append(name)
                if name == "body":
                    self.in_body, self.text = True, []
            if name == "status" and "code" in attrs:
                self.cur.codes.append(attrs["code"])

    def _end(self, name):
        if self.depth == 3 and self.in_body:
            self.cur.body = "".join(self.text)
            self.in_body = False
        elif self.depth == 2 and self.cur is not None:
            self.out.append(self.cur)
            self.cur = None
        self.depth -= 1

    def _chars(self, data):
        if self.in_body:
            self.text.append(data)


class Client:
    """One XMPP account on one socket."""

    def __init__(self, user, password, domain, host, port, resource="lg"):
        self.user, self.password, self.domain = user, password, domain
        self.host, self.port, self.resource = host, port, resource
        self.jid = None
        self.handler = None       # called with each Stanza after login
        self.w = None

    async def _next(self, reader):
        while not self.pending:
            data = await self.r.read(65536)
            if not data:
                raise ConnectionError(f"{self.user}: stream closed")
            self.pending.extend(reader.feed(data))
        return self.pending.pop(0)

    async def login(self):
        import socket
        self.r, self.w = await asyncio.open_connection(self.host, self.port)
        self.w.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.pending = []
        rd = Reader()
        self.w.write(STREAM.format(quoteattr(self.domain)).encode())
        feats = await self._next(rd)
        if "mechanisms" not in feats.children:
            raise ConnectionError(f"{self.user}: no SASL offered: {feats}")
        token = base64.b64encode(f"\0{self.user}\0{self.password}".encode()).decode()
        self.w.write(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>".encode())
        res = await self._next(rd)
        if res.name != "success":
            raise ConnectionError(f"{self.user}: authentication failed: {res}")
        rd = Reader()
        self.w.write(STREAM.format(quoteattr(self.domain)).encode())
        await self._next(rd)  # features
        self.w.write(f"<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                     f"<resource>{escape(self.resource)}</resource></bind></iq>".encode())
        res = await self._next(rd)
        if res.attrs.get("type") != "result":
            raise ConnectionError(f"{self.user}: bind failed: {res}")
        self.jid = f"{self.user}@{self.domain}/{self.resource}"
        self.reader = rd
        early, self.pending = self.pending, []
        return early

    async def run(self):
        """Reads stanzas until the stream ends, handing each to `handler`."""
        rd = self.reader
        try:
            while True:
                data = await self.r.read(65536)
                if not data:
                    return
                now = time.monotonic()
                for st in rd.feed(data):
                    self.handler(st, now)
        except (ConnectionError, xml.parsers.expat.ExpatError):
            return

    def send(self, xml_text):
        self.w.write(xml_text.encode())


def _join_xml(room, nick):
    return (f"<presence to={quoteattr(room + '/' + nick)}><x xmlns='http://jabber.org/protocol/muc'>"
            f"<history maxstanzas='0'/></x></presence>")


class _Member:
    """A client that joins one room and counts what arrives there."""

    def __init__(self, client, room, nick):
        self.c, self.room, self.nick = client, room, nick
        self.joined = asyncio.get_event_loop().create_future()
        self.count = 0
        self.prefix = None
        self.lat = None
        self.waiters = {}
        self.other = 0
        client.handler = self.on

    def on(self, st, now):
        if st.name == "message":
            b = st.body
            if b is None:
                return
            if self.prefix is not None and b.startswith(self.prefix):
                self.count += 1
                if self.lat is not None:
                    parts = b.split(" ")
                    if len(parts) >= 3:
                        try:
                            self.lat.append(time.time() - float(parts[2]))
                        except ValueError:
                            pass
                return
            fut = self.waiters.pop(b, None)
            if fut is not None and not fut.done():
                fut.set_result(now)
            else:
                self.other += 1
        elif st.name == "presence":
            if st.attrs.get("from") == f"{self.room}/{self.nick}" and not self.joined.done():
                if st.attrs.get("type") == "error":
                    self.joined.set_exception(ConnectionError(f"{self.c.user}: join refused"))
                elif "110" in st.codes:
                    self.joined.set_result(now)


async def _worker_main(conn, spec):
    loop = asyncio.get_running_loop()
    members = []
    tasks = []
    cmd_q = asyncio.Queue()

    def on_cmd():
        try:
            cmd_q.put_nowait(conn.recv())
        except EOFError:
            cmd_q.put_nowait(("quit",))

    loop.add_reader(conn.fileno(), on_cmd)

    async def login_join(timeout):
        t0 = time.monotonic()
        sem = asyncio.Semaphore(spec.get("parallel", 50))
        failed = []

        async def one(user, room, nick):
            c = Client(user, spec["password"], spec["domain"], spec["host"], spec["port"])
            m = None
            async with sem:
                try:
                    await c.login()
                except (OSError, ConnectionError) as e:
                    failed.append(f"{user}: {e}")
                    return
            m = _Member(c, room, nick)
            members.append(m)
            tasks.append(asyncio.create_task(c.run()))
            c.send(_join_xml(room, nick))
            try:
                await asyncio.wait_for(asyncio.shield(m.joined), timeout)
            except (asyncio.TimeoutError, ConnectionError) as e:
                failed.append(f"{user}: {e or 'no self-presence'}")

        await asyncio.gather(*(one(*u) for u in spec["users"]))
        return {"joined": sum(1 for m in members if m.joined.done() and not m.joined.exception()),
                "seconds": time.monotonic() - t0, "failed": failed}

    async def probe(count, spacing, warmup, seconds):
        m = members[0]
        samples = []
        end = time.monotonic() + seconds if seconds else None
        for i in range(count + warmup):
            if end is not None and time.monotonic() > end:
                break
            body = f"ping {os.getpid()}-{i}"
            fut = loop.create_future()
            m.waiters[f"pong {os.getpid()}-{i}"] = fut
            t0 = time.monotonic()
            m.c.send(f"<message to={quoteattr(m.room)} type='groupchat'><body>{escape(body)}</body></message>")
            try:
                t1 = await asyncio.wait_for(fut, 10)
            except asyncio.TimeoutError:
                samples.append(None)
                continue
            if i >= warmup:
                samples.append(t1 - t0)
            await asyncio.sleep(spacing)
        return samples

    cpu0, wall0 = time.process_time(), time.monotonic()
    while True:
        cmd = await cmd_q.get()
        op = cmd[0]
        if op == "join":
            res = await login_join(cmd[1])
        elif op == "count_start":
            for m in members:
                m.prefix, m.count, m.lat = cmd[1], 0, ([] if cmd[2] else None)
            cpu0, wall0 = time.process_time(), time.monotonic()
            res = True
        elif op == "peek":
            res = sum(m.count for m in members)
        elif op == "count_stop":
            res = {"counts": [(m.c.user, m.room, m.count) for m in members],
                   "lat": [x for m in members for x in (m.lat or [])],
                   "cpu": time.process_time() - cpu0, "wall": time.monotonic() - wall0}
            for m in members:
                m.prefix, m.lat = None, None
        elif op == "probe":
            res = await probe(*cmd[1:])
        elif op == "quit":
            for m in members:
                m.c.w.close()
            for t in tasks:
                t.cancel()
            conn.send(True)
            return
        else:
            res = ValueError(f"unknown command {op}")
        conn.send(res)


def _worker(conn, spec):
    asyncio.run(_worker_main(conn, spec))


class XmppPool:
    """XMPP clients in worker processes. `users`: [(user, room, nick)];
    `probe_user`: one more (user, room, nick) alone in its own process,
    for round trips undisturbed by the other clients' work."""

    def __init__(self, peers, users, clients_per_process=250, probe_user=None, password=None,
                 domain=None):
        ctx = mp.get_context("spawn")
        base = {"password": password or peers.env.get("XMPP_LOAD_PASSWORD", "loadpw"),
                "domain": domain or peers.domain, "host": peers.host, "port": peers.c2s_port}
        self.procs, self.conns = [], []
        chunks = [users[i:i + clients_per_process] for i in range(0, len(users), clients_per_process)]
        if probe_user:
            chunks.append([probe_user])
        for chunk in chunks:
            a, b = ctx.Pipe()
            p = ctx.Process(target=_worker, args=(b, dict(base, users=chunk)), daemon=True)
            p.start()
            self.procs.append(p)
            self.conns.append(a)
        self.probe_conn = self.conns[-1] if probe_user else None
        self.load_conns = self.conns[:-1] if probe_user else self.conns
        self.clients_per_process = clients_per_process

    def _all(self, cmd, conns=None, timeout=600):
        conns = self.conns if conns is None else conns
        for c in conns:
            c.send(cmd)
        out = []
        for c in conns:
            if not c.poll(timeout):
                raise TimeoutError(f"load worker did not answer {cmd[0]}")
            r = c.recv()
            if isinstance(r, Exception):
                raise r
            out.append(r)
        return out

    def join(self, timeout=120):
        rs = self._all(("join", timeout), timeout=timeout + 60)
        return {"joined": sum(r["joined"] for r in rs), "seconds": max(r["seconds"] for r in rs),
                "failed": [f for r in rs for f in r["failed"]]}

    def count_start(self, prefix, latency=True):
        self._all(("count_start", prefix, latency), self.load_conns)

    def peek(self):
        """How many counted messages arrived so far, in all."""
        return sum(self._all(("peek",), self.load_conns))

    def count_stop(self):
        rs = self._all(("count_stop",), self.load_conns)
        return {"counts": [c for r in rs for c in r["counts"]], "lat": [x for r in rs for x in r["lat"]],
                "cpu": [r["cpu"] for r in rs], "wall": [r["wall"] for r in rs]}

    def probe(self, count, spacing, warmup=10, seconds=None):
        """Round trips from the probe client: `ping N` to its room until
        `pong N` comes back (an echo bot answers), seconds; None = lost.
        Stops after `count` samples or `seconds`, whichever comes first."""
        return self._all(("probe", count, spacing, warmup, seconds), [self.probe_conn],
                         timeout=min(count * 11, (seconds or 1e9) + 11) + 60)[0]

    def close(self):
        for c in self.conns:
            try:
                c.send(("quit",))
                c.poll(10) and c.recv()
            except (OSError, EOFError):
                pass
        for p in self.procs:
            p.join(10)
            if p.is_alive():
                p.kill()


# ----------------------------------------------------------------------- IRC side

class _IrcBot:
    def __init__(self, nick, chans, echo=False):
        self.nick, self.chans, self.echo = nick, chans, echo
        self.joined = set()
        self.ready = None

    async def start(self, host, port):
        import socket
        self.ready = asyncio.get_running_loop().create_future()
        self.r, self.w = await asyncio.open_connection(host, port)
        self.w.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.w.write(f"NICK {self.nick}\r\nUSER {self.nick} 0 * :bench bot\r\n".encode())
        self.task = asyncio.create_task(self.run())

    async def run(self):
        pat = re.compile(rb"^:\S+ PRIVMSG (\S+) :ping (\S+)$")
        buf = b""
        while True:
            data = await self.r.read(65536)
            if not data:
                return
            buf += data
            *lines, buf = buf.split(b"\r\n")
            for line in lines:
                if line.startswith(b"PING"):
                    self.w.write(b"PONG" + line[4:] + b"\r\n")
                    continue
                if self.echo:
                    m = pat.match(line)
                    if m:
                        self.w.write(b"PRIVMSG " + m.group(1) + b" :pong " + m.group(2) + b"\r\n")
                        continue
                parts = line.split(b" ")
                if len(parts) > 1 and parts[1] == b"001":
                    self.w.write("".join(f"JOIN {c}\r\n" for c in self.chans).encode())
                elif len(parts) > 3 and parts[1] == b"366":
                    self.joined.add(parts[3].decode())
                    if len(self.joined) == len(self.chans) and not self.ready.done():
                        self.ready.set_result(True)


async def _irc_main(conn, host, port, chans, echo_chans, prefix):
    loop = asyncio.get_running_loop()
    senders = [_IrcBot(f"{prefix}s{i}", [c]) for i, c in enumerate(chans)]
    bots = senders + ([_IrcBot(f"{prefix}echo", echo_chans, echo=True)] if echo_chans else [])
    for b in bots:
        await b.start(host, port)
    await asyncio.wait_for(asyncio.gather(*(b.ready for b in bots)), 60)
    conn.send(True)
    cmd_q = asyncio.Queue()
    loop.add_reader(conn.fileno(), lambda: cmd_q.put_nowait(conn.recv()))
    while True:
        cmd = await cmd_q.get()
        if cmd[0] == "load":
            _, rate, seconds, tag = cmd
            sent = [0] * len(senders)
            cpu0, t0 = time.process_time(), time.monotonic()
            n = int(rate * seconds)
            for k in range(n):
                due = t0 + k / rate
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                i = k % len(senders)
                s = senders[i]
                s.w.write(f"PRIVMSG {s.chans[0]} :{tag} {sent[i]} {time.time():.6f}\r\n".encode())
                sent[i] += 1
            conn.send({"sent": sent, "seconds": time.monotonic() - t0, "cpu": time.process_time() - cpu0})
        elif cmd[0] == "quit":
            for b in bots:
                b.w.write(b"QUIT :done\r\n")
                b.w.close()
            conn.send(True)
            return


def _irc_worker(conn, host, port, chans, echo_chans, prefix):
    asyncio.run(_irc_main(conn, host, port, chans, echo_chans, prefix))


class IrcBots:
    """IRC bots in their own process: one sender per channel in `chans`,
    and an echo bot in `echo_chans`. Nicks start with `prefix`."""

    def __init__(self, host, port, chans, echo_chans=(), prefix="bb"):
        ctx = mp.get_context("spawn")
        self.conn, b = ctx.Pipe()
        self.proc = ctx.Process(target=_irc_worker, args=(b, host, port, list(chans), list(echo_chans), prefix),
                                daemon=True)
        self.proc.start()
        if not self.conn.poll(90):
            raise TimeoutError("the IRC bots did not join their channels")
        self.conn.recv()
        self.chans = list(chans)

    def load(self, rate, seconds, tag="L"):
        """Sends `rate` lines a second in all (round robin over the
        channels) for `seconds`; returns {"sent": per channel, "seconds", "cpu"}."""
        self.conn.send(("load", rate, seconds, tag))
        if not self.conn.poll(seconds + 120):
            raise TimeoutError("the IRC senders did not finish")
        return self.conn.recv()

    def close(self):
        try:
            self.conn.send(("quit",))
            self.conn.poll(10) and self.conn.recv()
        except (OSError, EOFError):
            pass
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
