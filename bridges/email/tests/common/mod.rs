//! Helpers of the live tests against the real Postfix and Dovecot of
//! contrib/peers (`PEERS=mail`): mailboxes made on the fly, mail injected
//! by SMTP like any correspondent would, mailboxes read with the bridge's
//! own IMAP layer, and a bridge session driven through the bridge API with
//! its events collected (flushes answered like the core does). The ports
//! come from the environment the test command sets (peers.env); a missing
//! one fails the test with a clear message.

#![allow(dead_code)]

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_bridge::{
    Envelope, Event, EventSink, FormValues, HostPolicy, KeyValue, MemoryKeyValue, Network, Session,
    SessionContext, Spawner, UserId,
};
use ferry_email::imap::{self, Timeouts};
use ferry_email::settings::{Endpoint, Security, ServerSettings, StoredAccount};
use ferry_email::tls::TlsContext;
use ferry_email::{Config, EmailNetwork, Shared};
use lettre::address::Envelope as SmtpEnvelope;
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Tokio1Executor};
use tokio::sync::mpsc;

/// The usual wait.
pub const T: Duration = Duration::from_secs(20);

/// An environment variable the peers set.
pub fn env(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: these tests need the real mail servers. Start them with \
             PEERS=mail contrib/peers/start-peers.sh DIR (or tests/run.sh) and export \
             DIR/peers.env"
        )
    })
}

/// A port from the environment.
pub fn port(var: &str) -> u16 {
    let v = env(var);
    v.parse()
        .unwrap_or_else(|_| panic!("{var}={v:?} is not a port"))
}

/// A name unique to this test run.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id() % 10_000;
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_millis())
        .unwrap_or(0);
    format!("{prefix}{pid}x{t:03}x{n}")
}

/// A mailbox on the test Dovecot.
#[derive(Clone, Debug)]
pub struct Mailbox {
    pub user: String,
    pub password: String,
    pub address: String,
}

impl Mailbox {
    /// A new, empty mailbox (a line in Dovecot's passwd-file), usable
    /// when this returns.
    pub fn create(prefix: &str) -> Mailbox {
        let user = unique(prefix);
        let password = format!("{user}-pw");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(env("MAIL_USERS_FILE"))
            .expect("the mail users file opens");
        // One write: tests running in parallel append at once.
        f.write_all(format!("{user}:{{PLAIN}}{password}\n").as_bytes())
            .expect("user added");
        drop(f);
        let mb = Mailbox {
            address: format!("{user}@localhost"),
            user,
            password,
        };
        // Dovecot notices the change by the file's mtime, to the second.
        let start = Instant::now();
        loop {
            let ok = std::net::TcpStream::connect(("127.0.0.1", port("IMAP_PORT")))
                .ok()
                .and_then(|mut s| {
                    use std::io::{BufRead as _, BufReader};
                    let mut r = BufReader::new(s.try_clone().ok()?);
                    let mut line = String::new();
                    r.read_line(&mut line).ok()?;
                    s.write_all(format!("a LOGIN {} {}\r\n", mb.user, mb.password).as_bytes())
                        .ok()?;
                    loop {
                        line.clear();
                        r.read_line(&mut line).ok()?;
                        if line.starts_with("a ") {
                            let _ = s.write_all(b"b LOGOUT\r\n");
                            return Some(line.starts_with("a OK"));
                        }
                    }
                })
                .unwrap_or(false);
            if ok {
                return mb;
            }
            assert!(
                start.elapsed() < T,
                "mailbox {} never became usable",
                mb.user
            );
            std::thread::sleep(Duration::from_millis(300));
            // A new mtime makes Dovecot read the file again.
            let _ = std::fs::OpenOptions::new()
                .append(true)
                .open(env("MAIL_USERS_FILE"))
                .and_then(|f| f.set_modified(std::time::SystemTime::now()));
        }
    }

    /// The account as registration would store it: IMAP in plain text on
    /// `imap_host` (127.0.0.1 has IDLE, 127.0.0.2 not), submission with
    /// STARTTLS.
    pub fn account_on(&self, imap_host: &str) -> StoredAccount {
        StoredAccount {
            email: self.address.clone(),
            password: self.password.clone(),
            servers: ServerSettings {
                imap: Endpoint {
                    host: imap_host.into(),
                    port: port("IMAP_PORT"),
                    security: Security::Plain,
                },
                smtp: Endpoint {
                    host: "localhost".into(),
                    port: port("SUBMISSION_PORT"),
                    security: Security::Starttls,
                },
                username: self.user.clone(),
            },
            idle: imap_host == "127.0.0.1",
        }
    }

