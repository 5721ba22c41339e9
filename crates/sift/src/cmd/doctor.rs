//! `sift doctor`: checks a deployment's URLs against Apple's onboarding rules, prints the DNS TXT
//! record to publish, and (with a user token) asks the service for Apple's test entry.

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
    /// A Bearer user token: also query the service for Apple's test entry (needs network access
    /// to the service and issuer).
    #[arg(long)]
    pub user_token: Option<String>,
    /// Print findings as JSON.
    #[arg(long)]
    pub json: bool,
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
    if let Some(token) = &args.user_token {
        findings.push(test_entry(&args, token));
    }
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
        println!(
            "Not checked here: HTTP/2 on the gateway (Apple's relay requires it) and that the relay can reach it."
        );
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn test_entry(args: &Args, token: &str) -> Finding {
    let usecase = format!("{}.url.filtering", args.bundle_id);
    let result = (|| -> anyhow::Result<bool> {
        let rt = tokio::runtime::Runtime::new()?;
        rt.block_on(async {
            let transport = sift_client::Transport::new(None, REQUEST_TIMEOUT)?;
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
            Ok(value.as_deref() == Some(b"1"))
        })
    })();
    let (ok, message) = match result {
        Ok(true) => (
            true,
            format!("{APPLE_TEST_ENTRY} is in the dataset with value 1"),
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
