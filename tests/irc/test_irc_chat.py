"""IRC through XMPP end to end: a real XMPP client (slixmpp) through Prosody
and ferry on one side, a raw IRC client on InspIRCd on the other.
Channels as rooms, messages both ways with reflection, private messages,
the server JID, formatting, hostile input."""
import re

from harness.stanza import NS, find, findall, has, message, presence, text, where

from irc_helpers import room_jid, unique


def test_disco_of_the_gateway_says_irc(alice, domain):
    info = alice.disco_info(domain)
    assert info.has_identity("gateway", "irc")
    assert "jabber:iq:gateway" in info.features


def test_join_chat_both_ways_and_reflection(alice, irc, domain):
    chan = "#" + unique("e2e")
    bob = irc(unique("bob"))
    bob.join(chan)
    r = room_jid(chan, domain)
    j = alice.join_muc(r, "alice")
    assert j.self_presence is not None
    nicks = {o.get("from").split("/", 1)[1] for o in j.occupants}
    assert bob.nick in nicks, nicks
    bob.wait_for(rf"^:alice!\S+ JOIN :?{re.escape(chan)}")

    bob.send(f"PRIVMSG {chan} :hello from irc")
    m = alice.wait_for(message(frm=f"{r}/{bob.nick}", type="groupchat", body="hello from irc"))
    assert find(m, "sid:stanza-id") is not None

    mid = alice.send_message(r, "hello from xmpp", type="groupchat")
    bob.wait_for(rf"^:alice!\S+ PRIVMSG {re.escape(chan)} :hello from xmpp$")
    refl = alice.wait_for(message(frm=f"{r}/alice", type="groupchat", body="hello from xmpp"))
    assert refl.get("id") == mid or find(refl, "sid:origin-id") is not None


def test_crlf_injection_from_xmpp(alice, irc, domain):
    chan = "#" + unique("crlf")
    bob = irc(unique("bob"))
    bob.join(chan)
    r = room_jid(chan, domain)
    alice.join_muc(r, "alice")
    bob.wait_for(rf"^:alice!\S+ JOIN")
    alice.send_message(r, "one\r\nQUIT :pwned\nPART #x", type="groupchat")
    bob.wait_for(rf"^:alice!\S+ PRIVMSG {re.escape(chan)} :one$")
    bob.wait_for(rf"^:alice!\S+ PRIVMSG {re.escape(chan)} :QUIT :pwned$")
    bob.wait_for(rf"^:alice!\S+ PRIVMSG {re.escape(chan)} :PART #x$")
    bob.expect_no(r"^:alice!\S+ (QUIT|PART) ", within=1.0)


def test_latin1_and_control_characters_from_irc(alice, irc, domain):
    chan = "#" + unique("enc")
    bob = irc(unique("bob"))
    bob.join(chan)
    r = room_jid(chan, domain)
    alice.join_muc(r, "alice")
    bob.send_raw(f"PRIVMSG {chan} :caf".encode() + b"\xe9 \x07bell \x01x\r\n")
    alice.wait_for(message(frm=f"{r}/{bob.nick}", body="café bell x"))


def test_a_2000_character_message(alice, irc, domain):
    chan = "#" + unique("long")
    bob = irc(unique("bob"))
    bob.join(chan)
    r = room_jid(chan, domain)
    alice.join_muc(r, "alice")
    bob.wait_for(rf"^:alice!\S+ JOIN")
    body = "é" * 1000 + "x" * 1000
    alice.send_message(r, body, type="groupchat")
    got = ""
    while len(got) < 2000:
        m = bob.wait_for(rf"^:alice!\S+ PRIVMSG {re.escape(chan)} :(.*)$")
        got += m.group(1)
    assert got == body


def test_private_messages_both_ways(alice, irc, domain):
    bob = irc(unique("bob"))
    contact = f"{bob.nick.lower()}%127.0.0.1@{domain}"
    alice.send_message(contact, "psst", type="chat")
    m = bob.wait_for(r"^:(\S+?)!\S+ PRIVMSG (\S+) :psst$")
    gw_nick = m.group(1)
    bob.send(f"PRIVMSG {gw_nick} :psst back")
    alice.wait_for(message(frm=contact, type="chat", body="psst back"))


def test_raw_commands_through_the_server_jid(alice, irc, domain):
    bob = irc(unique("bob"))
    server = f"127.0.0.1@{domain}"
    alice.send_message(server, f"WHOIS {bob.nick}", type="chat")
    alice.wait_for(message(frm=server) & where(lambda s: bob.nick in (text(s, "body") or "")))


def test_formatting_from_irc_becomes_xhtml(alice, irc, domain):
    chan = "#" + unique("fmt")
    bob = irc(unique("bob"))
    bob.join(chan)
    r = room_jid(chan, domain)
    alice.join_muc(r, "alice")
    bob.send(f"PRIVMSG {chan} :\x02bold\x02 plain")
    m = alice.wait_for(message(frm=f"{r}/{bob.nick}"))
    body = text(m, "body")
    assert "bold" in body and "\x02" not in body
