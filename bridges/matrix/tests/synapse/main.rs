//! Bridge-level tests of ferry's Matrix bridge against a real Synapse
//! (`MATRIX_URL`): the session is driven with actions and its events are
//! checked; the other side is a real Matrix client (matrix-sdk, with
//! end-to-end encryption).

#![recursion_limit = "256"]

mod common;
mod direct;
mod e2ee;
mod features;
mod media;
mod registration;
mod restart;
mod rooms;
