"""The Twilio backend in operator mode (against the MOCK of Twilio's API):
a number of the operator's account assigned by an administrator, texts
to it reach its owner, and webhooks must carry the signature made with the
operator's auth token."""
from harness.stanza import message

from sms_helpers import DOMAIN, phone, twilio_accounts, twilio_mock, twilio_section


def webhook(gw):
    return f"http://127.0.0.1:{gw.config.http_port}/bridge/sms/twilio/sms"


def test_operator_mode_checks_the_operators_signature(ferry_factory, peers, xmpp):
    sid, _, numbers = twilio_accounts(peers)[0]
    f = ferry_factory(bridges={"sms": twilio_section(peers)})
    admin, bob = xmpp("admin"), xmpp("bob")
    r = admin.command(DOMAIN, "admin/assign-number")
    assert admin.command_complete(r, {"jid": "bob@localhost", "number": numbers[0]}).status == "completed"
    m = bob.mark()
    bob.register(DOMAIN, {"region": "US"})
    bob.wait_for(message(frm=DOMAIN, body_contains=numbers[0]), since=m, timeout=15)
    frm = phone()
    r = twilio_mock(peers, "/mock/incoming", {"account": sid, "from": frm, "to": numbers[0], "body": "hi bob",
                                               "url": webhook(f)})
    assert r["status"] == 200, r
    bob.wait_for(message(frm=f"{frm}@{DOMAIN}", body="hi bob"), since=m, timeout=15)
    # Signed with another account's token: not the operator's.
    other = twilio_accounts(peers)[1][0]
    r = twilio_mock(peers, "/mock/incoming", {"account": other, "from": frm, "to": numbers[0], "body": "forged",
                                               "url": webhook(f)})
    assert r["status"] == 403, r
    bob.expect_no(message(frm=f"{frm}@{DOMAIN}", body="forged"), within=1.0, since=m)
