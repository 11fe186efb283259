//! Opening the socket to an IRC server: TLS ports first, then plain ones
//! (biboumi's order), from the configured local address, with rustls
//! (system roots plus `ca_file`, verification on unless the user turned it
//! off, optional fingerprint pinning, an optional client certificate for
//! SASL EXTERNAL).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aws_lc_rs::digest;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{
    self, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature},
    pki_types,
};

use ferry_bridge::{HostPolicy, HostRefused};

use crate::settings::ConnSettings;

/// Why no connection could be opened.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The operator's policy refuses the server (or what it resolves to).
    #[error("{0}")]
    Refused(#[from] HostRefused),
    /// Every attempt failed; the text lists them.
    #[error("{0}")]
    Failed(String),
}

impl From<String> for ConnectError {
    fn from(e: String) -> Self {
        ConnectError::Failed(e)
    }
}

/// A byte stream to a server, plain or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// An open connection.
pub struct Connected {
    /// The stream.
    pub io: Box<dyn Io>,
    /// Host connected to.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Over TLS.
    pub tls: bool,
    /// Our end.
    pub local: SocketAddr,
    /// Their end.
    pub peer: SocketAddr,
    /// SHA-256 of the server's certificate (hex), over TLS.
    pub fingerprint: Option<String>,
    /// The same socket, to switch delayed ACKs off after each read.
    pub socket: Option<std::net::TcpStream>,
}

/// Asks the kernel to acknowledge what was just read at once. Many IRC
/// servers write with Nagle's algorithm on: a second line waits for the ACK
/// of the first, which Linux delays by up to 40 ms. The flag does not stay
/// set, so it is renewed after every read.
pub fn quickack(socket: &std::net::TcpStream) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let _ = socket2::SockRef::from(socket).set_tcp_quickack(true);
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = socket;
    }
}

/// A second handle on a socket (for socket options), or None.
fn dup(stream: &TcpStream) -> Option<std::net::TcpStream> {
    use std::os::fd::AsFd as _;
    stream
        .as_fd()
        .try_clone_to_owned()
        .ok()
        .map(std::net::TcpStream::from)
}

/// TLS material shared by all connections: the provider and the trusted
/// roots (loaded once, on first use).
pub struct TlsContext {
    provider: Arc<CryptoProvider>,
    ca_file: Option<std::path::PathBuf>,
    roots: OnceLock<Result<Arc<RootCertStore>, String>>,
}

impl TlsContext {
    /// A context trusting the system's roots and those of `ca_file`.
    pub fn new(ca_file: Option<&Path>) -> Self {
        Self {
            provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
            ca_file: ca_file.map(Path::to_path_buf),
            roots: OnceLock::new(),
        }
    }

    fn roots(&self) -> Result<Arc<RootCertStore>, String> {
        self.roots
            .get_or_init(|| {
                let mut store = RootCertStore::empty();
                let native = rustls_native_certs::load_native_certs();
                for cert in native.certs {
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
                Ok(Arc::new(store))
            })
            .clone()
    }

    /// The client configuration for one server.
    pub fn client_config(&self, settings: &ConnSettings) -> Result<Arc<ClientConfig>, String> {
        let builder = ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let algs = self.provider.signature_verification_algorithms;
        let builder = match (&settings.fingerprint, settings.verify_cert) {
            (Some(fp), _) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Pinned {
                    fingerprint: normalize_fingerprint(fp),
                    algs,
                })),
            (None, false) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Pinned {
                    fingerprint: String::new(),
                    algs,
                })),
            (None, true) => builder.with_root_certificates(self.roots()?),
        };
        let config = match &settings.client_cert {
            Some(pem) => {
                let certs: Vec<CertificateDer<'static>> =
                    CertificateDer::pem_slice_iter(pem.as_bytes())
                        .collect::<Result<_, _>>()
                        .map_err(|e| format!("client certificate: {e}"))?;
                if certs.is_empty() {
                    return Err("client certificate: no CERTIFICATE block in the PEM".into());
                }
                let key = PrivateKeyDer::from_pem_slice(pem.as_bytes())
                    .map_err(|e| format!("client certificate: no usable private key ({e})"))?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|e| format!("client certificate: {e}"))?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }
}

/// Hex without separators, lower case.
pub fn normalize_fingerprint(fp: &str) -> String {
    fp.chars()
        .filter(|c| c.is_ascii_hexdigit())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of a certificate, hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, data).as_ref())
}

/// SHA-1, hex (identd answers, biboumi-compatible fingerprints).
pub fn sha1_hex(data: &[u8]) -> String {
    hex(digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, data).as_ref())
}

