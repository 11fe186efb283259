"""The Matrix bridge through XMPP end to end: a real XMPP client (slixmpp)
through Prosody and the ferry binary on one side, a real Synapse user on the
other (client-server API). Discovery, registration, direct chats both ways,
the roster, features of messages."""
import base64

import pytest

from harness.stanza import find, findall, has, message, text, to_string
from harness.xmpp import StanzaError

from matrix_helpers import MatrixUser, contact_jid, q, register, wait_until


def test_disco_says_matrix_gateway(alice, domain):
    info = alice.disco_info(domain)
    assert info.has_identity("gateway", "matrix")
    assert "jabber:iq:register" in info.features
    assert "jid\\20escaping" in info.features


def test_registration_form_and_clear_errors(alice, domain, peers):
    r = alice.command(domain, "jabber:iq:register")
    for field in ("homeserver", "username", "password", "device"):
        assert field in r.form, r.form
    assert r.form["password"].type == "text-private"
    alice.command_cancel(r)
    user = MatrixUser.register(peers.matrix_url, "reg")
    with pytest.raises(StanzaError) as e:
        alice.register(domain, {"homeserver": peers.matrix_url, "username": user.user_id,
                                "password": "wrong"})
    assert e.value.condition == "not-authorized", e.value
    assert "refused" in (e.value.text or ""), e.value.text
    with pytest.raises(StanzaError) as e:
        alice.register(domain, {"homeserver": "http://127.0.0.1:9", "username": "x",
                                "password": "y"})
    assert "127.0.0.1:9" in (e.value.text or ""), e.value.text
    # The good password registers, through the ad-hoc command this time.
    r = alice.command(domain, "jabber:iq:register")
    r = alice.command_complete(r, {"homeserver": peers.matrix_url, "username": user.user_id,
                                   "password": user.password})
    assert r.status == "completed", r.notes


def test_direct_chat_both_ways_and_roster(alice, domain, peers):
    me = register(alice, domain, peers)
    bob = MatrixUser.register(peers.matrix_url, "bob")
    bob_jid = contact_jid(bob.user_id, domain)
    room = bob.create_dm(me.user_id)
    # Ferry accepts the direct chat; Bob appears in the roster.
    wait_until(lambda: bob_jid in alice.roster(), what="bob in the roster")
    bob.send(room, "hello from matrix")
    m = alice.wait_for(message(frm=bob_jid, type="chat", body="hello from matrix"), timeout=30)
    assert find(m, "sid:stanza-id") is not None or m.get("id")
    alice.send_message(bob_jid, "hello from xmpp", type="chat")
    bob.wait_text(room, "hello from xmpp")


def test_roster_name_and_avatar_of_a_matrix_contact(alice, domain, peers):
    me = register(alice, domain, peers)
    bob = MatrixUser.register(peers.matrix_url, "bob")
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(200))
    mxc = bob.upload(png, "image/png", "me.png")
    bob.call("PUT", f"/_matrix/client/v3/profile/{q(bob.user_id)}/displayname",
             {"displayname": "Bob Builder"})
    bob.call("PUT", f"/_matrix/client/v3/profile/{q(bob.user_id)}/avatar_url", {"avatar_url": mxc})
    bob_jid = contact_jid(bob.user_id, domain)
    bob.create_dm(me.user_id)
    # The roster shows Bob's display name, his vCard has the name and avatar.
    wait_until(lambda: (alice.roster().get(bob_jid) or {}).get("name") == "Bob Builder",
               what="bob's name in the roster")
    r = alice.iq("<vCard xmlns='vcard-temp'/>", to=bob_jid)
    assert text(r, "{vcard-temp}vCard/{vcard-temp}FN") == "Bob Builder"
    assert text(r, "{vcard-temp}vCard/{vcard-temp}PHOTO/{vcard-temp}TYPE") == "image/png"
    binval = text(r, "{vcard-temp}vCard/{vcard-temp}PHOTO/{vcard-temp}BINVAL")
    assert base64.b64decode("".join(binval.split())) == png
    # A rename on Matrix renames the roster entry.
    bob.call("PUT", f"/_matrix/client/v3/profile/{q(bob.user_id)}/displayname",
             {"displayname": "Robert"})
    wait_until(lambda: (alice.roster().get(bob_jid) or {}).get("name") == "Robert",
               what="the new name in the roster")


