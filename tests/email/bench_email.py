"""Figures of the email bridge, printed (never asserted). Run on demand,
against the real servers and the real ferry binary (use a release build
for the figures):

    XMPP_LOAD_USERS=50 PEERS="xmpp mail" contrib/peers/start-peers.sh $PEERS_DIR
    cargo build --release
    cd tests && PEERS_DIR=… FERRY_BIN=$CARGO_TARGET_DIR/release/ferry \\
        $FERRY_VENVS/test/bin/python -m pytest email/bench_email.py -s -p no:cacheprovider

Figures (issue 9, item 8):

- SMTP accept -> XMPP message latency with IDLE, median / p95;
- 1,000 mails to one account: from the first SMTP accept to the last
  XMPP message (ferry running), and from ferry's start to the last
  message with the 1,000 already waiting in the inbox;
- ferry's RSS per idle account with 50 accounts (IMAP IDLE open over TLS).
"""
import imaplib
import os
import smtplib
import threading
import time
from email.message import EmailMessage

import pytest

from harness.bench import arrival, report, rss_kib, rss_split
from harness.stanza import message, text

from email_helpers import Mailbox, email_config, jid, register

SAMPLES = int(os.environ.get("BENCH_SAMPLES", "100"))
FLOOD = int(os.environ.get("BENCH_MAILS", "1000"))
ACCOUNTS = int(os.environ.get("BENCH_ACCOUNTS", "50"))


def _mail(frm, to, i):
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = frm, to, f"n{i}"
    m["Message-ID"] = f"<b{i}.{time.time_ns()}@bench.localhost>"
    m.set_content(f"mail {i}")
    return m


def _wait_n(client, frm, since, n, timeout=600):
    deadline = time.monotonic() + timeout
    while True:
        got = client.received(message(frm=frm, type="chat"), since=since)
        if len(got) >= n:
            return got
        assert time.monotonic() < deadline, f"{len(got)} of {n}"
        time.sleep(0.05)


class IdleWatch(threading.Thread):
    """A second IMAP client in IDLE on the same inbox: when Dovecot
    announces each new mail (the servers' share of the latency)."""

    def __init__(self, mb):
        super().__init__(daemon=True)
        self.c = mb.imap()
        self.c.select("INBOX")
        self.exists = []
        self.stop = False

    def run(self):
        import select
        tag = self.c._new_tag().decode()
        self.c.send(f"{tag} IDLE\r\n".encode())
        self.c.readline()
        while not self.stop:
            ready, _, _ = select.select([self.c.sock], [], [], 0.5)
            if not ready:
                continue
            line = self.c.readline()
            if not line:
                return
            if b"EXISTS" in line:
                self.exists.append(time.monotonic())


@pytest.mark.timeout(3600)
def test_latency_and_throughput(ferry_factory, xmpp, peers):
    f = ferry_factory(bridges={"email": email_config(peers)})
    domain = f.config.domain("email")
    alice = xmpp("alice")
    mb = register(alice, domain, peers)
    bob = Mailbox.create(peers, "bench")
    frm = jid(bob.address, domain)
    smtp = smtplib.SMTP("127.0.0.1", int(peers.env["SMTP_PORT"]))

    # latency: SMTP accepted -> chat message at the XMPP client, and
    # SMTP accepted -> EXISTS at a plain IMAP client in IDLE (the servers)
    watch = IdleWatch(mb)
    watch.start()
    samples, server = [], []
    for i in range(SAMPLES):
        m = alice.mark()
        n = len(watch.exists)
        smtp.send_message(_mail(bob.address, mb.address, i))
        t0 = time.monotonic()
        st = alice.wait_for(message(frm=frm, body=f"mail {i}"), since=m, timeout=30)
        samples.append(arrival(alice, st) - t0)
        deadline = time.monotonic() + 10
        while len(watch.exists) <= n and time.monotonic() < deadline:
            time.sleep(0.01)
        if len(watch.exists) > n:
            server.append(watch.exists[n] - t0)
    watch.stop = True
    report("SMTP accept -> XMPP message (IDLE)", samples)
    report("SMTP accept -> EXISTS at a plain IMAP client (Postfix + Dovecot alone)", server)

    # 1,000 mails, ferry running
    m = alice.mark()
    t0 = time.monotonic()
    for i in range(FLOOD):
        smtp.send_message(_mail(bob.address, mb.address, i))
    accepted = time.monotonic() - t0
    got = _wait_n(alice, frm, m, FLOOD)
    total = arrival(alice, got[-1]) - t0
    print(f"\n[bench] {FLOOD} mails: SMTP accepted in {accepted:.1f} s, last XMPP message "
          f"{total:.1f} s after the first accept", flush=True)
    bodies = [text(s, "body") for s in got]
    inbox = [x.get_content().strip() for x in mb.folder()[-FLOOD:]]
    print(f"[bench] each once, in the mailbox's order: {bodies == inbox}", flush=True)

    # 1,000 mails waiting while ferry is down
    f.stop()
    for i in range(FLOOD):
        smtp.send_message(_mail(bob.address, mb.address, i))
    deadline = time.monotonic() + 300
    while mb.count() < SAMPLES + 2 * FLOOD:
        assert time.monotonic() < deadline, "Postfix did not deliver the mails"
        time.sleep(0.5)
    m = alice.mark()
    t0 = time.monotonic()
    f.start()
    got = _wait_n(alice, frm, m, FLOOD)
    print(f"[bench] {FLOOD} mails waiting in the inbox: last XMPP message {arrival(alice, got[-1]) - t0:.1f} s "
          f"after ferry was started", flush=True)
    smtp.quit()



def _anon_file(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("RssAnon", "RssFile", "RssShmem"):
                out[k] = int(v.split()[0])
    return out.get("RssAnon", 0), out.get("RssFile", 0) + out.get("RssShmem", 0)


@pytest.mark.timeout(3600)
def test_memory_per_idle_account(ferry_factory, xmpp, peers):
    f = ferry_factory(bridges={"email": email_config(peers)})
    domain = f.config.domain("email")
    pid = f.pid
    # one account first, so that the code paths of a session are warm
    first = xmpp("alice")
    register(first, domain, peers, imap_port=peers.env["IMAPS_PORT"], imap_security="tls")
    time.sleep(3)
    base, base_files = _anon_file(pid)
    clients = []
    for i in range(ACCOUNTS):
        c = xmpp(f"load{i + 1:02d}", password=peers.env.get("XMPP_LOAD_PASSWORD", "loadpw"))
        # IMAP over TLS, as real accounts are
        register(c, domain, peers, imap_port=peers.env["IMAPS_PORT"], imap_security="tls")
        clients.append(c)
    time.sleep(5)
    anon, files = _anon_file(pid)
    print(f"\n[bench] {ACCOUNTS} more idle accounts (IMAP IDLE over TLS): private memory "
          f"{base / 1024:.1f} -> {anon / 1024:.1f} MiB = {(anon - base) / ACCOUNTS:.1f} KiB per account; "
          f"mapped files {base_files / 1024:.1f} -> {files / 1024:.1f} MiB; VmRSS {rss_kib(pid) / 1024:.1f} MiB "
          f"({rss_split(pid)})", flush=True)
