//! The server crate's integration tests, one binary (one link, one run) for all of them.

mod common;

mod abuse;
mod acme;
mod bad_input;
mod connections;
mod ohttp_gateway;
mod operations;
mod prefilter;
mod privacy_pass;
mod privacypass_interop;
mod redis_store;
mod reload;
mod service;
mod shared_limits;
mod symmetric;
mod token_windows;
