//! Files both ways in an encrypted direct chat, and the size limit.

use ferry_bridge::{
    Action, Address, Attachment, AttachmentSource, ContactId, ErrorKind, Event, OutgoingMessage,
};
use matrix_sdk::attachment::AttachmentConfig;
use matrix_sdk::media::{MediaFormat, MediaRequestParameters};
use matrix_sdk::ruma::OwnedUserId;
use matrix_sdk::ruma::events::room::MediaSource;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{self, Ferry, Peer};

/// A PNG-looking payload of `n` bytes.
fn payload(n: usize) -> Vec<u8> {
    let mut v = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    v.extend((0..n.saturating_sub(8)).map(|i| (i % 251) as u8));
    v
}

/// Serves `body` at any path on a loopback port; returns the base URL.
async fn serve(body: Vec<u8>, mime: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: {mime}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(&body).await;
            });
        }
    });
    format!("http://{addr}")
}

async fn dm(
    prefix: &str,
    config: ferry_matrix::Config,
) -> (Ferry, Peer, matrix_sdk::Room, ContactId) {
    let alice = Ferry::with_config(prefix, config).await;
    alice.connected().await;
    let bob = Peer::new("bob").await;
    let alice_id: OwnedUserId = alice.user_id.as_str().try_into().expect("uid");
    let room = bob.client.create_dm(&alice_id).await.expect("dm");
    let contact = ContactId::new(bob.user_id.as_str());
    bob.wait(room.room_id(), "alice joined", |v| {
        v["type"] == "m.room.member"
            && v["state_key"] == alice.user_id.as_str()
            && v["content"]["membership"] == "join"
    })
    .await;
    (alice, bob, room, contact)
}

#[tokio::test]
async fn files_both_ways_encrypted() {
    let (mut alice, bob, room, contact) = dm("alice", common::config()).await;

    // Matrix -> XMPP: the (encrypted) file arrives as bytes.
    let data = payload(20_000);
    room.send_attachment(
        "photo.png",
        &mime::IMAGE_PNG,
        data.clone(),
        AttachmentConfig::new(),
    )
    .await
    .expect("upload");
    let ev = alice
        .take(
            "the photo",
            |e| matches!(e, Event::Message(m) if !m.attachments.is_empty()),
        )
        .await;
    let Event::Message(m) = ev else {
        unreachable!()
    };
    let a = &m.attachments[0];
    assert_eq!(a.name.as_deref(), Some("photo.png"));
    assert_eq!(a.mime.as_deref(), Some("image/png"));
    match &a.source {
        AttachmentSource::Bytes(b) => assert_eq!(*b, data, "decrypted content"),
        AttachmentSource::Url(u) => panic!("expected bytes, got the URL {u}"),
    }

    // XMPP -> Matrix: an OOB URL is fetched and uploaded as m.image.
    let sent = payload(30_000);
    let url = format!(
        "{}/upload/cat%20picture.png",
        serve(sent.clone(), "image/png").await
    );
    let mut msg = OutgoingMessage::text(Address::Contact(contact.clone()), "f1", url.clone());
    msg.attachments.push(Attachment {
        source: AttachmentSource::Url(url.clone()),
        name: None,
        mime: None,
        size: None,
        caption: None,
    });
    alice
        .act(Action::SendMessage(msg))
        .await
        .expect("file sent");
    let v = bob
        .wait(room.room_id(), "the image", |v| {
            v["content"]["msgtype"] == "m.image" && v["sender"] == alice.user_id.as_str()
        })
        .await;
    assert_eq!(v["content"]["body"], "cat picture.png");
    // Encrypted room: the file is encrypted (`file`, not `url`).
    let file: MediaSource = if v["content"]["file"].is_object() {
        MediaSource::Encrypted(Box::new(
            serde_json::from_value(v["content"]["file"].clone()).expect("encrypted file"),
        ))
    } else {
        MediaSource::Plain(serde_json::from_value(v["content"]["url"].clone()).expect("mxc"))
    };
    assert!(matches!(file, MediaSource::Encrypted(_)), "{v}");
    let got = bob
        .client
        .media()
        .get_media_content(
            &MediaRequestParameters {
                source: file,
                format: MediaFormat::File,
            },
            false,
        )
        .await
        .expect("download");
    assert_eq!(got, sent);

    // A file with a caption.
    let url2 = format!(
        "{}/doc.pdf",
        serve(b"%PDF-1.4 tiny".to_vec(), "application/pdf").await
    );
    let mut msg = OutgoingMessage::text(Address::Contact(contact), "f2", "the contract");
    msg.attachments.push(Attachment {
        source: AttachmentSource::Url(url2),
        name: None,
        mime: None,
        size: None,
        caption: None,
    });
    alice.act(Action::SendMessage(msg)).await.expect("sent");
    let v = bob
        .wait(room.room_id(), "the pdf", |v| {
            v["content"]["msgtype"] == "m.file"
        })
        .await;
    assert_eq!(v["content"]["body"], "the contract");
    assert_eq!(v["content"]["filename"], "doc.pdf");
    alice.close().await;
}

#[tokio::test]
async fn oversized_files_are_refused_with_a_note() {
    let config = ferry_matrix::Config {
        max_media_bytes: 10_000,
        ..common::config()
    };
    let (mut alice, _bob, room, contact) = dm("alice", config).await;
    let url = format!(
        "{}/big.bin",
        serve(payload(50_000), "application/octet-stream").await
    );
    let mut msg = OutgoingMessage::text(Address::Contact(contact), "big", url.clone());
    msg.attachments.push(Attachment {
        source: AttachmentSource::Url(url),
        name: None,
        mime: None,
        size: None,
        caption: None,
    });
    let err = alice
        .act(Action::SendMessage(msg))
        .await
        .expect_err("too big");
    assert_eq!(err.kind, ErrorKind::ResourceConstraint, "{err:?}");
    assert!(err.message.contains("larger"), "{err:?}");

    room.send_attachment(
        "huge.bin",
        &mime::APPLICATION_OCTET_STREAM,
        payload(50_000),
        AttachmentConfig::new(),
    )
    .await
    .expect("upload");
    let ev = alice
        .take(
            "the note",
            |e| matches!(e, Event::Message(m) if m.body.contains("huge.bin")),
        )
        .await;
    let Event::Message(m) = ev else {
        unreachable!()
    };
    assert!(m.attachments.is_empty());
    assert!(m.body.contains("larger than"), "{}", m.body);
    alice.close().await;
}
