"""Rooms hosted by the gateway (XEP-0045) for the test network: the join
sequence in the exact order of the XEP, several clients behind one nick,
reflection with stanza-id, history, MAM paging (XEP-0313), nick changes,
leaving, self-ping (XEP-0410), moderation and configuration."""
import pytest

from harness.stanza import NS, attr, find, findall, has, message, presence, text, where
from harness.xmpp import StanzaError, ping

from helpers import register, wait_until


@pytest.fixture
def bob_r(xmpp, domain):
    c = xmpp("bob")
    register(c, domain)
    return c


def room(name, domain):
    return f"#{name}@{domain}"


def codes(st):
    return {s.get("code") for s in findall(st, "muc_user:x/muc_user:status")}


def test_join_follows_the_exact_xep0045_order(alice_r, bob_r, domain):
    r = room("orderly", domain)
    # alice's archive of the room gets a line while she is in it
    alice_r.join_muc(r, "alice")
    bob_r.join_muc(r, "bob")
    bob_r.send_message(r, "before alice came", type="groupchat")
    alice_r.wait_for(message(frm=f"{r}/bob", body="before alice came"))
    alice_r.leave_muc(r, "alice")
    j = alice_r.join_muc(r, "alice")
    kinds = j.kinds()
    # every other occupant, then self-presence (110) last, then history, then the subject
    assert kinds[:2] == ["presence", "presence"], kinds
    assert kinds[2] == "self-presence", kinds
    assert kinds[-1] == "subject", kinds
    assert all(k == "history" for k in kinds[3:-1]), kinds
    assert "before alice came" in [text(h, "body") for h in j.history]
    nicks = {p.get("from").split("/", 1)[1] for p in j.occupants}
    assert nicks == {"echo", "bob"}
    assert "110" in codes(j.self_presence)
    # non-anonymous: real JIDs and occupant ids
    bob_p = next(p for p in j.occupants if p.get("from").endswith("/bob"))
    assert attr(bob_p, "muc_user:x/muc_user:item", "jid") == f"bob@{domain}"
    assert attr(bob_p, "occupant_id:occupant-id", "id")
    assert attr(bob_p, "muc_user:x/muc_user:item", "role") == "participant"
    echo_p = next(p for p in j.occupants if p.get("from").endswith("/echo"))
    assert attr(echo_p, "muc_user:x/muc_user:item", "affiliation") == "owner"
    # history carries delay and stanza-id
    h = next(h for h in j.history if text(h, "body") == "before alice came")
    assert find(h, "delay:delay") is not None
    assert attr(h, "sid:stanza-id", "by") == r


def test_lounge_has_a_subject_and_an_empty_room_an_empty_subject(alice_r, domain):
    j = alice_r.join_muc(room("lounge", domain), "alice")
    assert j.subject, "the lounge has a subject"
    j2 = alice_r.join_muc(room("empty-subject", domain), "alice")
    assert j2.subject == ""
    assert find(j2.subject_message, "body") is None


def test_reflection_keeps_the_id_and_adds_a_stanza_id(alice_r, bob_r, domain):
    r = room("reflect", domain)
    alice_r.join_muc(r, "alice")
    bob_r.join_muc(r, "bob")
    m = alice_r.mark()
    mid = alice_r.send_message(r, "hello room", type="groupchat")
    refl = alice_r.wait_for(message(frm=f"{r}/alice", type="groupchat", body="hello room"), since=m)
    assert refl.get("id") == mid
    assert attr(refl, "sid:origin-id", "id") == mid
    sid = attr(refl, "sid:stanza-id", "id")
    assert sid and attr(refl, "sid:stanza-id", "by") == r
    # bob gets it from alice's nick with his own stanza-id
    got = bob_r.wait_for(message(frm=f"{r}/alice", body="hello room"))
    assert attr(got, "sid:stanza-id", "by") == r
    # the archive has it under the same id
    page = alice_r.mam_query(r, max=5, before="")
    assert sid in page.ids


def test_several_clients_share_one_nick(xmpp, domain):
    a1 = xmpp("alice", resource="one")
    register(a1, domain)
    a2 = xmpp("alice", resource="two")
    r = room("shared", domain)
    a1.join_muc(r, "alice")
    j = a2.join_muc(r, "another")  # asks another nick: gets the existing one with 210
    assert j.self_presence.get("from") == f"{r}/alice"
    assert {"110", "210"} <= codes(j.self_presence)
    m1, m2 = a1.mark(), a2.mark()
    a1.send_message(r, "from one", type="groupchat")
    a1.wait_for(message(frm=f"{r}/alice", body="from one"), since=m1)
    a2.wait_for(message(frm=f"{r}/alice", body="from one"), since=m2)
    # one client leaves: the other stays
    a2.leave_muc(r, "alice")
    a1.send_message(r, "still in", type="groupchat")
    a1.wait_for(message(frm=f"{r}/alice", body="still in"), since=m1)


