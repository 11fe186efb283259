//! The IMAP side of one account (async-imap): connecting with implicit TLS,
//! STARTTLS or in plain text, logging in, and the few commands the bridge
//! needs on INBOX — UIDVALIDITY and new UIDs, fetching whole mails in
//! batches, IDLE (RFC 2177) that can be interrupted, `\Seen`, and APPEND
//! to the Sent folder found by its SPECIAL-USE attribute (RFC 6154).
//! Every command has a deadline; an error leaves the connection unusable
//! and the caller reconnects.

use std::collections::HashSet;
use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use async_imap::extensions::idle::IdleResponse;
use async_imap::types::{NameAttribute, UnsolicitedResponse};
use futures::TryStreamExt as _;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use ferry_bridge::{HostPolicy, HostRefused};

use crate::settings::{Endpoint, Security};
use crate::tls::{TlsContext, TlsError};

/// A byte stream to the server, plain or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Debug> Io for T {}

/// The stream type of every IMAP connection.
pub type Stream = Box<dyn Io>;

/// Why an IMAP operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ImapError {
    /// No TCP connection (refused, no route, unknown host).
    #[error("cannot reach the IMAP server {endpoint}: {reason}")]
    Unreachable {
        /// Where.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// TLS failed (the certificate did not verify, or the handshake).
    #[error("IMAP server {endpoint}: {error}")]
    Tls {
        /// Where.
        endpoint: String,
        /// What.
        error: TlsError,
    },
    /// The server refused the user name or password.
    #[error("the IMAP server refused the login: {0}")]
    BadCredentials(String),
    /// The server answered something unexpected, or NO/BAD to a command.
    #[error("IMAP: {0}")]
    Protocol(String),
    /// The server did not answer in time.
    #[error("the IMAP server did not answer within {0} s")]
    Timeout(u64),
    /// The operator's host policy refuses the server.
    #[error("{0}")]
    HostRefused(HostRefused),
}

impl From<async_imap::error::Error> for ImapError {
    fn from(e: async_imap::error::Error) -> Self {
        ImapError::Protocol(e.to_string())
    }
}

/// Deadlines of a connection.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// For connecting (TCP + TLS + greeting).
    pub connect: Duration,
    /// For one command.
    pub command: Duration,
}

async fn timed<T, F>(limit: Duration, f: F) -> Result<T, ImapError>
where
    F: Future<Output = Result<T, ImapError>>,
{
    tokio::time::timeout(limit, f)
        .await
        .map_err(|_| ImapError::Timeout(limit.as_secs()))?
}

/// What the server can do, from CAPABILITY after login.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Caps {
    /// RFC 2177 IDLE.
    pub idle: bool,
    /// RFC 6154 SPECIAL-USE.
    pub special_use: bool,
}

/// The state of INBOX when selected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inbox {
    /// UIDVALIDITY: when it changes, every stored UID is meaningless.
    pub uid_validity: u32,
    /// The UID the next mail will get, when the server says.
    pub uid_next: Option<u32>,
    /// Number of mails.
    pub exists: u32,
}

/// One fetched mail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    /// Its UID.
    pub uid: u32,
    /// The whole mail (RFC 5322), or only its header when it was too big.
    pub raw: Vec<u8>,
    /// Its size on the server.
    pub size: u32,
    /// Whether `raw` is only the header (the mail exceeds the size limit).
    pub header_only: bool,
}

/// How an IDLE ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Woken {
    /// The server announced something (new mail, flags, expunge).
    NewData,
    /// The IDLE timed out and should be renewed.
    Timeout,
    /// The caller interrupted it.
    Interrupted,
}

/// Opens a connection and reads the greeting (upgrading with STARTTLS
/// when asked to).
pub async fn connect(
    tls: &TlsContext,
    hosts: &HostPolicy,
    ep: &Endpoint,
    timeouts: Timeouts,
) -> Result<async_imap::Client<Stream>, ImapError> {
    let endpoint = ep.to_string();
    timed(timeouts.connect, async {
        let addrs = hosts
            .check(&ep.host, ep.port)
            .await
            .map_err(|refused| match refused {
                HostRefused::Unresolved { reason, .. } => ImapError::Unreachable {
                    endpoint: endpoint.clone(),
                    reason,
                },
                refused => ImapError::HostRefused(refused),
            })?;
        let tcp = TcpStream::connect(&addrs[..])
            .await
            .map_err(|e| ImapError::Unreachable {
                endpoint: endpoint.clone(),
                reason: e.to_string(),
            })?;
        let _ = tcp.set_nodelay(true);
        let tls_err = |error| ImapError::Tls {
            endpoint: endpoint.clone(),
            error,
        };
        match ep.security {
            Security::Tls => {
                let stream = tls.wrap(&ep.host, tcp).await.map_err(tls_err)?;
                let mut client = async_imap::Client::new(Box::new(stream) as Stream);
                greeting(&mut client).await?;
                Ok(client)
            }
            Security::Plain => {
                let mut client = async_imap::Client::new(Box::new(tcp) as Stream);
                greeting(&mut client).await?;
                Ok(client)
            }
            Security::Starttls => {
                let mut client = async_imap::Client::new(tcp);
                greeting(&mut client).await?;
                client
                    .run_command_and_check_ok("STARTTLS", None)
                    .await
                    .map_err(|e| {
                        ImapError::Protocol(format!("the server refused STARTTLS: {e}"))
                    })?;
                let tcp = client.into_inner();
                let stream = tls.wrap(&ep.host, tcp).await.map_err(tls_err)?;
                Ok(async_imap::Client::new(Box::new(stream) as Stream))
            }
        }
    })
    .await
}

