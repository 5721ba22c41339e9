//! `sift check`: asks a running PIR service whether URLs are blocked, the way a device does:
//! sub-URLs, prefilter, then for prefilter hits a Privacy Pass token and PIR, all through the
//! OHTTP gateway when one is given (as Apple's relay delivers device traffic).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use sift_client::device::{DeviceClient, ServiceConfig, check_url_with};
use sift_client::tokens::TokenSource;

/// Arguments of `sift check`.
#[derive(clap::Args)]
#[command(after_help = "Examples:

  # The device's path: tokens and PIR through the OHTTP gateway
  sift check --service https://pir.example.com --issuer https://issuer.example.com \\
    --gateway https://gateway.example.com --user-token $TOKEN \\
    --usecase com.example.app.url.filtering --prefilter dataset/current/prefilter \\
    https://www.example.com/page

  # Straight to a development server without tokens
  sift check --service http://127.0.0.1:8080 --usecase com.example.app.url.filtering \\
    --prefilter dataset/current/prefilter example.com

  # Live Caller ID Lookup: block flag and identity of an incoming number
  sift check --service https://pir.example.com --issuer https://issuer.example.com \\
    --gateway https://gateway.example.com --user-token $TOKEN \\
    --bundle-id com.example.lookup --lcid +14155550123

Exit status: 0 when every URL was checked, 1 on errors (an unreachable server is an error
unless --offline). --json prints one object per URL.")]
pub struct Args {
    /// URLs to check, e.g. `https://www.example.com/a?b=c`.
    #[arg(required_unless_present = "lcid", conflicts_with = "lcid")]
    pub urls: Vec<String>,
    /// Live Caller ID Lookup: look this phone number up (as the dataset stores it, e.g.
    /// `+14155550123`) in `<bundle id>.block` and `<bundle id>.identity`, as a device does for
    /// an incoming call.
    #[arg(long, requires = "bundle_id")]
    pub lcid: Option<String>,
    /// Bundle id of the Live Caller ID Lookup extension (use cases `<id>.block`, `<id>.identity`).
    #[arg(long)]
    pub bundle_id: Option<String>,
    /// Base URL of the PIR service (no trailing slash).
    #[arg(long, env = "SIFT_SERVICE")]
    pub service: String,
    /// Use case, e.g. `com.example.app.url.filtering`.
    #[arg(long, env = "SIFT_USECASE", required_unless_present = "lcid")]
    pub usecase: Option<String>,
    /// Prefilter directory written by `sift prefilter build`.
    #[arg(long, required_unless_present = "lcid")]
    pub prefilter: Option<PathBuf>,
    /// Extra CA certificate (PEM) to trust, e.g. a test CA.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// `Authorization` header for PIR routes (e.g. `PrivateToken token=...`).
    #[arg(long, env = "SIFT_AUTHORIZATION", conflicts_with = "user_token")]
    pub authorization: Option<String>,
    /// Privacy Pass issuer base URL (default: the service URL).
    #[arg(long, env = "SIFT_ISSUER")]
    pub issuer: Option<String>,
    /// Bearer user token for the issuer: a fresh token is fetched for every PIR request.
    #[arg(long, env = "SIFT_USER_TOKEN")]
    pub user_token: Option<String>,
    /// OHTTP gateway URL: every request (tokens and PIR) is encapsulated and posted there.
    #[arg(long, env = "SIFT_GATEWAY")]
    pub gateway: Option<String>,
    /// Gateway key configuration file (`application/ohttp-keys`); fetched from
    /// `<gateway>/ohttp-keys` when not given.
    #[arg(long, requires = "gateway")]
    pub ohttp_keys: Option<PathBuf>,
    /// Print one JSON object per URL instead of text.
    #[arg(long)]
    pub json: bool,
    /// Check against the prefilter only, without requiring the server to be reachable
    /// (by default an unreachable server is an error, never "allowed").
    #[arg(long)]
    pub offline: bool,
    /// The app's URL parsing configuration. Default: the `parsing.json` recorded by the build
    /// beside the prefilter, else the iOS 26 parsing.
    #[command(flatten)]
    pub parsing: super::parsing::ParsingArg,
}

