//! The sift crate's integration tests, one binary (one link, one run) for all of them.

mod common;

mod acme_config;
mod apple_inputs;
mod bench_serve;
mod broken_pipe;
mod build_summary;
mod cli;
mod dataset_versions;
mod e2e_tls;
mod keyword_db;
mod lcid;
mod packaging;
mod parsing;
mod streaming_build;
mod symmetric;
mod update_in_place;
