"""Channels as MUC rooms end to end: two clients behind one nick, topic,
kicks, nick changes, modes as roles, history and MAM, persistent
channels, the channel's configure command, away, rooms that speak from the
JID they were joined as."""
import re
import time

import pytest

from harness.stanza import NS, attr, error_condition, find, findall, has, message, presence, text, to_string, where
from harness.xmpp import StanzaError

from irc_helpers import irc_config, room_jid, unique


def codes(st):
    return {s.get("code") for s in findall(st, "muc_user:x/muc_user:status")}


def test_two_clients_share_one_nick_and_one_join(xmpp, irc, domain):
    chan = "#" + unique("two")
    bob = irc(unique("bob"))
    bob.join(chan)
    phone = xmpp("alice", resource="phone")
    laptop = xmpp("alice", resource="laptop")
    r = room_jid(chan, domain)
    phone.join_muc(r, "alice")
    bob.wait_for(rf"^:alice!\S+ JOIN")
    laptop.join_muc(r, "alice")
    bob.expect_no(r"^:alice\S* (JOIN|NICK)", within=1.0)
    bob.send(f"PRIVMSG {chan} :to both")
    phone.wait_for(message(frm=f"{r}/{bob.nick}", body="to both"))
    laptop.wait_for(message(frm=f"{r}/{bob.nick}", body="to both"))
    # One client sends: IRC sees it once, both clients get it.
    phone.send_message(r, "from the phone", type="groupchat")
    bob.wait_for(rf"^:alice!\S+ PRIVMSG {re.escape(chan)} :from the phone$")
    laptop.wait_for(message(frm=f"{r}/alice", body="from the phone"))
    bob.expect_no(r"PRIVMSG .*from the phone", within=0.5)
    # The first client leaving does not part IRC; the last one does.
    phone.leave_muc(r, "alice")
    bob.expect_no(r"^:alice!\S+ PART", within=1.0)
    laptop.leave_muc(r, "alice")
    bob.wait_for(rf"^:alice!\S+ PART :?{re.escape(chan)}")


def test_topic_kick_and_nick_changes(alice, irc, domain):
    chan = "#" + unique("mod")
    bob = irc(unique("bob"))
    bob.join(chan)
    r = room_jid(chan, domain)
    alice.join_muc(r, "alice")
    bob.wait_for(rf"^:alice!\S+ JOIN")
    # IRC topic -> subject
    bob.send(f"TOPIC {chan} :irc topic")
    alice.wait_for(message(frm=r) & has("subject") & where(lambda s: text(s, "subject") == "irc topic"))
    # op -> moderator, then subject -> TOPIC
    bob.send(f"MODE {chan} +o alice")
    alice.wait_for(presence(frm=f"{r}/alice") & has("muc_user:x/muc_user:item", role="moderator", affiliation="admin"))
    alice.send(f"<message to='{r}' type='groupchat'><subject>xmpp topic</subject></message>")
    bob.wait_for(rf"^:alice!\S+ TOPIC {re.escape(chan)} :xmpp topic$")
    # IRC nick change -> 303
    new = unique("ren")
    bob.send(f"NICK {new}")
    st = alice.wait_for(presence(frm=f"{r}/{bob.nick}", type="unavailable"))
    assert "303" in codes(st)
    assert find(st, "muc_user:x/muc_user:item").get("nick") == new
    bob.nick = new
    # XMPP kick -> KICK
    carol = irc(unique("carol"))
    carol.join(chan)
    alice.wait_for(presence(frm=f"{r}/{carol.nick}"))
    alice.iq(f"<query xmlns='http://jabber.org/protocol/muc#admin'><item nick='{carol.nick}' role='none'>"
             f"<reason>bye</reason></item></query>", to=r, type="set")
    carol.wait_for(rf"^:alice!\S+ KICK {re.escape(chan)} {carol.nick} :bye$")
    # IRC kick of the user -> 307
    bob.send(f"KICK {chan} alice :out")
    st = alice.wait_for(presence(frm=f"{r}/alice", type="unavailable"))
    assert "307" in codes(st)


