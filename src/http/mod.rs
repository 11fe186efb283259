//! The HTTP listener (`[http] listen`): `/health` (the component state of
//! every bridge), `/metrics` (Prometheus text), `/bridge/<name>/…` (routed
//! to the bridge's [`Network::webhook`]) and `/media/…` (files the gateway
//! publishes for XMPP users, such as attachments from a network).
//!
//! [`Network::webhook`]: ferry_bridge::Network::webhook

/// Publishes files over the gateway's HTTP listener. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Media {}

impl Media {
    /// Stores a file and returns its public URL (under `[http] public_url`).
    /// Fails when no HTTP listener is configured.
    pub async fn publish(
        &self,
        data: Vec<u8>,
        mime: Option<&str>,
        name: Option<&str>,
    ) -> anyhow::Result<String> {
        let _ = (data, mime, name);
        todo!("http: media publish")
    }
}
