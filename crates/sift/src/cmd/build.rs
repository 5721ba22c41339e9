//! `sift build` (not implemented yet).

use std::process::ExitCode;

/// Arguments of `sift build`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `sift build`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`sift build` is not implemented yet")
}
