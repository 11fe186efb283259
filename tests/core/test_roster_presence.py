"""Contacts into the roster (XEP-0356 push on the privileged component,
XEP-0144 to clients that support it, subscription requests otherwise, and
the user told which), presence both ways (XEP-0100) and the gateway's
presence showing the session's state."""
import pytest

from harness.stanza import NS, attr, find, findall, has, message, presence, text, where

from helpers import forget_gateway, register, wait_logged_in, wait_until


def test_privileged_roster_push(ferry_factory, xmpp):
    f = ferry_factory()  # test.localhost: privileged
    d = f.config.domain("test")
    alice = xmpp("alice")
    forget_gateway(alice, d)
    m = alice.mark()
    register(alice, d)
    alice.wait_for(message(frm=d, body_contains="manage your roster"), since=m)
    roster = wait_until(lambda: (lambda r: r if f"echo@{d}" in r and f"bob@{d}" in r else None)(alice.roster()),
                        what="contacts pushed into the roster")
    echo = roster[f"echo@{d}"]
    assert echo["subscription"] == "both"
    assert echo["name"] == "Echo bot"
    assert echo["groups"] == ["Test network"]
    # no subscription requests were needed
    assert not alice.received(presence(frm=f"echo@{d}", type="subscribe"), since=m)
    # a contact leaving the contact list leaves the roster
    alice.send_message(f"echo@{d}", "unfriend")
    wait_until(lambda: f"echo@{d}" not in alice.roster(), what="echo removed from the roster")
    alice.send_message(f"echo@{d}", "friend")
    wait_until(lambda: f"echo@{d}" in alice.roster(), what="echo back in the roster")


def test_subscribe_fallback_without_privileges(ferry_factory, xmpp):
    f = ferry_factory(bridges={"test": {"domain": "test2.localhost"}})
    d = f.config.domain("test")
    bob = xmpp("bob")
    forget_gateway(bob, d)
    m = bob.mark()
    register(bob, d)
    told = bob.wait_for(message(frm=d, body_contains="subscription"), since=m)
    assert "XEP-0356" in text(told, "body") or "privilege" in text(told, "body")
    sub = bob.wait_for(presence(frm=f"echo@{d}", type="subscribe"), since=m)
    assert text(sub, "nick:nick") == "Echo bot"
    # the client accepted (slixmpp auto-authorizes): the contact is in the roster
    wait_until(lambda: bob.roster().get(f"echo@{d}", {}).get("subscription") in ("from", "both"),
               what="echo subscribed")


def test_roster_item_exchange_for_capable_clients(ferry_factory, xmpp):
    f = ferry_factory(bridges={"test": {"domain": "test2.localhost"}})
    d = f.config.domain("test")
    carol = xmpp("carol", features=[NS["rosterx"]])
    forget_gateway(carol, d)
    m = carol.mark()
    register(carol, d)
    x = carol.wait_for(message(frm=d) & has("rosterx:x"), since=m, timeout=15)
    jids = {i.get("jid") for i in findall(x, "rosterx:x/rosterx:item")}
    assert f"echo@{d}" in jids
    assert all(i.get("action") == "add" for i in findall(x, "rosterx:x/rosterx:item"))
    carol.wait_for(message(frm=d, body_contains="roster item exchange"), since=m)


def test_contact_presence_and_user_presence_both_ways(ferry_factory, xmpp):
    f = ferry_factory()
    d = f.config.domain("test")
    alice = xmpp("alice")
    bob = xmpp("bob")
    register(alice, d)
    register(bob, d)
    m = alice.mark()
    alice.send_message(f"echo@{d}", "presence away Out for lunch")
    p = alice.wait_for(presence(frm=f"echo@{d}") & has("show"), since=m)
    assert text(p, "show") == "away" and text(p, "status") == "Out for lunch"
    assert "/" not in p.get("from"), "contact presence comes from the bare JID"
    # alice's XMPP presence is alice's presence on the network: bob sees it
    mb = bob.mark()
    alice.send_presence(show="dnd", status="busy busy")
    seen = bob.wait_for(presence(frm=f"alice@{d}") & has("show"), since=mb)
    assert text(seen, "show") == "dnd" and text(seen, "status") == "busy busy"
    # alice goes offline: the network sees her offline
    alice.disconnect()
    bob.wait_for(presence(frm=f"alice@{d}", type="unavailable"), since=mb)


def test_gateway_presence_follows_the_connection(ferry_factory, xmpp):
    f = ferry_factory()
    d = f.config.domain("test")
    carol = xmpp("carol")
    register(carol, d)
    wait_logged_in(carol, d)
    m = carol.mark()
    f.http("POST", "/disconnect?account=carol".replace("/", "/bridge/test/", 1), "")
    carol.wait_for(presence(frm=d) & where(lambda e: (text(e, "status") or "").startswith("Reconnecting"),
                                           "Reconnecting"), since=m)
    wait_logged_in(carol, d, since=m)
    # the password changes on the network: login required, and the user is told what to do
    r = f.http("POST", "/bridge/test/password?account=carol", "newpw")
    assert r.status == 200
    carol.wait_for(presence(frm=d) & where(lambda e: "Login required" in (text(e, "status") or ""),
                                           "Login required"), since=m)
    carol.wait_for(message(frm=d, body_contains="Register again"), since=m)


def test_presence_probe_and_subscription_to_contacts(ferry_factory, xmpp):
    f = ferry_factory()
    d = f.config.domain("test")
    alice = xmpp("alice")
    register(alice, d)
    m = alice.mark()
    alice.send(f"<presence to='echo@{d}' type='probe'/>")
    alice.wait_for(presence(frm=f"echo@{d}"), since=m)
    # a contact the network does not have: refused, and the user told why
    alice.send(f"<presence to='newfriend@{d}' type='subscribe'/>")
    alice.wait_for(message(frm=d, body_contains="newfriend could not be added"), since=m)
    assert alice.roster().get(f"newfriend@{d}", {}).get("subscription") in (None, "none", "from")
