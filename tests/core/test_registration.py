"""Registration three ways with the bridge's one form — XEP-0077, the
XEP-0050 command `jabber:iq:register`, the chat fallback — plus
unregistration and the access policy."""
import pytest

from harness.stanza import NS, attr, find, findall, has, message, presence, text
from harness.xmpp import StanzaError

from helpers import PASSWORDS, forget_gateway, register, wait_logged_in, wait_until


@pytest.fixture(scope="module")
def gw(ferry_module_factory):
    return ferry_module_factory(config={"access": {"users": ["*@localhost"]}})


@pytest.fixture
def domain(gw):
    return gw.config.domain("test")


def test_xep0077_query_has_instructions_legacy_fields_and_the_form(alice, domain):
    q = find(alice.register_form(domain), "register:query")
    assert text(q, "register:instructions"), "instructions are required"
    # the legacy fields the form has names for
    assert find(q, "register:username") is not None
    assert find(q, "register:password") is not None
    assert find(q, "register:registered") is None
    form = find(q, "data:x")
    assert form is not None and form.get("type") == "form"
    fields = {f.get("var"): f for f in findall(form, "data:field")}
    assert fields["FORM_TYPE"].get("type") == "hidden"
    assert text(fields["FORM_TYPE"], "data:value") == NS["register"]
    assert fields["username"].get("type", "text-single") == "text-single"
    assert fields["password"].get("type") == "text-private"
    assert find(fields["username"], "data:required") is not None


def test_xep0077_registration_welcomes_subscribes_and_logs_in(xmpp, domain):
    bob = xmpp("bob")
    forget_gateway(bob, domain)
    m = bob.mark()
    register(bob, domain)
    # XEP-0100: the gateway asks for the user's presence
    bob.wait_for(presence(frm=domain, type="subscribe"), since=m)
    wait_logged_in(bob, domain, since=m)
    # re-query: <registered/> with the current values, never the password
    q = find(bob.register_form(domain), "register:query")
    assert find(q, "register:registered") is not None
    assert text(q, "register:username") == "bob"
    assert not text(q, "register:password")
    form_pw = [f for f in findall(q, "data:x/data:field") if f.get("var") == "password"]
    assert not findall(form_pw[0], "data:value") or not text(form_pw[0], "data:value")
    assert "bobpw" not in str(q.itertext() and "".join(q.itertext()))


def test_xep0077_legacy_fields_register_too(xmpp, domain):
    carol = xmpp("carol")
    carol.register(domain, {"username": "carol", "password": "carolpw"}, form=False)
    carol.wait_for(message(frm=domain, body_contains="as carol"))


def test_xep0077_wrong_password_is_not_authorized_with_the_bridge_text(alice, domain):
    with pytest.raises(StanzaError) as e:
        alice.register(domain, {"username": "alice", "password": "wrong"})
    assert e.value.condition == "not-authorized"
    assert "wrong password" in (e.value.text or "")


def test_xep0077_missing_field_is_not_acceptable(alice, domain):
    with pytest.raises(StanzaError) as e:
        alice.register(domain, {"username": "alice"})
    assert e.value.condition == "not-acceptable"
    assert "Password" in (e.value.text or ""), e.value.text


def test_xep0077_unknown_field_and_malformed_forms_are_refused(alice, domain):
    with pytest.raises(StanzaError) as e:
        alice.register(domain, {"username": "alice", "password": "alicepw", "evil": "x"})
    assert e.value.condition == "not-acceptable"
    assert "evil" in e.value.text
    # a form without a type attribute is not a data form
    bad = "<query xmlns='jabber:iq:register'><x xmlns='jabber:x:data'><field var='username'/></x></query>"
    r = alice.iq(bad, to=domain, type="set", allow_error=True)
    assert find(r, "error/stanzas:bad-request") is not None
    # a legacy element the form does not have
    r = alice.iq("<query xmlns='jabber:iq:register'><hack>1</hack></query>", to=domain, type="set",
                 allow_error=True)
    assert find(r, "error/stanzas:bad-request") is not None


def test_remove_unregisters_and_cancels_the_subscription(xmpp, domain):
    admin = xmpp("admin")
    register(admin, domain)
    # the contacts reach the roster (privileged push on test.localhost)
    wait_until(lambda: f"echo@{domain}" in admin.roster(), what="echo in the roster")
    m = admin.mark()
    admin.unregister(domain)
    admin.wait_for(message(frm=domain, body_contains="unregistered"), since=m)
    admin.wait_for(presence(frm=domain, type="unavailable"), since=m)
    # the subscription is cancelled both ways and the contacts are removed
    def done():
        r = admin.roster()
        ok = r.get(domain, {}).get("subscription") in (None, "none") and not any(
            j.endswith("@" + domain) for j in r)
        return r if ok else (None if False else ok)
    try:
        roster = wait_until(done, what="gateway subscription cancelled and contacts removed")
    except AssertionError as e:
        raise AssertionError(f"{e}; roster: {admin.roster()}") from None
    assert f"echo@{domain}" not in roster
    q = find(admin.register_form(domain), "register:query")
    assert find(q, "register:registered") is None
    # using the bridge now needs a registration again
    mid = admin.send_message(f"echo@{domain}", "hello?")
    err = admin.wait_for(message(frm=f"echo@{domain}", type="error", id=mid))
    assert find(err, "error/stanzas:registration-required") is not None
    # removing twice: there is nothing to remove
    with pytest.raises(StanzaError) as e:
        admin.unregister(domain)
    assert e.value.condition == "registration-required"


