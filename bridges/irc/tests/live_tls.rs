//! Live TLS tests on InspIRCd's TLS port (a self-signed certificate made by
//! the peers script: IRC_TLS_PORT, IRC_TLS_CERT, IRC_TLS_FINGERPRINT):
//! verification on by default, a CA file, fingerprint pinning,
//! verification off, TLS ports tried before plain ones, and a client
//! certificate (CertFP, what SASL EXTERNAL uses).

mod common;

use common::*;
use ferry_bridge::{
    Action, Address, CommandCall, CommandReply, ErrorKind, Event, FormValues, Outcome,
};
use ferry_irc::Config;
use ferry_irc::settings::{ServerOptions, SettingsStore};

fn env(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set (peers.env of contrib/peers)"))
}

fn tls_port() -> u16 {
    env("IRC_TLS_PORT").parse().expect("IRC_TLS_PORT")
}

/// A session whose server 127.0.0.1 is reached with `opts`.
async fn gw_with(config: Config, opts: ServerOptions) -> Gw {
    let gw = Gw::new(config, &format!("{}@localhost", unique("u"))).await;
    SettingsStore::new(gw.store.as_ref())
        .set_server(INSP, &opts)
        .unwrap();
    gw
}

fn tls_only(extra: ServerOptions) -> ServerOptions {
    ServerOptions {
        tls_ports: Some(vec![tls_port()]),
        ports: Some(vec![]),
        ..extra
    }
}

async fn join_result(gw: &mut Gw) -> Result<(), ferry_bridge::BridgeError> {
    let room = gw.room(&format!("#{}", unique("tls")), INSP);
    gw.act(Action::JoinRoom {
        room: room.clone(),
        nick: unique("tls"),
        password: None,
    })
    .await
    .unwrap();
    match gw
        .event(|e| matches!(e, Event::RoomJoined { .. } | Event::RoomJoinFailed { .. }))
        .await
    {
        Event::RoomJoined { .. } => Ok(()),
        Event::RoomJoinFailed { error, .. } => Err(error),
        _ => unreachable!(),
    }
}

async fn info(gw: &mut Gw) -> String {
    let out = gw
        .act(Action::Command(CommandCall {
            node: "get-irc-connection-info".into(),
            target: Some(gw.service(INSP)),
            stage: None,
            values: FormValues::new(),
            admin: false,
        }))
        .await
        .unwrap();
    let Outcome::Command(CommandReply::Done { note: Some(n), .. }) = out else {
        panic!("{out:?}")
    };
    n
}

#[tokio::test]
async fn an_unknown_certificate_is_refused_by_default() {
    let mut gw = gw_with(config(), tls_only(ServerOptions::default())).await;
    let err = join_result(&mut gw).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable);
    assert!(
        err.message.contains("certificate") || err.message.contains("UnknownIssuer"),
        "{err}"
    );
}

#[tokio::test]
async fn a_ca_file_makes_it_trusted() {
    let config = Config {
        ca_file: Some(env("IRC_TLS_CA").into()),
        ..config()
    };
    let mut gw = gw_with(config, tls_only(ServerOptions::default())).await;
    join_result(&mut gw).await.unwrap();
    let note = info(&mut gw).await;
    assert!(note.contains("TLS (encrypted)"), "{note}");
    assert!(note.contains(&format!("port {}", tls_port())), "{note}");
    assert!(note.contains(&env("IRC_TLS_FINGERPRINT")), "{note}");
}

#[tokio::test]
async fn pinned_fingerprints_are_trusted_and_others_refused() {
    let fp = env("IRC_TLS_FINGERPRINT");
    // With colons and upper case, as users paste them.
    let pasted: String = fp
        .to_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(":");
    let mut gw = gw_with(
        config(),
        tls_only(ServerOptions {
            fingerprint: Some(pasted),
            ..Default::default()
        }),
    )
    .await;
    join_result(&mut gw).await.unwrap();
    let mut gw = gw_with(
        config(),
        tls_only(ServerOptions {
            fingerprint: Some("00".repeat(32)),
            ..Default::default()
        }),
    )
    .await;
    let err = join_result(&mut gw).await.unwrap_err();
    assert!(err.message.contains("fingerprint"), "{err}");
}