async fn greeting<T: Io>(client: &mut async_imap::Client<T>) -> Result<(), ImapError> {
    match client.read_response().await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(ImapError::Protocol(
            "the server closed the connection before its greeting".into(),
        )),
        Err(e) => Err(ImapError::Protocol(format!("no IMAP greeting: {e}"))),
    }
}

/// A logged-in IMAP connection.
pub struct Connection {
    session: Option<async_imap::Session<Stream>>,
    /// What the server can do.
    pub caps: Caps,
    timeouts: Timeouts,
    sent: Option<Option<String>>,
}

impl Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("caps", &self.caps)
            .finish_non_exhaustive()
    }
}

/// Connects and logs in.
pub async fn login(
    tls: &TlsContext,
    hosts: &HostPolicy,
    ep: &Endpoint,
    username: &str,
    password: &str,
    timeouts: Timeouts,
) -> Result<Connection, ImapError> {
    let client = connect(tls, hosts, ep, timeouts).await?;
    let mut session = timed(timeouts.command, async {
        client
            .login(username, password)
            .await
            .map_err(|(e, _)| match e {
                async_imap::error::Error::No(text) => ImapError::BadCredentials(text),
                async_imap::error::Error::Bad(text) => ImapError::BadCredentials(text),
                other => ImapError::Protocol(other.to_string()),
            })
    })
    .await?;
    let caps = timed(timeouts.command, async {
        let c = session.capabilities().await?;
        Ok(Caps {
            idle: c.has_str("IDLE"),
            special_use: c.has_str("SPECIAL-USE"),
        })
    })
    .await?;
    Ok(Connection {
        session: Some(session),
        caps,
        timeouts,
        sent: None,
    })
}

impl Connection {
    fn session(&mut self) -> Result<&mut async_imap::Session<Stream>, ImapError> {
        self.session
            .as_mut()
            .ok_or_else(|| ImapError::Protocol("the connection was lost during IDLE".into()))
    }

    /// Selects INBOX.
    pub async fn select_inbox(&mut self) -> Result<Inbox, ImapError> {
        self.select_folder("INBOX").await
    }

    /// Selects a mailbox.
    pub async fn select_folder(&mut self, name: &str) -> Result<Inbox, ImapError> {
        let limit = self.timeouts.command;
        let session = self.session()?;
        let mailbox = timed(limit, async { Ok(session.select(name).await?) }).await?;
        let uid_validity = mailbox.uid_validity.ok_or_else(|| {
            ImapError::Protocol(format!("the server gives {name} no UIDVALIDITY (no UIDs)"))
        })?;
        Ok(Inbox {
            uid_validity,
            uid_next: mailbox.uid_next,
            exists: mailbox.exists,
        })
    }

    /// The UIDs above `after`, ascending.
    pub async fn uids_after(&mut self, after: u32) -> Result<Vec<u32>, ImapError> {
        let limit = self.timeouts.command;
        let session = self.session()?;
        let query = format!("UID {}:*", after.saturating_add(1));
        let found: HashSet<u32> =
            timed(limit, async { Ok(session.uid_search(query).await?) }).await?;
        let mut uids: Vec<u32> = found.into_iter().filter(|u| *u > after).collect();
        uids.sort_unstable();
        Ok(uids)
    }

    /// The UIDs of mail that arrived on or after the day of `unix_secs`
    /// (UTC), ascending.
    pub async fn uids_since(&mut self, unix_secs: u64) -> Result<Vec<u32>, ImapError> {
        let limit = self.timeouts.command;
        let session = self.session()?;
        let query = format!("SINCE {}", imap_date(unix_secs));
        let found: HashSet<u32> =
            timed(limit, async { Ok(session.uid_search(query).await?) }).await?;
        let mut uids: Vec<u32> = found.into_iter().collect();
        uids.sort_unstable();
        Ok(uids)
    }

