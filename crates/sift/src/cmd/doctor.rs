//! `sift doctor`: checks a deployment's URLs against Apple's onboarding rules, prints the DNS TXT
//! record to publish, and with `--probe` connects: HTTP/2 and a valid key configuration on the
//! gateway, and (with a user token) Apple's test entry looked up through the gateway.

use std::process::ExitCode;

use sift_client::device::{DeviceClient, REQUEST_TIMEOUT, ServiceConfig};
use sift_client::onboarding::{
    APPLE_TEST_ENTRY, Finding, check_endpoint, check_separate_hosts, txt_record,
};
use sift_client::tokens::TokenSource;

/// Arguments of `sift doctor`.
#[derive(clap::Args)]
pub struct Args {
    /// PIR service URL as registered with Apple, e.g. `https://pir.example.com`.
    #[arg(long)]
    pub service: String,
    /// Privacy Pass issuer URL, e.g. `https://issuer.example.com`.
    #[arg(long)]
    pub issuer: String,
    /// OHTTP gateway URL, e.g. `https://ohttp.example.com`.
    #[arg(long)]
    pub gateway: String,
    /// The app's bundle id (the use case is `<bundle id>.url.filtering`).
    #[arg(long)]
    pub bundle_id: String,
    /// Connect to the deployment: check HTTP/2 and the key configuration on the gateway.
    #[arg(long)]
    pub probe: bool,
    /// A Bearer user token: with `--probe`, also look up Apple's test entry the way the device
    /// does (token and PIR through the gateway).
    #[arg(long, requires = "probe")]
    pub user_token: Option<String>,
    /// Extra CA certificate (PEM) to trust when probing, e.g. a staging CA.
    #[arg(long)]
    pub ca: Option<std::path::PathBuf>,
    /// Print findings as JSON.
    #[arg(long)]
    pub json: bool,
    /// The app's URL parsing configuration (its `urlParsingConfiguration`, JSON or TOML with
    /// Apple's property names): shown, compared with `--dataset`'s record, and used to check
    /// `--lists`.
    #[command(flatten)]
    pub parsing: super::parsing::ParsingArg,
    /// Dataset directory written by `sift build` (or a `sift prefilter build` folder): its
    /// `parsing.json` says which parsing its keys were normalised under.
    #[arg(long, value_name = "DIR")]
    pub dataset: Option<std::path::PathBuf>,
    /// The blocklists the dataset was built from: their keys (normalised as the build did) are
    /// checked against the app's parsing; keys the device can never ask for are counted, with
    /// examples.
    #[arg(long = "lists", value_name = "FILE", num_args = 1..)]
    pub lists: Vec<std::path::PathBuf>,
}

/// Runs `sift doctor`; exits 1 when a rule fails.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut findings: Vec<Finding> = Vec::new();
    findings.extend(check_endpoint("service", &args.service));
    findings.extend(check_endpoint("issuer", &args.issuer));
    findings.extend(check_endpoint("gateway", &args.gateway));
    findings.push(check_separate_hosts(
        &args.service,
        &args.issuer,
        &args.gateway,
    ));
    if args.probe {
        findings.extend(probe(&args));
    }
    findings.extend(super::parsing::doctor_findings(
        &args.parsing,
        args.dataset.as_deref(),
        &args.lists,
    )?);
    let ok = findings.iter().all(|f| f.ok);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&findings)?);
    } else {
        for f in &findings {
            println!(
                "{} {:8} {}",
                if f.ok { "ok  " } else { "FAIL" },
                f.subject,
                f.message
            );
        }
        println!(
            "\nPublish this DNS record on the service host:\n  {}",
            txt_record(&args.service, &args.bundle_id)
        );
        if !args.probe {
            println!(
                "Not checked: HTTP/2 on the gateway (Apple's relay requires it); run with --probe to connect."
            );
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Connects to the gateway (HTTP/2, key configuration) and, with a user token, looks up the
/// test entry through it.
fn probe(args: &Args) -> Vec<Finding> {
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return vec![finding("probe", false, format!("no async runtime: {e}"))],
    };
    rt.block_on(async {
        let ca = match args.ca.as_ref().map(std::fs::read).transpose() {
            Ok(ca) => ca,
            Err(e) => return vec![finding("probe", false, format!("reading --ca: {e}"))],
        };
        let transport = match sift_client::Transport::new(ca.as_deref(), REQUEST_TIMEOUT) {
            Ok(t) => t,
            Err(e) => return vec![finding("probe", false, format!("{e:#}"))],
        };
        let mut out = Vec::new();
        let url = format!("{}/ohttp-keys", args.gateway.trim_end_matches('/'));
        let keys = match transport.http().get(&url).send().await {
            Err(e) => {
                out.push(finding("gateway", false, format!("GET {url}: {e}")));
                return out;
            }
            Ok(resp) => {
                let h2 = resp.version() == reqwest::Version::HTTP_2;
                out.push(finding(
                    "gateway",
                    h2,
                    if h2 {
                        "answers over HTTP/2".to_owned()
                    } else {
                        format!(
                            "answered over {:?}; Apple's relay requires HTTP/2 (enable h2 in ALPN)",
                            resp.version()
                        )
                    },
                ));
                let status = resp.status();
                match resp.bytes().await {
                    Ok(body) if status.is_success() => body.to_vec(),
                    Ok(_) => {
                        out.push(finding(
                            "gateway",
                            false,
                            format!("GET {url}: HTTP {status}"),
                        ));
                        return out;
                    }
                    Err(e) => {
                        out.push(finding("gateway", false, format!("GET {url}: {e}")));
                        return out;
                    }
                }
            }
        };
        let transport = match transport.via_gateway(&args.gateway, &keys) {
            Ok(t) => {
                out.push(finding(
                    "gateway",
                    true,
                    format!(
                        "publishes a usable key configuration ({} bytes)",
                        keys.len()
                    ),
                ));
                t
            }
            Err(e) => {
                out.push(finding(
                    "gateway",
                    false,
                    format!("key configuration: {e:#}"),
                ));
                return out;
            }
        };
        if let Some(token) = &args.user_token {
            out.push(test_entry(args, transport, token).await);
        }
        out
    })
}

fn finding(subject: &str, ok: bool, message: String) -> Finding {
    Finding {
        subject: subject.into(),
        ok,
        message,
    }
}

async fn test_entry(args: &Args, transport: sift_client::Transport, token: &str) -> Finding {
    let usecase = format!("{}.url.filtering", args.bundle_id);
    let result = async {
        {
            let mut svc = ServiceConfig::new(&args.service, &usecase);
            svc.tokens = Some(TokenSource {
                issuer_url: args.issuer.clone(),
                user_token: token.to_owned(),
            });
            let mut device = DeviceClient::new(transport, svc);
            // Looked up as a device would: in its normalised, scheme-less, `www`-less form.
            let key = sift_urlkeys::normalize_key(APPLE_TEST_ENTRY)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let (value, _) = device.lookup(&key).await?;
            anyhow::Ok(value.as_deref() == Some(b"1"))
        }
    }
    .await;
    let (ok, message) = match result {
        Ok(true) => (
            true,
            format!(
                "{APPLE_TEST_ENTRY} is in the dataset with value 1 (looked up through the gateway)"
            ),
        ),
        Ok(false) => (
            false,
            format!("{APPLE_TEST_ENTRY} is missing: add it to the blocklist and rebuild"),
        ),
        Err(e) => (false, format!("could not query the test entry: {e:#}")),
    };
    Finding {
        subject: "dataset".into(),
        ok,
        message,
    }
}
