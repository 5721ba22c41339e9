//! `sift check`: asks a running PIR service whether URLs are blocked, the way a device does:
//! sub-URLs, prefilter, then PIR for prefilter hits.

use std::path::PathBuf;
use std::process::ExitCode;

use sift_client::device::{DeviceClient, ServiceConfig, check_url};

/// Arguments of `sift check`.
#[derive(clap::Args)]
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
    #[arg(long, env = "SIFT_AUTHORIZATION")]
    pub authorization: Option<String>,
    /// Print one JSON object per URL instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `sift check`; exits 0 when every URL was checked (blocked or not), 1 on errors.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let prefilter = sift_bloom::read_dir(&args.prefilter)?.filter;
    let ca = args.ca.as_ref().map(std::fs::read).transpose()?;
    let transport =
        sift_client::Transport::new(ca.as_deref(), sift_client::device::REQUEST_TIMEOUT)?;
    let mut service = ServiceConfig::new(&args.service, &args.usecase);
    service.authorization = args.authorization.clone();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let mut device = DeviceClient::new(transport, service);
        for url in &args.urls {
            let v = check_url(&mut device, &prefilter, url).await?;
            if args.json {
                println!("{}", serde_json::to_string(&v)?);
                continue;
            }
            println!("{} {url}", if v.blocked { "BLOCKED" } else { "allowed" });
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
