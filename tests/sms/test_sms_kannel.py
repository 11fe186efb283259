"""The SMS bridge through the real Kannel (smsbox's sendsms out, its
get-url in, dlr-url reports back) and Kannel's fake SMSC as the phone
network: discovery, registration with a pool number, XEP-0100 with the
user's region, texts both ways (long ones, UCS-2), receipts, texts for an
offline user, numbers assigned by an administrator, and bad input."""
import urllib.parse

import pytest

from harness.stanza import NS, has, message, text

from sms_helpers import (DOMAIN, assign, fakesmsc_lines, kannel_http, kannel_mo, kannel_section,
                         phone, register)

POOL = [phone(), phone()]


@pytest.fixture(scope="module")
def gw(ferry_module_factory, peers):
    return ferry_module_factory(bridges={"sms": kannel_section(peers, number_pool=POOL[:1], retry_secs=1)},
                                config={"http": kannel_http(peers)})


@pytest.fixture(scope="module")
def alice(gw, xmpp_module):
    a = xmpp_module("alice")
    welcome = register(a, region="DE")
    assert POOL[0] in welcome, welcome
    return a


def test_disco_and_the_registration_form(gw, alice):
    info = alice.disco_info(DOMAIN)
    assert info.has_identity("gateway", "sms"), info.identities
    assert "jabber:iq:register" in info.features and "jabber:iq:gateway" in info.features
    contact = alice.disco_info(f"{phone()}@{DOMAIN}")
    assert contact.has_identity("client", "sms"), contact.identities
    form = alice.register_form(DOMAIN)
    fields = {f.get("var"): f for f in form.iter("{jabber:x:data}field")}
    assert fields["region"].get("type") == "list-single"
    assert "DE" in [o.findtext("{jabber:x:data}value") for o in fields["region"].iter("{jabber:x:data}option")]


def test_xep0100_reads_national_numbers_with_the_users_region(alice):
    r = alice.iq(f"<query xmlns='{NS['gateway']}'><prompt>0151 2345678</prompt></query>", to=DOMAIN, type="set")
    assert text(r, "gateway:query/gateway:jid") == f"+491512345678@{DOMAIN}"
    r = alice.iq(f"<query xmlns='{NS['gateway']}'><prompt>+1 (555) 123-4567</prompt></query>", to=DOMAIN,
                 type="set")
    assert text(r, "gateway:query/gateway:jid") == f"+15551234567@{DOMAIN}"
    e = alice.iq(f"<query xmlns='{NS['gateway']}'><prompt>call me maybe</prompt></query>", to=DOMAIN,
                 type="set", allow_error=True)
    assert e.get("type") == "error" and "not a phone number" in text(e, "error/stanzas:text"), e


def test_a_text_out_and_its_receipt(peers, alice):
    to = phone()
    m = alice.mark()
    mid = alice.send_message(f"{to}@{DOMAIN}", "Hello-from-ferry\nsecond line",
                             extra="<request xmlns='urn:xmpp:receipts'/>")
    alice.wait_for(message(frm=f"{to}@{DOMAIN}") & has("receipts:received", id=mid), since=m, timeout=20)
    lines = fakesmsc_lines(peers, to)
    assert len(lines) == 1 and POOL[0].lstrip("+") in lines[0], lines
    assert "Hello-from-ferry" in urllib.parse.unquote_plus(lines[0]), lines


def test_a_text_waits_while_kannel_is_down_and_goes_out_once(gw, peers, alice):
    to = phone()
    peers.stop("smsbox")
    try:
        m = alice.mark()
        mid = alice.send_message(f"{to}@{DOMAIN}", "patience", extra="<request xmlns='urn:xmpp:receipts'/>")
        alice.expect_no(has("receipts:received", id=mid) | message(type="error", id=mid), within=2.0, since=m)
    finally:
        peers.start("smsbox")
    alice.wait_for(message(frm=f"{to}@{DOMAIN}") & has("receipts:received", id=mid), since=m, timeout=30)
    assert len(fakesmsc_lines(peers, to)) == 1, fakesmsc_lines(peers, to)
    # The failed attempts were logged without smsbox's password (it is in
    # the sendsms URL).
    log = gw.log()
    assert "will try again" in log
    assert f"password={peers.env['KANNEL_PASSWORD']}" not in log