def test_history_on_join_and_mam(xmpp, irc, domain):
    chan = "#" + unique("hist")
    bob = irc(unique("bob"))
    bob.join(chan)
    alice = xmpp("alice", resource="one")
    r = room_jid(chan, domain)
    alice.join_muc(r, "alice")
    for i in range(3):
        bob.send(f"PRIVMSG {chan} :line {i}")
    alice.wait_for(message(frm=f"{r}/{bob.nick}", body="line 2"))
    page = alice.mam_query(r, max=10, before="")
    assert page.bodies[-3:] == ["line 0", "line 1", "line 2"], page.bodies
    # A second client joining gets the history.
    other = xmpp("alice", resource="two")
    j = other.join_muc(r, "alice", history={"maxstanzas": 2})
    assert [text(h, "body") for h in j.history] == ["line 1", "line 2"]


def test_persistent_channels_stay_joined(alice, irc, domain):
    chan = "#" + unique("pers")
    bob = irc(unique("bob"))
    bob.join(chan)
    r = room_jid(chan, domain)
    alice.join_muc(r, "alice")
    bob.wait_for(rf"^:alice!\S+ JOIN")
    res = alice.command(r, "configure")
    assert {"record_history", "persistent", "encoding_in", "encoding_out"} <= set(res.form.fields)
    res = alice.command_complete(res, {"persistent": "true"})
    assert res.status == "completed", res.notes
    alice.leave_muc(r, "alice")
    bob.expect_no(r"^:alice!\S+ PART", within=1.0)
    bob.send(f"PRIVMSG {chan} :while away")
    time.sleep(0.5)
    j = alice.join_muc(r, "alice", history={"maxstanzas": 5})
    assert "while away" in [text(h, "body") for h in j.history]


def test_away_and_version(alice, irc, domain):
    chan = "#" + unique("away")
    bob = irc(unique("bob"))
    bob.send("CAP REQ :away-notify")
    bob.join(chan)
    r = room_jid(chan, domain)
    alice.join_muc(r, "alice")
    bob.wait_for(rf"^:alice!\S+ JOIN")
    alice.send("<presence><show>away</show><status>lunch</status></presence>")
    bob.wait_for(r"^:alice!\S+ AWAY :lunch$")
    alice.send("<presence/>")
    bob.wait_for(r"^:alice!\S+ AWAY$")
    # XMPP version query -> CTCP VERSION, answered by the IRC client.
    import threading

    def answer():
        m = bob.wait_for(r"^:(\S+?)!\S+ PRIVMSG " + re.escape(bob.nick) + r" :\x01VERSION\x01$", timeout=15)
        bob.send(f"NOTICE {m.group(1)} :\x01VERSION irssi 1.4\x01")

    t = threading.Thread(target=answer)
    t.start()
    res = alice.iq("<query xmlns='jabber:iq:version'/>", to=f"{r}/{bob.nick}")
    t.join()
    assert text(res, "version:query/version:name") == "irssi"


def test_channel_settings_through_muc_owner(alice, irc, domain):
    # A client's "configure room" (muc#owner) shows the channel's settings;
    # submitting persistent=true keeps Ferry in the channel after leaving.
    chan = "#" + unique("own")
    bob = irc(unique("bob"))
    bob.join(chan)
    r = room_jid(chan, domain)
    alice.join_muc(r, "alice")
    bob.wait_for(rf"^:alice!\S+ JOIN")
    res = alice.iq("<query xmlns='http://jabber.org/protocol/muc#owner'/>", to=r)
    form = find(res, "muc_owner:query/data:x")
    assert form is not None, to_string(res)
    fields = {f.get("var") for f in findall(form, "data:field")}
    assert {"persistent", "record_history"} <= fields, fields
    # A malformed submission gets a clear error, and changes nothing.
    err = alice.iq("<query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'>"
                   "<field var='persistent'><value>maybe</value></field></x></query>", to=r, type="set",
                   allow_error=True)
    assert err.get("type") == "error", to_string(err)
    assert "persistent" in (error_condition(err)[2] or ""), to_string(err)
    alice.iq("<query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'>"
             "<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>"
             "<field var='persistent'><value>1</value></field></x></query>", to=r, type="set")
    alice.leave_muc(r, "alice")
    bob.expect_no(r"^:alice!\S+ PART", within=1.0)


