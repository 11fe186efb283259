//! A bridge session against the real Postfix and Dovecot: mail in (IDLE
//! and polling), threading both ways as the correspondent's mailbox sees
//! it, the Sent copy, a bounce, `\Seen` after reading, restarts that
//! neither lose nor repeat mail, and hostile mail that is survived.

mod common;

use std::time::Duration;

use common::{Mailbox, Running, config, inject, mail, mail_with_id, network};
use ferry_bridge::{
    Action, Address, AttachmentSource, ContactId, Event, FormValues, MessageId, OutgoingMessage,
    ReplyTo, Sender,
};
use ferry_email::parse::parse;

fn contact(mb: &Mailbox) -> Address {
    Address::Contact(ContactId::new(mb.address.clone()))
}

#[tokio::test]
async fn mail_in_and_threaded_reply_out_with_a_sent_copy() {
    let me = Mailbox::create("me");
    let bob = Mailbox::create("bob");
    let net = network(config());
    let mut s = Running::start(&net, &me.account(), Running::new_store(), FormValues::new()).await;
    s.connected().await;

    inject(
        &bob.address,
        &[&me.address],
        &mail_with_id(
            &format!("Bob Example <{}>", bob.address),
            &me.address,
            "lunch?",
            "<first@bob.localhost>",
            "",
            "Shall we have lunch?\n\n-- \nBob\n",
        ),
    )
    .await;
    let e = s
        .wait(
            "Bob's name",
            |e| matches!(e, Event::Contact(c) if c.name.as_deref() == Some("Bob Example")),
        )
        .await;
    let Event::Contact(c) = e else { unreachable!() };
    assert!(c.in_roster);
    let Event::Message(m) = s.wait("the mail", |e| matches!(e, Event::Message(_))).await else {
        unreachable!()
    };
    assert_eq!(m.chat, contact(&bob));
    assert_eq!(m.from, Sender::Contact(ContactId::new(bob.address.clone())));
    assert_eq!(m.body, "Shall we have lunch?", "signature stripped");
    assert_eq!(m.thread.as_deref(), Some("first@bob.localhost"));
    assert_eq!(m.id, Some(MessageId::new("first@bob.localhost")));

    // The user answers: a reply in the thread, from their address.
    let out = s
        .session
        .act(Action::SendMessage(OutgoingMessage::text(
            contact(&bob),
            "x1",
            "Yes, at noon.",
        )))
        .await
        .expect("sent");
    let Some(id) = out.clone().sent_id() else {
        panic!("{out:?}")
    };
    let got = bob.wait_mails("INBOX", 1).await;
    let reply = parse(&got[0]).expect("bob's mail parses");
    assert_eq!(reply.message_id.as_deref(), Some(id.as_str()));
    assert_eq!(
        reply.from.as_ref().map(|p| p.address.as_str()),
        Some(me.address.as_str())
    );
    assert_eq!(reply.subject.as_deref(), Some("Re: lunch?"));
    assert_eq!(reply.in_reply_to, ["first@bob.localhost"]);
    assert_eq!(reply.references, ["first@bob.localhost"]);
    assert_eq!(reply.text.trim(), "Yes, at noon.");
    // The copy in the user's Sent folder.
    let sent = me.wait_mails("Sent", 1).await;
    assert_eq!(
        parse(&sent[0]).expect("parses").message_id.as_deref(),
        Some(id.as_str())
    );

    // Bob answers the answer: same thread; the user replies to his first
    // mail explicitly (XEP-0461): In-Reply-To names that one.
    inject(
        &bob.address,
        &[&me.address],
        &mail_with_id(
            &bob.address,
            &me.address,
            "Re: lunch?",
            "<third@bob.localhost>",
            &format!("In-Reply-To: <{id}>\nReferences: <first@bob.localhost> <{id}>"),
            "great\n\nOn Monday you wrote:\n> Yes, at noon.\n",
        ),
    )
    .await;
    let Event::Message(m) = s
        .wait("the second mail", |e| matches!(e, Event::Message(_)))
        .await
    else {
        unreachable!()
    };
    assert_eq!(m.body, "great", "quote stripped");
    assert_eq!(m.thread.as_deref(), Some("first@bob.localhost"));
    let mut msg = OutgoingMessage::text(contact(&bob), "x2", "about the first one");
    msg.reply_to = Some(ReplyTo {
        id: MessageId::new("first@bob.localhost"),
        author: None,
        quote: None,
    });
    s.session.act(Action::SendMessage(msg)).await.expect("sent");
    let got = bob.wait_mails("INBOX", 2).await;
    let r = parse(&got[1]).expect("parses");
    assert_eq!(r.in_reply_to, ["first@bob.localhost"]);

    // Corrections and retractions get an error, never silence.
    let e = s
        .session
        .act(Action::Edit {
            message: OutgoingMessage::text(contact(&bob), "x3", "fixed"),
            replaces: id.clone(),
        })
        .await
        .expect_err("no corrections by mail");
    assert!(e.message.contains("cannot be corrected"), "{}", e.message);
    s.session
        .act(Action::Retract {
            chat: contact(&bob),
            target: id,
            moderate: None,
        })
        .await
        .expect_err("no retractions by mail");
    s.close().await;
}

