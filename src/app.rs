//! Command line, start-up and shutdown: reads the configuration, opens each
//! enabled bridge's store, starts its component stream and gateway, serves
//! HTTP, and on SIGTERM/SIGINT shuts everything down cleanly.

use std::process::ExitCode;

/// Runs the `ferry` command.
pub fn main() -> ExitCode {
    todo!("app: main")
}
