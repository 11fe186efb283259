"""The harness itself, against the real peers (no ferry involved): if these
fail, the other end-to-end tests cannot be trusted."""
import time

import pytest

from harness.stanza import find, has, message, presence, text
from harness.xmpp import StanzaError, XmppTimeout, new_id


def test_a_message_between_two_users_is_recorded_and_matched(alice, bob):
    alice.send_message(bob.bare, "hello bob")
    st = bob.wait_for(message(frm=alice.bare, body="hello bob", type="chat"))
    assert find(st, "sid:origin-id") is not None
    # each stanza is returned once: a second wait for the same thing times out
    with pytest.raises(XmppTimeout) as e:
        bob.wait_for(message(frm=alice.bare, body="hello bob"), timeout=0.5)
    assert "hello bob" in str(e.value)  # the report lists what arrived


def test_wait_for_returns_matches_in_order_and_expect_no(alice, bob):
    for i in range(3):
        alice.send_message(bob.bare, f"n{i}")
    got = [text(bob.wait_for(message(frm=alice.bare) & has("body")), "body") for _ in range(3)]
    assert got == ["n0", "n1", "n2"]
    bob.expect_no(message(frm=alice.bare), within=0.3)


def test_iq_errors_raise_with_the_condition(alice):
    with pytest.raises(StanzaError) as e:
        alice.disco_info("nowhere.localhost", timeout=5)
    assert e.value.condition  # (not-allowed on this Prosody: no s2s)
    assert e.value.stanza.get("from") == "nowhere.localhost"
    r = alice.iq("<query xmlns='http://jabber.org/protocol/disco#info'/>", to="nowhere.localhost",
                 allow_error=True)
    assert r.get("type") == "error"


def test_disco_of_the_server_lists_the_components(alice, peers):
    jids = {j for j, _, _ in alice.disco_items(peers.domain)}
    for c in peers.privileged + peers.unprivileged:
        assert c in jids
    info = alice.disco_info(peers.domain)
    assert info.has_identity("server", "im")


def test_ad_hoc_commands_on_the_server(admin, peers):
    nodes = admin.commands(peers.domain)
    uptime = next(n for n in nodes if n.endswith("uptime"))
    r = admin.command(peers.domain, uptime)
    assert r.status == "completed"
    assert r.note  # "This server has been running for …"


def test_muc_join_records_the_exact_order(alice, bob, peers):
    room = f"harness-{new_id('r')}@{peers.muc}"
    first = alice.join_muc(room, "al")
    assert first.kinds() == ["self-presence", "subject"]
    assert first.self_presence is not None
    alice.send_message(room, "before bob", type="groupchat")
    alice.wait_for(message(frm=f"{room}/al", type="groupchat", body="before bob"))
    join = bob.join_muc(room, "bo", history={"maxstanzas": 5})
    assert join.kinds() == ["presence", "self-presence", "history", "subject"]
    assert find(join.history[0], "delay:delay") is not None
    assert text(join.history[0], "body") == "before bob"
    alice.wait_for(presence(frm=f"{room}/bo"))
    bob.leave_muc(room, "bo")
    alice.wait_for(presence(frm=f"{room}/bo", type="unavailable"))


def test_a_refused_join_raises(alice, bob, peers):
    room = f"harness-{new_id('r')}@{peers.muc}"
    alice.join_muc(room, "same")
    with pytest.raises(StanzaError) as e:
        bob.join_muc(room, "same")
    assert e.value.condition == "conflict"


def test_irc_clients_talk(irc):
    a = irc(f"ha{new_id('')[:6]}")
    b = irc(f"hb{new_id('')[:6]}")
    chan = f"#harness{int(time.time() * 1000) % 100000}"
    a.join(chan)
    b.join(chan)
    a.privmsg(chan, "hello channel")
    m = b.wait_for(rf"^:{a.nick}!\S+ PRIVMSG {chan} :(.*)$")
    assert m.group(1) == "hello channel"
    with pytest.raises(ValueError):
        a.send("PRIVMSG x :a\r\nQUIT")


def test_a_peer_can_be_stopped_and_started(peers, irc):
    peers.require("ngircd")
    peers.stop("ngircd")
    with pytest.raises(OSError):
        irc("down", server="ngircd")
    peers.start("ngircd")
    c = irc(f"up{new_id('')[:6]}", server="ngircd")
    assert c.lines
