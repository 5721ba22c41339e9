//! `sift serve`: runs the PIR service from a TOML config file, reloading datasets on SIGHUP and
//! when their files change.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;

/// Arguments of `sift serve`.
#[derive(clap::Args)]
#[command(after_help = "Example config (sift.toml):

  listen = \"0.0.0.0:443\"
  state_dir = \"state\"            # issuer keys, OHTTP gateway keys, stored evaluation keys
  require_tokens = true          # PIR routes need Privacy Pass tokens of our issuer
  report_dir = \"reports\"         # /report submissions (JSON lines)

  [[users]]                      # Bearer user tokens that may fetch tokens, per tier
  tier = \"tier1\"
  tokens = [\"change-me\"]

  [[usecases]]
  name = \"com.example.app.url.filtering\"
  dataset_dir = \"dataset\"        # output of `sift build`
  stem = \"url\"
  versions_kept = 2
  # [usecases.symmetric_pir]     # only for a dataset built with symmetricPirArguments
  # database_encryption_key_file = \"oprf.key\"   # the key `sift build` wrote or read

  [tls]                          # HTTPS with HTTP/2 (required unless dev_plain_http = true)
  cert = \"fullchain.pem\"
  key = \"privkey.pem\"

  [ohttp]                        # the gateway Apple's relay posts to: POST /, GET /ohttp-keys
  rotate_after_days = 30
  grace_days = 7
  # upstream = \"https://pir.internal\"   # forward elsewhere instead of in process

  [limits]
  max_body_bytes = 10485760

Datasets are reloaded on SIGHUP and when their files change (checked every --poll-secs).
The OHTTP gateway key is created on first start, rotated every rotate_after_days (the old key
is accepted for grace_days more), and its schedule is also checked on SIGHUP.
Logs go to stderr; SIFT_LOG_FORMAT=json writes one JSON object per line, RUST_LOG sets the level.
The PIR kernels use the widest SIMD the CPU has (AVX-512, else AVX2); SIFT_SIMD=avx2 or
SIFT_SIMD=portable caps it (same answers, only speed differs). The level is logged at start.")]
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
    if cfg.tls.is_none() {
        tracing::warn!(
            "dev_plain_http = true: serving plain HTTP; Apple's relay needs HTTPS with HTTP/2"
        );
    }
    if !cfg.require_tokens {
        tracing::warn!(
            "require_tokens = false: PIR routes accept requests without Privacy Pass tokens"
        );
    }
    if let Ok(v) = std::env::var("SIFT_SIMD")
        && sift_he::simd::Level::parse(&v).is_none()
    {
        tracing::warn!(value = %v, "SIFT_SIMD is not one of avx512, avx2, portable; ignored");
    }
    tracing::info!(
        simd = sift_he::simd::level().name(),
        detected = sift_he::simd::detected().name(),
        "PIR kernels' instruction set (SIFT_SIMD caps it)"
    );
    for u in &cfg.usecases {
        log_parsing(&u.name, &u.dataset_dir);
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let server = sift_server::spawn(cfg, None)
            .await
            .context("starting the server")?;
        // On stdout, so scripts and tests can find the port when listening on port 0.
        println!("sift serve: listening on {}", server.base_url());
        if let Some(gw) = &server.gateway {
            println!(
                "sift serve: OHTTP gateway at {0}/ (key configuration: {0}/ohttp-keys, {1} bytes)",
                server.base_url(),
                gw.key_configs().len()
            );
        }
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
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
            if let (Some(gw), "SIGHUP") = (&server.gateway, reason) {
                let gw = gw.clone();
                match tokio::task::spawn_blocking(move || {
                    gw.rotate_if_due(std::time::SystemTime::now())
                })
                .await?
                {
                    Ok(rotated) => tracing::info!(rotated, "checked the OHTTP key schedule"),
                    Err(e) => tracing::error!(error = %e, "OHTTP key check failed"),
                }
            }
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

/// Logs the URL parsing configuration a use case's dataset was built under (its
/// `parsing.json`), so an operator can compare it with the app's `urlParsingConfiguration`.
fn log_parsing(usecase: &str, dataset_dir: &std::path::Path) {
    match super::parsing::read_record(dataset_dir) {
        Ok(Some(p)) if p.is_default() => {
            tracing::info!(usecase, parsing = %p.summary(), "dataset keys follow the iOS 26 URL parsing")
        }
        Ok(Some(p)) => tracing::info!(
            usecase,
            parsing = %p.summary(),
            "dataset keys follow a custom URL parsing: the app must set the same urlParsingConfiguration"
        ),
        Ok(None) => tracing::info!(
            usecase,
            "dataset has no parsing.json (built before it was recorded): keys follow the iOS 26 URL parsing"
        ),
        Err(e) => tracing::warn!(usecase, error = %e, "cannot read the dataset's parsing.json"),
    }
}
