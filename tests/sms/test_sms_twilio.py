"""The SMS bridge with Twilio, against a MOCK of Twilio's API (Twilio
cannot run here; contrib/peers/kit/twilio_mock.py): bring-your-own
accounts checked with the API before registration succeeds, texts out
with status callbacks as receipts, MMS both ways as OOB, and webhooks
whose X-Twilio-Signature is wrong refused with 403."""
import urllib.request

import pytest

from harness.stanza import has, message, text

from sms_helpers import DOMAIN, phone, twilio_accounts, twilio_mock, twilio_section, wait_until


@pytest.fixture(scope="module")
def gw(ferry_module_factory, peers):
    return ferry_module_factory(bridges={"sms": twilio_section(peers, accounts="own")})


@pytest.fixture(scope="module")
def own(peers):
    sid, token, numbers = twilio_accounts(peers)[1]
    return sid, token, numbers[0]


@pytest.fixture(scope="module")
def alice(gw, xmpp_module, own):
    sid, token, number = own
    a = xmpp_module("alice")
    e = a.register(DOMAIN, {"region": "US", "account_sid": sid, "auth_token": "wrong", "number": number},
                   allow_error=True)
    assert e.get("type") == "error" and "refused" in text(e, "error/stanzas:text"), e
    m = a.mark()
    a.register(DOMAIN, {"region": "US", "account_sid": sid, "auth_token": token, "number": number})
    a.wait_for(message(frm=DOMAIN, body_contains=number), since=m, timeout=15)
    return a


def webhook(gw):
    return f"http://127.0.0.1:{gw.config.http_port}/bridge/sms/twilio/sms"


def test_texts_and_mms_out_with_receipts(peers, alice, own):
    to = phone()
    media = f"{peers.env['TWILIO_MOCK_URL']}/mock/media/cat.png"
    m = alice.mark()
    id1 = alice.send_message(f"{to}@{DOMAIN}", "hello through Twilio",
                             extra="<request xmlns='urn:xmpp:receipts'/>")
    id2 = alice.send_message(f"{to}@{DOMAIN}", media,
                             extra=f"<x xmlns='jabber:x:oob'><url>{media}</url></x>")
    alice.wait_for(message(frm=f"{to}@{DOMAIN}") & has("receipts:received", id=id1), since=m, timeout=20)
    sent = wait_until(lambda: [x for x in twilio_mock(peers, "/mock/messages") if x["to"] == to and x["media"]],
                      what="the MMS at Twilio")
    assert sent[0]["media"] == [media] and sent[0]["from"] == own[2], sent
    texts = [x for x in twilio_mock(peers, "/mock/messages") if x["to"] == to and not x["media"]]
    assert [x["body"] for x in texts] == ["hello through Twilio"], texts
    assert not alice.received(message(type="error", id=id2), since=m)


def test_mms_in_as_oob_and_forged_webhooks(gw, peers, alice, own):
    sid, _, number = own
    frm = phone()
    media = f"{peers.env['TWILIO_MOCK_URL']}/mock/media/photo.png"
    m = alice.mark()
    r = twilio_mock(peers, "/mock/incoming", {"account": sid, "from": frm, "to": number, "body": "look",
                                               "media": [{"url": media, "type": "image/png"}],
                                               "url": webhook(gw)})
    assert r["status"] == 200, r
    alice.wait_for(message(frm=f"{frm}@{DOMAIN}", body="look"), since=m, timeout=15)
    # The picture follows as its own message, with its URL as OOB (the
    # mock's, or where the gateway published it).
    pic = alice.wait_for(message(frm=f"{frm}@{DOMAIN}") & has("oob:x"), since=m, timeout=15)
    url = text(pic, "oob:x/oob:url")
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.read().startswith(b"\x89PNG"), url
    since = len(gw.log())
    r = twilio_mock(peers, "/mock/incoming", {"account": sid, "from": frm, "to": number, "body": "forged",
                                               "url": webhook(gw), "signature": "bm90IGEgc2lnbmF0dXJl"})
    assert r["status"] == 403, r
    gw.wait_for_log(r"bad X-Twilio-Signature", since=since, timeout=5)
    alice.expect_no(message(frm=f"{frm}@{DOMAIN}", body="forged"), within=1.0, since=m)