#[tokio::test]
async fn verification_can_be_turned_off() {
    let mut gw = gw_with(
        config(),
        tls_only(ServerOptions {
            verify_cert: Some(false),
            ..Default::default()
        }),
    )
    .await;
    join_result(&mut gw).await.unwrap();
}

#[tokio::test]
async fn tls_ports_are_tried_before_plain_ones() {
    // A TLS port that refuses, then the plain port.
    let mut gw = gw_with(
        config(),
        ServerOptions {
            tls_ports: Some(vec![1]),
            ports: Some(vec![inspircd()]),
            ..Default::default()
        },
    )
    .await;
    join_result(&mut gw).await.unwrap();
    let note = info(&mut gw).await;
    assert!(
        note.contains("plain text") && note.contains(&format!("port {}", inspircd())),
        "{note}"
    );
    // With both working, TLS wins.
    let config = Config {
        ca_file: Some(env("IRC_TLS_CA").into()),
        ..config()
    };
    let mut gw = gw_with(
        config,
        ServerOptions {
            tls_ports: Some(vec![tls_port()]),
            ports: Some(vec![inspircd()]),
            ..Default::default()
        },
    )
    .await;
    join_result(&mut gw).await.unwrap();
    assert!(info(&mut gw).await.contains("TLS (encrypted)"));
}

#[tokio::test]
async fn a_client_certificate_is_presented() {
    let dir = std::env::temp_dir().join(unique("ferry-cert"));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("c.pem"), dir.join("k.pem"));
    let ok = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=ferry-test",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (installed by contrib/peers)");
    assert!(ok.status.success());
    let pem = format!(
        "{}{}",
        std::fs::read_to_string(&cert).unwrap(),
        std::fs::read_to_string(&key).unwrap()
    );
    let fp = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(&cert)
        .output()
        .unwrap();
    let fp: String = String::from_utf8_lossy(&fp.stdout)
        .rsplit('=')
        .next()
        .unwrap()
        .trim()
        .replace(':', "")
        .to_lowercase();
    let config = Config {
        ca_file: Some(env("IRC_TLS_CA").into()),
        ..config()
    };
    let mut gw = gw_with(
        config,
        tls_only(ServerOptions {
            client_cert: Some(pem),
            ..Default::default()
        }),
    )
    .await;
    let nick = unique("cert");
    let room = gw.room(&format!("#{}", unique("tls")), INSP);
    gw.join(&room, &nick).await;
    let mut raw = Raw::connect(inspircd(), &unique("raw"), &[]).await;
    raw.send(&format!("WHOIS {nick}")).await;
    let m = raw.expect(|m| m.command == "276").await;
    assert!(m.trailing().contains(&fp), "{m:?} vs {fp}");
    // A PEM without a key is refused by the configure form, with a reason.
    let out = gw
        .act(Action::Command(CommandCall {
            node: "configure".into(),
            target: Some(Address::Service(ferry_bridge::ServiceId::new(INSP))),
            stage: None,
            values: FormValues::new(),
            admin: false,
        }))
        .await
        .unwrap();
    let Outcome::Command(CommandReply::Form { stage, .. }) = out else {
        panic!()
    };
    let v = FormValues::new().with("client_cert", std::fs::read_to_string(&cert).unwrap());
    let err = gw
        .act(Action::Command(CommandCall {
            node: "configure".into(),
            target: Some(Address::Service(ferry_bridge::ServiceId::new(INSP))),
            stage: Some(stage),
            values: v,
            admin: false,
        }))
        .await
        .unwrap_err();
    assert!(
        err.message.contains("client_cert") && err.message.contains("key"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
