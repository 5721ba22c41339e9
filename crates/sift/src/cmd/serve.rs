//! `sift serve`: runs the PIR service from a TOML config file, reloading datasets on SIGHUP and
//! when their files change.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;

/// Arguments of `sift serve`.
#[derive(clap::Args)]
#[command(after_help = "Example config (sift.toml):

  listen = \"127.0.0.1:8080\"
  dev_plain_http = true          # plain HTTP for local development only
  require_tokens = true          # PIR routes need Privacy Pass tokens of our issuer
  state_dir = \"state\"            # stored evaluation keys
  report_dir = \"reports\"         # /report submissions (JSON lines)

  [[users]]                      # Bearer user tokens that may fetch tokens, per tier
  tier = \"tier1\"
  tokens = [\"change-me\"]

  [[usecases]]
  name = \"com.example.app.url.filtering\"
  dataset_dir = \"dataset\"        # output of `sift build`
  stem = \"url\"
  versions_kept = 2

  [limits]
  max_body_bytes = 10485760

Datasets are reloaded on SIGHUP and when their files change (checked every --poll-secs).")]
pub struct Args {
    /// The TOML configuration file.
    #[arg(short, long, default_value = "sift.toml")]
    pub config: PathBuf,
    /// How often to look for changed dataset files, in seconds (0 disables polling).
    #[arg(long, default_value_t = 10)]
    pub poll_secs: u64,
}

/// Runs `sift serve` until Ctrl-C or SIGTERM.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let cfg = sift_server::ServerConfig::from_file(&args.config)?;
    if cfg.tls.is_some() {
        anyhow::bail!(
            "TLS termination is not built into `sift serve` yet: run it with dev_plain_http = true behind a \
             TLS-terminating HTTP/2 proxy, and leave the [tls] section out"
        );
    }
    if !cfg.require_tokens {
        tracing::warn!(
            "require_tokens = false: PIR routes accept requests without Privacy Pass tokens"
        );
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let server = sift_server::spawn(cfg, None)
            .await
            .context("starting the server")?;
        tracing::info!("listening on http://{}", server.addr);
        let state = server.state.clone();
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let poll = if args.poll_secs == 0 {
            Duration::MAX
        } else {
            Duration::from_secs(args.poll_secs)
        };
        let mut ticker = tokio::time::interval(poll.min(Duration::from_secs(86_400)));
        ticker.tick().await;
        loop {
            let reason = tokio::select! {
                _ = hup.recv() => "SIGHUP",
                _ = ticker.tick(), if args.poll_secs != 0 => "poll",
                _ = term.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
            };
            let st = state.clone();
            let changed = tokio::task::spawn_blocking(move || st.reload()).await?;
            if !changed.is_empty() || reason == "SIGHUP" {
                tracing::info!(?changed, "reload ({reason})");
            }
        }
        tracing::info!("shutting down; letting in-flight requests finish");
        server.stop().await;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
