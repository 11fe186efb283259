//! Tests of the HTTP listener over real sockets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferry_bridge::{
    Account, Address, AddressContext, AddressError, AddressRules, BridgeSetup, Capabilities, Form,
    FormValues, LoginError, Network, NetworkInfo, Prompt, Registration, Session, SessionContext,
    SessionPolicy, UserId, WebhookRequest, WebhookResponse,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::component::fake_server::FakeServer;
use crate::component::{self, ComponentConfig, Tuning};
use crate::store::Key;

struct NoAddresses;

impl AddressRules for NoAddresses {
    fn parse(
        &self,
        local: &str,
        _: Option<&str>,
        _ctx: &AddressContext<'_>,
    ) -> Result<Address, AddressError> {
        Err(AddressError::new(format!("nothing is called {local}")))
    }
    fn format(&self, _: &Address) -> (String, Option<String>) {
        (String::new(), None)
    }
    fn prompt(&self) -> Prompt {
        Prompt {
            description: "Nothing".into(),
            label: "Nothing".into(),
        }
    }
    fn from_prompt(&self, input: &str, ctx: &AddressContext<'_>) -> Result<Address, AddressError> {
        self.parse(input, None, ctx)
    }
}

/// A network whose webhook describes the request it got.
struct Echo {
    info: NetworkInfo,
}

#[async_trait::async_trait]
impl Network for Echo {
    fn info(&self) -> &NetworkInfo {
        &self.info
    }
    fn address(&self) -> &dyn AddressRules {
        &NoAddresses
    }
    fn registration(&self) -> Form {
        Form::new("none")
    }
    async fn login(&self, _: &UserId, _: &FormValues) -> Result<Account, LoginError> {
        Err(LoginError::Unreachable("echo".into()))
    }
    async fn connect(&self, _: SessionContext) -> Result<Box<dyn Session>, LoginError> {
        Err(LoginError::Unreachable("echo".into()))
    }
    async fn webhook(&self, r: WebhookRequest) -> WebhookResponse {
        let token = r
            .headers
            .iter()
            .find(|(k, _)| k == "x-token")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        WebhookResponse {
            status: 201,
            content_type: "application/json".into(),
            body: format!(
                "{} {} q={} token={} body={}",
                r.method,
                r.path,
                r.query,
                token,
                String::from_utf8_lossy(&r.body)
            )
            .into_bytes(),
        }
    }
}

fn echo() -> Arc<dyn Network> {
    let _ = BridgeSetup {
        domain: String::new(),
        data_dir: Default::default(),
        hosts: Default::default(),
    };
    Arc::new(Echo {
        info: NetworkInfo {
            name: "Echo".into(),
            gateway_type: "echo".into(),
            registration: Registration::Optional,
            sessions: SessionPolicy::OnDemand,
            capabilities: Capabilities::default(),
            limits: ferry_bridge::Limits::default(),
        },
    })
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A minimal HTTP/1.1 client over a real socket.
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.expect("write");
    let _ = s.write_all(body).await;
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw).await;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..eol]).trim(), 16)
                .unwrap_or(0);
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
            rest = &rest[eol + 2 + size + 2..];
        }
        body = out;
    }
    Response {
        status,
        headers,
        body,
    }
}

struct Setup {
    addr: SocketAddr,
    media: Media,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
    _server: FakeServer,
    components: Vec<component::ComponentHandle>,
}

fn tuning() -> Tuning {
    Tuning {
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(200),
        ..Tuning::default()
    }
}

/// Bridge `up` connected to a fake server; bridge `down` (if asked)
/// pointed at a port where nothing listens.
async fn setup(with_down: bool, max_body: usize) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = Arc::new(Key::load_or_create(&dir.path().join("k")).expect("key"));
    let mut server = FakeServer::start("up.example.org", "s", vec![]).await;
    let mut metrics = Metrics::default();
    let mut bridges = Vec::new();
    let mut components = Vec::new();
    let closed_port = {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        l.local_addr().expect("addr").port()
    };
    let mut names = vec![("up", server.port, "up.example.org")];
    if with_down {
        names.push(("down", closed_port, "down.example.org"));
    }
    for (name, port, domain) in names {
        let store =
            Store::open(&dir.path().join(format!("{name}.db")), key.clone()).expect("store");
        let m = metrics.bridge(name);
        let (handle, _inbound) = component::start(
            ComponentConfig {
                tuning: tuning(),
                ..ComponentConfig::new(domain, "s", "127.0.0.1", port)
            },
            store.clone(),
            m.clone(),
            CancellationToken::new(),
        );
        // Keep the receiver alive for the test's duration.
        std::mem::forget(_inbound);
        components.push(handle.clone());
        bridges.push(HttpBridge {
            name: name.to_owned(),
            network: echo(),
            component: handle,
            metrics: m,
            store,
        });
    }
    server.connected(5).await;
    let media = Media::new(
        dir.path().join("media"),
        "http://files.example.org:8780/".into(),
        4096,
    )
    .expect("media");
    let state = HttpState::new(bridges, metrics, media.clone(), max_body);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = CancellationToken::new();
    tokio::spawn(serve(listener, state, stop.clone()));
    Setup {
        addr,
        media,
        stop,
        _dir: dir,
        _server: server,
        components,
    }
}

