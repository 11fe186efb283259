"""One-to-one messages through the test network's echo bot, both ways,
with their extensions: receipts, corrections, retractions, reactions,
replies, chat states, markers, attachments, formatting; and the errors a
sender gets when something cannot be carried."""

from harness.stanza import NS, attr, find, findall, has, message, text, where

from helpers import register


def echo(domain):
    return f"echo@{domain}"


def test_round_trip_with_receipt_and_ids(user, domain):
    m = user.mark()
    mid = user.send_message(echo(domain), "hello echo", extra="<request xmlns='urn:xmpp:receipts'/>")
    answer = user.wait_for(message(frm=echo(domain), body="hello echo", type="chat"), since=m)
    # the network confirmed delivery: a receipt for the client's id
    user.wait_for(message(frm=echo(domain)) & has("receipts:received", id=mid), since=m)
    # the answer has an id and an origin-id (XEP-0359), and asks for markers
    assert answer.get("id")
    assert attr(answer, "sid:origin-id", "id") == answer.get("id")
    assert find(answer, "markers:markable") is not None
    # the bot marks the message displayed (XEP-0333), with the client's id
    user.wait_for(message(frm=echo(domain)) & has("markers:displayed", id=mid), since=m)


def test_receipts_without_network_receipts_come_after_sending(ferry_factory, xmpp):
    f = ferry_factory(bridges={"test": {"domain": "test2.localhost", "delivery_receipts": False}})
    d = f.config.domain("test")
    bob = xmpp("bob")
    register(bob, d)
    m = bob.mark()
    mid = bob.send_message(echo(d), "receipt please", extra="<request xmlns='urn:xmpp:receipts'/>")
    bob.wait_for(message(frm=echo(d)) & has("receipts:received", id=mid), since=m)


def test_correction_is_followed_by_the_bot(user, domain):
    m = user.mark()
    mid = user.send_message(echo(domain), "tpyo")
    first = user.wait_for(message(frm=echo(domain), body="tpyo"), since=m)
    user.send_message(echo(domain), "typo", extra=f"<replace xmlns='{NS['correct']}' id='{mid}'/>")
    fixed = user.wait_for(message(frm=echo(domain), body="typo") & has("correct:replace"), since=m)
    assert attr(fixed, "correct:replace", "id") == first.get("id")


def test_retraction_is_followed_by_the_bot(user, domain):
    m = user.mark()
    mid = user.send_message(echo(domain), "oops")
    answer = user.wait_for(message(frm=echo(domain), body="oops"), since=m)
    user.send_message(echo(domain), None,
                      extra=f"<retract xmlns='{NS['retract']}' id='{mid}'/>"
                            f"<fallback xmlns='{NS['fallback']}' for='{NS['retract']}'/>"
                            "<body>retracted</body>")
    user.wait_for(message(frm=echo(domain)) & has("retract:retract", id=answer.get("id")), since=m)


def test_reaction_is_mirrored(user, domain):
    m = user.mark()
    user.send_message(echo(domain), "react to me")
    answer = user.wait_for(message(frm=echo(domain), body="react to me"), since=m)
    user.send_message(echo(domain), None,
                      extra=f"<reactions xmlns='{NS['reactions']}' id='{answer.get('id')}'>"
                            "<reaction>👍</reaction><reaction>🎉</reaction></reactions>")
    r = user.wait_for(message(frm=echo(domain)) & has("reactions:reactions"), since=m)
    emojis = [e.text for e in findall(r, "reactions:reactions/reactions:reaction")]
    assert sorted(emojis) == sorted(["👍", "🎉"])


def test_reply_is_answered_with_a_reply(user, domain):
    m = user.mark()
    user.send_message(echo(domain), "original")
    orig = user.wait_for(message(frm=echo(domain), body="original"), since=m)
    quote = "> original\n"
    mid = user.send_message(
        echo(domain), quote + "my answer",
        extra=f"<reply xmlns='{NS['reply']}' to='{echo(domain)}' id='{orig.get('id')}'/>"
              f"<fallback xmlns='{NS['fallback']}' for='{NS['reply']}'><body start='0' end='{len(quote)}'/></fallback>")
    # the network got the text without the quote: the bot repeats it, as a
    # reply to the user's message, with a quote fallback
    back = user.wait_for(message(frm=echo(domain)) & has("reply:reply"), since=m)
    assert attr(back, "reply:reply", "id") == mid
    body = text(back, "body")
    assert body.endswith("my answer") and body.startswith("> ")
    start = int(attr(back, "fallback:fallback/fallback:body", "start"))
    end = int(attr(back, "fallback:fallback/fallback:body", "end"))
    assert body[end:] == "my answer" and start == 0


