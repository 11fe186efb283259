"""The bridge platform (issue 8) through the test network, end to end:
the bridge-wide part reaching an offline user's session through the user
router, a group conversation opened from three addresses (XEP-0033), a
delivery failure reported after a restart answered on the original stanza
id, and a per-network length limit refused with a clear error."""

from harness.stanza import attr, find, has, message, text

from helpers import register


def test_a_webhook_reaches_an_offline_users_session(ferry_factory, xmpp):
    # Sessions on demand: alice's does not run while she is away.
    f = ferry_factory(bridges={"test": {"domain": "test2.localhost", "always_on": False}})
    d = f.config.domain("test")
    alice = xmpp("alice")
    register(alice, d)
    alice.disconnect()
    # After a restart nothing runs for her until something needs her.
    f.restart()
    since = len(f.log())
    r = f.http("POST", "/bridge/test/deliver?to=alice&from=bob", "while you were away")
    assert r.status == 200, r
    # The core started her session for it, and stored the message before
    # the bridge answered: it waits for her in her server's offline store.
    f.wait_for_log(r"session started.*alice@localhost|alice@localhost.*session started", since=since)
    back = xmpp("alice")
    got = back.wait_for(message(frm=f"bob@{d}", body="while you were away"), since=0)
    assert got.get("type") == "chat"
    # Nobody registered carol: the bridge is told, the webhook says so.
    r = f.http("POST", "/bridge/test/deliver?to=carol&from=bob", "hello?")
    assert r.status == 404 and b"carol" in r.body, r


def test_a_group_conversation_from_three_addresses(alice_r, domain):
    assert "http://jabber.org/protocol/address" in alice_r.disco_info(domain).features
    m = alice_r.mark()
    addresses = "".join(
        f"<address type='to' jid='{n}@{domain}'/>" for n in ("bob", "carol", "echo"))
    mid = alice_r.send_message(
        domain, "echo: hello group",
        extra=f"<addresses xmlns='http://jabber.org/protocol/address'>{addresses}</addresses>")
    invite = alice_r.wait_for(message(frm=domain) & has("conference:x"), since=m)
    room = attr(invite, "conference:x", "jid")
    assert room.endswith("@" + domain), room
    assert "bob" in (attr(invite, "conference:x", "reason") or ""), invite
    j = alice_r.join_muc(room, "alice")
    nicks = {p.get("from").split("/", 1)[1] for p in j.occupants}
    assert nicks == {"bob", "carol", "echo"}, nicks
    bodies = [text(h, "body") for h in j.history]
    # The first message went to the group before the invitation: it is in
    # the history. The bot answered there (before the join, or after it).
    assert "echo: hello group" in bodies, bodies
    if "hello group" not in bodies:
        alice_r.wait_for(message(frm=f"{room}/echo", body="hello group", type="groupchat"), since=m)
    mine = next(h for h in j.history if text(h, "body") == "echo: hello group")
    assert mine.get("from") == f"{room}/alice"
    assert all(c.tag != "{http://jabber.org/protocol/address}addresses" for c in mine)
    assert not alice_r.received(message(type="error", id=mid), since=m)
    # The same three people again: the same conversation.
    m = alice_r.mark()
    alice_r.send_message(
        domain, "again",
        extra=f"<addresses xmlns='http://jabber.org/protocol/address'>{addresses}</addresses>")
    alice_r.wait_for(message(frm=f"{room}/alice", body="again", type="groupchat"), since=m)


def test_a_group_needs_people_of_the_network(alice_r, domain):
    m = alice_r.mark()
    mid = alice_r.send_message(
        domain, "hi",
        extra="<addresses xmlns='http://jabber.org/protocol/address'>"
              f"<address type='to' jid='bob@{domain}'/><address type='to' jid='mallory@example.org'/>"
              "</addresses>")
    err = alice_r.wait_for(message(frm=domain, type="error", id=mid), since=m)
    assert "mallory@example.org" in text(err, "error/stanzas:text")


