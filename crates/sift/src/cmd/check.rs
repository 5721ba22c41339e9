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
    --usecase com.example.app.url.filtering --prefilter dataset/prefilter \\
    https://www.example.com/page

  # Straight to a development server without tokens
  sift check --service http://127.0.0.1:8080 --usecase com.example.app.url.filtering \\
    --prefilter dataset/prefilter example.com

Exit status: 0 when every URL was checked, 1 on errors. --json prints one object per URL.")]
pub struct Args {
    /// URLs to check, e.g. `https://www.example.com/a?b=c`.
    #[arg(required = true)]
    pub urls: Vec<String>,
    /// Base URL of the PIR service (no trailing slash).
    #[arg(long, env = "SIFT_SERVICE")]
    pub service: String,
    /// Use case, e.g. `com.example.app.url.filtering`.
    #[arg(long, env = "SIFT_USECASE")]
    pub usecase: String,
    /// Prefilter directory written by `sift prefilter build`.
    #[arg(long)]
    pub prefilter: PathBuf,
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
    /// The app's URL parsing configuration. Default: the `parsing.json` recorded by the build
    /// beside the prefilter, else the iOS 26 parsing.
    #[command(flatten)]
    pub parsing: super::parsing::ParsingArg,
}

/// Runs `sift check`; exits 0 when every URL was checked (blocked or not), 1 on errors.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let prefilter = sift_bloom::read_dir(&args.prefilter)?.filter;
    let (parsing, parsing_source) = args.parsing.load_or_recorded(&args.prefilter)?;
    if !args.json && !parsing.is_default() {
        eprintln!("URL parsing ({parsing_source}): {}", parsing.summary());
    }
    let mut walker = sift_urlkeys::SubUrlWalker::with_parsing(parsing);
    let ca = args.ca.as_ref().map(std::fs::read).transpose()?;
    let mut transport =
        sift_client::Transport::new(ca.as_deref(), sift_client::device::REQUEST_TIMEOUT)?;
    let mut service = ServiceConfig::new(&args.service, &args.usecase);
    service.authorization = args.authorization.clone();
    if let Some(user_token) = &args.user_token {
        service.tokens = Some(TokenSource {
            issuer_url: args.issuer.clone().unwrap_or_else(|| args.service.clone()),
            user_token: user_token.clone(),
        });
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        if let Some(gateway) = &args.gateway {
            let keys = match &args.ohttp_keys {
                Some(path) => {
                    std::fs::read(path).with_context(|| format!("reading {}", path.display()))?
                }
                None => transport.fetch_gateway_keys(gateway).await?,
            };
            transport = transport.via_gateway(gateway, &keys)?;
        }
        let mut device = DeviceClient::new(transport, service);
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