def test_chat_states_both_ways(user, domain):
    m = user.mark()
    user.send(f"<message to='{echo(domain)}' type='chat'><composing xmlns='{NS['chatstates']}'/></message>")
    user.wait_for(message(frm=echo(domain)) & has("chatstates:composing"), since=m)


def test_emote_and_notice(user, domain):
    m = user.mark()
    user.send_message(echo(domain), "/me waves")
    user.wait_for(message(frm=echo(domain), body="/me waves"), since=m)
    user.send_message(echo(domain), "emote dances")
    user.wait_for(message(frm=echo(domain), body="/me dances"), since=m)


def test_formatting_both_ways(user, domain):
    m = user.mark()
    user.send_message(echo(domain), "formatted")
    f = user.wait_for(message(frm=echo(domain)) & has("xhtml:html"), since=m)
    assert "*bold*" in text(f, "body")
    assert find(f, "xhtml:html/xhtml_body:body") is not None
    # styling the user wrote comes back as formatting
    user.send_message(echo(domain), "so *very* _nice_")
    back = user.wait_for(message(frm=echo(domain), body="so *very* _nice_"), since=m)
    assert find(back, "xhtml:html") is not None


def fetch(url):
    import urllib.request
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.read()


def test_oob_attachment_round_trip(user, domain):
    m = user.mark()
    url = "https://example.org/files/cat.png"
    user.send_message(echo(domain), url, extra=f"<x xmlns='{NS['oob']}'><url>{url}</url></x>")
    back = user.wait_for(message(frm=echo(domain)) & has("oob:x"), since=m)
    assert text(back, "oob:x/oob:url") == url
    assert text(back, "body") == url


def test_network_files_are_uploaded_to_the_users_server(user, domain, peers):
    # test.localhost may ask Prosody's upload service for slots as the user
    # (XEP-0356 iq privilege for XEP-0363)
    m = user.mark()
    user.send_message(echo(domain), "file")
    user.wait_for(message(frm=echo(domain), body="here is a file"), since=m)
    f = user.wait_for(message(frm=echo(domain)) & has("oob:x"), since=m)
    link = text(f, "oob:x/oob:url")
    assert link.startswith(f"http://127.0.0.1:{peers.env['XMPP_HTTP_PORT']}/"), link
    status, data = fetch(link)
    assert status == 200 and data[:8] == b"\x89PNG\r\n\x1a\n"


