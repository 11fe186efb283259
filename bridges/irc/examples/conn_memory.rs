//! How much memory the IRC bridge itself needs per connected user: starts
//! N sessions, each joined to one channel on ngIRCd (fast registration),
//! and prints the process's RSS before and after. Run on demand:
//!
//!     NGIRCD_PORT=16668 cargo run --release -p ferry-irc --example conn_memory -- 50
//!
//! (the ports come from the peers' peers.env). It measures the bridge only:
//! the core's share of a user (XMPP session, rooms, archive) is measured by
//! the end-to-end benchmark (tests/irc/bench_irc.py).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_bridge::{Action, Address, Envelope, Event, EventSink, SessionContext, Spawner, UserId};
use ferry_irc::settings::{ServerOptions, SettingsStore};

use ferry_bridge::MemoryKeyValue as Mem;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(50);
    let port: u16 = match std::env::var("NGIRCD_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
    {
        Some(p) => p,
        None => {
            eprintln!("NGIRCD_PORT is not set (source the peers' peers.env)");
            std::process::exit(2);
        }
    };
    let net = match ferry_irc::build(
        ferry_irc::Config {
            ports: vec![port],
            tls_ports: vec![],
            ..Default::default()
        },
        ferry_bridge::BridgeSetup {
            domain: "irc.localhost".into(),
            data_dir: std::env::temp_dir(),
            hosts: ferry_bridge::HostPolicy::new(["127.0.0.1", "127.0.0.2"], [""; 0])
                .expect("test host policy"),
        },
    ) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Envelope>(65536);
    let (ftx, _frx) = tokio::sync::mpsc::unbounded_channel();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_kib();
    let t0 = Instant::now();
    let mut sessions = Vec::new();
    let room = match net.address().parse(
        &format!("#mem{}%127.0.0.2", std::process::id()),
        None,
        &ferry_bridge::AddressContext::none(),
    ) {
        Ok(Address::Room(r)) => r,
        other => panic!("{other:?}"),
    };
    for i in 0..n {
        let user = UserId::new(format!("mem{i}@localhost"));
        let store = Arc::new(Mem::default());
        let opts = ServerOptions {
            ports: Some(vec![port]),
            tls_ports: Some(vec![]),
            ..Default::default()
        };
        let _ = SettingsStore::new(store.as_ref()).set_server("127.0.0.2", &opts);
        let ctx = SessionContext {
            user: user.clone(),
            account: None,
            preferences: Default::default(),
            events: EventSink::new(user.clone(), tx.clone()),
            store,
            data_dir: std::env::temp_dir(),
            spawner: Spawner::new(user.clone(), ftx.clone()),
        };
        let mut s = match net.connect(ctx).await {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        let _ = s
            .act(Action::JoinRoom {
                room: room.clone(),
                nick: format!("mem{i}x{}", std::process::id() % 1000),
                password: None,
            })
            .await;
        sessions.push(s);
    }
    let mut joined = 0;
    let want = if std::env::var("MODE").as_deref() == Ok("connect") {
        0
    } else {
        n
    };
    if want == 0 {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    while joined < want {
        match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
            Ok(Some(Envelope::Event {
                event: Event::RoomJoined { .. },
                ..
            })) => joined += 1,
            Ok(Some(Envelope::Event {
                event: Event::RoomJoinFailed { error, .. },
                ..
            })) => panic!("{error}"),
            Ok(Some(_)) => {}
            _ => panic!("only {joined} of {n} joined"),
        }
    }
    let took = t0.elapsed();
    // Let the join bursts (every member's JOIN to everyone) settle.
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_secs(2) {
        if tokio::time::timeout(Duration::from_millis(200), rx.recv())
            .await
            .is_err()
        {
            break;
        }
    }
    let after = rss_kib();
    println!(
        "[bench] bridge only: {n} sessions joined one ngIRCd channel in {:.2} s; RSS {before} KiB -> {after} KiB: {:.1} KiB per connected user",
        took.as_secs_f64(),
        (after.saturating_sub(before)) as f64 / n as f64
    );
    for mut s in sessions {
        s.close(ferry_bridge::CloseReason::Shutdown).await;
    }
}
