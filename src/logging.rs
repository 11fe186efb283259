//! The log: the operator's filter (`[log] level`, or `RUST_LOG`) on
//! stderr, with two things held back whatever the filter says:
//!
//! - the XMPP library's capture of every byte it reads and writes
//!   (`tokio_xmpp` at `trace`): it would print passwords users send in
//!   forms. Ferry logs stanzas itself instead, at `trace` under the target
//!   `ferry::stanza`, with secrets redacted ([`crate::redact`]);
//! - errors a dependency logs although they are normal and handled by its
//!   caller: matrix-sdk logs every HTTP error as ERROR before returning it,
//!   and a `404 M_NOT_FOUND` is how a homeserver says that an account has
//!   no such account data yet (`m.secret_storage.default_key` on every
//!   fresh account). The Matrix bridge logs what it means instead.

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata};
use tracing_subscriber::filter::{EnvFilter, FilterExt, filter_fn};
use tracing_subscriber::layer::{Context, Filter, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// The target of Ferry's own (redacted) stanza log.
pub const STANZA_TARGET: &str = "ferry::stanza";

/// Whether a log event's metadata is let through whatever the filter says.
fn never_secret(meta: &Metadata<'_>) -> bool {
    !(meta.target().starts_with("tokio_xmpp") && *meta.level() == Level::TRACE)
}

/// Finds an event's message.
#[derive(Default)]
struct Message(String);

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            value.clone_into(&mut self.0);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

/// Drops the errors of [`benign`].
struct NotErrors;

/// Whether an event is an error a dependency logs although it is normal.
fn benign(event: &Event<'_>) -> bool {
    let meta = event.metadata();
    if *meta.level() != Level::ERROR || !meta.target().starts_with("matrix_sdk::http_client") {
        return false;
    }
    let mut m = Message::default();
    event.record(&mut m);
    m.0.starts_with("Error while sending request") && m.0.contains("M_NOT_FOUND")
}

impl<S> Filter<S> for NotErrors {
    fn enabled(&self, _: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        true
    }

    fn event_enabled(&self, event: &Event<'_>, _: &Context<'_, S>) -> bool {
        !benign(event)
    }
}

/// Installs the subscriber for `level` (a `RUST_LOG`-style filter; the
/// `RUST_LOG` environment variable wins when set).
pub fn init(level: &str) {
    let filter = match std::env::var("RUST_LOG") {
        Ok(env) if !env.trim().is_empty() => EnvFilter::builder().parse_lossy(env),
        _ => EnvFilter::builder().parse_lossy(level),
    };
    use std::io::IsTerminal as _;
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .with_filter(filter.and(filter_fn(never_secret)).and(NotErrors));
    let _ = tracing_subscriber::registry().with(layer).try_init();
}
