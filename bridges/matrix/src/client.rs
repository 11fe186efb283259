//! Building matrix-sdk clients: homeserver discovery, the per-user
//! encrypted SQLite store, request timeouts and the encryption trust
//! settings, the operator's host policy on every request, and turning
//! matrix-sdk errors into errors a user can read.
//!
//! The host policy: the shared HTTP client resolves every name through
//! [`HostPolicy::check`] and follows no redirect to a refused address; URLs
//! whose host is an address literal (which are not resolved) are checked
//! where they come in: the homeserver the user typed, the one
//! `.well-known` or the login names, the stored one, attachment URLs.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use ferry_bridge::{BridgeError, ErrorKind, HostPolicy, HostRefused, LoginError};
use matrix_sdk::config::{RequestConfig, StoreConfig};
use matrix_sdk::encryption::{BackupDownloadStrategy, EncryptionSettings};
use matrix_sdk::media::MediaRetentionPolicy;
use matrix_sdk::ruma::api::error::ErrorKind as MxErrorKind;
use matrix_sdk::{
    Client, ClientBuildError, HttpError, SqliteCryptoStore, SqliteStateStore, SqliteStoreConfig,
};
use matrix_sdk_base::cross_process_lock::CrossProcessLockConfig;
use matrix_sdk_base::crypto::{
    CollectStrategy, DecryptionSettings, OlmError, SessionRecipientCollectionError,
    TrustRequirement,
};
use matrix_sdk_base::event_cache::store::MemoryStore as EventCacheMemoryStore;
use matrix_sdk_base::media::store::MemoryMediaStore;

use crate::config::Config;

/// How much a client trusts devices nobody verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trust {
    /// Share room keys with every device and decrypt messages from every
    /// device (what Element does unless told otherwise).
    Everyone,
    /// Only devices their owner cross-signed (and verified ones).
    CrossSigned,
}

/// Resolves names for the HTTP client through the operator's policy.
struct PolicyResolver(Arc<HostPolicy>);

