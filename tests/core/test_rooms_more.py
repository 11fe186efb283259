"""More of the rooms: invitations both ways (XEP-0045 mediated from XMPP,
XEP-0249 direct to XMPP), moderation (XEP-0425), persistent rooms archived
while no client is joined, bookmarks (XEP-0402 through XEP-0356) and the
invitation fallback without privileges."""

from harness.stanza import NS, attr, find, findall, has, message, presence, text

from helpers import register, wait_until


def room(name, domain):
    return f"#{name}@{domain}"


def test_invitations_both_ways(xmpp, domain):
    alice = xmpp("alice")
    bob = xmpp("bob")
    register(alice, domain)
    register(bob, domain)
    r = room("invites", domain)
    alice.join_muc(r, "alice")
    mb = bob.mark()
    # a mediated invitation (XEP-0045) to a network user's JID
    alice.send(f"<message to='{r}'><x xmlns='{NS['muc_user']}'><invite to='bob@{domain}'>"
               "<reason>come in</reason></invite></x></message>")
    inv = bob.wait_for(message() & has("conference:x"), since=mb)
    assert attr(inv, "conference:x", "jid") == r
    assert "come in" in (attr(inv, "conference:x", "reason") or text(inv, "body"))
    # inviting someone who is not on the network is refused with a reason
    m = alice.mark()
    alice.send(f"<message to='{r}' id='inv2'><x xmlns='{NS['muc_user']}'><invite to='someone@elsewhere.example'/></x></message>")
    err = alice.wait_for(message(type="error", id="inv2"), since=m)
    assert text(err, "error/stanzas:text")


def test_moderation_retracts_another_persons_message(xmpp, domain):
    admin = xmpp("admin")
    carol = xmpp("carol")
    register(admin, domain)
    register(carol, domain)
    r = room("moderated", domain)
    admin.join_muc(r, "boss")
    carol.join_muc(r, "carol")
    mc = carol.mark()
    carol.send_message(r, "spam spam", type="groupchat")
    seen = admin.wait_for(message(frm=f"{r}/carol", body="spam spam"))
    sid = attr(seen, "sid:stanza-id", "id")
    admin.iq(f"<moderate xmlns='urn:xmpp:message-moderate:1' id='{sid}'>"
             f"<retract xmlns='{NS['retract']}'/><reason>no spam</reason></moderate>", to=r, type="set")
    got = carol.wait_for(message(frm=r) & has("retract:retract"), since=mc)
    assert find(got, "retract:retract/{urn:xmpp:message-moderate:1}moderated") is not None
    # a non-moderator cannot
    e = carol.iq(f"<moderate xmlns='urn:xmpp:message-moderate:1' id='{sid}'>"
                 f"<retract xmlns='{NS['retract']}'/></moderate>", to=r, type="set", allow_error=True)
    assert e.get("type") == "error" and text(e, "error/stanzas:text")


def test_persistent_room_keeps_archiving_while_no_client_is_in(gw, xmpp, domain):
    alice = xmpp("alice")
    register(alice, domain)
    r = room("persistent", domain)
    alice.join_muc(r, "alice")
    form = alice.command(r, "configure")
    done = alice.command_complete(form, {"persistent": True, "record_history": True})
    assert done.status == "completed"
    alice.leave_muc(r, "alice")
    gw.http("POST", "/bridge/test/say?room=%23persistent&from=zoe", "while you were out")
    page = wait_until(lambda: (lambda p: p if "while you were out" in p.bodies else None)(
        alice.mam_query(r, max=10, before="")), what="the message archived")
    assert page
    j = alice.join_muc(r, "alice")
    assert "while you were out" in [text(h, "body") for h in j.history]


def test_bookmark_published_with_privileges(xmpp, domain):
    alice = xmpp("alice")
    register(alice, domain)
    def bookmarks():
        r = alice.iq(f"<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:xmpp:bookmarks:1'/></pubsub>",
                     allow_error=True)
        items = r.iter("{http://jabber.org/protocol/pubsub}item")
        return [i.get("id") for i in items] or None
    ids = wait_until(bookmarks, what="a bookmark for the lounge")
    assert room("lounge", domain) in ids


def test_invitation_instead_of_bookmark_without_privileges(ferry_factory, xmpp):
    f = ferry_factory(bridges={"test": {"domain": "test2.localhost"}})
    d = f.config.domain("test")
    bob = xmpp("bob")
    m = bob.mark()
    register(bob, d)
    inv = bob.wait_for(message(frm=d) & has("conference:x"), since=m)
    assert attr(inv, "conference:x", "jid") == room("lounge", d)
    assert "privilege" in text(inv, "body")
