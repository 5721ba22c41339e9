//! `sift suburls` (not implemented yet).

use std::process::ExitCode;

/// Arguments of `sift suburls`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `sift suburls`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`sift suburls` is not implemented yet")
}