#[tokio::test]
async fn restarts_neither_lose_nor_repeat_mail() {
    let me = Mailbox::create("rs");
    let bob = Mailbox::create("rsbob");
    let net = network(config());
    // Mail already in the inbox at registration is history, not news.
    inject(
        &bob.address,
        &[&me.address],
        &mail(&bob.address, &me.address, "old", "", "old mail"),
    )
    .await;
    me.wait_mails("INBOX", 1).await;
    let mut s = Running::start(&net, &me.account(), Running::new_store(), FormValues::new()).await;
    s.connected().await;
    inject(
        &bob.address,
        &[&me.address],
        &mail(&bob.address, &me.address, "one", "", "first"),
    )
    .await;
    s.wait_messages(1, common::T).await;
    let store = s.close().await;

    // Five mails while the session is down.
    for i in 0..5 {
        inject(
            &bob.address,
            &[&me.address],
            &mail(
                &bob.address,
                &me.address,
                &format!("m{i}"),
                "",
                &format!("while away {i}"),
            ),
        )
        .await;
    }
    me.wait_mails("INBOX", 7).await;
    let mut s = Running::start(&net, &me.account(), store, FormValues::new()).await;
    s.connected().await;
    s.wait_messages(5, common::T).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let bodies: Vec<String> = s.messages().into_iter().map(|m| m.body).collect();
    // Postfix delivers over parallel LMTP connections: the mailbox's UID
    // order is the order that counts.
    let inbox: Vec<String> = me
        .mails_in("INBOX")
        .await
        .iter()
        .map(|raw| parse(raw).expect("parses").text.trim().to_owned())
        .filter(|t| t.starts_with("while away"))
        .collect();
    assert_eq!(inbox.len(), 5);
    assert_eq!(bodies, inbox, "each once, in the mailbox's order");
    assert!(
        s.messages().iter().all(|m| m.timestamp.is_some()),
        "mail that waited carries its date (XEP-0203)"
    );
    let store = s.close().await;
    // Started again with nothing new: nothing is delivered.
    let mut s = Running::start(&net, &me.account(), store, FormValues::new()).await;
    s.connected().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(s.messages().is_empty(), "{:?}", s.messages());
    s.close().await;
}