async fn wait_connected(s: &Setup) {
    for _ in 0..250 {
        if matches!(s.components[0].state(), StreamState::Connected { .. }) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("not connected");
}

#[tokio::test]
async fn health_is_200_only_when_every_stream_is_up() {
    let s = setup(false, 1 << 20).await;
    wait_connected(&s).await;
    let r = request(s.addr, "GET", "/health", &[], b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(v["status"], "ok");
    assert_eq!(v["bridges"]["up"]["state"], "connected");
    assert_eq!(v["bridges"]["up"]["domain"], "up.example.org");
    assert!(v["bridges"]["up"]["connected_since"].as_str().is_some());
    assert_eq!(v["bridges"]["up"]["outbox"], 0);
    s.stop.cancel();

    let s = setup(true, 1 << 20).await;
    wait_connected(&s).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = request(s.addr, "GET", "/health", &[], b"").await;
    assert_eq!(r.status, 503, "{}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(v["status"], "degraded");
    assert_eq!(v["bridges"]["up"]["state"], "connected");
    assert_eq!(v["bridges"]["down"]["state"], "connecting");
    assert!(v["bridges"]["down"]["attempt"].as_u64().unwrap_or(0) >= 1);
    let err = v["bridges"]["down"]["last_error"].as_str().unwrap_or("");
    assert!(err.to_lowercase().contains("refused"), "{err}");
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let s = setup(true, 1 << 20).await;
    wait_connected(&s).await;
    let r = request(s.addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap_or("")
            .starts_with("text/plain")
    );
    let t = r.text();
    assert!(
        t.contains("ferry_component_connected{bridge=\"up\"} 1"),
        "{t}"
    );
    assert!(
        t.contains("ferry_component_connected{bridge=\"down\"} 0"),
        "{t}"
    );
    assert!(t.contains("# TYPE ferry_stanzas_out_total counter"), "{t}");
    assert!(t.contains("ferry_db_commits_total{bridge=\"up\"}"), "{t}");
    assert!(t.contains("ferry_build_info{version=\""), "{t}");
    // Every sample line is `name{labels} value` or `name value`.
    for line in t.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit(' ').next().unwrap_or("");
        assert!(value.parse::<f64>().is_ok(), "bad sample line {line:?}");
    }
}

#[tokio::test]
async fn webhooks_reach_their_bridge() {
    let s = setup(false, 1024).await;
    let r = request(
        s.addr,
        "POST",
        "/bridge/up/transactions/42?access_token=x",
        &[("X-Token", "abc")],
        b"{\"a\":1}",
    )
    .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.text(),
        "POST /transactions/42 q=access_token=x token=abc body={\"a\":1}"
    );
    let r = request(s.addr, "GET", "/bridge/up", &[], b"").await;
    assert_eq!(r.text(), "GET / q= token= body=");
    let r = request(s.addr, "PUT", "/bridge/nope/x", &[], b"").await;
    assert_eq!(r.status, 404);
    let big = vec![b'x'; 2048];
    let r = request(s.addr, "POST", "/bridge/up/x", &[], &big).await;
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.text().contains("max_body_bytes"));
}

#[tokio::test]
async fn media_is_published_and_served() {
    let s = setup(false, 1024).await;
    let url = s
        .media
        .publish(
            b"\x89PNG fake image".to_vec(),
            Some("image/png"),
            Some("cat picture.png"),
        )
        .await
        .expect("published");
    let prefix = "http://files.example.org:8780/media/";
    assert!(url.starts_with(prefix), "{url}");
    let path = &url["http://files.example.org:8780".len()..];
    assert!(path.ends_with("/cat_picture.png"), "{path}");
    let token = path.split('/').nth(2).expect("token");
    assert_eq!(token.len(), 32);
    let r = request(s.addr, "GET", path, &[], b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"\x89PNG fake image");
    assert_eq!(r.header("content-type"), Some("image/png"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert!(
        r.header("content-security-policy")
            .unwrap_or("")
            .contains("sandbox")
    );
    // Another name, another token, a malformed token: nothing.
    let other = path.replace("cat_picture.png", "other.png");
    assert_eq!(request(s.addr, "GET", &other, &[], b"").await.status, 404);
    let forged = format!("/media/{}/cat_picture.png", "0".repeat(32));
    assert_eq!(request(s.addr, "GET", &forged, &[], b"").await.status, 404);
    assert_eq!(
        request(s.addr, "GET", "/media/..%2F..%2Fk/x", &[], b"")
            .await
            .status,
        404
    );
    // HTML is served, but sandboxed and with its declared type only.
    let url = s
        .media
        .publish(
            b"<script>alert(1)</script>".to_vec(),
            Some("text/html\r\nX-Evil: 1"),
            None,
        )
        .await
        .expect("published");
    let r = request(
        s.addr,
        "GET",
        &url["http://files.example.org:8780".len()..],
        &[],
        b"",
    )
    .await;
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert!(r.header("x-evil").is_none());
    // Limits.
    let e = s
        .media
        .publish(vec![0; 5000], None, None)
        .await
        .expect_err("too large");
    assert!(e.to_string().contains("max_media_bytes"), "{e}");
    let e = Media::disabled()
        .publish(vec![1], None, None)
        .await
        .expect_err("disabled");
    assert!(e.to_string().contains("[http] listen"), "{e}");
}
