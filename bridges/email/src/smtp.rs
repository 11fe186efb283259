//! The SMTP side of one account (lettre): a submission transport with
//! implicit TLS, STARTTLS or plain text and the account's credentials,
//! the login check of registration, and sending an already formatted
//! mail. Errors keep the server's own text, which the user sees.

use std::net::IpAddr;
use std::time::Duration;

use ferry_bridge::{HostPolicy, HostRefused};

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Tokio1Executor};

use crate::settings::{Endpoint, Security};
use crate::tls::{TlsContext, certificate_problem};

/// A submission transport (pooled connections).
pub type Transport = AsyncSmtpTransport<Tokio1Executor>;

/// Why submission failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SmtpError {
    /// No connection.
    #[error("cannot reach the SMTP server {endpoint}: {reason}")]
    Unreachable {
        /// Where.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// The server's certificate does not verify.
    #[error("SMTP server {endpoint}: the server's TLS certificate does not verify: {reason}")]
    Certificate {
        /// Where.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// The server refused the user name or password.
    #[error("the SMTP server refused the login: {0}")]
    BadCredentials(String),
    /// The server refused the mail (its reply, with the code).
    #[error("the mail server refused the mail: {text}")]
    Refused {
        /// Whether trying again later cannot help (5xx).
        permanent: bool,
        /// The server's reply.
        text: String,
    },
    /// The operator's host policy refuses the server.
    #[error("{0}")]
    HostRefused(HostRefused),
    /// Anything else (TLS handshake, protocol).
    #[error("SMTP server {endpoint}: {reason}")]
    Other {
        /// Where.
        endpoint: String,
        /// What.
        reason: String,
    },
}

/// The address to connect to for a submission server, as the host policy
/// allows it (the transport then connects to that address and verifies
/// the certificate against the name).
pub async fn resolve(hosts: &HostPolicy, ep: &Endpoint) -> Result<IpAddr, SmtpError> {
    match hosts.check(&ep.host, ep.port).await {
        Ok(addrs) => addrs
            .first()
            .map(|a| a.ip())
            .ok_or_else(|| SmtpError::Unreachable {
                endpoint: ep.to_string(),
                reason: "no address".into(),
            }),
        Err(HostRefused::Unresolved { reason, .. }) => Err(SmtpError::Unreachable {
            endpoint: ep.to_string(),
            reason,
        }),
        Err(refused) => Err(SmtpError::HostRefused(refused)),
    }
}

/// Builds the transport for an account, connecting to `addr` (from
/// [`resolve`]).
pub fn transport(
    tls: &TlsContext,
    ep: &Endpoint,
    addr: IpAddr,
    username: &str,
    password: &str,
    timeout: Duration,
) -> Result<Transport, SmtpError> {
    let setup = |reason: String| SmtpError::Other {
        endpoint: ep.to_string(),
        reason,
    };
    let params = || -> Result<TlsParameters, SmtpError> {
        let mut b =
            TlsParameters::builder(ep.host.clone()).certificate_store(CertificateStore::Default);
        for der in tls.extra_roots_der().map_err(setup)? {
            let cert = Certificate::from_der(der).map_err(|e| setup(e.to_string()))?;
            b = b.add_root_certificate(cert);
        }
        b.build_rustls().map_err(|e| setup(e.to_string()))
    };
    let tls_mode = match ep.security {
        Security::Tls => Tls::Wrapper(params()?),
        Security::Starttls => Tls::Required(params()?),
        Security::Plain => Tls::None,
    };
    Ok(Transport::builder_dangerous(addr.to_string())
        .port(ep.port)
        .tls(tls_mode)
        .timeout(Some(timeout))
        .credentials(Credentials::new(username.to_owned(), password.to_owned()))
        .build())
}

/// Connects and authenticates (registration's check).
pub async fn check(transport: &Transport, ep: &Endpoint) -> Result<(), SmtpError> {
    match transport.test_connection().await {
        Ok(true) => Ok(()),
        Ok(false) => Err(SmtpError::Other {
            endpoint: ep.to_string(),
            reason: "the server did not answer NOOP".into(),
        }),
        Err(e) => Err(classify(&e, ep)),
    }
}

/// Sends a formatted mail.
pub async fn send(
    transport: &Transport,
    ep: &Endpoint,
    envelope: &Envelope,
    raw: &[u8],
) -> Result<(), SmtpError> {
    transport
        .send_raw(envelope, raw)
        .await
        .map(|_| ())
        .map_err(|e| classify(&e, ep))
}

/// Turns a lettre error into what the user is told.
pub fn classify(e: &lettre::transport::smtp::Error, ep: &Endpoint) -> SmtpError {
    let text = e.to_string();
    if let Some(reason) = certificate_problem(e) {
        return SmtpError::Certificate {
            endpoint: ep.to_string(),
            reason,
        };
    }
    if let Some(code) = e.status() {
        let code = code.to_string();
        // 530/534/535: authentication required/too weak/failed (RFC 4954).
        if matches!(code.as_str(), "530" | "534" | "535") {
            return SmtpError::BadCredentials(text);
        }
        return SmtpError::Refused {
            permanent: e.is_permanent(),
            text,
        };
    }
    let lower = text.to_ascii_lowercase();
    if lower.starts_with("connection error") || lower.starts_with("network error") {
        return SmtpError::Unreachable {
            endpoint: ep.to_string(),
            reason: text,
        };
    }
    SmtpError::Other {
        endpoint: ep.to_string(),
        reason: text,
    }
}
