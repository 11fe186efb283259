"""Group mail threads, end to end: a mail to the user and two others opens
a group room by itself (the user is invited once; the members are its
occupants, the mail is in its history), what the user writes there goes to
everyone (reply-all, threaded), and the others' replies come back into the
room. A group the user opens from XMPP (XEP-0033 addresses) starts a thread
with its subject, and replies to it land in that room."""
from harness.stanza import attr, has, message, text

from email_helpers import Mailbox, jid

ADDRESS_NS = "http://jabber.org/protocol/address"


def test_a_group_thread_opened_by_a_mail_with_reply_all(me_groups, domain, peers):
    alice, mb = me_groups
    gus = Mailbox.create(peers, "gus")
    hal = Mailbox.create(peers, "hal")
    m = alice.mark()
    root = gus.send([mb.address, hal.address], "Trip", body="Where shall we go?")
    invite = alice.wait_for(message(frm=domain) & has("conference:x"), since=m, timeout=30)
    room = attr(invite, "conference:x", "jid")
    assert room.endswith("@" + domain) and room.startswith("group-"), room
    j = alice.join_muc(room, mb.address)
    nicks = {p.get("from").split("/", 1)[1] for p in j.occupants}
    assert {gus.address, hal.address} <= nicks, nicks
    if "Where shall we go?" not in [text(h, "body") for h in j.history]:
        alice.wait_for(message(frm=f"{room}/{gus.address}", body="Where shall we go?"), since=m)

    # reply-all, threaded
    alice.send_message(room, "The sea!", type="groupchat")
    for box, n in ((gus, 1), (hal, 2)):
        got = box.wait_folder(n)[-1]
        assert got["Subject"] == "Re: Trip", got["Subject"]
        assert got["In-Reply-To"] == f"<{root}>"
        assert gus.address in got["To"] and hal.address in got["To"], got["To"]
        assert got.get_content().strip() == "The sea!"

    # someone else's reply-all comes back into the room
    hal.send([mb.address, gus.address], "Re: Trip", body="Yes, the sea",
             headers={"In-Reply-To": f"<{root}>", "References": f"<{root}>"})
    alice.wait_for(message(frm=f"{room}/{hal.address}", body="Yes, the sea", type="groupchat"),
                   since=m, timeout=30)


def test_a_group_opened_from_xmpp_starts_a_thread(me_groups, domain, peers):
    alice, mb = me_groups
    ida = Mailbox.create(peers, "ida")
    jon = Mailbox.create(peers, "jon")
    m = alice.mark()
    addresses = "".join(f"<address type='to' jid='{jid(b.address, domain)}'/>" for b in (ida, jon))
    alice.send_message(domain, "Dinner on Friday?",
                       extra=f"<subject>Dinner</subject><addresses xmlns='{ADDRESS_NS}'>{addresses}</addresses>")
    invite = alice.wait_for(message(frm=domain) & has("conference:x"), since=m, timeout=30)
    room = attr(invite, "conference:x", "jid")
    first = ida.wait_folder(1)[0]
    assert jon.address in first["To"] and ida.address in first["To"], first["To"]
    assert first["Subject"] == "Dinner", first["Subject"]
    assert first.get_content().strip() == "Dinner on Friday?"
    root = first["Message-ID"]
    jon.send([mb.address, ida.address], "Re: Dinner", body="Friday works",
             headers={"In-Reply-To": root, "References": root})
    j = alice.join_muc(room, mb.address)
    if "Friday works" not in [text(h, "body") for h in j.history]:
        alice.wait_for(message(frm=f"{room}/{jon.address}", body="Friday works"), since=m, timeout=30)