    /// Fetches mails (ascending UIDs); those larger than `max_bytes` come
    /// with their header only.
    pub async fn fetch(&mut self, uids: &[u32], max_bytes: u64) -> Result<Vec<Fetched>, ImapError> {
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        let limit = self.timeouts.command;
        let set = uid_set(uids);
        let session = self.session()?;
        let sizes: Vec<(u32, u32)> = timed(limit, async {
            let stream = session.uid_fetch(&set, "(UID RFC822.SIZE)").await?;
            let all: Vec<_> = stream.try_collect().await?;
            Ok(all
                .iter()
                .filter_map(|f| Some((f.uid?, f.size.unwrap_or(0))))
                .collect())
        })
        .await?;
        let (small, big): (Vec<_>, Vec<_>) = sizes
            .into_iter()
            .partition(|(_, size)| u64::from(*size) <= max_bytes);
        let mut out = Vec::new();
        for (part, query, header_only) in [
            (small, "(UID BODY.PEEK[])", false),
            (big, "(UID BODY.PEEK[HEADER])", true),
        ] {
            if part.is_empty() {
                continue;
            }
            let set = uid_set(&part.iter().map(|(u, _)| *u).collect::<Vec<_>>());
            let session = self.session()?;
            // A 25 MB mail may take a while on a slow link: the deadline
            // grows with the volume.
            let bytes: u64 = part.iter().map(|(_, s)| u64::from(*s)).sum();
            let limit = limit + Duration::from_secs(bytes / (256 * 1024));
            let fetched: Vec<(u32, Vec<u8>)> = timed(limit, async {
                let stream = session.uid_fetch(&set, query).await?;
                let all: Vec<_> = stream.try_collect().await?;
                Ok(all
                    .iter()
                    .filter_map(|f| {
                        let body = if header_only { f.header() } else { f.body() };
                        Some((f.uid?, body?.to_vec()))
                    })
                    .collect())
            })
            .await?;
            for (uid, raw) in fetched {
                let size = part
                    .iter()
                    .find(|(u, _)| *u == uid)
                    .map(|(_, s)| *s)
                    .unwrap_or(0);
                out.push(Fetched {
                    uid,
                    raw,
                    size,
                    header_only,
                });
            }
        }
        out.sort_by_key(|f| f.uid);
        Ok(out)
    }

    /// The UIDs without `\Seen`.
    pub async fn unseen(&mut self) -> Result<Vec<u32>, ImapError> {
        let limit = self.timeouts.command;
        let session = self.session()?;
        let found: HashSet<u32> =
            timed(limit, async { Ok(session.uid_search("UNSEEN").await?) }).await?;
        let mut uids: Vec<u32> = found.into_iter().collect();
        uids.sort_unstable();
        Ok(uids)
    }

    /// Adds `\Seen` to mails.
    pub async fn mark_seen(&mut self, uids: &[u32]) -> Result<(), ImapError> {
        if uids.is_empty() {
            return Ok(());
        }
        let limit = self.timeouts.command;
        let set = uid_set(uids);
        let session = self.session()?;
        timed(limit, async {
            let stream = session.uid_store(&set, "+FLAGS.SILENT (\\Seen)").await?;
            let _: Vec<_> = stream.try_collect().await?;
            Ok(())
        })
        .await
    }

    /// The Sent folder: the mailbox with the `\Sent` SPECIAL-USE attribute,
    /// else one with a usual name; created as `Sent` when there is none.
    pub async fn sent_folder(&mut self) -> Result<String, ImapError> {
        if let Some(Some(name)) = &self.sent {
            return Ok(name.clone());
        }
        let limit = self.timeouts.command;
        let session = self.session()?;
        let names: Vec<(String, bool)> = timed(limit, async {
            let stream = session.list(Some(""), Some("*")).await?;
            let all: Vec<_> = stream.try_collect().await?;
            Ok(all
                .iter()
                .map(|n| {
                    let sent = n
                        .attributes()
                        .iter()
                        .any(|a| matches!(a, NameAttribute::Sent));
                    (n.name().to_owned(), sent)
                })
                .collect())
        })
        .await?;
        let found = names
            .iter()
            .find(|(_, sent)| *sent)
            .or_else(|| {
                [
                    "Sent",
                    "Sent Items",
                    "Sent Messages",
                    "INBOX.Sent",
                    "INBOX/Sent",
                ]
                .iter()
                .find_map(|want| names.iter().find(|(n, _)| n.eq_ignore_ascii_case(want)))
            })
            .map(|(n, _)| n.clone());
        let name = match found {
            Some(n) => n,
            None => {
                let session = self.session()?;
                timed(limit, async { Ok(session.create("Sent").await?) }).await?;
                "Sent".to_owned()
            }
        };
        self.sent = Some(Some(name.clone()));
        Ok(name)
    }

