//! `sift serve`: runs the PIR service from a TOML config file, reloading datasets on SIGHUP and
//! when their files change.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;

/// Arguments of `sift serve`.
#[derive(clap::Args)]
#[command(after_help = "Example config (sift.toml):

  listen = \":443\"                # all IPv4 interfaces; or \"[::]:443\"
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

  [metrics]                      # /metrics on its own listener instead of the public one
  listen = \"127.0.0.1:9100\"

  [log]
  access = true                  # one line per request (target sift::access); no user ids

SIGHUP reloads the config file (user tokens, use cases added/removed/changed, [limits], [log]),
the TLS certificate and the datasets without dropping connections; the config, certificate and
dataset files are also watched (every --poll-secs). A part that fails to load leaves its previous state
serving (logged, and counted in sift_reloads_total{result=\"failed\"}). What needs a restart
(listen, [tls] paths, [metrics], [ohttp], [key_store], [prefilter], the key store's and
issuer's limits) is logged as \"needs a restart to take effect\".
A full example config: examples/sift.toml.
The OHTTP gateway key is created on first start, rotated every rotate_after_days (the old key
is accepted for grace_days more), and its schedule is also checked on SIGHUP.
Logs go to stderr; SIFT_LOG_FORMAT=json writes one JSON object per line, RUST_LOG sets the level.
The PIR kernels use the widest SIMD the CPU has (AVX-512, else AVX2); SIFT_SIMD=avx2 or
SIFT_SIMD=portable caps it (same answers, only speed differs). The level is logged at start.")]
pub struct Args {
    /// The TOML configuration file.
    #[arg(short, long, default_value = "sift.toml")]
    pub config: PathBuf,
    /// How often to look for changed dataset and certificate files, in seconds (0 disables
    /// polling).
    #[arg(long, default_value_t = 10)]
    pub poll_secs: u64,
    /// Check the config file, the TLS certificate and every use case's dataset, print what
    /// would be served, and exit (0 when all is usable) without listening.
    #[arg(long)]
    pub check_config: bool,
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `sift serve --check-config`: everything `serve` would load, without side effects.
fn check_config(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let cfg = sift_server::ServerConfig::from_file(path)?;
    let mut problems = 0;
    println!("config    {}: ok", path.display());
    println!("listen    {}", cfg.listen);
    match &cfg.tls {
        Some(t) if t.acme.is_some() && !t.cert.exists() => {
            let acme = t
                .acme
                .as_ref()
                .map(|a| (a.directory.as_str(), a.domains.join(", ")));
            let (directory, domains) = acme.unwrap_or_default();
            println!(
                "tls       ACME: no certificate yet; `serve` requests one for {domains} from \
                 {directory} and writes it to {}",
                t.cert.display()
            );
        }
        Some(t) => match sift_server::tls::load_certificate(t) {
            Ok(c) => {
                let days = (c.not_after_unix - now_unix()).div_euclid(86_400);
                let names = if c.dns_names.is_empty() {
                    "(none)".to_owned()
                } else {
                    c.dns_names.join(", ")
                };
                println!(
                    "tls       {}: {days} day(s) left, names: {names}",
                    t.cert.display()
                );
                if days < 0 {
                    println!("  problem: the certificate has expired; renew it");
                    problems += 1;
                } else if days < sift_server::tls::EXPIRY_WARNING_DAYS {
                    println!("  warning: the certificate expires in {days} day(s); renew it");
                }
                if c.is_ca {
                    println!(
                        "  warning: a CA certificate (basicConstraints CA:TRUE); devices refuse \
                         it as a server certificate (docs/deploy.md shows how to make a test one)"
                    );
                }
            }
            Err(e) => {
                println!("tls       problem: {e:#}");
                problems += 1;
            }
        },
        None => println!("tls       none (dev_plain_http = true: development only)"),
    }
    if cfg.usecases.is_empty() {
        println!("usecases  none configured: the server would answer no queries");
        problems += 1;
    }
    for uc in &cfg.usecases {
        match sift_server::state::check_usecase(uc) {
            Ok(summary) => println!("usecase   {}: {summary}", uc.name),
            Err(e) => {
                println!("usecase   {}: problem: {e:#}", uc.name);
                problems += 1;
            }
        }
    }
    let tokens: usize = cfg.users.iter().map(|t| t.tokens.len()).sum();
    let no_users = cfg.require_tokens && cfg.users.is_empty();
    println!(
        "users     {} tier(s), {tokens} user token(s){}",
        cfg.users.len(),
        if no_users {
            " (problem: require_tokens needs [[users]])"
        } else {
            ""
        }
    );
    problems += usize::from(no_users);
    match cfg.metrics.listen {
        Some(at) => println!("metrics   http://{at}/metrics (not on the public listener)"),
        None => println!("metrics   /metrics on the public listener ([metrics] listen moves it)"),
    }
    println!(
        "log       access log {}",
        if cfg.log.access {
            "on (target sift::access)"
        } else {
            "off ([log] access = true)"
        }
    );
    if problems == 0 {
        println!("ok: {} is ready to serve", path.display());
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{problems} problem(s) found");
        Ok(ExitCode::FAILURE)
    }
}

/// Size and modification time of the config file, to notice edits between polls.
fn config_stamp(path: &std::path::Path) -> Option<(u64, std::time::SystemTime)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.len(), m.modified().ok()?))
}

/// What SIGHUP (or a poll) re-reads; each part that fails leaves its old state serving. The
/// config file is re-read on SIGHUP and when a poll finds it changed (`config_changed`).
async fn reload_everything(
    server: &sift_server::RunningServer,
    config_path: &std::path::Path,
    reason: &str,
    config_changed: bool,
) -> anyhow::Result<()> {
    use sift_server::ops::ReloadOutcome;
    let state = server.state.clone();
    let count = |ok: bool| {
        state.ops.count_reload(if ok {
            ReloadOutcome::Ok
        } else {
            ReloadOutcome::Failed
        })
    };
    let sighup = reason == "SIGHUP";
    if sighup {
        sift_server::systemd::notify(&sift_server::systemd::reloading_message());
        if let Some(gw) = &server.gateway {
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
    }
    if sighup || config_changed {
        let path = config_path.to_owned();
        let st = state.clone();
        let applied = tokio::task::spawn_blocking(move || {
            let cfg = sift_server::ServerConfig::from_file(&path)?;
            st.apply_config(&cfg)
        })
        .await?;
        match applied {
            Ok(notes) => {
                count(true);
                let (restart, applied): (Vec<_>, Vec<_>) = notes
                    .into_iter()
                    .partition(|n| n.contains("needs a restart"));
                tracing::info!(changes = %applied.join("; "), "reloaded {}", config_path.display());
                for n in restart {
                    tracing::warn!("{n} (sift serve keeps the old value until then)");
                }
            }
            Err(e) => {
                count(false);
                tracing::error!(
                    "reloading {} failed, the previous configuration keeps serving: {e:#}",
                    config_path.display()
                );
            }
        }
    }
    if let Some(certs) = state.ops.certificates() {
        let result = if sighup {
            certs.reload().map(|()| true)
        } else {
            certs.reload_if_changed()
        };
        match result {
            Ok(true) => {
                count(true);
                tracing::info!("TLS certificate reloaded ({reason}); open connections keep theirs");
            }
            Ok(false) => {}
            Err(e) => {
                count(false);
                tracing::error!(
                    "reloading the TLS certificate failed, the previous one keeps serving: {e:#}"
                );
            }
        }
    }
    let st = state.clone();
    let changed = tokio::task::spawn_blocking(move || st.reload()).await?;
    if !changed.is_empty() {
        count(true);
    }
    if !changed.is_empty() || sighup {
        tracing::info!(changed = %changed.join(", "), "datasets reloaded ({reason})");
    }
    if sighup {
        sift_server::systemd::notify("READY=1");
    }
    Ok(())
}

/// Runs `sift serve` until Ctrl-C or SIGTERM.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.check_config {
        return check_config(&args.config);
    }
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
        if let Some(m) = server.metrics_addr {
            println!("sift serve: metrics at http://{m}/metrics");
        }
        if let Some(gw) = &server.gateway {
            println!(
                "sift serve: OHTTP gateway at {0}/ (key configuration: {0}/ohttp-keys, {1} bytes)",
                server.base_url(),
                gw.key_configs().len()
            );
        }
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        sift_server::systemd::notify("READY=1");
        if let Some(c) = server.state.ops.certificates() {
            c.check_expiry();
        }
        let mut config_seen = config_stamp(&args.config);
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let poll = if args.poll_secs == 0 {
            Duration::MAX
        } else {
            Duration::from_secs(args.poll_secs)
        };
        let mut ticker = tokio::time::interval(poll.min(Duration::from_secs(86_400)));
        ticker.tick().await;
        let mut daily = tokio::time::interval(Duration::from_secs(86_400));
        daily.tick().await;
        loop {
            let reason = tokio::select! {
                _ = hup.recv() => "SIGHUP",
                _ = ticker.tick(), if args.poll_secs != 0 => "poll",
                _ = daily.tick() => {
                    if let Some(c) = server.state.ops.certificates() {
                        c.check_expiry();
                    }
                    continue;
                }
                _ = term.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
            };
            let stamp = config_stamp(&args.config);
            let config_changed = stamp != config_seen;
            config_seen = stamp;
            reload_everything(&server, &args.config, reason, config_changed).await?;
        }
        sift_server::systemd::notify("STOPPING=1");
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
