//! The HTTP listener (`[http] listen`): `/health` (the component state of
//! every bridge), `/metrics` (Prometheus text), `/bridge/<name>/…` (routed
//! to the bridge's [`Network::webhook`]) and `/media/…` (files the gateway
//! publishes for XMPP users, such as attachments from a network).
//!
//! [`Network::webhook`]: ferry_bridge::Network::webhook

mod media;
#[cfg(test)]
mod tests;

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use ferry_bridge::{Network, WebhookRequest};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::component::{ComponentHandle, StreamState};
use crate::metrics::{BridgeMetrics, Metrics};
use crate::store::Store;

pub use media::Media;

/// What the listener knows of one bridge.
pub struct HttpBridge {
    /// Its section name (`irc`): the `/bridge/<name>/` prefix.
    pub name: String,
    /// The bridge, for webhooks.
    pub network: Arc<dyn Network>,
    /// Its component stream, for `/health`.
    pub component: ComponentHandle,
    /// Its counters.
    pub metrics: Arc<BridgeMetrics>,
    /// Its database, for the writer's counters in `/metrics`.
    pub store: Store,
}

/// Shared state of the listener. Cheap to clone.
#[derive(Clone)]
pub struct HttpState {
    inner: Arc<Inner>,
}

struct Inner {
    bridges: Vec<HttpBridge>,
    metrics: Metrics,
    media: Media,
    max_body_bytes: usize,
    started: Instant,
}

impl HttpState {
    /// The state for a listener serving these bridges.
    pub fn new(
        bridges: Vec<HttpBridge>,
        metrics: Metrics,
        media: Media,
        max_body_bytes: usize,
    ) -> HttpState {
        HttpState {
            inner: Arc::new(Inner {
                bridges,
                metrics,
                media,
                max_body_bytes,
                started: Instant::now(),
            }),
        }
    }
}

/// The routes.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/bridge/{name}", any(webhook_root))
        .route("/bridge/{name}/{*rest}", any(webhook))
        .route("/media/{token}/{name}", get(media::serve))
        .with_state(state)
}

/// Serves until `shutdown` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: HttpState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

async fn health(State(state): State<HttpState>) -> Response {
    let mut all_up = true;
    let mut bridges = serde_json::Map::new();
    for b in &state.inner.bridges {
        let outbox = b.metrics.outbox_depth.load(Ordering::Relaxed);
        let entry = match b.component.state() {
            StreamState::Connected { since } => json!({
                "domain": b.component.domain(),
                "state": "connected",
                "connected_since": crate::app::format_time(since),
                "connected_since_unix": unix_secs(since),
                "outbox": outbox,
            }),
            StreamState::Connecting {
                attempt,
                last_error,
            } => {
                all_up = false;
                json!({
                    "domain": b.component.domain(),
                    "state": "connecting",
                    "attempt": attempt,
                    "last_error": last_error,
                    "outbox": outbox,
                })
            }
            StreamState::Closed => {
                all_up = false;
                json!({
                    "domain": b.component.domain(),
                    "state": "closed",
                    "outbox": outbox,
                })
            }
        };
        bridges.insert(b.name.clone(), entry);
    }
    let status = if all_up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if all_up { "ok" } else { "degraded" },
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.inner.started.elapsed().as_secs(),
        "bridges": bridges,
    });
    (status, axum::Json(body)).into_response()
}

async fn metrics(State(state): State<HttpState>) -> Response {
    let mut text = state.inner.metrics.render();
    let _ = writeln!(
        text,
        "# HELP ferry_build_info Version of the running ferry\n# TYPE ferry_build_info gauge\nferry_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(
        text,
        "# HELP ferry_uptime_seconds Seconds since ferry started\n# TYPE ferry_uptime_seconds gauge\nferry_uptime_seconds {}",
        state.inner.started.elapsed().as_secs()
    );
    type Series = (
        &'static str,
        &'static str,
        fn(crate::store::WriterStats) -> u64,
    );
    let series: [Series; 2] = [
        ("ferry_db_writes_total", "Database writes applied", |s| {
            s.writes
        }),
        (
            "ferry_db_commits_total",
            "Database transactions committed (writes are batched)",
            |s| s.commits,
        ),
    ];
    for (name, help, get) in series {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} counter");
        for b in &state.inner.bridges {
            let _ = writeln!(
                text,
                "{name}{{bridge=\"{}\"}} {}",
                b.name,
                get(b.store.stats())
            );
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn webhook_root(
    State(state): State<HttpState>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    route_webhook(state, name, String::new(), request).await
}

async fn webhook(
    State(state): State<HttpState>,
    Path((name, rest)): Path<(String, String)>,
    request: Request,
) -> Response {
    route_webhook(state, name, rest, request).await
}

async fn route_webhook(state: HttpState, name: String, rest: String, request: Request) -> Response {
    let Some(bridge) = state.inner.bridges.iter().find(|b| b.name == name) else {
        return (StatusCode::NOT_FOUND, format!("no bridge named {name}\n")).into_response();
    };
    let (parts, body) = request.into_parts();
    let too_large = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > state.inner.max_body_bytes as u64);
    if too_large {
        return payload_too_large(state.inner.max_body_bytes);
    }
    let body = match axum::body::to_bytes(body, state.inner.max_body_bytes).await {
        Ok(b) => b,
        Err(_) => return payload_too_large(state.inner.max_body_bytes),
    };
    let headers = parts
        .headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_ascii_lowercase(), v.to_str().ok()?.to_owned())))
        .collect();
    let request = WebhookRequest {
        method: parts.method.as_str().to_owned(),
        path: format!("/{rest}"),
        query: parts.uri.query().unwrap_or("").to_owned(),
        headers,
        body: body.to_vec(),
    };
    let answer = bridge.network.webhook(request).await;
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = Response::new(Body::from(answer.body));
    *response.status_mut() = status;
    if let Ok(ct) = HeaderValue::from_str(&answer.content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    response
}

fn payload_too_large(limit: usize) -> Response {
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the request body is larger than {limit} bytes ([http] max_body_bytes)\n"),
    )
        .into_response()
}

/// `X-Content-Type-Options: nosniff` and a sandboxing CSP for files served
/// from the gateway's origin.
fn safe_headers(response: &mut Response) {
    let h = response.headers_mut();
    h.insert(
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'"),
    );
}
