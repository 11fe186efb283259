"""Mail as chat, end to end: a real XMPP client (slixmpp) through Prosody
and the ferry binary on one side, real mailboxes on Postfix + Dovecot on
the other, driven with smtplib/imaplib. Mail in (plain, HTML, alternative,
attachments, ISO-8859-1, encoded words, quotes and signatures stripped),
replies out (threaded in the correspondent's mailbox, Sent copy, receipt),
new conversations, corrections refused, bounces, hostile input."""
import pytest

from harness.stanza import find, has, message, text

from email_helpers import Mailbox, chat_from, jid, register, upload, wait_until

OOB = "{jabber:x:oob}x/{jabber:x:oob}url"


@pytest.fixture(scope="module")
def me(xmpp_module, domain, peers, gw):
    """alice with her mailbox, registered once for the module."""
    alice = xmpp_module("alice")
    mb = register(alice, domain, peers)
    return alice, mb


def test_mail_in_reply_out_threaded_with_receipt_and_sent_copy(me, domain, peers):
    alice, mb = me
    bob = Mailbox.create(peers, "bob")
    first = bob.send(mb.address, "lunch?", "Shall we have lunch?\n\n-- \nBob\nACME Inc.\n")
    m = alice.wait_for(chat_from(bob.address, domain, body="Shall we have lunch?"), timeout=30)
    assert text(m, "thread") == first
    # the correspondent is in the roster
    wait_until(lambda: jid(bob.address, domain) in alice.roster(), what="bob in the roster")

    mid = alice.send_message(jid(bob.address, domain), "Yes, at noon.",
                             extra="<request xmlns='urn:xmpp:receipts'/>")
    alice.wait_for(message(frm=jid(bob.address, domain)) & has("receipts:received", id=mid), timeout=30)
    reply = bob.wait_folder(1)[0]
    assert reply["From"] == mb.address or mb.address in reply["From"]
    assert reply["Subject"] == "Re: lunch?"
    assert reply["In-Reply-To"] == f"<{first}>"
    assert reply["References"] == f"<{first}>"
    assert reply.get_content().strip() == "Yes, at noon."
    # the copy in alice's Sent folder
    sent = mb.wait_folder(1, "Sent")
    assert sent[0]["Message-ID"] == reply["Message-ID"]
    # bob answers with the whole thread quoted: only his new text shows
    second = bob.send(mb.address, "Re: lunch?", "Great!\n\nOn Monday, alice wrote:\n> Yes, at noon.\n",
                      headers={"In-Reply-To": reply["Message-ID"],
                               "References": f"<{first}> {reply['Message-ID']}"})
    m = alice.wait_for(chat_from(bob.address, domain), timeout=30)
    assert text(m, "body") == "Great!"
    assert text(m, "thread") == first, "the thread is the root of References"
    assert second


def test_new_conversation_from_xmpp(me, domain, peers):
    alice, mb = me
    carol = Mailbox.create(peers, "carol")
    alice.send_message(jid(carol.address, domain), "Hello Carol\nare you coming on Friday?")
    got = carol.wait_folder(1)[0]
    assert got["Subject"] == "Hello Carol"
    assert got["In-Reply-To"] is None
    assert got.get_content().strip() == "Hello Carol\nare you coming on Friday?"
    # the new correspondent joins the roster
    wait_until(lambda: jid(carol.address, domain) in alice.roster(), what="carol in the roster")


