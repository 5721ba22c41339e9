//! `sift prefilter` (not implemented yet).

use std::process::ExitCode;

/// Subcommands of `sift prefilter`.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Build a prefilter from blocklists.
    Build {},
}

/// Runs `sift prefilter`.
pub fn run(_command: Command) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`sift prefilter` is not implemented yet")
}