    /// Appends a mail to a folder, flagged `\Seen`.
    pub async fn append(&mut self, folder: &str, raw: &[u8]) -> Result<(), ImapError> {
        let limit = self.timeouts.command + Duration::from_secs(raw.len() as u64 / (256 * 1024));
        let session = self.session()?;
        timed(limit, async {
            Ok(session.append(folder, Some("(\\Seen)"), None, raw).await?)
        })
        .await
    }

    /// Fetches one whole mail by UID (for the full-text command).
    pub async fn fetch_one(&mut self, uid: u32) -> Result<Option<Vec<u8>>, ImapError> {
        let limit = self.timeouts.command;
        let session = self.session()?;
        timed(limit, async {
            let stream = session
                .uid_fetch(uid.to_string(), "(UID BODY.PEEK[])")
                .await?;
            let all: Vec<_> = stream.try_collect().await?;
            Ok(all
                .iter()
                .find(|f| f.uid == Some(uid))
                .and_then(|f| f.body().map(<[u8]>::to_vec)))
        })
        .await
    }

    /// Whether the server announced new mail since the last command
    /// (answers that arrived outside IDLE).
    pub fn pending_news(&mut self) -> bool {
        let Some(session) = self.session.as_mut() else {
            return false;
        };
        let mut news = false;
        while let Ok(r) = session.unsolicited_responses.try_recv() {
            if matches!(
                r,
                UnsolicitedResponse::Exists(_) | UnsolicitedResponse::Recent(_)
            ) {
                news = true;
            }
        }
        news
    }

    /// Checks the connection (and lets the server report new mail).
    pub async fn noop(&mut self) -> Result<(), ImapError> {
        let limit = self.timeouts.command;
        let session = self.session()?;
        timed(limit, async { Ok(session.noop().await?) }).await
    }

    /// Waits in IDLE until the server reports something, `idle_for`
    /// passes, or `interrupt` completes.
    pub async fn idle<F>(&mut self, idle_for: Duration, interrupt: F) -> Result<Woken, ImapError>
    where
        F: Future<Output = ()>,
    {
        let session = self
            .session
            .take()
            .ok_or_else(|| ImapError::Protocol("the connection was lost during IDLE".into()))?;
        let limit = self.timeouts.command;
        let mut handle = session.idle();
        timed(limit, async { Ok(handle.init().await?) }).await?;
        let woken = {
            let (wait, stop) = handle.wait_with_timeout(idle_for);
            tokio::pin!(wait);
            tokio::pin!(interrupt);
            tokio::select! {
                r = &mut wait => match r? {
                    IdleResponse::NewData(_) => Woken::NewData,
                    IdleResponse::Timeout => Woken::Timeout,
                    IdleResponse::ManualInterrupt => Woken::Interrupted,
                },
                () = &mut interrupt => {
                    drop(stop);
                    // The wait ends at once once its stop source is gone.
                    let _ = wait.await;
                    Woken::Interrupted
                }
            }
        };
        let session = timed(limit, async { Ok(handle.done().await?) }).await?;
        self.session = Some(session);
        Ok(woken)
    }

    /// Logs out (best effort).
    pub async fn logout(mut self) {
        let limit = self.timeouts.command;
        if let Some(mut s) = self.session.take() {
            let _ = tokio::time::timeout(limit, s.logout()).await;
        }
    }
}

/// An IMAP date (`4-Dec-2026`) of a Unix time, in UTC.
pub fn imap_date(unix_secs: u64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    // Days to a civil date (Howard Hinnant's algorithm).
    let z = (unix_secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{day}-{}-{year}", MONTHS[(month - 1) as usize])
}

/// A UID set for a command (`1,3,5:9`).
pub fn uid_set(uids: &[u32]) -> String {
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imap_dates() {
        assert_eq!(imap_date(0), "1-Jan-1970");
        assert_eq!(imap_date(1_796_428_799), "4-Dec-2026");
        assert_eq!(imap_date(1_796_428_800), "5-Dec-2026");
        assert_eq!(imap_date(951_782_400), "29-Feb-2000");
    }

    #[test]
    fn uid_sets_are_compact() {
        assert_eq!(uid_set(&[5, 1, 2, 3, 9, 10, 7]), "1:3,5,7,9:10");
        assert_eq!(uid_set(&[4]), "4");
        assert_eq!(uid_set(&[]), "");
    }
}
