//! The log: the operator's filter (`[log] level`, or `RUST_LOG`) on
//! stderr, with two things held back whatever the filter says:
//!
//! - the XMPP library's capture of every byte it reads and writes
//!   (`tokio_xmpp` at `trace`): it would print passwords users send in
//!   forms. Ferry logs stanzas itself instead, at `trace` under the target
//!   `ferry::stanza`, with secrets redacted ([`crate::redact`]);
//! - errors a dependency logs although they are normal and handled by its
//!   caller: matrix-sdk logs every HTTP error as ERROR before returning it,
//!   and a 404 `M_NOT_FOUND` on account data is how a homeserver says that
//!   an account has none of that type yet (`m.secret_storage.default_key`
//!   on every fresh account, which the SDK reads as "no secret storage").
//!   The Matrix bridge logs what it means instead.

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata};
use tracing_subscriber::filter::{EnvFilter, FilterExt, Targets, filter_fn};
use tracing_subscriber::fmt::FormattedFields;
use tracing_subscriber::fmt::format::DefaultFields;
use tracing_subscriber::layer::{Context, Filter, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
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

/// Whether an event is an error a dependency logs although it is normal:
/// matrix-sdk's 404 `NotFound` for account data (the request's URI is in
/// the span the HTTP client opens, when that span is logged at all).
fn benign<S>(event: &Event<'_>, cx: &Context<'_, S>) -> bool
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    let meta = event.metadata();
    if *meta.level() != Level::ERROR || !meta.target().starts_with("matrix_sdk::http_client") {
        return false;
    }
    let mut m = Message::default();
    event.record(&mut m);
    let not_found = m.0.starts_with("Error while sending request")
        && m.0.contains("status_code: 404")
        && m.0.contains("NotFound");
    let uri = cx.event_span(event).and_then(|span| {
        span.extensions()
            .get::<FormattedFields<DefaultFields>>()
            .map(|f| f.fields.contains("/account_data/"))
    });
    not_found && uri != Some(false)
}

impl<S> Filter<S> for NotErrors
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn enabled(&self, _: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        true
    }

    fn event_enabled(&self, event: &Event<'_>, cx: &Context<'_, S>) -> bool {
        !benign(event, cx)
    }
}

/// The operator's filter. Directives that name only targets and levels
/// (`info`, `warn,ferry_irc=debug`: every level the configuration offers)
/// become a plain [`Targets`] filter; only directives on spans or fields
/// (`[span{field=value}]`), or ones `Targets` cannot read, take
/// [`EnvFilter`], whose parser compiles regular expressions: that code and
/// its tables would otherwise be run, and kept resident, by every start.
fn operator_filter<S>(level: &str) -> Box<dyn Filter<S> + Send + Sync + 'static>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    let plain = !level.is_empty()
        && !level.contains(|c: char| c.is_whitespace() || matches!(c, '[' | ']' | '{' | '}'));
    match level.parse::<Targets>() {
        Ok(targets) if plain => FilterExt::boxed(targets),
        _ => FilterExt::boxed(EnvFilter::builder().parse_lossy(level)),
    }
}

/// The operator's filter with what is always held back.
fn filter<S>(level: &str) -> impl Filter<S> + use<S>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    operator_filter(level)
        .and(filter_fn(never_secret))
        .and(NotErrors)
}

/// Installs the subscriber for `level` (a `RUST_LOG`-style filter; the
/// `RUST_LOG` environment variable wins when set).
pub fn init(level: &str) {
    let level = match std::env::var("RUST_LOG") {
        Ok(env) if !env.trim().is_empty() => env,
        _ => level.to_owned(),
    };
    use std::io::IsTerminal as _;
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .with_filter(filter(&level));
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut v) = self.0.lock() {
                v.extend_from_slice(b);
            }
            Ok(b.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(level: &str, emit: impl FnOnce()) -> String {
        let buf = Buf::default();
        let out = buf.clone();
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(move || out.clone())
            .with_ansi(false)
            .with_filter(filter(level));
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), emit);
        let bytes = buf.0.lock().map(|v| v.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn sdk_error(uri: &str) {
        let span = tracing::info_span!(target: "matrix_sdk::http_client", "send", uri = tracing::field::Empty);
        span.record("uri", uri);
        let _in = span.enter();
        tracing::error!(
            target: "matrix_sdk::http_client",
            "Error while sending request: Api(Server(MatrixError(Error {{ status_code: 404, body: Standard(StandardErrorBody {{ kind: NotFound, message: \"x\" }}) }})))"
        );
    }

    #[test]
    fn plain_directives_filter_by_target_and_level() {
        let emit = || {
            tracing::debug!(target: "ferry_irc::conn", "irc debug");
            tracing::debug!(target: "ferry::gateway", "core debug");
            tracing::info!(target: "ferry::gateway", "core info");
            tracing::warn!(target: "matrix_sdk::client", "sdk warn");
        };
        let out = logged("warn,ferry_irc=debug", emit);
        assert!(
            out.contains("irc debug") && out.contains("sdk warn"),
            "{out}"
        );
        assert!(
            !out.contains("core debug") && !out.contains("core info"),
            "{out}"
        );
        let out = logged("INFO", emit);
        assert!(
            out.contains("core info") && !out.contains("irc debug"),
            "{out}"
        );
        let out = logged("off", emit);
        assert!(out.is_empty(), "{out}");
    }

    #[test]
    fn span_and_field_directives_still_work() {
        let emit = || {
            let span = tracing::info_span!(target: "ferry::gateway", "session", user = "alice@x");
            let _in = span.enter();
            tracing::debug!(target: "ferry::gateway", "alice debug");
        };
        let out = logged("warn,[session{user=alice@x}]=debug", emit);
        assert!(out.contains("alice debug"), "{out}");
        // What Targets would read differently (a space before a target) is
        // read as RUST_LOG always was: EnvFilter ignores that directive.
        let out = logged("warn, ferry=debug", emit);
        assert!(!out.contains("alice debug"), "{out}");
        let out = logged("debug, ferry=warn", emit);
        assert!(out.contains("alice debug"), "{out}");
    }

    #[test]
    fn the_stream_capture_is_never_logged() {
        let out = logged("trace", || {
            tracing::trace!(target: "tokio_xmpp::xmlstream::capture", "RECV <password>x</password>");
            tracing::trace!(target: "ferry::stanza", "in: <redacted/>");
        });
        assert!(!out.contains("RECV"), "{out}");
        assert!(out.contains("in: <redacted/>"), "{out}");
    }

    #[test]
    fn absent_matrix_account_data_is_not_an_error() {
        let out = logged("info", || {
            sdk_error(
                "http://hs/_matrix/client/v3/user/@a:hs/account_data/m.secret_storage.default_key",
            );
        });
        assert!(!out.contains("ERROR"), "{out}");
        let out = logged("info", || {
            sdk_error("http://hs/_matrix/client/v3/rooms/!r:hs/send/m.room.message/1");
        });
        assert!(out.contains("ERROR"), "another 404 stays an error: {out}");
    }
}