def test_not_joined_resources_are_refused(xmpp, domain):
    a1 = xmpp("alice", resource="in")
    register(a1, domain)
    a2 = xmpp("alice", resource="out")
    r = room("guarded", domain)
    a1.join_muc(r, "alice")
    m = a2.mark()
    mid = a2.send_message(r, "sneaky", type="groupchat")
    err = a2.wait_for(message(type="error", id=mid), since=m)
    assert find(err, "error/stanzas:not-acceptable") is not None
    assert "join" in text(err, "error/stanzas:text")
    # XEP-0410 self-ping: joined client ok, the other not-acceptable
    ping(a1, f"{r}/alice")
    e = ping(a2, f"{r}/alice", allow_error=True)
    assert find(e, "error/stanzas:not-acceptable") is not None
    info = a1.disco_info(r)
    assert NS["muc"] in info.features and "http://jabber.org/protocol/muc#self-ping-optimization" in info.features


def test_join_failures_are_presence_errors(alice_r, bob_r, domain):
    with pytest.raises(StanzaError) as e:
        alice_r.join_muc(room("secret", domain), "alice")
    assert e.value.condition in ("forbidden", "not-authorized")
    assert "password" in e.value.text
    j = alice_r.join_muc(room("secret", domain), "alice", password="letmein")
    assert j.self_presence is not None
    bob_r.join_muc(room("nicks", domain), "taken")
    with pytest.raises(StanzaError) as e:
        alice_r.join_muc(room("nicks", domain), "taken")
    assert e.value.condition == "conflict"


def test_history_on_join_follows_maxstanzas(alice_r, bob_r, domain):
    r = room("historic", domain)
    alice_r.join_muc(r, "alice")
    bob_r.join_muc(r, "bob")
    for i in range(6):
        bob_r.send_message(r, f"line {i}", type="groupchat")
        alice_r.wait_for(message(frm=f"{r}/bob", body=f"line {i}"))
    alice_r.leave_muc(r, "alice")
    j = alice_r.join_muc(r, "alice", history={"maxstanzas": 3})
    assert [text(h, "body") for h in j.history] == ["line 3", "line 4", "line 5"]
    alice_r.leave_muc(r, "alice")
    j = alice_r.join_muc(r, "alice", history={"maxstanzas": 0})
    assert j.history == []


def test_mam_paging(alice_r, bob_r, domain):
    r = room("archive", domain)
    alice_r.join_muc(r, "alice")
    bob_r.join_muc(r, "bob")
    for i in range(12):
        bob_r.send_message(r, f"msg {i:02}", type="groupchat")
        alice_r.wait_for(message(frm=f"{r}/bob", body=f"msg {i:02}"))
    last = alice_r.mam_query(r, max=5, before="")
    assert [b for b in last.bodies] == [f"msg {i:02}" for i in range(7, 12)]
    assert not last.complete
    assert last.count >= 12
    prev = alice_r.mam_query(r, max=5, before=last.first)
    assert prev.bodies == [f"msg {i:02}" for i in range(2, 7)]
    first = alice_r.mam_query(r, max=5, before=prev.first)
    assert first.bodies[-2:] == ["msg 00", "msg 01"]
    forward = alice_r.mam_query(r, max=4, after=first.last)
    assert forward.bodies == [f"msg {i:02}" for i in range(2, 6)]
    # filters: only bob
    only = alice_r.mam_query(r, with_=f"{r}/bob", max=50)
    assert all(find(mm, "body") is not None for mm in only.messages)
    assert set(m.get("from") for m in only.messages) == {f"{r}/bob"}
    # the result messages carry the archive id and a delay
    res = last.results[0]
    assert attr(res, "mam:result", "id") == last.ids[0]
    assert find(res, "mam:result/forward:forwarded/delay:delay") is not None
    # a bad query gets bad-request
    e = alice_r.iq(f"<query xmlns='{NS['mam']}'><x xmlns='jabber:x:data' type='submit'>"
                   f"<field var='start'><value>yesterday</value></field></x></query>",
                   to=r, type="set", allow_error=True)
    assert find(e, "error/stanzas:bad-request") is not None


def test_mam_backfills_from_the_network(alice_r, domain):
    r = room("backfilled", domain)
    alice_r.join_muc(r, "alice")
    page = alice_r.mam_query(r, max=10, before="")
    # the test network has 50 old messages "history N" per conversation
    assert any((b or "").startswith("history ") for b in page.bodies), page.bodies
    older = alice_r.mam_query(r, max=10, before=page.first)
    assert older.bodies and all((b or "").startswith("history ") for b in older.bodies)


