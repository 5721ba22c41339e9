//! `sift doctor` (not implemented yet).

use std::process::ExitCode;

/// Arguments of `sift doctor`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `sift doctor`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`sift doctor` is not implemented yet")
}
