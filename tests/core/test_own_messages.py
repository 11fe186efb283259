"""Messages the user writes on another client of the network come back as
the user's own (XEP-0356 message privilege: a carbon of a message sent by
the user) when the server allows it, and marked as the user's otherwise;
and the user's presence preference."""
import pytest

from harness.stanza import NS, find, has, message, presence, text

from helpers import register


def test_own_messages_from_another_network_client_are_sent_as_the_user(ferry_factory, xmpp):
    f = ferry_factory()  # test.localhost: message privilege
    d = f.config.domain("test")
    alice = xmpp("alice")
    register(alice, d)
    alice.iq("<enable xmlns='urn:xmpp:carbons:2'/>", type="set")
    # bob@localhost registers with the same network account: his messages
    # are alice's "other client"
    bob = xmpp("bob")
    register(bob, d, account="alice", password="alicepw")
    m = alice.mark()
    bob.send_message(f"echo@{d}", "written elsewhere")
    sent = alice.wait_for(message() & has("{urn:xmpp:carbons:2}sent"), since=m)
    inner = find(sent, "{urn:xmpp:carbons:2}sent/forward:forwarded/message")
    assert inner.get("from").startswith("alice@localhost")
    assert inner.get("to") == f"echo@{d}"
    assert text(inner, "body") == "written elsewhere"
    # the gateway did not send it to the network a second time: the bot
    # answers bob's message once
    bob.wait_for(message(frm=f"echo@{d}", body="written elsewhere"))
    bob.expect_no(message(frm=f"echo@{d}", body="written elsewhere"), within=1.0)


def test_own_messages_without_privileges_are_marked(ferry_factory, xmpp):
    f = ferry_factory(bridges={"test": {"domain": "test2.localhost"}})
    d = f.config.domain("test")
    alice = xmpp("alice")
    register(alice, d)
    bob = xmpp("bob")
    register(bob, d, account="alice", password="alicepw")
    m = alice.mark()
    bob.send_message(f"echo@{d}", "from my phone")
    got = alice.wait_for(message(frm=f"echo@{d}", body_contains="from my phone"), since=m)
    assert "another device" in text(got, "body")


def test_presence_sync_preference(ferry_factory, xmpp):
    f = ferry_factory()
    d = f.config.domain("test")
    alice = xmpp("alice")
    bob = xmpp("bob")
    register(alice, d)
    register(bob, d)
    p = alice.command(d, "preferences")
    alice.command_complete(p, {"sync_presence": False})
    mb = bob.mark()
    alice.send_presence(show="away", status="not for the network")
    bob.expect_no(presence(frm=f"alice@{d}") & has("show"), within=1.5, since=mb)
    p = alice.command(d, "preferences")
    alice.command_complete(p, {"sync_presence": True})
    seen = bob.wait_for(presence(frm=f"alice@{d}") & has("show"), since=mb)
    assert text(seen, "show") == "away"