#[tokio::test]
async fn polling_without_idle_and_seen_after_reading() {
    let me = Mailbox::create("poll");
    let bob = Mailbox::create("pollbob");
    let net = network(config());
    let mut s = Running::start(
        &net,
        &me.account_on(&common::env("IMAP_NOIDLE_HOST")),
        Running::new_store(),
        FormValues::new(),
    )
    .await;
    s.connected().await;
    let Event::Notice(n) = s
        .wait("the polling notice", |e| matches!(e, Event::Notice(_)))
        .await
    else {
        unreachable!()
    };
    assert!(n.contains("does not support IDLE"), "{n}");
    inject(
        &bob.address,
        &[&me.address],
        &mail_with_id(
            &bob.address,
            &me.address,
            "poll",
            "<p1@bob.localhost>",
            "",
            "polled",
        ),
    )
    .await;
    let Event::Message(m) = s.wait("the mail", |e| matches!(e, Event::Message(_))).await else {
        unreachable!()
    };
    assert_eq!(m.body, "polled");

    // The user reads it: \Seen on the server.
    s.session
        .act(Action::Displayed {
            chat: contact(&bob),
            up_to: MessageId::new("p1@bob.localhost"),
        })
        .await
        .expect("displayed");
    let start = std::time::Instant::now();
    loop {
        let mut c = me.imap().await;
        c.select_inbox().await.expect("select");
        let unseen = c.unseen().await.expect("search");
        c.logout().await;
        if unseen.is_empty() {
            break;
        }
        assert!(start.elapsed() < common::T, "still unseen: {unseen:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    s.close().await;
}

#[tokio::test]
async fn a_bounce_is_an_error_not_a_chat() {
    let me = Mailbox::create("bounce");
    let net = network(config());
    let mut s = Running::start(&net, &me.account(), Running::new_store(), FormValues::new()).await;
    s.connected().await;
    let nobody = Address::Contact(ContactId::new("nobody@nowhere.invalid"));
    let out = s
        .session
        .act(Action::SendMessage(OutgoingMessage::text(
            nobody.clone(),
            "b1",
            "hello?",
        )))
        .await
        .expect("the submission server takes it");
    let sent = out.sent_id().expect("the mail's id");
    let Event::DeliveryFailed {
        chat,
        id,
        error,
        permanent,
    } = s
        .wait("the bounce", |e| matches!(e, Event::DeliveryFailed { .. }))
        .await
    else {
        unreachable!()
    };
    assert_eq!(chat, nobody);
    assert_eq!(id, sent, "the failure names the mail sent");
    assert!(permanent);
    assert!(
        error.message.contains("outside mail is disabled"),
        "{}",
        error.message
    );
    assert!(
        s.messages().is_empty(),
        "no chat from MAILER-DAEMON: {:?}",
        s.messages()
    );
    s.close().await;
}

#[tokio::test]
async fn hostile_mail_is_survived() {
    let me = Mailbox::create("hostile");
    let bob = Mailbox::create("hbob");
    let net = network(config());
    let mut s = Running::start(&net, &me.account(), Running::new_store(), FormValues::new()).await;
    s.connected().await;
    // Broken MIME: a boundary that never closes, bad base64, a NUL.
    let broken = b"From: hbob@localhost\r\nTo: x@localhost\r\nSubject: =?UTF-8?B?####?=\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"never\"\r\n\r\n\
--never\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n@@@@\x00\r\n";
    inject(&bob.address, &[&me.address], broken).await;
    // HTML with a script, then an ordinary mail: both arrive, in order.
    inject(
        &bob.address,
        &[&me.address],
        &mail(
            &bob.address,
            &me.address,
            "html",
            "Content-Type: text/html; charset=utf-8",
            "<p>Hi <b>you</b><script>alert('x')</script></p>",
        ),
    )
    .await;
    inject(
        &bob.address,
        &[&me.address],
        &mail(&bob.address, &me.address, "ok", "", "still here"),
    )
    .await;
    let msgs = s.wait_messages(3, common::T).await;
    assert!(
        msgs[1].body.contains("Hi") && !msgs[1].body.contains("alert"),
        "{}",
        msgs[1].body
    );
    assert_eq!(msgs[2].body, "still here");

    // CR/LF in what the user sends never reaches a header.
    let mut m = OutgoingMessage::text(contact(&bob), "h1", "body");
    m.to = Address::Contact(ContactId::new("hbob@localhost\r\nBcc: evil@localhost"));
    s.session
        .act(Action::SendMessage(m))
        .await
        .expect_err("an address with CR/LF is refused");
    s.close().await;
}

#[tokio::test]
async fn a_25_mb_attachment_arrives_whole() {
    let me = Mailbox::create("big");
    let bob = Mailbox::create("bigbob");
    let net = network(config());
    let mut s = Running::start(&net, &me.account(), Running::new_store(), FormValues::new()).await;
    s.connected().await;
    let data: Vec<u8> = (0..25 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let b64 = {
        use std::fmt::Write as _;
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::with_capacity(data.len() * 4 / 3 + data.len() / 57 * 2 + 8);
        for (n, c) in data.chunks(3).enumerate() {
            let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
            let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= c.len() {
                    out.push(A[((v >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
            if n % 19 == 18 {
                let _ = write!(out, "\r\n");
            }
        }
        out
    };
    let raw = format!(
        "From: {b}\r\nTo: {m}\r\nSubject: big\r\nMessage-ID: <big@bob.localhost>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"B\"\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\n\
         the file\r\n--B\r\nContent-Type: application/octet-stream\r\n\
         Content-Disposition: attachment; filename=\"big.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
         {b64}\r\n--B--\r\n",
        b = bob.address,
        m = me.address
    );
    inject(&bob.address, &[&me.address], raw.as_bytes()).await;
    let msgs = s.wait_messages(1, Duration::from_secs(120)).await;
    let a = &msgs[0].attachments;
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].name.as_deref(), Some("big.bin"));
    let AttachmentSource::Bytes(got) = &a[0].source else {
        panic!("bytes")
    };
    assert!(
        got == &data,
        "the 25 MB arrive intact ({} bytes)",
        got.len()
    );
    s.close().await;
}

#[tokio::test]
async fn a_changed_uidvalidity_repeats_nothing() {
    use ferry_email::state::{MailRecord, Position, State};
    let me = Mailbox::create("uidv");
    let bob = Mailbox::create("uidvbob");
    let net = network(config());
    for (id, body) in [
        ("<known@bob.localhost>", "delivered before"),
        ("<new@bob.localhost>", "never seen"),
    ] {
        inject(
            &bob.address,
            &[&me.address],
            &mail_with_id(&bob.address, &me.address, "u", id, "", body),
        )
        .await;
    }
    me.wait_mails("INBOX", 2).await;
    // A position saved under another UIDVALIDITY (the server renumbered
    // its mailbox), and the record of the mail that was delivered then.
    let store = Running::new_store();
    let state = State::new(store.clone());
    let hour_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs()
        - 3600;
    state
        .set_position(Position {
            uid_validity: 1,
            last_uid: 40,
            saved_at: hour_ago,
        })
        .expect("saved");
    state
        .put_mail(
            "known@bob.localhost",
            &MailRecord {
                uid: Some(7),
                thread: "known@bob.localhost".into(),
                ..MailRecord::default()
            },
        )
        .expect("saved");
    let mut s = Running::start(&net, &me.account(), store, FormValues::new()).await;
    s.connected().await;
    s.wait_messages(1, common::T).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let bodies: Vec<String> = s.messages().into_iter().map(|m| m.body).collect();
    assert_eq!(bodies, ["never seen"]);
    let pos = state.position().expect("read").expect("saved");
    assert_ne!(pos.uid_validity, 1, "the new UIDVALIDITY is saved");
    s.close().await;
}

#[tokio::test]
async fn idle_is_renewed_and_a_changed_password_asks_for_a_new_login() {
    let me = Mailbox::create("renew");
    let bob = Mailbox::create("renewbob");
    // IDLE renewed every second: mail still arrives after several renewals.
    let net = network(ferry_email::Config {
        idle_timeout: 1,
        ..config()
    });
    let mut s = Running::start(&net, &me.account(), Running::new_store(), FormValues::new()).await;
    s.connected().await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    inject(
        &bob.address,
        &[&me.address],
        &mail(&bob.address, &me.address, "r", "", "after renewals"),
    )
    .await;
    let msgs = s.wait_messages(1, common::T).await;
    assert_eq!(msgs[0].body, "after renewals");
    s.close().await;

    // The password no longer works: the user is asked to log in again.
    let mut account = me.account();
    account.password = "changed elsewhere".into();
    let mut s = Running::start(&net, &account, Running::new_store(), FormValues::new()).await;
    let e = s
        .wait("login required", |e| {
            matches!(
                e,
                Event::Connection(ferry_bridge::ConnectionState::LoginRequired(_))
            )
        })
        .await;
    let Event::Connection(ferry_bridge::ConnectionState::LoginRequired(text)) = e else {
        unreachable!()
    };
    assert!(
        text.contains("refused the login") && text.contains("Register again"),
        "{text}"
    );
    s.close().await;
}

#[tokio::test]
async fn read_receipts_are_asked_for_and_become_read_markers() {
    let me = Mailbox::create("mdn");
    let bob = Mailbox::create("mdnbob");
    let net = network(config());
    let prefs = FormValues::new().with("read_receipts", "true");
    let mut s = Running::start(&net, &me.account(), Running::new_store(), prefs).await;
    s.connected().await;
    let out = s
        .session
        .act(Action::SendMessage(OutgoingMessage::text(
            contact(&bob),
            "r1",
            "did you read this?",
        )))
        .await
        .expect("sent");
    let Some(id) = out.clone().sent_id() else {
        panic!("{out:?}")
    };
    let got = bob.wait_mails("INBOX", 1).await;
    let raw = String::from_utf8_lossy(&got[0]).into_owned();
    assert!(
        raw.contains(&format!("Disposition-Notification-To: {}", me.address)),
        "{raw}"
    );
    // Bob's mail program sends the receipt (RFC 8098).
    let mdn = format!(
        "From: {b}\r\nTo: {m}\r\nSubject: Read: did you read this?\r\nMessage-ID: <mdn1@bob.localhost>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=disposition-notification; boundary=\"R\"\r\n\r\n\
         --R\r\nContent-Type: text/plain\r\n\r\nDisplayed.\r\n\
         --R\r\nContent-Type: message/disposition-notification\r\n\r\n\
         Final-Recipient: rfc822;{b}\r\nOriginal-Message-ID: <{id}>\r\n\
         Disposition: manual-action/MDN-sent-manually; displayed\r\n\r\n--R--\r\n",
        b = bob.address,
        m = me.address,
        id = id.as_str()
    );
    inject(&bob.address, &[&me.address], mdn.as_bytes()).await;
    let e = s
        .wait("the read marker", |e| matches!(e, Event::Displayed { .. }))
        .await;
    let Event::Displayed { chat, by, up_to } = e else {
        unreachable!()
    };
    assert_eq!(chat, contact(&bob));
    assert_eq!(by, Sender::Contact(ContactId::new(bob.address.clone())));
    assert_eq!(up_to, id);
    assert!(s.messages().is_empty(), "a receipt is no chat message");
    s.close().await;
}
