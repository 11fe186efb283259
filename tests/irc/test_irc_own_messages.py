"""The user's own messages: what they send through Ferry is never shown
back to them as "[you, from another device]" (the fallback for messages
they sent from another IRC client, without XEP-0356), whether the IRC
connection was up or the message opened it, on a server with echo-message
(InspIRCd) and on one without (ngIRCd)."""
from harness.stanza import message, where

from irc_helpers import irc_config, unique, use_ngircd


def _no_echo(alice, contact, within=2.0, since=0):
    alice.expect_no(message(frm=contact) & where(lambda e: "another device" in (e.findtext(
        "{jabber:client}body") or ""), "marked as from another device"), within=within, since=since)


def test_own_private_messages_are_not_echoed_without_privileges(ferry_factory, peers, xmpp, irc):
    # irc2.localhost: no XEP-0356 privileges, so an own message would show
    # as "[you, from another device]".
    f = ferry_factory(bridges={"irc": irc_config(peers, domain="irc2.localhost")})
    domain = f.config.domain("irc")
    alice = xmpp("alice")
    bob = irc(unique("bob"))
    contact = f"{bob.nick.lower()}%127.0.0.1@{domain}"
    m = alice.mark()
    # The first message opens the IRC connection, the next ones use it.
    for text in ("first, opening the connection", "second", "third"):
        alice.send_message(contact, text, type="chat")
        bob.wait_for(rf"PRIVMSG {bob.nick} :{text}$")
    _no_echo(alice, contact, since=m)
    # ngIRCd has no echo-message: the same holds.
    use_ngircd(alice, domain, peers)
    carol = irc(unique("carol"), server="ngircd")
    contact2 = f"{carol.nick.lower()}%127.0.0.2@{domain}"
    m = alice.mark()
    for text in ("to ngircd", "again"):
        alice.send_message(contact2, text, type="chat")
        carol.wait_for(rf"PRIVMSG {carol.nick} :{text}$")
    _no_echo(alice, contact2, since=m)
