"""1,000 mails at once into one mailbox: all delivered to XMPP, each once,
in the mailbox's order — and another user's mail is not queued behind them."""
import smtplib
import time
from email.message import EmailMessage

from harness.stanza import message, text

from email_helpers import Mailbox, jid, register


def test_a_thousand_mails_at_once(gw, xmpp, domain, peers):
    alice = xmpp("alice")
    carol = xmpp("carol")
    mb = register(alice, domain, peers)
    other = register(carol, domain, peers)
    sender = Mailbox.create(peers, "flood")
    friend = Mailbox.create(peers, "friend")
    frm = jid(sender.address, domain)
    m_alice, m_carol = alice.mark(), carol.mark()
    n = 1000
    with smtplib.SMTP("127.0.0.1", int(peers.env["SMTP_PORT"])) as s:
        for i in range(n):
            msg = EmailMessage()
            msg["From"], msg["To"], msg["Subject"] = sender.address, mb.address, f"n{i}"
            msg["Message-ID"] = f"<flood{i}.{time.time_ns()}@{sender.user}.localhost>"
            msg.set_content(f"mail {i}")
            s.send_message(msg)
            if i == n // 2:
                # carol's mail arrives in the middle of alice's flood
                friend.send(other.address, "meanwhile", "for carol")
    carol.wait_for(message(frm=jid(friend.address, domain), body="for carol"), since=m_carol, timeout=60)
    carol_done = len([s for s in alice.received(message(frm=frm, type="chat"), since=m_alice)])
    deadline = time.monotonic() + 240
    while True:
        got = [text(s, "body") for s in alice.received(message(frm=frm, type="chat"), since=m_alice)]
        if len(got) >= n:
            break
        assert time.monotonic() < deadline, f"{len(got)} of {n} mails delivered"
        time.sleep(0.5)
    alice.expect_no(message(frm=frm, type="chat"), within=1.0, since=alice.position())
    got = [text(s, "body") for s in alice.received(message(frm=frm, type="chat"), since=m_alice)]
    # Postfix delivers over several LMTP connections at once: the order
    # that counts is the mailbox's (UID order).
    inbox = [m.get_content().strip() for m in mb.folder() if m["From"] == sender.address]
    assert sorted(inbox) == sorted(f"mail {i}" for i in range(n))
    assert got == inbox, "each once, in the mailbox's order"
    assert carol_done < n, "carol's mail waited for the whole of alice's flood"
