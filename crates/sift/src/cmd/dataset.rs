//! `sift dataset verify`: checks every file of a dataset's current version against its
//! manifest (size and SHA-256), the full check that `sift serve` does lazily per shard.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args as ClapArgs, Subcommand};

/// `sift dataset …`
#[derive(Subcommand)]
pub enum Command {
    /// Check every file of the current version against its manifest (size and SHA-256).
    Verify(VerifyArgs),
}

/// `sift dataset verify`
#[derive(ClapArgs)]
pub struct VerifyArgs {
    /// The dataset folder (`sift build -o`, a use case's `dataset_dir`).
    pub dataset_dir: PathBuf,
}

/// Runs a `sift dataset` command.
pub fn run(c: Command) -> anyhow::Result<ExitCode> {
    match c {
        Command::Verify(a) => verify(a),
    }
}

fn verify(a: VerifyArgs) -> anyhow::Result<ExitCode> {
    let (dir, manifest) =
        sift_dataset::process::current_version(&a.dataset_dir)?.ok_or_else(|| {
            anyhow::anyhow!(
                "{} is a flat (legacy) dataset without a manifest: there is nothing to verify \
             against; rebuild it with `sift build -o {}`",
                a.dataset_dir.display(),
                a.dataset_dir.display()
            )
        })?;
    let t = std::time::Instant::now();
    sift_dataset::load::verify(&dir, &manifest, true)?;
    println!(
        "version {}: {} files, {:.1} MiB, all match the manifest ({:.1} s)",
        manifest.id,
        manifest.files.len(),
        manifest.total_bytes() as f64 / (1024.0 * 1024.0),
        t.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