def _dm(alice, domain, peers):
    me = register(alice, domain, peers)
    bob = MatrixUser.register(peers.matrix_url, "bob")
    bob_jid = contact_jid(bob.user_id, domain)
    room = bob.create_dm(me.user_id)
    wait_until(lambda: bob_jid in alice.roster(), what="bob in the roster")
    bob.wait(room, lambda e: e.get("type") == "m.room.member" and e.get("state_key") == me.user_id
             and e["content"].get("membership") == "join", "ferry joined")
    return me, bob, bob_jid, room


def test_features_from_matrix(alice, domain, peers):
    me, bob, bob_jid, room = _dm(alice, domain, peers)
    e1 = bob.send(room, "original")
    x1 = alice.wait_for(message(frm=bob_jid, body="original")).get("id")
    # edit -> XEP-0308
    bob.send_event(room, "m.room.message", {
        "msgtype": "m.text", "body": "* fixed",
        "m.new_content": {"msgtype": "m.text", "body": "fixed"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": e1}})
    alice.wait_for(message(frm=bob_jid, body="fixed") & has("correct:replace", id=x1))
    # reactions -> XEP-0444 (the full set; removal empties it)
    r1 = bob.send_event(room, "m.reaction", {"m.relates_to": {
        "rel_type": "m.annotation", "event_id": e1, "key": "👍"}})
    m = alice.wait_for(message(frm=bob_jid) & has("reactions:reactions", id=x1))
    assert [r.text for r in findall(m, "reactions:reactions/reactions:reaction")] == ["👍"]
    bob.redact(room, r1)
    m = alice.wait_for(message(frm=bob_jid) & has("reactions:reactions", id=x1))
    assert findall(m, "reactions:reactions/reactions:reaction") == []
    # reply -> XEP-0461
    bob.send(room, "answer", **{"m.relates_to": {"m.in_reply_to": {"event_id": e1}}})
    m = alice.wait_for(message(frm=bob_jid) & has("reply:reply", id=x1))
    assert "answer" in text(m, "body")
    # formatting -> XHTML-IM / styling, sanitised
    bob.send(room, "bold", format="org.matrix.custom.html",
             formatted_body="<b>bold</b><script>alert(1)</script>")
    m = alice.wait_for(message(frm=bob_jid) & has("xhtml:html"))
    assert "alert" not in to_string(m)
    assert text(m, "body") == "*bold*"
    # notice and emote
    bob.send(room, "waves", msgtype="m.emote")
    alice.wait_for(message(frm=bob_jid, body="/me waves"))
    # typing -> XEP-0085
    bob.typing(room, True)
    alice.wait_for(message(frm=bob_jid) & has("chatstates:composing"))
    # redaction -> XEP-0424
    bob.redact(room, e1)
    alice.wait_for(message(frm=bob_jid) & has("retract:retract", id=x1))


def test_features_from_xmpp(alice, domain, peers):
    me, bob, bob_jid, room = _dm(alice, domain, peers)
    e2 = bob.send(room, "question")
    x2 = alice.wait_for(message(frm=bob_jid, body="question")).get("id")

    mid = alice.send_message(bob_jid, "from xmpp")
    ev = bob.wait_text(room, "from xmpp")
    # XEP-0308 -> m.replace
    alice.send_message(bob_jid, "from xmpp, fixed",
                       extra=f"<replace xmlns='urn:xmpp:message-correct:0' id='{mid}'/>")
    bob.wait(room, lambda e: e["content"].get("m.relates_to", {}).get("rel_type") == "m.replace"
             and e["content"]["m.relates_to"].get("event_id") == ev["event_id"]
             and e["content"]["m.new_content"]["body"] == "from xmpp, fixed", "the edit")
    # XEP-0444 -> m.reaction
    alice.send(f"<message to='{bob_jid}' type='chat' id='re1'><reactions xmlns='urn:xmpp:reactions:0' "
               f"id='{x2}'><reaction>🎉</reaction></reactions><store xmlns='urn:xmpp:hints'/></message>")
    bob.wait(room, lambda e: e.get("type") == "m.reaction"
             and e["content"]["m.relates_to"] == {"rel_type": "m.annotation", "event_id": e2, "key": "🎉"},
             "the reaction")
    # XEP-0461 -> m.in_reply_to
    alice.send_message(bob_jid, "my answer",
                       extra=f"<reply xmlns='urn:xmpp:reply:0' to='{bob_jid}' id='{x2}'/>")
    bob.wait(room, lambda e: e["content"].get("body") == "my answer"
             and e["content"].get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id") == e2,
             "the reply")
    # XEP-0393 styling -> HTML
    alice.send_message(bob_jid, "this is *strong*")
    bob.wait(room, lambda e: e["content"].get("formatted_body", "").find("<strong>strong</strong>") >= 0,
             "formatted body")
    # XEP-0085 -> typing, XEP-0333 -> read receipt
    alice.send(f"<message to='{bob_jid}' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>")
    bob.wait(room, lambda e: e.get("type") == "m.typing" and me.user_id in e["content"]["user_ids"], "typing")
    alice.send(f"<message to='{bob_jid}' type='chat'><displayed xmlns='urn:xmpp:chat-markers:0' id='{x2}'/></message>")
    bob.wait(room, lambda e: e.get("type") == "m.receipt" and e2 in e["content"], "read receipt")
    # XEP-0424 -> redaction
    alice.send_message(bob_jid, None, extra=f"<retract xmlns='urn:xmpp:message-retract:1' id='{mid}'/>"
                       "<store xmlns='urn:xmpp:hints'/>")
    bob.wait(room, lambda e: e.get("type") == "m.room.redaction"
             and ev["event_id"] in (e.get("redacts"), e["content"].get("redacts")), "the redaction")


def test_writing_to_a_new_contact_starts_an_encrypted_direct_chat(alice, domain, peers):
    register(alice, domain, peers)
    carol = MatrixUser.register(peers.matrix_url, "carol")
    alice.send_message(contact_jid(carol.user_id, domain), "hi carol")
    room = carol.wait_invite()
    carol.join(room)
    enc = carol.get_state(room, "m.room.encryption")
    assert enc["algorithm"] == "m.megolm.v1.aes-sha2"
    # This Python client has no Olm: it sees the message, encrypted.
    carol.wait(room, lambda e: e.get("type") == "m.room.encrypted", "the encrypted message")


def test_own_messages_from_another_matrix_client(alice, domain, peers):
    me, bob, bob_jid, room = _dm(alice, domain, peers)
    alice.iq("<enable xmlns='urn:xmpp:carbons:2'/>", type="set")
    # "Element": another login of the same Matrix account.
    element = MatrixUser.login(peers.matrix_url, me.user_id, me.password)
    m = alice.mark()
    element.send(room, "sent from element")
    # The server sends it as alice's own message (XEP-0356), to bob: her
    # clients get it as a carbon of a message she sent.
    sent = alice.wait_for(message() & has("{urn:xmpp:carbons:2}sent"), since=m, timeout=30)
    inner = find(sent, "{urn:xmpp:carbons:2}sent/forward:forwarded/message")
    assert inner.get("from").startswith("alice@localhost")
    assert inner.get("to") == bob_jid
    assert text(inner, "body") == "sent from element"
    # What ferry itself sends is not echoed back as an own message.
    m = alice.mark()
    alice.send_message(bob_jid, "through ferry")
    bob.wait_text(room, "through ferry")
    alice.expect_no(message() & has("{urn:xmpp:carbons:2}sent"), within=3, since=m)


def test_writing_right_after_ferry_joins_a_direct_chat_uses_it(alice, domain, peers):
    # Bob opens a direct chat; Ferry joins it. Writing to Bob the moment it
    # has (before the homeserver's m.direct update comes back to Ferry) must
    # use that chat, not start a second one.
    me = register(alice, domain, peers)
    bob = MatrixUser.register(peers.matrix_url, "bob")
    bob_jid = contact_jid(bob.user_id, domain)
    room = bob.create_room(preset="trusted_private_chat", is_direct=True, invite=[me.user_id])
    bob.wait(room, lambda e: e.get("type") == "m.room.member" and e.get("state_key") == me.user_id
             and e["content"].get("membership") == "join", "ferry joined", timeout=30)
    alice.send_message(bob_jid, "right away", type="chat")
    bob.wait_text(room, "right away")
    alice.send_message(bob_jid, "and again", type="chat")
    bob.wait_text(room, "and again")
    bob.sync(timeout=2000)
    assert not bob.invites, f"a second direct chat was started: {bob.invites}"
