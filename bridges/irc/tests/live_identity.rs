//! Live tests of how users show on IRC: WEBIRC (the user's own host),
//! identd (a hash of the user's JID as the username), the username and
//! realname options. On ngIRCd (WEBIRC password in peers.env, ident
//! lookups on port 113), under the "ngircd" lock.

mod common;

use common::*;
use ferry_bridge::Action;
use ferry_irc::Config;

/// WHOIS a nick from a raw client: (user, host, realname).
async fn whois(raw: &mut Raw, nick: &str) -> (String, String, String) {
    raw.send(&format!("WHOIS {nick}")).await;
    let m = raw
        .expect(|m| m.command == "311" && m.param(1) == nick)
        .await;
    (
        m.param(2).to_owned(),
        m.param(3).to_owned(),
        m.trailing().to_owned(),
    )
}

#[tokio::test]
async fn webirc_shows_the_users_own_host() {
    let _lock = exclusive("ngircd");
    let password =
        std::env::var("NGIRCD_WEBIRC_PASSWORD").expect("NGIRCD_WEBIRC_PASSWORD (peers.env)");
    let mut raw = Raw::connect(ngircd(), &unique("raw"), &[]).await;
    // The user's XMPP server is 127.0.0.5 (an IP literal resolves to itself).
    let mut gw = Gw::new(
        Config {
            webirc_password: Some(password),
            ..config()
        },
        &format!("{}@127.0.0.5", unique("u")),
    )
    .await;
    let nick = unique("web");
    let room = gw.room(&format!("#{}", unique("web")), NG);
    gw.join(&room, &nick).await;
    let (user, host, _) = whois(&mut raw, &nick).await;
    assert_eq!(host, "127.0.0.5");
    // ngIRCd takes WEBIRC's second argument (the gateway's name) as the user.
    assert_eq!(user, "ferry");
    // Without WEBIRC the host is the gateway's address.
    let mut plain = Gw::new(config(), &format!("{}@127.0.0.5", unique("u"))).await;
    let nick2 = unique("web");
    plain.join(&room, &nick2).await;
    let (_, host, _) = whois(&mut raw, &nick2).await;
    assert_eq!(host, "127.0.0.1");
}

/// The local ports of this process's TCP connections to `remote`.
fn my_connections_to(remote: std::net::SocketAddrV4) -> Vec<u16> {
    let mut inodes = std::collections::HashSet::new();
    for fd in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        if let Ok(target) = std::fs::read_link(fd.path()) {
            let t = target.to_string_lossy().into_owned();
            if let Some(n) = t.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')) {
                inodes.insert(n.to_owned());
            }
        }
    }
    let hex = |a: &std::net::SocketAddrV4| {
        format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(a.ip().octets()),
            a.port()
        )
    };
    let want = hex(&remote);
    std::fs::read_to_string("/proc/self/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 9 && f[2] == want && inodes.contains(f[9]))
                .then(|| u16::from_str_radix(f[1].rsplit(':').next().unwrap(), 16).unwrap())
        })
        .collect()
}

#[tokio::test]
async fn identd_answers_a_hash_of_the_jid_for_each_connection() {
    let _lock = exclusive("ngircd");
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let identd_port = 20000 + (std::process::id() % 20000) as u16;
    let jid = format!("{}@localhost", unique("u"));
    let mut gw = Gw::new(
        Config {
            identd_port,
            identd_address: "127.0.0.1".parse().unwrap(),
            ..config()
        },
        &jid,
    )
    .await;
    let room = gw.room(&format!("#{}", unique("id")), NG);
    gw.join(&room, &unique("id")).await;
    let ng: std::net::SocketAddrV4 = format!("127.0.0.2:{}", ngircd()).parse().unwrap();
    let ports = my_connections_to(ng);
    assert_eq!(ports.len(), 1, "one connection to ngIRCd: {ports:?}");
    // What an IRC server asks the identd of the gateway's host.
    let s = tokio::net::TcpStream::connect(("127.0.0.1", identd_port))
        .await
        .unwrap();
    let (r, mut w) = s.into_split();
    w.write_all(format!("{} , {}\r\n", ports[0], ngircd()).as_bytes())
        .await
        .unwrap();
    let mut line = String::new();
    tokio::io::BufReader::new(r)
        .read_line(&mut line)
        .await
        .unwrap();
    assert_eq!(
        line,
        format!(
            "{}, {} : USERID : OTHER : {}\r\n",
            ports[0],
            ngircd(),
            ferry_irc::identd::ident_of(&jid)
        )
    );
    // Someone else's connection is nobody's.
    let s = tokio::net::TcpStream::connect(("127.0.0.1", identd_port))
        .await
        .unwrap();
    let (r, mut w) = s.into_split();
    w.write_all(b"1, 2\r\n").await.unwrap();
    let mut line = String::new();
    tokio::io::BufReader::new(r)
        .read_line(&mut line)
        .await
        .unwrap();
    assert_eq!(line, "1, 2 : ERROR : NO-USER\r\n");
    // Gone with the connection.
    gw.act(Action::LeaveRoom { room, reason: None })
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let s = tokio::net::TcpStream::connect(("127.0.0.1", identd_port))
        .await
        .unwrap();
    let (r, mut w) = s.into_split();
    w.write_all(format!("{}, {}\r\n", ports[0], ngircd()).as_bytes())
        .await
        .unwrap();
    let mut line = String::new();
    tokio::io::BufReader::new(r)
        .read_line(&mut line)
        .await
        .unwrap();
    assert!(line.contains("NO-USER"), "{line}");
}

#[tokio::test]
async fn username_and_realname_are_configurable() {
    let _lock = exclusive("ngircd");
    let mut raw = Raw::connect(ngircd(), &unique("raw"), &[]).await;
    let mut gw = Gw::new(config(), &format!("{}@localhost", unique("u"))).await;
    let service = gw.service(NG);
    let out = gw
        .act(Action::Command(ferry_bridge::CommandCall {
            node: "configure".into(),
            target: Some(service.clone()),
            stage: None,
            values: Default::default(),
            admin: false,
        }))
        .await
        .unwrap();
    let ferry_bridge::Outcome::Command(ferry_bridge::CommandReply::Form { stage, .. }) = out else {
        panic!()
    };
    let mut v = ferry_bridge::FormValues::new()
        .with("username", "jdoe")
        .with("realname", "Jane Doe via Ferry");
    v.set("ports", vec![ngircd().to_string()]);
    v.set("tls_ports", vec![]);
    gw.act(Action::Command(ferry_bridge::CommandCall {
        node: "configure".into(),
        target: Some(service),
        stage: Some(stage),
        values: v,
        admin: false,
    }))
    .await
    .unwrap();
    let nick = unique("rn");
    let room = gw.room(&format!("#{}", unique("rn")), NG);
    gw.join(&room, &nick).await;
    let (user, _, real) = whois(&mut raw, &nick).await;
    assert_eq!(user.trim_start_matches('~'), "jdoe");
    assert_eq!(real, "Jane Doe via Ferry");
}
