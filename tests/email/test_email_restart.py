"""Nothing lost, nothing doubled: ferry restarted while mail arrives, and
Dovecot restarted under a running ferry. Each test has its own ferry."""
import threading
import time

import pytest

from harness.stanza import find, message, presence, text, where

from email_helpers import Mailbox, email_config, jid, register, wait_logged_in


@pytest.fixture
def gw(ferry_factory, peers):
    peers.require("postfix", "dovecot")
    return ferry_factory(bridges={"email": email_config(peers)})


@pytest.fixture
def domain(gw):
    return gw.config.domain("email")


def bodies_from(client, frm, since):
    return [text(s, "body") for s in client.received(message(frm=frm, type="chat"), since=since)
            if text(s, "body")]


def wait_count(client, frm, since, n, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        got = bodies_from(client, frm, since)
        if len(got) >= n:
            return got
        assert time.monotonic() < deadline, f"{len(got)} of {n} messages: {got}"
        time.sleep(0.2)


def test_ferry_restarted_while_20_mails_arrive(gw, alice, domain, peers):
    mb = register(alice, domain, peers)
    bob = Mailbox.create(peers, "rb")
    frm = jid(bob.address, domain)
    m = alice.mark()
    sent = []

    def sender():
        for i in range(20):
            bob.send(mb.address, f"m{i}", f"mail {i}")
            sent.append(i)
            time.sleep(0.1)

    t = threading.Thread(target=sender)
    t.start()
    while len(sent) < 5:
        time.sleep(0.05)
    assert gw.stop() == 0
    while len(sent) < 12:
        time.sleep(0.05)
    gw.start()
    t.join(60)
    got = wait_count(alice, frm, m, 20)
    alice.expect_no(message(frm=frm, type="chat"), within=2.0, since=alice.position())
    got = bodies_from(alice, frm, m)
    assert got == [f"mail {i}" for i in range(20)], got
    # mail that waited while ferry was down carries its date (XEP-0203)
    delayed = [s for s in alice.received(message(frm=frm, type="chat"), since=m)
               if find(s, "{urn:xmpp:delay}delay") is not None]
    assert delayed, "no <delay/> on mail that arrived while ferry was down"


def test_dovecot_restarted_nothing_lost(gw, alice, domain, peers):
    mb = register(alice, domain, peers)
    bob = Mailbox.create(peers, "db")
    frm = jid(bob.address, domain)
    bob.send(mb.address, "before", "before the restart")
    alice.wait_for(message(frm=frm, body="before the restart"), timeout=30)
    m = alice.mark()
    peers.stop("dovecot")
    try:
        alice.wait_for(presence(frm=domain) & where(
            lambda e: "Logged in" not in (text(e, "status") or ""), "not logged in"), since=m, timeout=30)
        # Postfix keeps this one until Dovecot is back
        bob.send(mb.address, "during", "sent while Dovecot was down")
    finally:
        peers.start("dovecot")
    wait_logged_in(alice, domain, since=m, timeout=60)
    bob.send(mb.address, "after", "after the restart")
    got = wait_count(alice, frm, m, 2, timeout=60)
    assert sorted(got) == ["after the restart", "sent while Dovecot was down"], got
    alice.expect_no(message(frm=frm, type="chat"), within=1.0, since=alice.position())
