//! Counters the gateway keeps per bridge, rendered for `/metrics` in the
//! Prometheus text format.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// The counters of one bridge. Cheap to update from any task.
#[derive(Debug, Default)]
pub struct BridgeMetrics {
    /// Stanzas received from the XMPP server.
    pub stanzas_in: AtomicU64,
    /// Stanzas sent to the XMPP server (including from the outbox).
    pub stanzas_out: AtomicU64,
    /// Errors: stanza errors sent, failed actions, session failures.
    pub errors: AtomicU64,
    /// Session restarts after a failure.
    pub session_restarts: AtomicU64,
    /// Component stream (re)connections.
    pub reconnects: AtomicU64,
    /// Running sessions.
    pub sessions: AtomicI64,
    /// Stanzas waiting in the outbox.
    pub outbox_depth: AtomicI64,
    /// 1 while the component stream is up.
    pub connected: AtomicI64,
}

impl BridgeMetrics {
    /// Adds one to a counter.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// All bridges' counters.
#[derive(Debug, Default, Clone)]
pub struct Metrics {
    bridges: Vec<(String, Arc<BridgeMetrics>)>,
}

impl Metrics {
    /// Registers a bridge and returns its counters.
    pub fn bridge(&mut self, name: &str) -> Arc<BridgeMetrics> {
        let m = Arc::new(BridgeMetrics::default());
        self.bridges.push((name.to_owned(), m.clone()));
        m
    }

    /// The Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let mut out = String::new();
        type Get = fn(&BridgeMetrics) -> i64;
        let series: [(&str, &str, &str, Get); 8] = [
            (
                "ferry_stanzas_in_total",
                "counter",
                "Stanzas received from the XMPP server",
                |m| m.stanzas_in.load(Ordering::Relaxed) as i64,
            ),
            (
                "ferry_stanzas_out_total",
                "counter",
                "Stanzas sent to the XMPP server",
                |m| m.stanzas_out.load(Ordering::Relaxed) as i64,
            ),
            (
                "ferry_errors_total",
                "counter",
                "Errors (stanza errors, failed actions, session failures)",
                |m| m.errors.load(Ordering::Relaxed) as i64,
            ),
            (
                "ferry_session_restarts_total",
                "counter",
                "Sessions restarted after a failure",
                |m| m.session_restarts.load(Ordering::Relaxed) as i64,
            ),
            (
                "ferry_component_reconnects_total",
                "counter",
                "Component stream reconnections",
                |m| m.reconnects.load(Ordering::Relaxed) as i64,
            ),
            ("ferry_sessions", "gauge", "Running sessions", |m| {
                m.sessions.load(Ordering::Relaxed)
            }),
            (
                "ferry_outbox_depth",
                "gauge",
                "Stanzas waiting for the component stream",
                |m| m.outbox_depth.load(Ordering::Relaxed),
            ),
            (
                "ferry_component_connected",
                "gauge",
                "1 while the component stream is up",
                |m| m.connected.load(Ordering::Relaxed),
            ),
        ];
        for (name, kind, help, get) in series {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (bridge, m) in &self.bridges {
                let _ = writeln!(out, "{name}{{bridge=\"{bridge}\"}} {}", get(m));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let mut metrics = Metrics::default();
        let irc = metrics.bridge("irc");
        BridgeMetrics::inc(&irc.stanzas_in);
        irc.sessions.store(3, Ordering::Relaxed);
        let text = metrics.render();
        assert!(text.contains("# TYPE ferry_stanzas_in_total counter"));
        assert!(text.contains("ferry_stanzas_in_total{bridge=\"irc\"} 1"));
        assert!(text.contains("ferry_sessions{bridge=\"irc\"} 3"));
    }
}
