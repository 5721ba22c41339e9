//! `sift demo` (not implemented yet).

use std::process::ExitCode;

/// Arguments of `sift demo`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `sift demo`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`sift demo` is not implemented yet")
}