def test_long_texts_gsm7_and_ucs2_are_split_and_confirmed_once(peers, alice):
    gsm, ucs = phone(), phone()
    m = alice.mark()
    long_gsm = "0123456789" * 40
    long_ucs = "Привет 😀 " * 40
    id1 = alice.send_message(f"{gsm}@{DOMAIN}", long_gsm, extra="<request xmlns='urn:xmpp:receipts'/>")
    id2 = alice.send_message(f"{ucs}@{DOMAIN}", long_ucs, extra="<request xmlns='urn:xmpp:receipts'/>")
    alice.wait_for(message(frm=f"{gsm}@{DOMAIN}") & has("receipts:received", id=id1), since=m, timeout=20)
    alice.wait_for(message(frm=f"{ucs}@{DOMAIN}") & has("receipts:received", id=id2), since=m, timeout=20)
    assert len(fakesmsc_lines(peers, gsm)) == 3
    ucs_lines = fakesmsc_lines(peers, ucs)
    assert len(ucs_lines) == 6 and all(" ucs2 " in l or " udh " in l for l in ucs_lines), ucs_lines
    alice.expect_no(has("receipts:received", id=id1), within=0.5)


def test_texts_from_phones_plain_and_ucs2(peers, alice):
    frm = phone()
    m = alice.mark()
    kannel_mo(peers, frm, POOL[0], text="Hi-from-the-phone")
    alice.wait_for(message(frm=f"{frm}@{DOMAIN}", body="Hi-from-the-phone"), since=m, timeout=20)
    kannel_mo(peers, frm, POOL[0], ucs2="hé 😀 and more")
    alice.wait_for(message(frm=f"{frm}@{DOMAIN}", body="hé 😀 and more"), since=m, timeout=20)


def test_an_assigned_number_receives_while_its_user_is_offline(gw, peers, xmpp, alice):
    bob = xmpp("bob")
    welcome = register(bob)
    assert "no number yet" in welcome, welcome
    admin = xmpp("admin")
    r = assign(admin, "bob@localhost", POOL[1])
    assert r.status == "completed" and POOL[1] in (r.note or ""), r
    bob.disconnect()
    frm = phone()
    since = len(gw.log())
    kannel_mo(peers, frm, POOL[1], text="while-you-were-out")
    # Stored by the core (then Kannel got its 200) while bob was offline.
    gw.wait_for_log(r"text from a phone delivered.*bob@localhost", timeout=20, since=since)
    bob = xmpp("bob")
    bob.wait_for(message(frm=f"{frm}@{DOMAIN}", body="while-you-were-out"), since=0, timeout=20)


def test_bad_numbers_and_texts_are_refused_with_clear_errors(gw, alice):
    m = alice.mark()
    bad = alice.send_message(f"+1555@{DOMAIN}", "hi")
    err = alice.wait_for(message(type="error", id=bad), since=m)
    assert "+1555" in text(err, "error/stanzas:text")
    huge = alice.send_message(f"{phone()}@{DOMAIN}", "x" * 5000)
    err = alice.wait_for(message(type="error", id=huge), since=m)
    assert "long" in text(err, "error/stanzas:text").lower(), text(err, "error/stanzas:text")
    alnum = alice.send_message(f"479136678077;phone-context=alphanumeric.phone-context.soprani.ca@{DOMAIN}",
                               "hi")
    err = alice.wait_for(message(type="error", id=alnum), since=m)
    assert "cannot receive texts" in text(err, "error/stanzas:text")


def test_forged_and_unreadable_webhooks_are_refused(gw, peers):
    secret = peers.env["SMS_WEBHOOK_SECRET"]
    r = gw.http("GET", f"/bridge/sms/kannel/mo?secret=wrong&from=%2B15550000001&to={POOL[0]}&text=x")
    assert r.status == 403, r
    gw.wait_for_log(r"wrong or missing secret", timeout=5)
    q = f"secret={secret}&from=%2B15550000001&to={urllib.parse.quote(POOL[0])}"
    r = gw.http("GET", f"/bridge/sms/kannel/mo?{q}&text=%FF%FE&charset=UTF-8")
    assert r.status == 400 and "UTF-8" in r.body.decode(), r
    r = gw.http("GET", f"/bridge/sms/kannel/mo?secret={secret}&from=%2B1555%0D%0A0000001&to={urllib.parse.quote(POOL[0])}&text=x")
    assert r.status == 400, r
    r = gw.http("GET", f"/bridge/sms/kannel/mo?secret={secret}&from=%2B15550000001&to=%2B15559999999&text=x")
    assert r.status == 404 and "no user has the number" in r.body.decode(), r
    gw.wait_for_log(r"nobody to deliver it to", timeout=5)


def test_only_administrators_assign_numbers(xmpp, alice):
    carol = xmpp("carol")
    assert "admin/assign-number" not in carol.commands(DOMAIN)
    e = carol.command(DOMAIN, "admin/assign-number", allow_error=True)
    assert e.status is None and "administrators" in text(e.el, "error/stanzas:text"), e
