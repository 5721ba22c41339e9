//! `sift bench serve`: throughput and latency of the PIR service at several client
//! concurrencies, measured in one run on loopback.
//!
//! Builds a dataset of generated URLs with `sift build`'s defaults, starts the service in
//! process on 127.0.0.1 (tokens off), uploads one evaluation key, prepares a pool of encrypted
//! queries, then replays them from 1, 2 and 8 concurrent clients for a bounded time. Only the
//! `POST /queries` round trip is timed: query encryption, key generation and response
//! decryption happen before or after the timed loop.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use prost::Message;
use sift_proto::api;

const USECASE: &str = "com.example.sift.bench.url.filtering";

/// What the timed loop measures, printed with the figures.
const TIMED: &str = "POST /queries round trip on loopback HTTP/1.1 (request upload, server-side \
protobuf decode, PIR evaluation, response encode and download); query encryption, evaluation-key \
generation and response decryption are outside the timed path (prepared queries are replayed). \
Clients and server share this process and its cores.";

/// Arguments of `sift bench`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Queries/s and latency of the PIR service at several client concurrencies.
    Serve(ServeArgs),
}

/// Arguments of `sift bench serve`.
#[derive(clap::Args)]
struct ServeArgs {
    /// Rows (generated URLs) in the dataset.
    #[arg(long, default_value_t = 100_000)]
    rows: usize,
    /// Seconds of queries per concurrency level.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Stop a level after this many queries even if time is left.
    #[arg(long)]
    max_queries: Option<usize>,
    /// Concurrency levels, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 2, 8])]
    concurrency: Vec<usize>,
    /// Predefined encryption parameters (default: `sift build`'s).
    #[arg(long)]
    rlwe_parameters: Option<String>,
    /// Distinct encrypted queries prepared and replayed (half present, half absent keywords).
    #[arg(long, default_value_t = 16)]
    prepared: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Keep the dataset in this directory (default: a temporary one).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// Runs `sift bench`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Serve(a) => serve(a),
    }
}

/// One concurrency level's figures.
struct Level {
    concurrency: usize,
    queries: usize,
    wall_secs: f64,
    qps: f64,
    p50_ms: f64,
    p99_ms: f64,
    mean_ms: f64,
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    ensure!(args.rows >= 1, "--rows must be at least 1");
    ensure!(
        args.seconds > 0.0 && args.seconds.is_finite(),
        "--seconds must be positive"
    );
    ensure!(args.prepared >= 2, "--prepared must be at least 2");
    ensure!(
        !args.concurrency.is_empty() && args.concurrency.iter().all(|&c| (1..=1024).contains(&c)),
        "--concurrency levels must be between 1 and 1024"
    );
    let tmp = tempfile::tempdir().context("creating a temporary directory")?;
    let dir = args.dir.clone().unwrap_or_else(|| tmp.path().to_owned());
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;

    // Generated URLs; the keywords are what `sift build` stores for them.
    let urls: Vec<String> = (0..args.rows)
        .map(|i| {
            format!(
                "https://h{i}.bench.example/p/{}",
                i.wrapping_mul(2654435761) % 1_000_003
            )
        })
        .collect();
    let list = dir.join("bench-urls.txt");
    std::fs::write(&list, urls.join("\n"))?;
    let dataset = dir.join("dataset");
    eprintln!("building a {}-row dataset", args.rows);
    let t = Instant::now();
    super::demo::build_list(list, dataset.clone(), args.rlwe_parameters.clone())?;
    let build_secs = t.elapsed().as_secs_f64();

    // Half the prepared queries are present keywords spread over the dataset, half absent.
    let n = args.prepared;
    let mut keywords = Vec::with_capacity(n);
    for j in 0..n {
        if j % 2 == 0 {
            let url = &urls[(j / 2) * args.rows / n.div_ceil(2)];
            let key = sift_urlkeys::normalize_key(url)
                .map_err(|e| anyhow::anyhow!("normalizing {url}: {e:?}"))?;
            keywords.push((key, true));
        } else {
            keywords.push((format!("absent{j}.bench.invalid/"), false));
        }
    }

