"""Registration with the email gateway, the three ways the core offers
(XEP-0077 form, the ad-hoc command, the chat fallback), with the servers
found from the address (autoconfig over HTTP) or given by hand, and each
failure told apart: wrong password, unreachable host, a certificate that
does not verify, a host the operator does not allow; a server without
IDLE is accepted and the user told.
Also discovery (gateway/smtp) and the XEP-0100 address prompt."""
import pytest

from harness.stanza import find, message, text
from harness.xmpp import StanzaError

from email_helpers import Mailbox, by_hand, jid, wait_logged_in

FIELDS = {"email": "text-single", "password": "text-private", "imap_host": "text-single",
          "imap_port": "text-single", "imap_security": "list-single", "smtp_host": "text-single",
          "smtp_port": "text-single", "smtp_security": "list-single", "username": "text-single"}


def test_disco_and_the_address_prompt(alice, domain):
    info = alice.disco_info(domain)
    assert info.has_identity("gateway", "smtp")
    for f in ("jabber:iq:register", "jabber:iq:gateway", "jid\\20escaping"):
        assert f in info.features, info.features
    q = alice.iq("<query xmlns='jabber:iq:gateway'/>", to=domain)
    assert text(q, "{jabber:iq:gateway}query/{jabber:iq:gateway}prompt")
    r = alice.iq("<query xmlns='jabber:iq:gateway'><prompt>Bob &lt;Bob@Example.org&gt;</prompt></query>",
                 to=domain, type="set")
    assert text(r, "{jabber:iq:gateway}query/{jabber:iq:gateway}jid") == jid("bob@example.org", domain)
    with pytest.raises(StanzaError) as e:
        alice.iq("<query xmlns='jabber:iq:gateway'><prompt>bob at example dot org</prompt></query>",
                 to=domain, type="set")
    assert "not an email address" in (e.value.text or ""), e.value.text
    with pytest.raises(StanzaError):
        alice.iq("<query xmlns='jabber:iq:gateway'><prompt>bob@example.org&#13;&#10;Bcc: x@y.z</prompt></query>",
                 to=domain, type="set")


def test_the_form_has_the_designed_typed_fields(alice, domain):
    r = alice.command(domain, "jabber:iq:register")
    for var, kind in FIELDS.items():
        assert var in r.form, r.form
        assert r.form[var].type == kind, (var, r.form[var].type)
    alice.command_cancel(r)


def test_failures_are_told_apart(alice, domain, peers):
    mb = Mailbox.create(peers, "bad")
    with pytest.raises(StanzaError) as e:
        alice.register(domain, by_hand(peers, mb, password="wrong"))
    assert e.value.condition == "not-authorized", e.value
    assert "refused the login" in e.value.text, e.value.text
    with pytest.raises(StanzaError) as e:
        alice.register(domain, by_hand(peers, mb, imap_port="9"))
    assert "127.0.0.1:9" in e.value.text and "reach" in e.value.text, e.value.text
    # 127.0.0.3 serves IMAPS with a self-signed certificate.
    with pytest.raises(StanzaError) as e:
        alice.register(domain, by_hand(peers, mb, imap_host=peers.env["IMAP_SELFSIGNED_HOST"],
                                       imap_port=peers.env["IMAPS_PORT"], imap_security="tls"))
    assert "does not verify" in e.value.text, e.value.text
    # A host the operator did not allow (allowed_hosts has 127.0.0.1-3 only):
    # refused before any connection, and said so.
    with pytest.raises(StanzaError) as e:
        alice.register(domain, by_hand(peers, mb, imap_host="127.0.0.9"))
    assert e.value.condition in ("not-acceptable", "bad-request"), e.value
    assert "does not connect to 127.0.0.9" in e.value.text, e.value.text
    assert "loopback" in e.value.text and "allowed_hosts" in e.value.text, e.value.text


def test_a_server_without_idle_is_accepted_and_the_user_told(xmpp, domain, peers):
    carol = xmpp("carol")
    mb = Mailbox.create(peers, "noidle")
    m = carol.mark()
    carol.register(domain, by_hand(peers, mb, imap_host=peers.env["IMAP_NOIDLE_HOST"]))
    carol.wait_for(message(frm=domain, body_contains="does not support IDLE"), since=m, timeout=30)
    wait_logged_in(carol, domain, since=m)
    # mail still arrives (polled)
    bob = Mailbox.create(peers, "nib")
    bob.send(mb.address, "polled", "found by polling")
    carol.wait_for(message(frm=jid(bob.address, domain), body="found by polling"), timeout=30)


def test_servers_found_by_autoconfig_through_the_command(xmpp, domain, peers):
    bob = xmpp("bob")
    mb = Mailbox.create(peers, "auto")
    address = f"{mb.user}@{peers.env['AUTOCONFIG_DOMAIN']}"
    m = bob.mark()
    r = bob.command(domain, "jabber:iq:register")
    r = bob.command_complete(r, {"email": address, "password": mb.password})
    assert r.status == "completed", r.notes
    wait_logged_in(bob, domain, since=m)


def test_chat_fallback_asks_each_field(xmpp, domain, peers):
    admin = xmpp("admin", resource="chat")
    mb = Mailbox.create(peers, "chat")
    m = admin.mark()
    admin.send_message(domain, "register")
    admin.wait_for(message(frm=domain, body_contains="Email address"), since=m)
    admin.send_message(domain, mb.address)
    admin.wait_for(message(frm=domain, body_contains="Password"), since=m)
    admin.send_message(domain, mb.password)
    answers = {"IMAP server": peers.env["IMAP_HOST"], "IMAP port": peers.env["IMAP_PORT"],
               "IMAP security": "plain", "SMTP server": "localhost",
               "SMTP port": peers.env["SUBMISSION_PORT"], "SMTP security": "starttls",
               "Login name": mb.user}
    for label, value in answers.items():
        admin.wait_for(message(frm=domain, body_contains=label), since=m)
        admin.send_message(domain, value)
    wait_logged_in(admin, domain, since=m)
    everything = "".join(text(s, "body") or "" for s in admin.received(message(frm=domain), since=m))
    assert mb.password not in everything, "the password is never echoed"


def test_the_password_is_sealed_and_never_logged(gw, domain, peers, xmpp):
    """After the registrations above (and this one): the password is in no
    file of ferry's data directory and not in its log."""
    from pathlib import Path
    dave = xmpp("admin", resource="seal")
    mb = Mailbox.create(peers, "seal")
    m = dave.mark()
    dave.register(domain, by_hand(peers, mb))
    wait_logged_in(dave, domain, since=m)
    secret = mb.password.encode()
    data = Path(gw.config.sections["storage"]["data_dir"])
    for f in data.rglob("*"):
        if f.is_file():
            assert secret not in f.read_bytes(), f"the password is readable in {f}"
    assert mb.password not in gw.log()