def test_register_command_multi_outcomes(alice, domain):
    r = alice.command(domain, "jabber:iq:register")
    assert r.status == "executing"
    assert r.form["password"].type == "text-private"
    assert "complete" in r.actions
    bad = alice.command_complete(r, {"username": "alice", "password": "nope"})
    assert bad.status == "completed"
    assert bad.notes and bad.notes[0][0] == "error"
    assert "wrong password" in bad.note
    r = alice.command(domain, "jabber:iq:register")
    # a required field left out: the same form again, with an error note
    again = alice.command_complete(r, {"username": "alice"})
    assert again.status == "executing" and again.notes[0][0] == "error"
    done = alice.command_complete(again, {"username": "alice", "password": "alicepw"})
    assert done.status == "completed", done
    assert "alice" in done.note
    alice.wait_for(message(frm=domain, body_contains="as alice"))


def test_chat_fallback_asks_one_field_at_a_time_and_never_echoes_the_password(xmpp, domain):
    carol = xmpp("carol", resource="chat")
    m = carol.mark()
    carol.send_message(domain, "register")
    intro = carol.wait_for(message(frm=domain, body_contains="Register"), since=m)
    q1 = carol.wait_for(message(frm=domain, body_contains="User name"), since=m)
    carol.send_message(domain, "carol")
    q2 = carol.wait_for(message(frm=domain, body_contains="Password"), since=m)
    assert "not repeated" in text(q2, "body")
    carol.send_message(domain, "carolpw")
    done = carol.wait_for(message(frm=domain, body_contains="as carol"), since=m)
    everything = "".join(text(s, "body") or "" for s in carol.received(message(frm=domain), since=m))
    assert "carolpw" not in everything
    assert intro is not None and q1 is not None and done is not None


def test_chat_fallback_cancel_aborts_and_help_lists_commands(alice, domain):
    m = alice.mark()
    alice.send_message(domain, "register")
    alice.wait_for(message(frm=domain, body_contains="User name"), since=m)
    alice.send_message(domain, "cancel")
    alice.wait_for(message(frm=domain, body_contains="Cancelled"), since=m)
    alice.send_message(domain, "help")
    h = alice.wait_for(message(frm=domain, body_contains="register"), since=m)
    body = text(h, "body")
    assert "status" in body
    assert "admin/" not in body, "non-admins do not see admin commands"
    alice.send_message(domain, "frobnicate")
    alice.wait_for(message(frm=domain, body_contains="help"), since=m)


def test_chat_fallback_wrong_password_says_why(xmpp, domain):
    bob = xmpp("bob", resource="chat2")
    m = bob.mark()
    bob.send_message(domain, "register")
    bob.wait_for(message(frm=domain, body_contains="User name"), since=m)
    bob.send_message(domain, "bob")
    bob.wait_for(message(frm=domain, body_contains="Password"), since=m)
    bob.send_message(domain, "bad")
    bob.wait_for(message(frm=domain, body_contains="wrong password"), since=m)


def test_access_refused_outside_the_users_list(ferry_factory, alice, bob):
    f = ferry_factory(bridges={"test": {"domain": "test2.localhost"}},
                      config={"access": {"users": ["bob@localhost"]}})
    d = f.config.domain("test")
    with pytest.raises(StanzaError) as e:
        alice.register(d, {"username": "alice", "password": "alicepw"})
    assert e.value.condition == "not-allowed"
    assert "alice@localhost" in e.value.text and "access" in e.value.text
    with pytest.raises(StanzaError) as e:
        alice.register_form(d)
    assert e.value.condition == "not-allowed"
    mid = alice.send_message(f"echo@{d}", "hi")
    err = alice.wait_for(message(frm=f"echo@{d}", type="error", id=mid))
    assert find(err, "error/stanzas:not-allowed") is not None
    assert "not allowed" in text(err, "error/stanzas:text")
    r = alice.command(d, "jabber:iq:register", allow_error=True)
    assert find(r.el, "error/stanzas:not-allowed") is not None
    # bob is on the list
    register(bob, d)