    let rt = tokio::runtime::Runtime::new()?;
    let report = rt.block_on(async {
        // A throughput benchmark of this machine: the per-client rate limit (429 past
        // `queries_per_minute`) would cap it, so it is off here.
        let server = super::demo::spawn_server(&format!(
            "listen = \"127.0.0.1:0\"\ndev_plain_http = true\nrequire_tokens = false\n\
             state_dir = {:?}\n[ohttp]\nenabled = false\n\
             [limits]\nqueries_per_minute = 0\n\
             [[usecases]]\nname = {USECASE:?}\ndataset_dir = {:?}\n",
            dir.join("state").display().to_string(),
            dataset.display().to_string(),
        ))
        .await?;
        let base = format!("http://{}", server.addr);
        let out = measure(&args, &base, &keywords).await;
        server.stop().await;
        out
    })?;
    let (setup, levels) = report;

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    let base_level = &levels[0];
    if args.json {
        let lv: Vec<_> = levels
            .iter()
            .map(|l| {
                serde_json::json!({
                    "concurrency": l.concurrency,
                    "queries": l.queries,
                    "seconds": l.wall_secs,
                    "qps": l.qps,
                    "p50_ms": l.p50_ms,
                    "p99_ms": l.p99_ms,
                    "mean_ms": l.mean_ms,
                    "qps_ratio_to_first": ratio(l.qps, base_level.qps),
                    "p50_ratio_to_first": ratio(l.p50_ms, base_level.p50_ms),
                })
            })
            .collect();
        let v = serde_json::json!({
            "rows": args.rows,
            "parameters": setup.parameters,
            "shards": setup.shards,
            "cores": cores,
            "build_seconds": build_secs,
            "evaluation_key_bytes": setup.key_bytes,
            "query_bytes": setup.query_bytes,
            "response_bytes": setup.response_bytes,
            "prepared_queries": n,
            "timed": TIMED,
            "levels": lv,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "sift bench serve: {} rows, {}, {} shard(s), {cores} cores, dataset built in {build_secs:.1} s",
            args.rows, setup.parameters, setup.shards
        );
        println!(
            "evaluation key {} B, query {} B, response {} B; {n} prepared queries replayed",
            setup.key_bytes, setup.query_bytes, setup.response_bytes
        );
        println!("timed: {TIMED}");
        println!(
            "{:>11} {:>9} {:>8} {:>11} {:>9} {:>9} {:>9} {:>12}",
            "concurrency",
            "queries",
            "seconds",
            "queries/s",
            "p50 ms",
            "p99 ms",
            "mean ms",
            "qps ratio"
        );
        for l in &levels {
            println!(
                "{:>11} {:>9} {:>8.2} {:>11.2} {:>9.2} {:>9.2} {:>9.2} {:>12.2}",
                l.concurrency,
                l.queries,
                l.wall_secs,
                l.qps,
                l.p50_ms,
                l.p99_ms,
                l.mean_ms,
                ratio(l.qps, base_level.qps)
            );
        }
        for l in &levels[1..] {
            println!(
                "ratios {}→{} clients: queries/s ×{:.2}, p50 ×{:.2}, p99 ×{:.2}",
                base_level.concurrency,
                l.concurrency,
                ratio(l.qps, base_level.qps),
                ratio(l.p50_ms, base_level.p50_ms),
                ratio(l.p99_ms, base_level.p99_ms)
            );
        }
    }
    if args.dir.is_some() {
        eprintln!("dataset kept in {}", dir.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Facts about the setup printed with the figures.
struct Setup {
    parameters: String,
    shards: usize,
    key_bytes: usize,
    query_bytes: usize,
    response_bytes: usize,
}

/// Posts `body` to `url` with the bench device's headers; returns the status and the whole body.
async fn post(
    http: &reqwest::Client,
    url: &str,
    body: impl Into<reqwest::Body>,
) -> anyhow::Result<(u16, bytes::Bytes)> {
    let r = http
        .post(url)
        .header("User-Identifier", "bench-user")
        .header("User-Agent", "sift-bench iOS/26.0")
        .body(body)
        .send()
        .await?;
    let status = r.status().as_u16();
    Ok((status, r.bytes().await?))
}

/// Sets up the client (config, key upload, prepared queries checked once), then runs each
/// concurrency level.
async fn measure(
    args: &ServeArgs,
    base: &str,
    keywords: &[(String, bool)],
) -> anyhow::Result<(Setup, Vec<Level>)> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .build()?;
    let req = api::ConfigRequest {
        usecases: vec![USECASE.into()],
        existing_config_ids: vec![],
    };
    let (status, body) = post(&http, &format!("{base}/config"), req.encode_to_vec()).await?;
    ensure!(status == 200, "/config: HTTP {status}");
    let resp = api::ConfigResponse::decode(body)?;
    let cfg = resp.configs.get(USECASE).context("use case missing")?;
    let Some(api::config::Config::PirConfig(pir)) = &cfg.config else {
        bail!("no PIR config in /config")
    };
    let key_config = resp
        .key_info
        .first()
        .and_then(|k| k.key_config.clone())
        .context("no key config")?;
    let shards = sift_client::pirconfig::shard_parameters(pir, &key_config)?;
    let parameters = pir
        .encryption_parameters
        .as_ref()
        .map(|e| {
            let bits = |q: u64| 64 - q.leading_zeros();
            format!(
                "n={} logq={} logt={}",
                e.polynomial_degree,
                e.coefficient_moduli
                    .iter()
                    .map(|&q| bits(q).to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                bits(e.plaintext_modulus)
            )
        })
        .unwrap_or_default();
    let key_id = {
        use sha2::Digest;
        sha2::Sha256::digest(key_config.encode_to_vec()).to_vec()
    };
    let metadata = api::EvaluationKeyMetadata {
        timestamp: 1,
        identifier: key_id,
    };
    let mut rng = rand::thread_rng();
    let client = sift_pir::client::KeywordPirClient::new(&shards, &mut rng)?;
    let keys = api::EvaluationKeys {
        keys: vec![api::EvaluationKey {
            metadata: Some(metadata.clone()),
            evaluation_key: Some(client.evaluation_key(&mut rng)?),
        }],
    }
    .encode_to_vec();
    let key_bytes = keys.len();
    let (status, _) = post(&http, &format!("{base}/key"), keys).await?;
    ensure!(status == 200, "/key: HTTP {status}");

    // Prepare (encrypt) every query once, and check each answer once (also warms the key cache).
    let queries_url = format!("{base}/queries");
    let mut bodies = Vec::with_capacity(keywords.len());
    let mut response_bytes = 0;
    for (kw, present) in keywords {
        let mut q = client.query(kw.as_bytes(), &mut rng)?;
        q.configuration_hash = cfg.config_id.clone();
        q.evaluation_key_metadata = Some(metadata.clone());
        let body = api::Requests {
            requests: vec![api::Request {
                usecase: USECASE.into(),
                request: Some(api::request::Request::PirRequest(q)),
            }],
        }
        .encode_to_vec();
        let (status, resp) = post(&http, &queries_url, body.clone()).await?;
        ensure!(status == 200, "/queries: HTTP {status}");
        response_bytes = resp.len();
        let resp = api::Responses::decode(resp)?;
        let Some(api::response::Response::PirResponse(r)) =
            resp.responses.first().and_then(|r| r.response.as_ref())
        else {
            bail!("no PIR response")
        };
        let got = client.decode(kw.as_bytes(), r)?;
        ensure!(
            got.is_some() == *present,
            "wrong answer for {kw}: expected {}",
            if *present { "present" } else { "absent" }
        );
        bodies.push(body);
    }
    let query_bytes = bodies[0].len();
    let bodies: Arc<Vec<bytes::Bytes>> = Arc::new(bodies.into_iter().map(Into::into).collect());

    let mut levels = Vec::new();
    for &c in &args.concurrency {
        eprintln!("{c} concurrent client(s) for {} s", args.seconds);
        levels.push(run_level(&http, &queries_url, &bodies, c, args).await?);
    }
    Ok((
        Setup {
            parameters,
            shards: shards.len(),
            key_bytes,
            query_bytes,
            response_bytes,
        },
        levels,
    ))
}

async fn run_level(
    http: &reqwest::Client,
    url: &str,
    bodies: &Arc<Vec<bytes::Bytes>>,
    concurrency: usize,
    args: &ServeArgs,
) -> anyhow::Result<Level> {
    let limit = args.max_queries.unwrap_or(usize::MAX);
    let issued = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.seconds);
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let (http, url, bodies, issued) =
            (http.clone(), url.to_owned(), bodies.clone(), issued.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = worker;
            while Instant::now() < deadline && issued.fetch_add(1, Ordering::Relaxed) < limit {
                let body = bodies[i % bodies.len()].clone();
                i += concurrency;
                let t = Instant::now();
                let (status, _) = post(&http, &url, body).await?;
                lat.push(t.elapsed());
                ensure!(status == 200, "/queries: HTTP {status}");
            }
            anyhow::Ok(lat)
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    let wall = start.elapsed().as_secs_f64();
    ensure!(!lat.is_empty(), "no query finished");
    lat.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let pct = |p: f64| ms(lat[((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1]);
    Ok(Level {
        concurrency,
        queries: lat.len(),
        wall_secs: wall,
        qps: lat.len() as f64 / wall,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        mean_ms: lat.iter().map(|&d| ms(d)).sum::<f64>() / lat.len() as f64,
    })
}