def test_network_files_are_published_by_ferry_without_upload_rights(ferry_factory, xmpp):
    f = ferry_factory(bridges={"test": {"domain": "test2.localhost"}})
    d = f.config.domain("test")
    bob = xmpp("bob")
    register(bob, d)
    m = bob.mark()
    bob.send_message(echo(d), "file")
    got = bob.wait_for(message(frm=echo(d)) & has("oob:x"), since=m, timeout=20)
    link = text(got, "oob:x/oob:url")
    assert "/media/" in link, link
    status, data = fetch(link)
    assert status == 200 and data[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_xml_from_the_network_is_cleaned(user, domain):
    m = user.mark()
    user.send_message(echo(domain), "bad-xml")
    b = user.wait_for(message(frm=echo(domain), body_contains="bad xml"), since=m)
    body = text(b, "body")
    assert "\x01" not in body and "\x1b" not in body and "\ufffe" not in body and "\uffff" not in body
    assert "lone CR:[\n] end" in body
    # the stream survived
    user.send_message(echo(domain), "still here")
    user.wait_for(message(frm=echo(domain), body="still here"), since=m)


def test_oversized_bodies_both_ways(ferry_factory, xmpp):
    f = ferry_factory(bridges={"test": {"domain": "test2.localhost"}},
                      config={"limits": {"max_message_bytes": 4096}})
    d = f.config.domain("test")
    bob = xmpp("bob")
    register(bob, d)
    m = bob.mark()
    mid = bob.send_message(echo(d), "x" * 5000)
    err = bob.wait_for(message(frm=echo(d), type="error", id=mid), since=m)
    assert find(err, "error/stanzas:policy-violation") is not None
    assert "4096" in text(err, "error/stanzas:text")
    # from the network: truncated with a marker
    bob.send_message(echo(d), "huge")
    big = bob.wait_for(message(frm=echo(d), body_contains="huge 0123"), since=m, timeout=15)
    body = text(big, "body")
    assert len(body.encode()) <= 4096
    assert "truncated" in body


def test_disabled_capabilities_get_clear_errors(ferry_factory, xmpp):
    f = ferry_factory(bridges={"test": {"domain": "test2.localhost",
                                        "disable": ["reactions", "corrections", "retractions"]}})
    d = f.config.domain("test")
    bob = xmpp("bob")
    register(bob, d)
    m = bob.mark()
    mid = bob.send_message(echo(d), "first")
    answer = bob.wait_for(message(frm=echo(d), body="first"), since=m)
    rid = bob.send_message(echo(d), None, extra=f"<reactions xmlns='{NS['reactions']}' id='{answer.get('id')}'>"
                                                "<reaction>👍</reaction></reactions>")
    err = bob.wait_for(message(type="error", id=rid), since=m)
    assert find(err, "error/stanzas:feature-not-implemented") is not None
    assert "reactions" in text(err, "error/stanzas:text")
    cid = bob.send_message(echo(d), "second", extra=f"<replace xmlns='{NS['correct']}' id='{mid}'/>")
    err = bob.wait_for(message(type="error", id=cid), since=m)
    assert find(err, "error/stanzas:feature-not-implemented") is not None
    xid = bob.send_message(echo(d), None, extra=f"<retract xmlns='{NS['retract']}' id='{mid}'/>")
    err = bob.wait_for(message(type="error", id=xid), since=m)
    assert find(err, "error/stanzas:feature-not-implemented") is not None
    # the contact's disco does not announce them
    info = bob.disco_info(echo(d))
    assert NS["reactions"] not in info.features
    assert NS["correct"] not in info.features


def test_unknown_contact_gets_an_error_with_the_bridge_text(user, domain):
    m = user.mark()
    mid = user.send_message(f"nobody@{domain}", "hi")
    err = user.wait_for(message(frm=f"nobody@{domain}", type="error", id=mid), since=m)
    assert find(err, "error/stanzas:item-not-found") is not None
    assert "nobody" in text(err, "error/stanzas:text")
    mid = user.send_message(f"Not\\20Valid@{domain}", "hi")
    err = user.wait_for(message(type="error", id=mid), since=m)
    assert text(err, "error/stanzas:text")


def test_encrypted_messages_are_refused(user, domain):
    m = user.mark()
    mid = user.send_message(echo(domain), "secret",
                            extra="<encrypted xmlns='eu.siacs.conversations.axolotl'/>")
    err = user.wait_for(message(type="error", id=mid), since=m)
    assert find(err, "error/stanzas:not-acceptable") is not None


def test_message_injected_while_offline_arrives_at_login(ferry_factory, xmpp):
    f = ferry_factory(bridges={"test": {"domain": "test2.localhost", "always_on": False}})
    d = f.config.domain("test")
    carol = xmpp("carol")
    register(carol, d)
    carol.disconnect()
    # carol's session may still run (on demand): the network keeps the
    # message for the account until a session connects
    r = f.http("POST", "/bridge/test/say?to=carol&from=bob", "while you were away")
    assert r.status == 200, r
    carol2 = xmpp("carol", resource="back")
    carol2.wait_for(message(frm=f"bob@{d}", body="while you were away"), since=0, timeout=15)


def test_service_messages(user, domain):
    m = user.mark()
    user.send_message(f"server@{domain}", "motd")
    user.wait_for(message(frm=f"server@{domain}", body="Welcome to the test network"), since=m)


def test_vcard_and_avatar_of_a_contact(user, domain):
    r = user.iq("<vCard xmlns='vcard-temp'/>", to=echo(domain))
    assert text(r, "{vcard-temp}vCard/{vcard-temp}FN") == "Echo bot"
    assert text(r, "{vcard-temp}vCard/{vcard-temp}PHOTO/{vcard-temp}TYPE") == "image/png"
    pres = user.wait_for(where(lambda e: e.tag.endswith("presence") and e.get("from") == echo(domain)
                               and find(e, "vcard_update:x/vcard_update:photo") is not None,
                               "echo presence with photo"), since=0, take=False)
    assert len(text(pres, "vcard_update:x/vcard_update:photo")) == 40