/// Fails unless a TCP connection to `url`'s host and port opens within a few seconds: a URL the
/// prefilter lets through is "allowed" without asking the server, so without this check a
/// down server would look like a working one.
async fn ensure_reachable(url: &str) -> anyhow::Result<()> {
    let u = reqwest::Url::parse(url).with_context(|| format!("{url} is not a URL"))?;
    let host = u
        .host_str()
        .with_context(|| format!("{url} has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = u
        .port_or_known_default()
        .with_context(|| format!("{url} has no port"))?;
    let connect = tokio::net::TcpStream::connect((host.as_str(), port));
    match tokio::time::timeout(std::time::Duration::from_secs(5), connect).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => anyhow::bail!(
            "cannot reach {url} ({host}:{port}: {e}); nothing was checked. Is `sift serve` \
             running there? (--offline checks the prefilter alone)"
        ),
        Err(_) => anyhow::bail!(
            "cannot reach {url} ({host}:{port}: no answer within 5 s); nothing was checked \
             (--offline checks the prefilter alone)"
        ),
    }
}

/// Runs `sift check`; exits 0 when every URL was checked (blocked or not), 1 on errors.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let ca = args.ca.as_ref().map(std::fs::read).transpose()?;
    let transport =
        sift_client::Transport::new(ca.as_deref(), sift_client::device::REQUEST_TIMEOUT)?;
    let service = |usecase: &str| {
        let mut service = ServiceConfig::new(&args.service, usecase);
        service.authorization = args.authorization.clone();
        if let Some(user_token) = &args.user_token {
            service.tokens = Some(TokenSource {
                issuer_url: args.issuer.clone().unwrap_or_else(|| args.service.clone()),
                user_token: user_token.clone(),
            });
        }
        service
    };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        if !args.offline {
            ensure_reachable(args.gateway.as_deref().unwrap_or(&args.service)).await?;
        }
        let transport = match &args.gateway {
            Some(gateway) => {
                let keys = match &args.ohttp_keys {
                    Some(path) => std::fs::read(path)
                        .with_context(|| format!("reading {}", path.display()))?,
                    None => transport.fetch_gateway_keys(gateway).await?,
                };
                transport.via_gateway(gateway, &keys)?
            }
            None => transport,
        };
        if let (Some(number), Some(bundle_id)) = (&args.lcid, &args.bundle_id) {
            let mut block =
                DeviceClient::new(transport.clone(), service(&format!("{bundle_id}.block")));
            let mut identity =
                DeviceClient::new(transport, service(&format!("{bundle_id}.identity")));
            let answer = super::lcid::lookup(&mut block, &mut identity, number).await?;
            if args.json {
                println!("{}", serde_json::to_string(&answer)?);
            } else {
                println!("{answer}");
            }
            return anyhow::Ok(());
        }
        let (Some(usecase), Some(prefilter)) = (&args.usecase, &args.prefilter) else {
            anyhow::bail!("--usecase and --prefilter are needed to check URLs");
        };
        let (parsing, parsing_source) = args.parsing.load_or_recorded(prefilter)?;
        if !args.json && !parsing.is_default() {
            eprintln!("URL parsing ({parsing_source}): {}", parsing.summary());
        }
        let mut walker = sift_urlkeys::SubUrlWalker::with_parsing(parsing);
        let prefilter = sift_bloom::read_dir(prefilter)?.filter;
        let mut device = DeviceClient::new(transport, service(usecase));
        for url in &args.urls {
            let v = check_url_with(&mut device, &prefilter, url, &mut walker).await?;
            if args.json {
                println!("{}", serde_json::to_string(&v)?);
                continue;
            }
            println!(
                "{} {url}  (prefilter {:.1} µs)",
                if v.blocked { "BLOCKED" } else { "allowed" },
                v.prefilter_micros
            );
            for s in &v.suburls {
                let pir = match (&s.pir_blocked, &s.pir) {
                    (Some(b), Some(c)) => format!(
                        "PIR: {} ({:.1} ms, {} B up, {} B down)",
                        if *b { "in dataset" } else { "not in dataset" },
                        c.millis,
                        c.query_bytes,
                        c.response_bytes
                    ),
                    _ => String::new(),
                };
                println!(
                    "  {:5} {} {pir}",
                    if s.prefilter_hit { "maybe" } else { "no" },
                    s.key
                );
            }
        }
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