def test_new_group_command(alice_r, domain):
    r = alice_r.command(domain, "new-group")
    r = alice_r.command_complete(r, values={"members": [f"bob@{domain}", "carol"], "subject": "Plans"})
    assert r.status == "completed", r
    assert "#group-" in (r.note or ""), r


def test_a_delivery_failure_after_a_restart_errors_the_original_message(ferry_factory, xmpp):
    f = ferry_factory(bridges={"test": {"domain": "test2.localhost"}})
    d = f.config.domain("test")
    alice = xmpp("alice")
    register(alice, d)
    # bob has no session: the network cannot confirm delivery yet.
    m = alice.mark()
    mid = alice.send_message(f"bob@{d}", "are you there?",
                             extra="<request xmlns='urn:xmpp:receipts'/>")
    alice.expect_no(message(frm=f"bob@{d}") & has("receipts:received"), within=1.0, since=m)
    f.restart()
    m = alice.mark()
    r = f.http("POST", "/bridge/test/fail?account=alice&contact=bob", "bob's number does not exist")
    assert r.status == 200, r
    err = alice.wait_for(message(frm=f"bob@{d}", type="error", id=mid), since=m, timeout=15)
    assert attr(err, "error", "type") == "cancel"
    assert "does not exist" in text(err, "error/stanzas:text")
    # A temporary failure says "wait".
    m = alice.mark()
    mid = alice.send_message(f"bob@{d}", "and now?")
    # Her session handles one thing after the other: once the bot answered
    # a later message, the network has this one.
    alice.send_message(f"echo@{d}", "after")
    alice.wait_for(message(frm=f"echo@{d}", body="after"), since=m)
    r = f.http("POST", "/bridge/test/fail?account=alice&contact=bob&permanent=0", "bob's phone is off")
    assert r.status == 200, r
    err = alice.wait_for(message(frm=f"bob@{d}", type="error", id=mid), since=m)
    assert attr(err, "error", "type") == "wait"


def test_a_network_length_limit_is_refused_with_the_numbers(ferry_factory, xmpp):
    f = ferry_factory(bridges={"test": {"domain": "test2.localhost", "max_message_bytes": 20}})
    d = f.config.domain("test")
    alice = xmpp("alice")
    register(alice, d)
    m = alice.mark()
    ok = alice.send_message(f"echo@{d}", "short enough")
    alice.wait_for(message(frm=f"echo@{d}", body="short enough"), since=m)
    long = alice.send_message(f"echo@{d}", "x" * 30)
    err = alice.wait_for(message(frm=f"echo@{d}", type="error", id=long), since=m)
    assert find(err, "error/stanzas:policy-violation") is not None
    t = text(err, "error/stanzas:text")
    assert "too long for Test network: 30 bytes" in t and "at most 20 bytes" in t, t
    alice.expect_no(message(frm=f"echo@{d}", body="x" * 30), within=0.5, since=m)
    assert ok


def test_a_group_someone_else_opened_invites_the_user_once(alice_r, xmpp, domain):
    bob = xmpp("bob")
    register(bob, domain)
    m = bob.mark()
    # alice opens a group with bob and admin: bob did not ask for it.
    r = alice_r.command(domain, "new-group")
    alice_r.command_complete(r, values={"members": [f"bob@{domain}", f"admin@{domain}"]})
    invite = bob.wait_for(message(frm=domain) & has("conference:x"), since=m)
    room = attr(invite, "conference:x", "jid")
    alice_r.wait_for(message(frm=domain) & has("conference:x", jid=room))
    a = alice_r.join_muc(room, "alice")
    sent = alice_r.mark()
    alice_r.send_message(room, "hi both", type="groupchat")
    alice_r.wait_for(message(frm=f"{room}/alice", body="hi both"), since=sent)
    # What was said before bob's client came is in the history.
    j = bob.join_muc(room, "bob")
    assert "hi both" in [text(h, "body") for h in j.history]
    assert {p.get("from").split("/", 1)[1] for p in j.occupants} >= {"alice", "admin", "echo"}
    assert a.self_presence is not None
    # Invited once.
    assert len(bob.received(message(frm=domain) & has("conference:x", jid=room), since=m)) == 1