impl matrix_sdk::reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: matrix_sdk::reqwest::dns::Name) -> matrix_sdk::reqwest::dns::Resolving {
        let policy = self.0.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = policy.check(&host, 0).await?;
            let addrs: matrix_sdk::reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// Why the policy refuses a URL whose host is an address literal.
fn literal_refusal(hosts: &HostPolicy, host: &str, port: Option<u16>) -> Option<HostRefused> {
    let ip: IpAddr = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    hosts
        .check_resolved(host, [SocketAddr::new(ip, port.unwrap_or(0))])
        .err()
}

/// Checks the host of a URL a user gave or a server named against the
/// operator's policy (resolving a name once, for a clear error; the
/// resolver checks it again for each connection). A malformed URL or an
/// unknown name is left to the request to report.
pub async fn check_url(hosts: &HostPolicy, url: &str) -> Result<(), HostRefused> {
    let Ok(parsed) = url::Url::parse(url) else {
        return Ok(());
    };
    let Some(host) = parsed.host_str() else {
        return Ok(());
    };
    match hosts
        .check(host, parsed.port_or_known_default().unwrap_or(0))
        .await
    {
        Err(HostRefused::Unresolved { .. }) | Ok(_) => Ok(()),
        Err(refused) => Err(refused),
    }
}

/// A refusal of the policy as the registration form's error.
fn refused_homeserver(refused: HostRefused) -> LoginError {
    LoginError::InvalidField {
        field: "homeserver".into(),
        message: refused.to_string(),
    }
}

/// The HTTP client all sessions share (one connection pool and TLS
/// configuration for the whole bridge, instead of one per user), bound to
/// the operator's host policy.
pub fn shared_http(config: &Config) -> Result<matrix_sdk::reqwest::Client, String> {
    let hosts = config.hosts.clone();
    let redirect_hosts = hosts.clone();
    let redirects = matrix_sdk::reqwest::redirect::Policy::custom(move |attempt| {
        let url = attempt.url();
        let refusal = url
            .host_str()
            .and_then(|h| literal_refusal(&redirect_hosts, h, url.port_or_known_default()));
        match refusal {
            Some(refused) => attempt.error(refused),
            None if attempt.previous().len() >= 10 => attempt.error("too many redirects"),
            None => attempt.follow(),
        }
    });
    matrix_sdk::reqwest::Client::builder()
        .dns_resolver(Arc::new(PolicyResolver(hosts)))
        .redirect(redirects)
        .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
        .min_tls_version(matrix_sdk::reqwest::tls::Version::TLS_1_2)
        .connect_timeout(
            config
                .request_timeout()
                .min(std::time::Duration::from_secs(30)),
        )
        .pool_idle_timeout(std::time::Duration::from_secs(90))
        .build()
        .map_err(|e| format!("[matrix] cannot build the HTTP client: {e}"))
}

fn base_builder(
    config: &Config,
    trust: Trust,
    http: &matrix_sdk::reqwest::Client,
) -> matrix_sdk::ClientBuilder {
    let (strategy, requirement) = match trust {
        Trust::Everyone => (CollectStrategy::AllDevices, TrustRequirement::Untrusted),
        Trust::CrossSigned => (
            CollectStrategy::IdentityBasedStrategy,
            TrustRequirement::CrossSignedOrLegacy,
        ),
    };
    Client::builder()
        .request_config(
            RequestConfig::new()
                .timeout(config.request_timeout())
                .retry_limit(3),
        )
        .with_encryption_settings(EncryptionSettings {
            auto_enable_cross_signing: false,
            backup_download_strategy: BackupDownloadStrategy::AfterDecryptionFailure,
            auto_enable_backups: false,
        })
        .with_room_key_recipient_strategy(strategy)
        .with_decryption_settings(DecryptionSettings {
            sender_device_trust_requirement: requirement,
        })
        .http_client(http.clone())
}

/// Finds the homeserver for what a user typed (a URL or a server name, with
/// `.well-known` discovery) and returns a client without a store or a
/// session, for logging in.
pub async fn discover(
    config: &Config,
    http: &matrix_sdk::reqwest::Client,
    input: &str,
) -> Result<Client, LoginError> {
    let hosts = config.hosts.as_ref();
    let input = input.trim().trim_end_matches('/');
    if input.is_empty() {
        return Err(LoginError::InvalidField {
            field: "homeserver".into(),
            message: "give the homeserver's address (matrix.org or https://matrix.example.org)"
                .into(),
        });
    }
    check_scheme(config, input)?;
    let as_url = if input.contains("://") {
        input.to_owned()
    } else {
        format!("https://{input}")
    };
    check_url(hosts, &as_url)
        .await
        .map_err(refused_homeserver)?;
    let client = Client::builder()
        .server_name_or_homeserver_url(input)
        .request_config(
            RequestConfig::short_retry().timeout(
                config
                    .request_timeout()
                    .min(std::time::Duration::from_secs(30)),
            ),
        )
        .http_client(http.clone())
        .build()
        .await
        .map_err(|e| match e {
            ClientBuildError::InvalidServerName | ClientBuildError::Url(_) => {
                LoginError::InvalidField {
                    field: "homeserver".into(),
                    message: format!("{input:?} is neither a server name nor a URL"),
                }
            }
            other => LoginError::Unreachable(format!(
                "no Matrix homeserver answers at {input}: {}",
                describe_build_error(&other)
            )),
        })?;
    // What .well-known named (not contacted yet: checked before use).
    check_scheme(config, client.homeserver().as_str())?;
    check_url(hosts, client.homeserver().as_str())
        .await
        .map_err(refused_homeserver)?;
    Ok(client)
}

fn check_scheme(config: &Config, url: &str) -> Result<(), LoginError> {
    if url.starts_with("http://") && !config.allow_insecure_http {
        return Err(LoginError::InvalidField {
            field: "homeserver".into(),
            message: format!(
                "{url} is plain http://, which this gateway does not allow: use https"
            ),
        });
    }
    Ok(())
}

fn describe_build_error(e: &ClientBuildError) -> String {
    match e {
        ClientBuildError::Http(h) => describe_http(h),
        other => other.to_string(),
    }
}

/// Builds the long-lived client of a session, with its encrypted SQLite
/// stores (state and crypto) in `store_dir`.
///
/// Only the two stores that hold what must survive a restart are SQLite
/// databases. matrix-sdk's event cache store (filled only when the event
/// cache is subscribed to, which ferry never does: it reads each sync
/// response itself) and its media cache (ferry downloads media to hand it
/// over, never to keep it; the retention policy below stores nothing) are
/// in memory and stay empty: two databases and four SQLite connections,
/// each with its page cache and schema, fewer per session.
pub async fn open(
    config: &Config,
    http: &matrix_sdk::reqwest::Client,
    homeserver: &str,
    store_dir: &Path,
    passphrase: &str,
    trust: Trust,
) -> Result<Client, BridgeError> {
    check_homeserver(config, homeserver).await?;
    // Few connections (matrix-sdk's minimum, one reader and one writer)
    // and a small page cache per database: a session's memory is
    // dominated by them otherwise.
    let sqlite = SqliteStoreConfig::new(store_dir)
        .passphrase(Some(passphrase))
        .pool_max_size(2)
        .cache_size(config.store_cache_kib.saturating_mul(1024))
        .journal_size_limit(2 * 1024 * 1024);
    let store_error = |e: &dyn std::fmt::Display| {
        BridgeError::internal(format!(
            "cannot open the Matrix store in {}: {e}",
            store_dir.display()
        ))
    };
    let (state, crypto) = futures::try_join!(
        async {
            SqliteStateStore::open_with_config(&sqlite)
                .await
                .map_err(|e| store_error(&e))
        },
        async {
            SqliteCryptoStore::open_with_config(&sqlite)
                .await
                .map_err(|e| store_error(&e))
        },
    )?;
    // The lock holder name matrix-sdk's own builder gives (stores made
    // before this change were locked under it).
    let stores = StoreConfig::new(CrossProcessLockConfig::MultiProcess {
        holder_name: "main".to_owned(),
    })
    .state_store(state)
    .crypto_store(crypto)
    .event_cache_store(EventCacheMemoryStore::new())
    .media_store(MemoryMediaStore::new());
    let client = base_builder(config, trust, http)
        .homeserver_url(homeserver)
        .store_config(stores)
        .build()
        .await
        .map_err(|e| store_error(&e))?;
    client
        .media()
        .set_media_retention_policy(MediaRetentionPolicy::empty().with_max_file_size(Some(0)))
        .await
        .map_err(|e| store_error(&e))?;
    remove_unused_stores(store_dir).await;
    Ok(client)
}

/// The event cache and media databases that sessions made before those two
/// stores moved to memory: removed, as nothing reads them any more.
async fn remove_unused_stores(store_dir: &Path) {
    for base in ["matrix-sdk-event-cache.sqlite3", "matrix-sdk-media.sqlite3"] {
        for suffix in ["", "-wal", "-shm"] {
            let path = store_dir.join(format!("{base}{suffix}"));
            match tokio::fs::remove_file(&path).await {
                Ok(()) => tracing::info!(path = %path.display(), "removed an unused Matrix store"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove an unused Matrix store")
                }
            }
        }
    }
}

/// Refuses a stored homeserver URL the configuration no longer allows.
pub async fn check_homeserver(config: &Config, url: &str) -> Result<(), BridgeError> {
    check_scheme(config, url).map_err(|e| BridgeError::bad_request(e.to_string()))?;
    check_url(&config.hosts, url)
        .await
        .map_err(|e| BridgeError::new(ErrorKind::NotAllowed, format!("Matrix: {e}")))
}

fn describe_http(e: &HttpError) -> String {
    match e {
        HttpError::Reqwest(r) => {
            let mut msg = r.to_string();
            let mut source = std::error::Error::source(r);
            while let Some(s) = source {
                msg = format!("{msg}: {s}");
                source = s.source();
            }
            msg
        }
        other => match other.as_client_api_error() {
            Some(api) => api_message(api),
            None => other.to_string(),
        },
    }
}

fn api_message(api: &matrix_sdk::ruma::api::error::Error) -> String {
    use matrix_sdk::ruma::api::error::ErrorBody;
    match &api.body {
        ErrorBody::Standard(s) => format!("{} ({})", s.message, s.kind.errcode()),
        ErrorBody::Json(j) => j.to_string(),
        ErrorBody::NotJson { bytes, .. } => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// Whether a matrix-sdk error says that the access token is no longer
/// valid; `Some(soft_logout)` if so.
pub fn unknown_token(e: &matrix_sdk::Error) -> Option<bool> {
    match e.client_api_error_kind() {
        Some(MxErrorKind::UnknownToken(data)) => Some(data.soft_logout),
        _ => None,
    }
}

/// Whether an HTTP error says the token is invalid.
pub fn http_unknown_token(e: &HttpError) -> Option<bool> {
    match e.client_api_error_kind() {
        Some(MxErrorKind::UnknownToken(data)) => Some(data.soft_logout),
        _ => None,
    }
}

/// A matrix-sdk error as an error for the user, with `doing` saying what
/// failed ("sending the message").
pub fn action_error(doing: &str, e: matrix_sdk::Error) -> BridgeError {
    if let matrix_sdk::Error::OlmError(olm) = &e
        && let OlmError::SessionRecipientCollectionError(
            SessionRecipientCollectionError::CrossSigningNotSetup
            | SessionRecipientCollectionError::SendingFromUnverifiedDevice,
        ) = &**olm
    {
        // Only with the "trust unverified devices" preference off.
        return BridgeError::new(
            ErrorKind::NotAllowed,
            format!(
                "Matrix: {doing} failed: with \"trust unverified devices\" off, ferry encrypts \
                 only once its device is cross-signed. Run the \"recovery-key\" or \"verify\" \
                 command, or turn the preference back on."
            ),
        );
    }
    let kind = match e.client_api_error_kind() {
        Some(MxErrorKind::Forbidden) => ErrorKind::NotAllowed,
        Some(MxErrorKind::NotFound) => ErrorKind::NotFound,
        Some(MxErrorKind::UnknownToken(_)) => ErrorKind::NotAuthorized,
        Some(MxErrorKind::LimitExceeded(_)) => ErrorKind::ResourceConstraint,
        Some(MxErrorKind::TooLarge) => ErrorKind::ResourceConstraint,
        Some(_) => ErrorKind::Remote,
        None => match &e {
            matrix_sdk::Error::Http(h) if matches!(**h, HttpError::Reqwest(_)) => {
                ErrorKind::Unavailable
            }
            _ => ErrorKind::Remote,
        },
    };
    let detail = match &e {
        matrix_sdk::Error::Http(h) => describe_http(h),
        other => other.to_string(),
    };
    BridgeError::new(kind, format!("Matrix: {doing} failed: {detail}"))
}

/// The same for an HTTP-level error.
pub fn http_action_error(doing: &str, e: HttpError) -> BridgeError {
    action_error(doing, matrix_sdk::Error::Http(Box::new(e)))
}

/// A login request's error for the registration form.
pub fn login_error(homeserver: &str, e: HttpError) -> LoginError {
    match e.client_api_error_kind() {
        Some(MxErrorKind::Forbidden) => LoginError::BadCredentials(
            "the homeserver refused this user name and password (M_FORBIDDEN)".into(),
        ),
        Some(MxErrorKind::UserDeactivated) => {
            LoginError::BadCredentials("this Matrix account has been deactivated".into())
        }
        Some(MxErrorKind::LimitExceeded(_)) => LoginError::Other(BridgeError::new(
            ErrorKind::ResourceConstraint,
            "the homeserver asks to wait before logging in again (rate limited)",
        )),
        Some(_) => LoginError::Other(BridgeError::remote(format!(
            "the homeserver refused the login: {}",
            describe_http(&e)
        ))),
        None => match e {
            HttpError::Reqwest(_) => LoginError::Unreachable(format!(
                "{homeserver} does not answer: {}",
                describe_http(&e)
            )),
            other => LoginError::Other(BridgeError::remote(format!(
                "unexpected answer from {homeserver}: {}",
                describe_http(&other)
            ))),
        },
    }
}