def test_nick_change_and_leave(alice_r, bob_r, domain):
    r = room("renames", domain)
    alice_r.join_muc(r, "alice")
    bob_r.join_muc(r, "bob")
    m = alice_r.mark()
    mb = bob_r.mark()
    alice_r.send(f"<presence to='{r}/alicia'/>")
    gone = alice_r.wait_for(presence(frm=f"{r}/alice", type="unavailable"), since=m)
    assert {"303", "110"} <= codes(gone)
    assert attr(gone, "muc_user:x/muc_user:item", "nick") == "alicia"
    back = alice_r.wait_for(presence(frm=f"{r}/alicia"), since=m)
    assert "110" in codes(back)
    seen = bob_r.wait_for(presence(frm=f"{r}/alice", type="unavailable"), since=mb)
    assert "303" in codes(seen) and "110" not in codes(seen)
    bob_r.wait_for(presence(frm=f"{r}/alicia"), since=mb)
    # leaving: unavailable with 110 to the leaver, the others see it go
    left = alice_r.leave_muc(r, "alicia")
    assert "110" in codes(left)
    bob_r.wait_for(presence(frm=f"{r}/alicia", type="unavailable"), since=mb)


def test_subject_change_and_private_messages(alice_r, bob_r, domain):
    r = room("topics", domain)
    alice_r.join_muc(r, "alice")
    bob_r.join_muc(r, "bob")
    mb = bob_r.mark()
    alice_r.send(f"<message to='{r}' type='groupchat'><subject>New topic</subject></message>")
    s = bob_r.wait_for(message(frm=r) & has("subject"), since=mb)
    assert text(s, "subject") == "New topic"
    # private message to an occupant
    alice_r.send_message(f"{r}/bob", "psst", type="chat")
    pm = bob_r.wait_for(message(frm=f"{r}/alice", type="chat", body="psst"), since=mb)
    assert find(pm, "muc_user:x") is not None


def test_kick_by_moderator_and_refusal_otherwise(xmpp, domain):
    admin = xmpp("admin")
    register(admin, domain)
    carol = xmpp("carol")
    register(carol, domain)
    r = room("strict", domain)
    admin.join_muc(r, "boss")
    carol.join_muc(r, "carol")
    # carol may not kick
    e = carol.iq(f"<query xmlns='{NS['muc_admin']}'><item nick='boss' role='none'/></query>",
                 to=r, type="set", allow_error=True)
    assert e.get("type") == "error"
    assert text(e, "error/stanzas:text")
    mc = carol.mark()
    admin.iq(f"<query xmlns='{NS['muc_admin']}'><item nick='carol' role='none'><reason>out</reason></item></query>",
             to=r, type="set")
    kicked = carol.wait_for(presence(frm=f"{r}/carol", type="unavailable"), since=mc)
    assert {"307", "110"} <= codes(kicked)


def test_room_configuration_through_muc_owner(alice_r, domain):
    r = room("configurable", domain)
    alice_r.join_muc(r, "alice")
    form = alice_r.iq(f"<query xmlns='{NS['muc_owner']}'/>", to=r)
    fields = {f.get("var") for f in findall(form, "muc_owner:query/data:x/data:field")}
    assert "persistent" in fields
    alice_r.iq(f"<query xmlns='{NS['muc_owner']}'><x xmlns='jabber:x:data' type='submit'>"
               "<field var='persistent'><value>1</value></field></x></query>", to=r, type="set")


def test_room_disco_and_items(alice_r, domain):
    r = room("lounge", domain)
    alice_r.join_muc(r, "alice")
    info = alice_r.disco_info(r)
    assert info.has_identity("conference", "text")
    for f in (NS["muc"], "muc_persistent", "muc_nonanonymous", NS["mam"], NS["sid"]):
        assert f in info.features, (f, info.features)
    form = info.forms[0] if info.forms else None
    assert form is not None
    items = alice_r.disco_items(domain)
    assert any(j == r for j, _, _ in items), items


def test_echo_lines_and_events_while_no_client_is_joined_are_archived(gw, alice_r, domain):
    r = room("lounge", domain)
    alice_r.join_muc(r, "alice")
    gw.http("POST", "/bridge/test/say?room=%23lounge&from=mallory", "said in the lounge")
    alice_r.wait_for(message(frm=f"{r}/mallory", body="said in the lounge"))
    page = alice_r.mam_query(r, max=5, before="")
    assert "said in the lounge" in page.bodies
