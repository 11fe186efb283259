"""Group mail threads, end to end: a mail to the user and two others opens
a group room by itself (the user is invited once; the members are its
occupants, the mail is in its history), what the user writes there goes to
everyone (reply-all, threaded), and the others' replies come back into the
room. A group the user opens from XMPP (XEP-0033 addresses) starts a thread
with its subject, and replies to it land in that room."""
from harness.stanza import attr, has, message, text

from email_helpers import Mailbox, jid, wait_until

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


def _list_mail(sender, name, to, list_id, subject, body, post=None, refs=None):
    """A mail as a list server relays it: from a member (with a display
    name), List-Id, and List-Post when the list takes posts."""
    import email.utils
    from email.message import EmailMessage
    from email_helpers import unique
    m = EmailMessage()
    m["From"] = f"{name} <{sender.address}>"
    m["To"] = to
    m["Subject"] = subject
    m["Date"] = email.utils.formatdate(localtime=True)
    mid = f"{unique('l')}@{sender.user}.localhost"
    m["Message-ID"] = f"<{mid}>"
    m["List-Id"] = list_id
    if post:
        m["List-Post"] = f"<mailto:{post}>"
    if refs:
        m["In-Reply-To"] = refs
        m["References"] = refs
    m.set_content(body)
    return mid, m.as_bytes()


def test_a_mailing_list_is_one_room_and_posts_go_to_its_address(me_groups, domain, peers):
    """Two mails of a list (with List-Post) open one room, unprompted,
    named and titled after the list, each post from its sender's name; what
    the user writes there goes to the posting address as a reply to the
    thread. A list without List-Post refuses the user's message clearly."""
    alice, mb = me_groups
    lst = Mailbox.create(peers, "devlist")
    kim = Mailbox.create(peers, "kim")
    lou = Mailbox.create(peers, "lou")
    m = alice.mark()
    list_id = f"Ferry developers <{lst.user}.lists.localhost>"
    root, raw = _list_mail(kim, "Kim Lee", lst.address, list_id, "Release 1.0",
                           "Shall we release on Monday?", post=lst.address)
    kim.send_raw(mb.address, raw)
    invite = alice.wait_for(message(frm=domain) & has("conference:x"), since=m, timeout=30)
    room = attr(invite, "conference:x", "jid")
    assert room.startswith("list-") and room.endswith("@" + domain), room
    second, raw = _list_mail(lou, "Lou Ma", lst.address, list_id, "Re: Release 1.0",
                             "Monday is fine.", post=lst.address, refs=f"<{root}>")
    lou.send_raw(mb.address, raw)
    j = alice.join_muc(room, mb.address)
    assert j.subject == "Ferry developers", j.subject

    def posts():
        got = j.history + alice.received(message(type="groupchat"), since=m)
        return {(x.get("from"), text(x, "body")) for x in got}
    wait_until(lambda: (f"{room}/Lou Ma", "Monday is fine.") in posts(), what="Lou's post")
    assert (f"{room}/Kim Lee", "Release 1.0\n\nShall we release on Monday?") in posts(), posts()
    # only one room: the second post did not invite again
    assert len(alice.received(message(frm=domain) & has("conference:x"), since=m)) == 1
    # the posters are not added to the roster
    assert jid(kim.address, domain) not in alice.roster()

    alice.send_message(room, "Ship it!", type="groupchat")
    got = lst.wait_folder(1)[0]
    assert got["Subject"] == "Re: Release 1.0", got["Subject"]
    assert got["In-Reply-To"] == f"<{second}>"
    assert f"<{root}>" in got["References"] and f"<{second}>" in got["References"]
    assert got.get_content().strip() == "Ship it!"
    assert kim.count() == 0 and lou.count() == 0, "the post went to the list only"

    # a list that takes no posts (no List-Post): a clear error, nothing sent
    m = alice.mark()
    _, raw = _list_mail(kim, "Kim Lee", "news@lists.localhost", "<news.lists.localhost>",
                        "Newsletter", "This week in Ferry")
    kim.send_raw(mb.address, raw)
    invite = alice.wait_for(message(frm=domain) & has("conference:x"), since=m, timeout=30)
    news = attr(invite, "conference:x", "jid")
    assert news != room
    alice.join_muc(news, mb.address)
    mid = alice.send_message(news, "Thanks!", type="groupchat")
    err = alice.wait_for(message(frm=news, type="error"), since=m, timeout=20)
    assert err.get("id") == mid
    reason = text(err, "error/{urn:ietf:params:xml:ns:xmpp-stanzas}text") or ""
    assert "List-Post" in reason and "not sent" in reason, reason


def test_a_bounce_in_a_group_is_an_error_on_the_room_message(me_groups, domain, peers):
    """A group mail one of whose addresses does not exist: the mail server's
    bounce comes back as an error on the groupchat message's id, from the
    room, not as a notice and not lost."""
    alice, mb = me_groups
    kim = Mailbox.create(peers, "kim")
    m = alice.mark()
    members = [jid(kim.address, domain), jid("nobody@nowhere.invalid", domain)]
    addresses = "".join(f"<address type='to' jid='{j}'/>" for j in members)
    alice.send_message(domain, "Lunch?",
                       extra=f"<subject>Lunch</subject><addresses xmlns='{ADDRESS_NS}'>{addresses}</addresses>")
    invite = alice.wait_for(message(frm=domain) & has("conference:x"), since=m, timeout=30)
    room = attr(invite, "conference:x", "jid")
    kim.wait_folder(1)
    alice.join_muc(room, mb.address)
    m = alice.mark()
    mid = alice.send_message(room, "Or dinner?", type="groupchat")
    err = alice.wait_for(message(frm=room, type="error", id=mid), since=m, timeout=45)
    reason = text(err, "error/{urn:ietf:params:xml:ns:xmpp-stanzas}text") or ""
    assert "the mail server reported" in reason, reason
    alice.expect_no(message(frm=domain, body_contains="not delivered"), within=0.5, since=m)
