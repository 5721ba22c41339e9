//! `sift`: the command-line entry point. Each subcommand lives in its own module under `cmd/`.
#![forbid(unsafe_code)]

mod cmd;
mod rows;

/// mimalloc (updates and builds decode millions of small rows and buckets: glibc's malloc spent
/// about 40% of a 100M-row update allocating and consolidating), with large blocks (polynomial
/// rows) on cache-line boundaries for the AVX-512 kernels.
#[global_allocator]
static GLOBAL: sift_he::aligned_alloc::CacheAlignedOn<mimalloc::MiMalloc> =
    sift_he::aligned_alloc::CacheAlignedOn(mimalloc::MiMalloc);

use clap::{Parser, Subcommand};

/// Server side of Apple's URL filter (NEURLFilter): build and serve Bloom prefilters and keyword
/// PIR databases, issue Privacy Pass tokens, terminate Oblivious HTTP, and check URLs end to end.
#[derive(Parser)]
#[command(name = "sift", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build and query the on-device Bloom prefilter (Apple's NEURLFilterPrefilter format).
    #[command(subcommand)]
    Prefilter(cmd::prefilter::Command),
    /// Print the sub-URLs the device looks up for a request URL.
    Suburls(cmd::suburls::Args),
    /// Process blocklists into a PIR database (per shard) plus the matching prefilter.
    Build(cmd::build::Args),
    /// Live Caller ID Lookup: build the block and identity datasets from Apple's input.
    #[command(subcommand)]
    Lcid(cmd::lcid::Command),
    /// Apply added and removed keys to a dataset: a new version sharing unchanged shards.
    Update(cmd::build::UpdateArgs),
    /// Dataset maintenance: `sift dataset verify` checks every file against its manifest.
    #[command(subcommand)]
    Dataset(cmd::dataset::Command),
    /// Run the PIR service, Privacy Pass issuer and OHTTP gateway.
    Serve(cmd::serve::Args),
    /// Check URLs the way a device does: sub-URLs, prefilter, token, PIR through OHTTP.
    Check(cmd::check::Args),
    /// Check a deployment against Apple's onboarding rules.
    Doctor(cmd::doctor::Args),
    /// Run the whole pipeline on an embedded default blocklist, on loopback, and show verdicts.
    Demo(cmd::demo::Args),
    /// Measure the service on loopback: `sift bench serve` (queries/s, p50/p99 at 1, 2, 8 clients).
    Bench(cmd::bench::Args),
}

/// `sift check … | head`: a reader that stops early closes our stdout. That is its choice, not
/// an error: exit quietly (status 0) instead of panicking in `println!`.
fn exit_quietly_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info)
    }));
}

fn main() -> std::process::ExitCode {
    exit_quietly_on_broken_pipe();
    // Logs go to stderr: text by default, one JSON object per line with SIFT_LOG_FORMAT=json
    // (for log collectors); RUST_LOG sets the level (default info).
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only on a terminal: files, pipes and journald get plain text (NO_COLOR honoured).
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    if std::env::var("SIFT_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        logs.json().init();
    } else {
        logs.init();
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Prefilter(c) => cmd::prefilter::run(c),
        Command::Suburls(a) => cmd::suburls::run(a),
        Command::Build(a) => cmd::build::run(a),
        Command::Lcid(c) => cmd::lcid::run(c),
        Command::Update(a) => cmd::build::run_update(a),
        Command::Dataset(c) => cmd::dataset::run(c),
        Command::Serve(a) => cmd::serve::run(a),
        Command::Check(a) => cmd::check::run(a),
        Command::Doctor(a) => cmd::doctor::run(a),
        Command::Demo(a) => cmd::demo::run(a),
        Command::Bench(a) => cmd::bench::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    /// The binary's allocator (mimalloc under the cache-line alignment of large blocks):
    /// blocks of 4 KiB or more start on a cache line, also after growing past the threshold,
    /// and every block keeps its contents.
    #[test]
    fn large_blocks_are_cache_aligned_and_contents_survive_growth() {
        for len in [1usize, 100, 4095, 4096, 1 << 20] {
            let v = vec![7u8; len];
            if len >= sift_he::aligned_alloc::THRESHOLD {
                assert_eq!(
                    v.as_ptr() as usize % sift_he::aligned_alloc::ALIGN,
                    0,
                    "{len}"
                );
            }
            assert!(v.iter().all(|&b| b == 7));
        }
        let mut v: Vec<u8> = (0..100u8).collect();
        v.reserve(10_000);
        assert_eq!(v.as_ptr() as usize % sift_he::aligned_alloc::ALIGN, 0);
        assert!(v.iter().copied().eq(0..100u8));
        v.shrink_to_fit();
        assert!(v.iter().copied().eq(0..100u8));
    }
}
