//! `sift check` (not implemented yet).

use std::process::ExitCode;

/// Arguments of `sift check`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `sift check`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`sift check` is not implemented yet")
}