    /// The account with IDLE.
    pub fn account(&self) -> StoredAccount {
        self.account_on("127.0.0.1")
    }

    /// Logs in with the bridge's IMAP layer.
    pub async fn imap(&self) -> imap::Connection {
        let tls = TlsContext::new(None);
        let ep = self.account().servers.imap;
        imap::login(
            &tls,
            &open_hosts(),
            &ep,
            &self.user,
            &self.password,
            timeouts(),
        )
        .await
        .expect("IMAP login of the test mailbox")
    }

    /// Every mail of a folder, whole, in UID order.
    pub async fn mails_in(&self, folder: &str) -> Vec<Vec<u8>> {
        let mut c = self.imap().await;
        if folder == "INBOX" {
            c.select_inbox().await.expect("select");
        } else {
            c.select_folder(folder).await.expect("select folder");
        }
        let uids = c.uids_after(0).await.expect("search");
        let f = c.fetch(&uids, u64::MAX).await.expect("fetch");
        c.logout().await;
        f.into_iter().map(|f| f.raw).collect()
    }

    /// Waits until a folder holds `n` mails; returns them.
    pub async fn wait_mails(&self, folder: &str, n: usize) -> Vec<Vec<u8>> {
        let start = Instant::now();
        loop {
            let m = self.mails_in(folder).await;
            if m.len() >= n {
                return m;
            }
            assert!(
                start.elapsed() < T,
                "{} has {} mails in {folder}, expected {n}",
                self.address,
                m.len()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Deadlines for test connections.
pub fn timeouts() -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(10),
        command: Duration::from_secs(60),
    }
}

/// Sends a raw mail through Postfix's SMTP port, as a correspondent's
/// mail server would.
pub async fn inject(from: &str, to: &[&str], raw: &[u8]) {
    let t: AsyncSmtpTransport<Tokio1Executor> =
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(port("SMTP_PORT"))
            .build();
    let env = SmtpEnvelope::new(
        Some(from.parse().expect("from")),
        to.iter().map(|t| t.parse().expect("to")).collect(),
    )
    .expect("envelope");
    t.send_raw(&env, raw).await.expect("Postfix takes the mail");
}

/// A simple mail with CRLF line ends.
pub fn mail(from: &str, to: &str, subject: &str, headers: &str, body: &str) -> Vec<u8> {
    let id = format!("<{}@test.localhost>", unique("m"));
    mail_with_id(from, to, subject, &id, headers, body)
}

/// A simple mail with a given Message-ID.
pub fn mail_with_id(
    from: &str,
    to: &str,
    subject: &str,
    id: &str,
    headers: &str,
    body: &str,
) -> Vec<u8> {
    let mut s = format!(
        "From: {from}\nTo: {to}\nSubject: {subject}\nMessage-ID: {id}\n\
         Date: {}\nMIME-Version: 1.0\n",
        httpdate_now()
    );
    if !headers.is_empty() {
        s.push_str(headers.trim_end_matches('\n'));
        s.push('\n');
    }
    if !headers.to_ascii_lowercase().contains("content-type") {
        s.push_str("Content-Type: text/plain; charset=utf-8\n");
    }
    s.push('\n');
    s.push_str(body);
    s.replace("\r\n", "\n").replace('\n', "\r\n").into_bytes()
}

fn httpdate_now() -> String {
    // RFC 5322 date in UTC, enough for tests.
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil(days as i64);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{d} {} {y} {:02}:{:02}:{:02} +0000",
        MONTHS[(m - 1) as usize],
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

fn civil(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The bridge configuration for the tests: the test CA trusted, quick
/// polling, autoconfig from the local HTTP server, SRV from dnsmasq.
pub fn config() -> Config {
    Config {
        ca_file: Some(PathBuf::from(env("MAIL_TLS_CA"))),
        autoconfig_urls: vec![env("AUTOCONFIG_URL")],
        nameservers: vec![
            format!("127.0.0.1:{}", port("MAIL_DNS_PORT"))
                .parse()
                .expect("addr"),
        ],
        guess_hosts: false,
        poll_interval: 1,
        connect_timeout: 5,
        command_timeout: 30,
        reconnect_max_delay: 2,
        ..Config::default()
    }
}

/// The bridge.
pub fn network(config: Config) -> EmailNetwork {
    network_with(config, open_hosts())
}

/// The bridge under a given host policy.
pub fn network_with(config: Config, hosts: HostPolicy) -> EmailNetwork {
    EmailNetwork::new(Shared::new(config, hosts).expect("valid config"))
}

/// A host policy that allows the loopback addresses of the test servers.
pub fn open_hosts() -> HostPolicy {
    HostPolicy::new(["127.0.0.1", "127.0.0.2", "::1"], Vec::<String>::new())
        .expect("valid patterns")
}

/// A running session with its events collected.
pub struct Running {
    pub session: Box<dyn Session>,
    pub events: Arc<Mutex<Vec<Event>>>,
    pub store: Arc<dyn KeyValue>,
    spawner: Spawner,
    seen: usize,
}

impl Running {
    /// Starts a session for `account` with a store (reuse one to restart).
    pub async fn start(
        net: &EmailNetwork,
        account: &StoredAccount,
        store: Arc<dyn KeyValue>,
        prefs: FormValues,
    ) -> Running {
        let user = UserId::new(format!(
            "{}@xmpp.localhost",
            account.email.replace('@', ".")
        ));
        let (tx, mut rx) = mpsc::channel(256);
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        tokio::spawn(async move {
            while let Some(env) = rx.recv().await {
                match env {
                    Envelope::Event { event, .. } => sink.lock().expect("events").push(event),
                    Envelope::Flush(done) => {
                        let _ = done.send(());
                    }
                }
            }
        });
        let (ftx, _frx) = mpsc::unbounded_channel();
        let spawner = Spawner::new(user.clone(), ftx);
        let ctx = SessionContext {
            user: user.clone(),
            account: Some(account.to_account()),
            preferences: prefs,
            events: EventSink::new(user, tx),
            store: store.clone(),
            data_dir: std::env::temp_dir(),
            spawner: spawner.clone(),
        };
        let session = net.connect(ctx).await.expect("session starts");
        Running {
            session,
            events,
            store,
            spawner,
            seen: 0,
        }
    }

    /// A fresh store.
    pub fn new_store() -> Arc<dyn KeyValue> {
        Arc::new(MemoryKeyValue::new())
    }

    /// Every event so far.
    pub fn all(&self) -> Vec<Event> {
        self.events.lock().expect("events").clone()
    }

    /// Waits for the next event (after those already returned) matching.
    pub async fn wait<F: Fn(&Event) -> bool>(&mut self, what: &str, f: F) -> Event {
        let start = Instant::now();
        loop {
            {
                let ev = self.events.lock().expect("events");
                if let Some(i) = ev[self.seen..].iter().position(&f) {
                    let e = ev[self.seen + i].clone();
                    self.seen += i + 1;
                    return e;
                }
            }
            assert!(
                start.elapsed() < T,
                "no event {what} within {T:?}; got {:#?}",
                &self.events.lock().expect("events")[self.seen..]
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The messages received so far.
    pub fn messages(&self) -> Vec<ferry_bridge::IncomingMessage> {
        self.all()
            .into_iter()
            .filter_map(|e| match e {
                Event::Message(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    /// Waits until `n` messages arrived.
    pub async fn wait_messages(
        &self,
        n: usize,
        limit: Duration,
    ) -> Vec<ferry_bridge::IncomingMessage> {
        let start = Instant::now();
        loop {
            let m = self.messages();
            if m.len() >= n {
                return m;
            }
            assert!(
                start.elapsed() < limit,
                "{} of {n} messages within {limit:?}",
                m.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the session reports it is logged in.
    pub async fn connected(&mut self) {
        self.wait("Connected", |e| {
            matches!(
                e,
                Event::Connection(ferry_bridge::ConnectionState::Connected(_))
            )
        })
        .await;
    }

    /// Closes the session like the core does on shutdown.
    pub async fn close(mut self) -> Arc<dyn KeyValue> {
        self.session
            .close(ferry_bridge::CloseReason::Shutdown)
            .await;
        self.spawner.abort_all();
        self.store
    }
}
