//! Ferry: an XMPP gateway. Each enabled bridge (IRC, Matrix …) is attached
//! to an XMPP server as its own XEP-0114 component; the core translates
//! between XMPP and the bridges' neutral actions and events.

mod access;
mod app;
mod bridges;
mod codepages;
mod component;
mod config;
mod gateway;
mod http;
mod lifecycle;
mod logging;
mod memory;
mod metrics;
mod muc;
mod permissions;
mod redact;
mod store;
mod xmpp;

fn main() -> std::process::ExitCode {
    app::main()
}