def test_formats_and_charsets(me, domain, peers):
    alice, mb = me
    dan = Mailbox.create(peers, "dan")
    frm = chat_from(dan.address, domain)
    dan.send(mb.address, "html", body=None,
             html="<html><body><p>Hi <b>there</b></p><script>alert('x')</script></body></html>")
    m = alice.wait_for(frm, timeout=30)
    assert "Hi" in text(m, "body") and "there" in text(m, "body")
    assert "alert" not in text(m, "body") and "<" not in text(m, "body")
    dan.send(mb.address, "alt", body="the plain part", html="<p>the html part</p>")
    assert text(alice.wait_for(frm, timeout=30), "body") == "the plain part"
    dan.send(mb.address, "latin", body="Grüße aus Köln", charset="iso-8859-1")
    assert text(alice.wait_for(frm, timeout=30), "body") == "Grüße aus Köln"
    raw = (f"From: =?ISO-8859-1?Q?Andr=E9?= <{dan.address}>\r\nTo: {mb.address}\r\n"
           "Subject: =?UTF-8?B?w6l0w6k=?=\r\nMessage-ID: <ew1@dan.localhost>\r\n"
           "Content-Type: text/plain; charset=utf-8\r\n\r\nencoded words\r\n").encode()
    dan.send_raw(mb.address, raw)
    assert text(alice.wait_for(frm, timeout=30), "body") == "encoded words"
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    dan.send(mb.address, "a picture", body="see attached", attachments=[("pic.png", "image/png", png)])
    m = alice.wait_for(frm & has("oob:x"), timeout=30)
    url = text(m, OOB)
    assert url and url.startswith("http"), url
    import urllib.request
    assert urllib.request.urlopen(url, timeout=10).read() == png


XHTML = "xhtml:html/xhtml_body:body"


def test_subjects_and_formatting_both_ways(me, domain, peers):
    alice, mb = me
    fay = Mailbox.create(peers, "fay")
    frm = chat_from(fay.address, domain)
    fay.send(mb.address, "Plans", body="Hi there", html="<p>Hi <b>there</b></p>")
    m = alice.wait_for(frm, timeout=30)
    assert text(m, "subject") == "Plans"
    assert text(m, "body").replace("*", "") == "Hi there"
    xhtml = find(m, XHTML)
    assert xhtml is not None, "the HTML part as XHTML-IM"
    assert any(e.tag.endswith("strong") or "bold" in (e.get("style") or "") for e in xhtml.iter()), \
        [e.tag for e in xhtml.iter()]
    # a mere "Re:" of the same subject does not repeat it
    fay.send(mb.address, "Re: Plans", body="and more")
    assert find(alice.wait_for(frm & message(body="and more"), timeout=30), "subject") is None
    # the user's subject names the mail; XHTML-IM becomes the HTML part
    alice.send_message(jid(fay.address, domain), "a bold plan",
                       extra="<subject>New plans</subject>"
                             "<html xmlns='http://jabber.org/protocol/xhtml-im'>"
                             "<body xmlns='http://www.w3.org/1999/xhtml'>a <strong>bold</strong> plan"
                             "</body></html>")
    got = fay.wait_folder(1)[0]
    assert got["Subject"] == "New plans"
    assert got.get_body(("plain",)).get_content().strip() == "a bold plan"
    html = got.get_body(("html",)).get_content()
    assert "bold" in html and ("<strong" in html or "font-weight" in html), html


def test_corrections_and_retractions_are_refused_with_a_reason(me, domain, peers):
    alice, mb = me
    eve = Mailbox.create(peers, "eve")
    to = jid(eve.address, domain)
    mid = alice.send_message(to, "first version")
    eve.wait_folder(1)
    alice.send_message(to, "fixed version", extra=f"<replace xmlns='urn:xmpp:message-correct:0' id='{mid}'/>")
    err = alice.wait_for(message(frm=to, type="error"), timeout=20)
    reason = text(err, "error/{urn:ietf:params:xml:ns:xmpp-stanzas}text") or ""
    assert "correct" in reason, reason
    assert len(eve.folder()) == 1, "the correction was not sent"