def whois_away(irc_client, nick):
    """The away message WHOIS shows for NICK (None: not away)."""
    m = irc_client.mark()
    irc_client.send(f"WHOIS {nick}")
    irc_client.wait_for(rf" 318 \S+ {re.escape(nick)} ")
    away = [line for line in irc_client.lines[m:] if re.search(rf" 301 \S+ {re.escape(nick)} :", line)]
    return away[0].split(" :", 1)[1] if away else None


def test_away_follows_the_users_real_availability(ferry_factory, peers, xmpp, irc):
    # The client's presence towards the gateway was unavailable (it left,
    # or never subscribed); it then sits in a room: available on IRC, in
    # a rejoin too, and its away state in the room is the one IRC shows.
    f = ferry_factory(bridges={"irc": irc_config(peers, domain="irc2.localhost")})
    domain = f.config.domain("irc")
    carol = xmpp("carol")
    carol.send(f"<presence to='{domain}'/>")
    carol.wait_for(presence(frm=domain))
    carol.send(f"<presence to='{domain}' type='unavailable'/>")
    chan = "#" + unique("avail")
    nick = unique("av")
    bob = irc(unique("bob"))
    bob.send("CAP REQ :away-notify")
    bob.join(chan)
    r = room_jid(chan, domain)
    for _ in range(2):
        carol.join_muc(r, nick)
        bob.wait_for(rf"^:{nick}!\S+ JOIN")
        assert whois_away(bob, nick) is None
        carol.send(f"<presence to='{r}/{nick}'><show>away</show><status>lunch</status></presence>")
        bob.wait_for(rf"^:{nick}!\S+ AWAY :lunch$")
        carol.send(f"<presence to='{r}/{nick}'/>")
        bob.wait_for(rf"^:{nick}!\S+ AWAY$")
        carol.leave_muc(r, nick)
        bob.wait_for(rf"^:{nick}!\S+ (PART|QUIT)")


def test_a_room_speaks_from_the_jid_it_was_joined_as(alice, irc, domain):
    # IRC folds [ ] \ ~ into { } | ^ (RFC 1459): the room still speaks
    # from the JID the user joined. A JID that spells the room otherwise
    # than the gateway writes it is refused, naming the right one.
    tag = unique("")
    bob = irc(unique("bob"))
    for local, chan in ((f"#h\\00x{tag}", f"#h\\00x{tag}"), (f"#k\\3akey{tag}", f"#k:key{tag}"),
                        (f"#Br[a]ck~{tag}", f"#Br[a]ck~{tag}"), (f"#g\\0d{tag}", f"#g\\0d{tag}")):
        bob.join(chan)
        r = f"{local}%127.0.0.1@{domain}"
        j = alice.join_muc(r, "alice")
        froms = {s.get("from").split("/")[0].lower() for s in j.stanzas}
        assert froms == {r.lower()}, froms
        bob.send(f"PRIVMSG {chan} :hi {len(froms)} {local}")
        m = alice.wait_for(message(type="groupchat", body=f"hi 1 {local}"))
        assert m.get("from").lower() == f"{r}/{bob.nick}".lower(), to_string(m)
        alice.send_message(r, f"back in {local}", type="groupchat")
        bob.wait_for(rf"^:alice!\S+ PRIVMSG {re.escape(chan)} :back in ")
    with pytest.raises(StanzaError) as e:
        alice.join_muc(f"#g\\5c0d{tag}%127.0.0.1@{domain}", "alice")
    kind, condition, why = error_condition(e.value.stanza)
    assert (kind, condition) == ("modify", "not-acceptable"), to_string(e.value.stanza)
    assert f"#g\\0d{tag}%127.0.0.1@{domain}".lower() in why.lower(), why
    # The same channel under a second spelling is refused too.
    with pytest.raises(StanzaError) as e:
        alice.join_muc(f"#g|0d{tag}%127.0.0.1@{domain}", "alice")
    assert "already in" in (error_condition(e.value.stanza)[2] or ""), to_string(e.value.stanza)
