//! `sift demo`: the whole pipeline on an embedded blocklist, in one process, on loopback.
//! Builds the PIR dataset and the prefilter, starts the service, and checks URLs the way a
//! device does, printing each step's verdict.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use sift_client::device::{DeviceClient, ServiceConfig, check_url_with};
use sift_client::tokens::TokenSource;

/// The embedded default blocklist.
const BLOCKLIST: &str = include_str!("../../data/demo-blocklist.txt");

/// URLs checked when none are given: blocked ones and allowed ones.
const DEFAULT_URLS: &[&str] = &[
    "https://www.apple.com/url-filter-test",
    "https://malware.example/download.exe",
    "https://cdn.badsite.example/a/b?x=1",
    "http://ads.example.com/banner",
    "https://phishing.example.net/login?next=/",
    "https://www.example.com/",
    "https://www.wikipedia.org/wiki/Bloom_filter",
];

const USECASE: &str = "com.example.sift.demo.url.filtering";
/// Bundle id of the demo's Live Caller ID Lookup extension (use cases `.block`, `.identity`).
const LCID_BUNDLE: &str = "com.example.sift.demo.lookup";
/// The demo's caller-ID input: Apple's testing-instructions example (`InputIdentities`).
const LCID_INPUT: &str = "identities { key: \"+123\" value { name: \"Adam\" cache_expiry_minutes: 8 category: IDENTITY_CATEGORY_PERSON } }
identities { key: \"+1234\" value { name: \"Bob\" cache_expiry_minutes: 7 block: true } }
identities { key: \"+12345\" value { name: \"Grocery Store\" cache_expiry_minutes: 18 category: IDENTITY_CATEGORY_BUSINESS } }
";
/// Numbers the demo looks up as incoming calls (the last one is unknown).
const LCID_NUMBERS: &[&str] = &["+123", "+1234", "+12345", "+1999"];
const DEMO_USER_TOKEN: &str = "demo-user-token";

/// Arguments of `sift demo`.
#[derive(clap::Args)]
pub struct Args {
    /// URLs to check (default: a built-in mix of blocked and allowed URLs).
    pub urls: Vec<String>,
    /// Keep the built dataset and prefilter in this directory (default: a temporary one).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// The app's URL parsing configuration: the dataset is built and URLs are checked under it.
    #[command(flatten)]
    pub parsing: super::parsing::ParsingArg,
}

/// Runs `sift demo`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let tmp = tempfile::tempdir().context("creating a temporary directory")?;
    let dir = args.dir.clone().unwrap_or_else(|| tmp.path().to_owned());
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let list = dir.join("blocklist.txt");
    std::fs::write(&list, BLOCKLIST)?;

    eprintln!("== 1/4 building the PIR dataset from the embedded blocklist");
    let dataset = dir.join("dataset");
    let parsing = args.parsing.load()?;
    if !parsing.is_default() {
        eprintln!("   URL parsing: {}", parsing.summary());
    }
    build_list_with(list, dataset.clone(), None, args.parsing.clone())?;

    eprintln!("== 2/4 loading the Bloom prefilter `sift build` wrote for the same keys");
    let prefilter = sift_bloom::read_dir(&sift_dataset::prefilter_dir(&dataset)?)?.filter;

    eprintln!("   and the Live Caller ID datasets (block, identity) from Apple's example input");
    let lcid_input = dir.join("lcid-input.txtpb");
    std::fs::write(&lcid_input, LCID_INPUT)?;
    let icons = dir.join("lcid-icons");
    std::fs::create_dir_all(&icons)?;
    // Icons are opaque bytes to sift; a stand-in image shows how its size travels.
    std::fs::write(icons.join("+12345.heic"), vec![0x5a; 3000])?;
    let lcid = dir.join("lcid");
    super::lcid::build_datasets(&lcid_input, Some(&icons), &lcid, 0, 1)?;

    eprintln!("== 3/4 starting the PIR service on loopback");
    let rt = tokio::runtime::Runtime::new()?;
    let urls: Vec<String> = if args.urls.is_empty() {
        DEFAULT_URLS.iter().map(|s| s.to_string()).collect()
    } else {
        args.urls
    };
    let all_ok = rt.block_on(async {
        let server = spawn_server(&format!(
            "listen = \"127.0.0.1:0\"\ndev_plain_http = true\nstate_dir = {:?}\n\
             [[users]]\ntier = \"tier1\"\ntokens = [{DEMO_USER_TOKEN:?}]\n\
             [[usecases]]\nname = {USECASE:?}\ndataset_dir = {:?}\n\
             [[usecases]]\nname = \"{LCID_BUNDLE}.block\"\ndataset_dir = {:?}\nstem = \"block\"\n\
             [[usecases]]\nname = \"{LCID_BUNDLE}.identity\"\ndataset_dir = {:?}\nstem = \"identity\"\n",
            dir.join("state").display().to_string(),
            dataset.display().to_string(),
            lcid.join("block").display().to_string(),
            lcid.join("identity").display().to_string(),
        ))
        .await?;
        eprintln!("   listening on http://{}", server.addr);

        eprintln!("== 4/4 checking URLs as a device does (sub-URLs → prefilter → Privacy Pass token → PIR), every request through the OHTTP gateway");
        let base = server.base_url();
        let transport = sift_client::Transport::new(None, sift_client::device::REQUEST_TIMEOUT)?;
        let keys = transport.fetch_gateway_keys(&base).await?;
        let transport = transport.via_gateway(&base, &keys)?;
        let mut service = ServiceConfig::new(&base, USECASE);
        // Every PIR request carries a fresh Privacy Pass token from the in-process issuer.
        service.tokens = Some(TokenSource { issuer_url: base.clone(), user_token: DEMO_USER_TOKEN.into() });
        // Each client holds its own secret key, so each gets its own User-Identifier: the
        // server keeps one evaluation key per user and key identifier.
        let lcid_service = |suffix: &str| {
            let mut s = ServiceConfig::new(&base, &format!("{LCID_BUNDLE}.{suffix}"));
            s.tokens = service.tokens.clone();
            s
        };
        let mut block = DeviceClient::new(transport.clone(), lcid_service("block"));
        let mut identity = DeviceClient::new(transport.clone(), lcid_service("identity"));
        let mut device = DeviceClient::new(transport, service);
        let mut walker = sift_urlkeys::SubUrlWalker::with_parsing(parsing.clone());
        device.setup().await?;
        eprintln!("   evaluation key uploaded ({} bytes)", device.key_bytes);
        for url in &urls {
            let v = check_url_with(&mut device, &prefilter, url, &mut walker).await?;
            let hits = v.suburls.iter().filter(|s| s.prefilter_hit).count();
            let pir: Vec<String> = v
                .suburls
                .iter()
                .filter_map(|s| {
                    s.pir.as_ref().map(|c| {
                        format!(
                            "{} → {} ({:.0} ms, {} B query, {} B response)",
                            s.key,
                            if s.pir_blocked == Some(true) { "in dataset" } else { "not in dataset" },
                            c.millis,
                            c.query_bytes,
                            c.response_bytes
                        )
                    })
                })
                .collect();
            println!(
                "{:8} {url}  ({} sub-URLs, {hits} prefilter hits)",
                if v.blocked { "BLOCKED" } else { "allowed" },
                v.suburls.len()
            );
            for p in pir {
                println!("         PIR {p}");
            }
        }
        eprintln!("== caller ID: incoming calls looked up as a device does (block flag, then identity), through the same gateway and tokens");
        for number in LCID_NUMBERS {
            let answer = super::lcid::lookup(&mut block, &mut identity, number).await?;
            println!("{answer}");
        }
        server.stop().await;
        anyhow::Ok(true)
    })?;
    if args.dir.is_some() {
        eprintln!("dataset and prefilter kept in {}", dir.display());
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Runs `sift build` on one plain URL list with its default flags (one trial query per shard),
/// writing the dataset and its prefilter to `dataset`; the local dataset of `sift demo` and
/// `sift bench serve`. Returns what `sift build` returns.
pub(super) fn build_list(
    list: PathBuf,
    dataset: PathBuf,
    rlwe_parameters: Option<String>,
) -> anyhow::Result<ExitCode> {
    build_list_with(list, dataset, rlwe_parameters, Default::default())
}

/// [`build_list`] with the app's URL parsing configuration.
pub(super) fn build_list_with(
    list: PathBuf,
    dataset: PathBuf,
    rlwe_parameters: Option<String>,
    parsing: super::parsing::ParsingArg,
) -> anyhow::Result<ExitCode> {
    super::build::run(super::build::Args {
        inputs: vec![list],
        output_dir: Some(dataset),
        options: super::build::BuildOptions {
            rlwe_parameters,
            trials_per_shard: Some(1),
            ..Default::default()
        },
        from: None,
        parsing,
        json: false,
    })
}

/// Starts the PIR service from the TOML configuration `text` once it validates; the loopback
/// server of `sift demo` and `sift bench serve`.
pub(super) async fn spawn_server(text: &str) -> anyhow::Result<sift_server::RunningServer> {
    let cfg: sift_server::ServerConfig = toml::from_str(text)?;
    cfg.validate()?;
    sift_server::spawn(cfg, None).await
}