def test_a_bounce_comes_back_as_an_error_on_the_original_message(me, domain, peers):
    """The submission server accepts the mail (the receipt), the bounce comes
    later: it is an error on the stanza id of the message, from the contact,
    to the client that wrote it; not a notice, not a chat from MAILER-DAEMON."""
    alice, mb = me
    m = alice.mark()
    to = jid("nobody@nowhere.invalid", domain)
    mid = alice.send_message(to, "anyone there?", extra="<request xmlns='urn:xmpp:receipts'/>")
    alice.wait_for(message(frm=to) & has("receipts:received", id=mid), since=m, timeout=30)
    err = alice.wait_for(message(frm=to, type="error"), since=m, timeout=30)
    assert err.get("id") == mid
    assert err.get("to") == alice.jid, err.get("to")
    reason = text(err, "error/{urn:ietf:params:xml:ns:xmpp-stanzas}text") or ""
    assert "the mail server reported" in reason, reason
    alice.expect_no(message(frm=domain, body_contains="not delivered"), within=0.5, since=m)
    alice.expect_no(message(frm=jid("mailer-daemon@localhost", domain)), within=0.5, since=m)


def test_hostile_input(me, domain, peers):
    alice, mb = me
    mal = Mailbox.create(peers, "mal")
    frm = chat_from(mal.address, domain)
    broken = (f"From: {mal.address}\r\nTo: {mb.address}\r\nSubject: =?UTF-8?B?####?=\r\n"
              "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"never\"\r\n\r\n"
              "--never\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
              "@@@@\x00\r\n").encode()
    mal.send_raw(mb.address, broken)
    mal.send(mb.address, "after", "still delivered")
    alice.wait_for(frm & message(body="still delivered"), timeout=30)
    # CR/LF and NUL in a message body never make a header of the mail
    alice.send_message(jid(mal.address, domain), "line one\r\nBcc: evil@localhost\r\n\r\nx")
    got = mal.wait_folder(1)[0]
    assert got["Bcc"] is None
    assert "evil@localhost" not in str(got["To"])


def test_a_shared_file_becomes_a_mime_attachment(me, domain, peers):
    alice, mb = me
    fay = Mailbox.create(peers, "fay")
    data = b"%PDF-1.4 test document " + bytes(range(256)) * 8
    url = upload(alice, peers, data, "report.pdf", "application/pdf")
    alice.send_message(jid(fay.address, domain), url,
                       extra=f"<x xmlns='jabber:x:oob'><url>{url}</url></x>")
    got = fay.wait_folder(1)[0]
    parts = [p for p in got.iter_attachments()]
    assert len(parts) == 1, got
    assert parts[0].get_filename() == "report.pdf"
    assert parts[0].get_content_type() == "application/pdf"
    assert parts[0].get_content() == data


def test_read_mail_is_marked_seen_and_the_full_text_is_reachable(me, domain, peers):
    alice, mb = me
    gus = Mailbox.create(peers, "gus")
    mid = gus.send(mb.address, "notes", "The short answer.\n\nOn Tuesday you wrote:\n> the long question\n")
    m = alice.wait_for(chat_from(gus.address, domain, body="The short answer."), timeout=30)
    assert "\\Seen" not in mb.flags(mid)
    alice.send(f"<message to='{jid(gus.address, domain)}' type='chat'>"
               f"<displayed xmlns='urn:xmpp:chat-markers:0' id='{m.get('id')}'/></message>")
    wait_until(lambda: "\\Seen" in mb.flags(mid), what="\\Seen on the server")
    r = alice.command(jid(gus.address, domain), "show-full-text")
    assert r.status == "completed", r.notes
    full = " ".join(t for _, t in r.notes)
    assert "> the long question" in full and "Subject: notes" in full, full


def test_a_25_mb_attachment_arrives_whole(me, domain, peers):
    """Larger than the XMPP server's upload limit (10 MB here): the core
    publishes it on the gateway's own HTTP instead; the bytes arrive whole."""
    alice, mb = me
    hal = Mailbox.create(peers, "hal")
    big = bytes(range(256)) * (25 * 4096)
    hal.send(mb.address, "the big file", body="here it is",
             attachments=[("big.bin", "application/octet-stream", big)])
    m = alice.wait_for(chat_from(hal.address, domain) & has("oob:x"), timeout=120)
    import urllib.request
    got = urllib.request.urlopen(text(m, OOB), timeout=60).read()
    assert len(got) == len(big) and got == big
