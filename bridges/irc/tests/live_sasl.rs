//! SASL PLAIN over a real socket, against a scripted IRC server.
//!
//! InspIRCd hands SASL to a services package over a server link, and the
//! test peers run no services, so neither InspIRCd nor ngIRCd can accept a
//! SASL login here. This file stands in for the services side with a small
//! scripted IRC server on a loopback port: the session, driver, transport
//! and registration are Ferry's real ones. What it checks: PASS before
//! NICK, the SASL PLAIN exchange (authzid, authcid and password, base64 in
//! 400-byte chunks), the after-connect commands once registered, the join;
//! and that a refused login ends the join with the server's reason.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use ferry_bridge::{Action, Event};
use ferry_irc::Config;
use ferry_irc::settings::{ServerOptions, SettingsStore};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// What the scripted server saw.
#[derive(Default)]
struct Seen {
    lines: Vec<String>,
    /// The decoded SASL PLAIN message.
    plain: Option<Vec<u8>>,
}

fn b64_decode(s: &str) -> Vec<u8> {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|c| *c != b'=') {
        let v = A.iter().position(|a| *a == c).expect("base64 digit") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// Serves one IRC connection: CAP 302 offering sasl, SASL PLAIN accepted
/// for (`account`, `password`), registration, JOIN. Returns its port.
async fn scripted_server(account: &'static str, password: String, seen: Arc<Mutex<Seen>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let Ok((sock, _)) = listener.accept().await else {
            return;
        };
        let (rd, mut wr) = sock.into_split();
        let mut rd = BufReader::new(rd);
        let mut nick = String::from("*");
        let mut b64 = String::new();
        let (mut user, mut cap_end, mut welcomed) = (false, false, false);
        let mut line = String::new();
        loop {
            line.clear();
            if rd.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let l = line.trim_end_matches(['\r', '\n']).to_owned();
            seen.lock().unwrap().lines.push(l.clone());
            let words: Vec<&str> = l.split(' ').collect();
            let mut out: Vec<String> = Vec::new();
            match words.as_slice() {
                ["CAP", "LS", ..] => {
                    out.push(":srv CAP * LS :sasl=PLAIN,EXTERNAL multi-prefix".into())
                }
                ["CAP", "REQ", rest @ ..] => {
                    out.push(format!(":srv CAP {nick} ACK {}", rest.join(" ")))
                }
                ["CAP", "END"] => cap_end = true,
                ["NICK", n] => nick = (*n).to_owned(),
                ["USER", ..] => user = true,
                ["AUTHENTICATE", "PLAIN"] => out.push("AUTHENTICATE +".into()),
                ["AUTHENTICATE", chunk] => {
                    if *chunk != "+" {
                        b64.push_str(chunk);
                    }
                    if chunk.len() < 400 {
                        let msg = b64_decode(&b64);
                        let expected = format!("{account}\0{account}\0{password}");
                        let ok = msg == expected.as_bytes()
                            || msg == format!("\0{account}\0{password}").as_bytes();
                        seen.lock().unwrap().plain = Some(msg);
                        if ok {
                            out.push(format!(
                                ":srv 900 {nick} {nick}!u@h {account} :You are now logged in as {account}"
                            ));
                            out.push(format!(":srv 903 {nick} :SASL authentication successful"));
                        } else {
                            out.push(format!(":srv 904 {nick} :SASL authentication failed"));
                        }
                    }
                }
                ["PING", token] => out.push(format!(":srv PONG srv {token}")),
                ["JOIN", chans, ..] => {
                    for c in chans.split(',') {
                        out.push(format!(":{nick}!u@h JOIN {c}"));
                        out.push(format!(":srv 353 {nick} = {c} :{nick}"));
                        out.push(format!(":srv 366 {nick} {c} :End of /NAMES list."));
                    }
                }
                ["QUIT", ..] => {
                    let _ = wr.write_all(b"ERROR :Closing link\r\n").await;
                    return;
                }
                _ => {}
            }
            if cap_end && user && nick != "*" && !welcomed {
                welcomed = true;
                out.push(format!(":srv 001 {nick} :Welcome {nick}!u@h"));
                out.push(format!(
                    ":srv 005 {nick} CHANTYPES=# CASEMAPPING=ascii :are supported"
                ));
                out.push(format!(":srv 422 {nick} :No MOTD"));
            }
            for o in out {
                if wr.write_all(format!("{o}\r\n").as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    });
    port
}

async fn session_for(port: u16, opts: ServerOptions) -> Gw {
    let gw = Gw::new(
        Config {
            ports: vec![port],
            tls_ports: vec![],
            ..config()
        },
        &format!("{}@localhost", unique("sasl")),
    )
    .await;
    SettingsStore::new(gw.store.as_ref())
        .set_server(INSP, &opts)
        .unwrap();
    gw
}

async fn join(gw: &mut Gw) -> Event {
    let room = gw.room(&format!("#{}", unique("sasl")), INSP);
    gw.act(Action::JoinRoom {
        room,
        nick: unique("s"),
        password: None,
    })
    .await
    .unwrap();
    gw.event(|e| matches!(e, Event::RoomJoined { .. } | Event::RoomJoinFailed { .. }))
        .await
}

#[tokio::test]
async fn sasl_plain_logs_in_before_registration_ends() {
    // Long enough for the base64 to take two AUTHENTICATE chunks.
    let password: String = "pa55-".repeat(70);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let port = scripted_server("acct", password.clone(), seen.clone()).await;
    let mut gw = session_for(
        port,
        ServerOptions {
            sasl_username: Some("acct".into()),
            sasl_password: Some(password.clone()),
            pass: Some("server-pass".into()),
            after_connect_commands: vec!["PRIVMSG NickServ :hello".into()],
            ..Default::default()
        },
    )
    .await;
    let ev = join(&mut gw).await;
    assert!(matches!(ev, Event::RoomJoined { .. }), "{ev:?}");
    let seen = seen.lock().unwrap();
    let pos = |p: &str| {
        seen.lines
            .iter()
            .position(|l| l.starts_with(p))
            .unwrap_or_else(|| panic!("no {p} in {:#?}", seen.lines))
    };
    assert!(pos("PASS server-pass") < pos("NICK "), "{:#?}", seen.lines);
    assert!(
        pos("AUTHENTICATE PLAIN") < pos("CAP END"),
        "{:#?}",
        seen.lines
    );
    let chunks = seen
        .lines
        .iter()
        .filter(|l| l.starts_with("AUTHENTICATE ") && *l != "AUTHENTICATE PLAIN")
        .count();
    assert!(chunks >= 2, "{:#?}", seen.lines);
    assert_eq!(
        seen.plain.as_deref(),
        Some(format!("acct\0acct\0{password}").as_bytes())
    );
    assert!(pos("CAP END") < pos("PRIVMSG NickServ :hello"));
    assert!(pos("PRIVMSG NickServ :hello") < pos("JOIN "));
}

#[tokio::test]
async fn a_refused_sasl_login_fails_the_join_with_the_reason() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let port = scripted_server("acct", "right".into(), seen.clone()).await;
    let mut gw = session_for(
        port,
        ServerOptions {
            sasl_username: Some("acct".into()),
            sasl_password: Some("wrong".into()),
            ..Default::default()
        },
    )
    .await;
    let ev = join(&mut gw).await;
    let Event::RoomJoinFailed { error, .. } = ev else {
        panic!("joined without a login: {ev:?}")
    };
    assert!(error.message.contains("SASL"), "{error}");
    assert!(error.message.contains("failed"), "{error}");
    let seen = seen.lock().unwrap();
    assert!(
        !seen.lines.iter().any(|l| l.starts_with("JOIN")),
        "{:#?}",
        seen.lines
    );
}
