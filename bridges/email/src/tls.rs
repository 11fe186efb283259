//! TLS for IMAP and SMTP: one rustls configuration (aws-lc provider, the
//! system's roots plus the operator's `ca_file`), shared by every account,
//! and the one question asked of a TLS failure: did the certificate not
//! verify (the user is told so, in those words), or was it something else.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

/// Trusted roots and the client configuration, loaded on first use.
pub struct TlsContext {
    ca_file: Option<PathBuf>,
    config: OnceLock<Result<Arc<ClientConfig>, String>>,
}

impl std::fmt::Debug for TlsContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsContext")
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl TlsContext {
    /// A context trusting the system's roots and those of `ca_file`.
    pub fn new(ca_file: Option<&Path>) -> Self {
        Self {
            ca_file: ca_file.map(Path::to_path_buf),
            config: OnceLock::new(),
        }
    }

    /// The extra CA certificates of `ca_file`, DER-encoded one by one
    /// (for lettre).
    pub fn extra_roots_der(&self) -> Result<Vec<Vec<u8>>, String> {
        let Some(path) = &self.ca_file else {
            return Ok(Vec::new());
        };
        let pem = std::fs::read(path)
            .map_err(|e| format!("cannot read ca_file {}: {e}", path.display()))?;
        let mut out = Vec::new();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| format!("bad certificate in {}: {e}", path.display()))?;
            out.push(cert.as_ref().to_vec());
        }
        Ok(out)
    }

    /// The client configuration.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, String> {
        self.config
            .get_or_init(|| {
                let mut store = RootCertStore::empty();
                for cert in rustls_native_certs::load_native_certs().certs {
                    let _ = store.add(cert);
                }
                if let Some(path) = &self.ca_file {
                    let pem = std::fs::read(path)
                        .map_err(|e| format!("cannot read ca_file {}: {e}", path.display()))?;
                    for cert in CertificateDer::pem_slice_iter(&pem) {
                        let cert = cert
                            .map_err(|e| format!("bad certificate in {}: {e}", path.display()))?;
                        store
                            .add(cert)
                            .map_err(|e| format!("bad certificate in {}: {e}", path.display()))?;
                    }
                }
                let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
                let config = ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| e.to_string())?
                    .with_root_certificates(store)
                    .with_no_client_auth();
                Ok(Arc::new(config))
            })
            .clone()
    }

    /// Runs the TLS handshake on a connected socket.
    pub async fn wrap(&self, host: &str, tcp: TcpStream) -> Result<TlsStream<TcpStream>, TlsError> {
        let config = self.client_config().map_err(TlsError::Setup)?;
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| TlsError::Setup(format!("{host:?} is not a valid server name: {e}")))?;
        TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| classify_io(&e))
    }
}

/// A failed TLS handshake.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// The server's certificate does not verify (unknown issuer, wrong
    /// name, expired …).
    #[error("the server's TLS certificate does not verify: {0}")]
    Certificate(String),
    /// Any other handshake failure.
    #[error("TLS handshake failed: {0}")]
    Handshake(String),
    /// The local TLS set-up is broken (bad `ca_file`).
    #[error("TLS set-up: {0}")]
    Setup(String),
}

/// Classifies an I/O error from a TLS handshake.
pub fn classify_io(e: &std::io::Error) -> TlsError {
    if let Some(cert) = certificate_problem(e) {
        return TlsError::Certificate(cert);
    }
    TlsError::Handshake(e.to_string())
}

/// Searches an error and its sources for a rustls certificate error.
pub fn certificate_problem(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<rustls::Error>()
            && let rustls::Error::InvalidCertificate(c) = r
        {
            return Some(describe(c));
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(found) = certificate_problem(inner)
        {
            return Some(found);
        }
        cur = err.source();
    }
    None
}

fn describe(c: &rustls::CertificateError) -> String {
    use rustls::CertificateError as C;
    match c {
        C::UnknownIssuer => "it is signed by an unknown authority (self-signed?)".into(),
        C::NotValidForName | C::NotValidForNameContext { .. } => {
            "it is not valid for this host name".into()
        }
        C::Expired | C::ExpiredContext { .. } => "it has expired".into(),
        C::NotValidYet | C::NotValidYetContext { .. } => "it is not valid yet".into(),
        C::Revoked => "it was revoked".into(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_errors_are_found_inside_io_errors() {
        let e = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert!(
            matches!(classify_io(&e), TlsError::Certificate(m) if m.contains("unknown authority"))
        );
        let e = std::io::Error::other("reset");
        assert!(matches!(classify_io(&e), TlsError::Handshake(_)));
    }
}
