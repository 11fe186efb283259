"""Matrix rooms as multi-user chats through XMPP: invitations, joining by id
and by alias, occupants with roles/affiliations from power levels, messages
both ways with reflection, subject both ways, kicks and bans both ways,
bookmarks, history (MAM with backfill from the homeserver)."""
from harness.stanza import NS, find, findall, has, message, presence, text, where

from matrix_helpers import MatrixUser, contact_jid, register, room_jid, unique, wait_until

MUC_USER = "muc_user:x"


def _item(p):
    return find(p, "muc_user:x/muc_user:item")


def _setup(alice, domain, peers, alias=None, levels=None):
    me = register(alice, domain, peers)
    bob = MatrixUser.register(peers.matrix_url, "bob")
    body = {"name": "Ferry test room", "topic": "first topic", "invite": [me.user_id],
            "power_level_content_override": {"users": levels or {me.user_id: 100}}}
    if alias:
        body["room_alias_name"] = alias
        body["preset"] = "public_chat"
    room = bob.create_room(**body)
    return me, bob, room


def test_invitation_join_occupants_messages_subject(alice, domain, peers):
    me, bob, room = _setup(alice, domain, peers)
    rjid = room_jid(room, domain)
    # The Matrix invitation reaches XMPP (XEP-0249).
    inv = alice.wait_for(message() & has("conference:x", jid=rjid), timeout=30)
    assert bob.user_id in text(inv, "body")
    j = alice.join_muc(rjid, "alice")
    assert j.self_presence is not None
    items = {o.get("from").split("/", 1)[1]: _item(o) for o in j.occupants}
    bob_nick = bob.user_id[1:].split(":")[0]
    assert items[bob_nick].get("affiliation") == "owner", items
    assert items[bob_nick].get("role") == "moderator"
    assert _item(j.self_presence).get("affiliation") == "owner"  # power level 100
    assert j.subject == "first topic"
    my_nick = j.self_presence.get("from").split("/", 1)[1]

    bob.send(room, "hello room")
    m = alice.wait_for(message(frm=f"{rjid}/{bob_nick}", type="groupchat", body="hello room"))
    assert find(m, "sid:stanza-id") is not None

    mid = alice.send_message(rjid, "hello matrix", type="groupchat")
    bob.wait_text(room, "hello matrix")
    refl = alice.wait_for(message(frm=f"{rjid}/{my_nick}", type="groupchat", body="hello matrix"))
    assert refl.get("id") == mid or find(refl, "sid:origin-id") is not None

    # subject both ways
    bob.state(room, "m.room.topic", {"topic": "from matrix"})
    alice.wait_for(message(frm=rjid) & has("subject") & where(lambda s: text(s, "subject") == "from matrix"))
    alice.send(f"<message to='{rjid}' type='groupchat'><subject>from xmpp</subject></message>")
    bob.wait(room, lambda e: e.get("type") == "m.room.topic" and e["content"]["topic"] == "from xmpp",
             "the topic")


def test_kick_and_ban_both_ways(alice, domain, peers):
    me, bob, room = _setup(alice, domain, peers)
    rjid = room_jid(room, domain)
    carol = MatrixUser.register(peers.matrix_url, "carol")
    dave = MatrixUser.register(peers.matrix_url, "dave")
    for u in (carol, dave):
        bob.invite(room, u.user_id)
        u.join(room)
    alice.wait_for(message() & has("conference:x", jid=rjid), timeout=30)
    j = alice.join_muc(rjid, "alice")
    nicks = {o.get("from").split("/", 1)[1] for o in j.occupants}
    carol_nick = carol.user_id[1:].split(":")[0]
    dave_nick = dave.user_id[1:].split(":")[0]
    assert {carol_nick, dave_nick} <= nicks, nicks

    # XMPP kick (role none) -> Matrix kick
    alice.iq(f"<query xmlns='{NS['muc_admin']}'><item nick='{carol_nick}' role='none'>"
             "<reason>out</reason></item></query>", to=rjid, type="set")
    bob.wait(room, lambda e: e.get("type") == "m.room.member" and e.get("state_key") == carol.user_id
             and e["content"]["membership"] == "leave" and e["sender"] == me.user_id, "carol kicked")
    # XMPP ban (outcast) -> Matrix ban
    alice.iq(f"<query xmlns='{NS['muc_admin']}'><item jid='{contact_jid(dave.user_id, domain)}' "
             "affiliation='outcast'/></query>", to=rjid, type="set")
    bob.wait(room, lambda e: e.get("type") == "m.room.member" and e.get("state_key") == dave.user_id
             and e["content"]["membership"] == "ban", "dave banned")
    # Matrix kick of someone -> unavailable presence with 307
    erin = MatrixUser.register(peers.matrix_url, "erin")
    bob.invite(room, erin.user_id)
    erin.join(room)
    erin_nick = erin.user_id[1:].split(":")[0]
    alice.wait_for(presence(frm=f"{rjid}/{erin_nick}"), timeout=30)
    bob.call("POST", f"/_matrix/client/v3/rooms/{room}/kick", {"user_id": erin.user_id, "reason": "bye"})
    p = alice.wait_for(presence(frm=f"{rjid}/{erin_nick}", type="unavailable"), timeout=30)
    assert find(p, "muc_user:x/muc_user:status[@code='307']") is not None, p


def test_join_by_alias(alice, domain, peers):
    alias_local = unique("ferryalias")
    me, bob, room = _setup(alice, domain, peers, alias=alias_local)
    alias = f"#{alias_local}:{peers.env.get('MATRIX_SERVER_NAME', 'localhost')}"
    ajid = room_jid(alias, domain)
    j = alice.join_muc(ajid, "alice")
    assert j.self_presence is not None
    bob.send(room, "via alias")
    alice.wait_for(message(type="groupchat", body="via alias") & where(lambda s: s.get("from", "").startswith(ajid)))


def test_bookmarks_for_matrix_rooms(alice, domain, peers):
    me, bob, room = _setup(alice, domain, peers)
    rjid = room_jid(room, domain)
    # The user joins from elsewhere (accepting the invitation on Matrix).
    MatrixUser.login(peers.matrix_url, me.user_id, me.password).join(room)

    def bookmarked():
        r = alice.iq("<pubsub xmlns='http://jabber.org/protocol/pubsub'>"
                     "<items node='urn:xmpp:bookmarks:1'/></pubsub>", allow_error=True)
        return any(i.get("id") == rjid for i in r.iter("{http://jabber.org/protocol/pubsub}item"))
    wait_until(bookmarked, what="the room in the bookmarks")


def test_history_backfill_through_mam(alice, domain, peers):
    me, bob, room = _setup(alice, domain, peers)
    rjid = room_jid(room, domain)
    for i in range(5):
        bob.send(room, f"old {i}")
    alice.wait_for(message() & has("conference:x", jid=rjid), timeout=30)
    alice.join_muc(rjid, "alice")
    bob.send(room, "new one")
    alice.wait_for(message(type="groupchat", body="new one"))
    page = alice.mam_query(rjid, max=10, before="")
    bodies = page.bodies
    # The messages from before the join come from the homeserver, in order.
    assert [b for b in bodies if b.startswith("old ") or b == "new one"] == \
        [f"old {i}" for i in range(5)] + ["new one"], bodies