/// Accepts exactly the certificate with a pinned fingerprint (SHA-256 or
/// SHA-1), or — with an empty pin — any certificate (`verify_cert`
/// off). Handshake signatures are still checked.
#[derive(Debug)]
struct Pinned {
    fingerprint: String,
    algs: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.fingerprint.is_empty() {
            return Ok(ServerCertVerified::assertion());
        }
        let der = end_entity.as_ref();
        let ok = match self.fingerprint.len() {
            40 => sha1_hex(der) == self.fingerprint,
            _ => sha256_hex(der) == self.fingerprint,
        };
        if ok {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the certificate's fingerprint {} is not the pinned one",
                sha256_hex(der)
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// Connects to the server: every TLS port, then every plain port, each
/// address it resolves to that the operator's `hosts` policy allows, in
/// turn. The error lists every attempt.
pub async fn connect(
    settings: &ConnSettings,
    tls: &TlsContext,
    bind: Option<IpAddr>,
    timeout: Duration,
    hosts: &HostPolicy,
) -> Result<Connected, ConnectError> {
    let mut errors = Vec::new();
    let host = settings
        .address
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    for &(port, use_tls) in &settings.ports {
        let label = if use_tls {
            format!("{port} (TLS)")
        } else {
            port.to_string()
        };
        let addrs: Vec<SocketAddr> =
            match tokio::time::timeout(timeout, hosts.check(&host, port)).await {
                Ok(Ok(a)) => a,
                Ok(Err(HostRefused::Unresolved { reason, .. })) => {
                    errors.push(format!("{host}: {reason}"));
                    break;
                }
                Ok(Err(refused)) => return Err(ConnectError::Refused(refused)),
                Err(_) => {
                    errors.push(format!("{host}: name resolution timed out"));
                    break;
                }
            };
        for addr in addrs {
            let stream = match tcp(addr, bind, timeout).await {
                Ok(s) => s,
                Err(e) => {
                    errors.push(format!("{label} on {}: {e}", addr.ip()));
                    continue;
                }
            };
            let local = stream.local_addr().map_err(|e| e.to_string())?;
            let _ = stream.set_nodelay(true);
            let socket = dup(&stream);
            if !use_tls {
                return Ok(Connected {
                    io: Box::new(stream),
                    host: host.clone(),
                    port,
                    tls: false,
                    local,
                    peer: addr,
                    fingerprint: None,
                    socket,
                });
            }
            let config = tls.client_config(settings)?;
            let name = ServerName::try_from(host.clone()).map_err(|e| format!("{host}: {e}"))?;
            let connector = TlsConnector::from(config);
            match tokio::time::timeout(timeout, connector.connect(name, stream)).await {
                Ok(Ok(s)) => {
                    let fingerprint = s
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c: &pki_types::CertificateDer<'_>| sha256_hex(c.as_ref()));
                    return Ok(Connected {
                        io: Box::new(s),
                        host: host.clone(),
                        port,
                        tls: true,
                        local,
                        peer: addr,
                        fingerprint,
                        socket,
                    });
                }
                Ok(Err(e)) => errors.push(format!("{label} on {}: TLS: {e}", addr.ip())),
                Err(_) => errors.push(format!("{label} on {}: TLS handshake timed out", addr.ip())),
            }
        }
    }
    if errors.is_empty() {
        errors.push("no port to try".into());
    }
    Err(ConnectError::Failed(errors.join("; ")))
}

async fn tcp(
    addr: SocketAddr,
    bind: Option<IpAddr>,
    timeout: Duration,
) -> Result<TcpStream, String> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| e.to_string())?;
    if let Some(b) = bind {
        if b.is_ipv4() != addr.is_ipv4() {
            return Err(format!("outgoing_bind {b} cannot reach {}", addr.ip()));
        }
        socket
            .bind(SocketAddr::new(b, 0))
            .map_err(|e| format!("cannot bind {b}: {e}"))?;
    }
    match tokio::time::timeout(timeout, socket.connect(addr)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_normalized() {
        assert_eq!(normalize_fingerprint("AB:cd:01 ef"), "abcd01ef");
        assert_eq!(sha1_hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn bad_client_certificates_are_explained() {
        let ctx = TlsContext::new(None);
        let settings = ConnSettings {
            server: "x".into(),
            address: "x".into(),
            ports: vec![],
            verify_cert: false,
            fingerprint: None,
            nick: None,
            username: "u".into(),
            realname: "r".into(),
            pass: None,
            sasl_plain: None,
            sasl_external: true,
            sasl_required: false,
            client_cert: Some("not a pem".into()),
            after_connect: vec![],
            throttle_limit: 10,
            encoding_in: "latin1".into(),
            encoding_out: None,
        };
        let e = ctx.client_config(&settings).unwrap_err();
        assert!(e.contains("client certificate"), "{e}");
    }
}
