//! `sift serve` (not implemented yet).

use std::process::ExitCode;

/// Arguments of `sift serve`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `sift serve`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`sift serve` is not implemented yet")
}
