//! The dataset format, in one place: Apple's `PIRProcessDatabase` JSON config (typed), the
//! versioned immutable dataset directory with its manifest, the atomic switch of the current
//! version, loading with verification, and building or updating a version from rows.
//! `sift build`, `sift update` and the server's loader are thin callers of this crate.
//!
//! See [`layout`] for the directory structure and `docs/datasets.md` for the operator's view.
#![forbid(unsafe_code)]

pub mod config;
pub mod fsutil;
pub mod layout;
pub mod load;
pub mod logs;
pub mod manifest;
pub mod partition;
pub mod process;
pub mod update;
pub mod writer;

/// The device-like PIR client the integration tests use, for the unit tests too.
#[cfg(test)]
#[path = "../tests/support/device.rs"]
mod test_device;

pub use config::ProcessConfig;
pub use layout::{Layout, prefilter_dir, resolve};
pub use load::{FileIdentity, Loaded, load, load_trusting, signature};
pub use manifest::Manifest;
pub use process::{BuildReport, BuildRequest, build, rows_digest};
pub use writer::VersionWriter;
