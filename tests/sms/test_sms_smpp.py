"""The SMS bridge bound to the smpp34 SMSC (SMPP 3.4, not ours) as a
transceiver: texts out with their delivery receipts (delivered,
undeliverable, refused by the SMSC), a long text in as parts rejoined, a
group text, the rate limit, and a receipt that arrives after ferry
restarted."""
import pytest

from harness.stanza import attr, has, message, text

from sms_helpers import DOMAIN, assign, phone, smpp_section, smsc, smsc_submitted, wait_until

ALICE, CAROL = phone(), phone()


@pytest.fixture(scope="module")
def gw(ferry_module_factory, peers):
    f = ferry_module_factory(bridges={"sms": smpp_section(peers, rate_limit_per_minute=8)})
    f.wait_for_log(r"SMPP: bound as transceiver", timeout=20)
    return f


@pytest.fixture(scope="module")
def alice(gw, xmpp_module):
    admin = xmpp_module("admin")
    assert assign(admin, "alice@localhost", ALICE).status == "completed"
    assert assign(admin, "carol@localhost", CAROL).status == "completed"
    a = xmpp_module("alice")
    m = a.mark()
    a.register(DOMAIN, {"region": "US"})
    a.wait_for(message(frm=DOMAIN, body_contains=ALICE), since=m, timeout=15)
    return a


def test_delivered_undeliverable_and_refused(peers, alice):
    ok, lost, bad = phone(), phone("666"), phone("0000")
    m = alice.mark()
    req = "<request xmlns='urn:xmpp:receipts'/>"
    id_ok = alice.send_message(f"{ok}@{DOMAIN}", "hello over SMPP", extra=req)
    id_lost = alice.send_message(f"{lost}@{DOMAIN}", "this one is lost", extra=req)
    id_bad = alice.send_message(f"{bad}@{DOMAIN}", "this one is refused", extra=req)
    alice.wait_for(message(frm=f"{ok}@{DOMAIN}") & has("receipts:received", id=id_ok), since=m, timeout=20)
    err = alice.wait_for(message(frm=f"{lost}@{DOMAIN}", type="error", id=id_lost), since=m, timeout=20)
    assert attr(err, "error", "type") == "cancel"
    assert "not delivered" in text(err, "error/stanzas:text"), text(err, "error/stanzas:text")
    err = alice.wait_for(message(frm=f"{bad}@{DOMAIN}", type="error", id=id_bad), since=m, timeout=20)
    assert "not delivered" in text(err, "error/stanzas:text")
    sent = smsc_submitted(peers, ok)
    assert len(sent) == 1 and sent[0]["source"].lstrip("+") == ALICE.lstrip("+"), sent
    assert len(smsc_submitted(peers, bad)) == 0


def test_a_long_ucs2_text_in_parts_is_rejoined(peers, alice):
    frm = phone()
    body = "Grüße aus Köln 😀 " * 15
    m = alice.mark()
    r = smsc(peers, "/mo", {"from": frm, "to": ALICE, "text": body, "coding": "ucs2", "split": 67})
    assert r["sent"] > 1, r
    alice.wait_for(message(frm=f"{frm}@{DOMAIN}", body=body), since=m, timeout=20)


def test_a_group_text_goes_to_every_member(peers, alice):
    a, b = phone(), phone()
    m = alice.mark()
    addresses = "".join(f"<address type='to' jid='{n}@{DOMAIN}'/>" for n in (a, b))
    mid = alice.send_message(DOMAIN, "to both of you",
                             extra=f"<addresses xmlns='http://jabber.org/protocol/address'>{addresses}</addresses>")
    invite = alice.wait_for(message(frm=DOMAIN) & has("conference:x"), since=m, timeout=15)
    room = attr(invite, "conference:x", "jid")
    assert room.startswith("group-") and room.endswith("@" + DOMAIN), room
    wait_until(lambda: smsc_submitted(peers, a) and smsc_submitted(peers, b), what="both members got it")
    j = alice.join_muc(room, "alice")
    nicks = {p.get("from").split("/", 1)[1] for p in j.occupants}
    assert {a, b} <= nicks, nicks
    assert not alice.received(message(type="error", id=mid), since=m)


def test_the_rate_limit_says_so(gw, peers, xmpp):
    carol = xmpp("carol")
    m = carol.mark()
    carol.register(DOMAIN, {"region": "US"})
    carol.wait_for(message(frm=DOMAIN, body_contains=CAROL), since=m, timeout=15)
    to = phone()
    ids = [carol.send_message(f"{to}@{DOMAIN}", f"text {i}") for i in range(9)]
    err = carol.wait_for(message(type="error", id=ids[8]), since=m, timeout=15)
    assert "rate limit" in text(err, "error/stanzas:text"), text(err, "error/stanzas:text")
    wait_until(lambda: len(smsc_submitted(peers, to)) == 8, what="eight texts at the SMSC")
    for i in ids[:8]:
        assert not carol.received(message(type="error", id=i), since=m)


def test_a_receipt_after_a_restart_finds_its_message(gw, peers, alice):
    later = phone("999")
    m = alice.mark()
    mid = alice.send_message(f"{later}@{DOMAIN}", "report me later",
                             extra="<request xmlns='urn:xmpp:receipts'/>")
    sub = wait_until(lambda: smsc_submitted(peers, later), what="the SMSC got it")
    since = len(gw.log())
    gw.restart()
    gw.wait_for_log(r"SMPP: bound as transceiver", timeout=20, since=since)
    smsc(peers, "/dlr", {"message_id": sub[0]["message_id"], "stat": "DELIVRD"})
    alice.wait_for(message(frm=f"{later}@{DOMAIN}") & has("receipts:received", id=mid), since=m, timeout=20)
