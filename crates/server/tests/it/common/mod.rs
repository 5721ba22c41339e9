//! Test fixtures: a small processed dataset on disk, a running server, and a device-like client.

#![allow(dead_code)]

use std::path::Path;

use prost::Message;
use sift_he::Context;
use sift_pir::server::{KeywordPirConfig, process_keyword_database};
use sift_proto::api;

pub const USECASE: &str = "com.example.app.url.filtering";
pub const PARAMS: &str = "n_4096_logq_27_28_28_logt_5";

/// Writes `rows` as a processed dataset (`url-<i>.bin` + `url-<i>.params.txtpb`) into `dir`.
pub fn write_dataset<K: AsRef<str>, V: AsRef<str>>(
    dir: &Path,
    rows: &[(K, V)],
    shards: usize,
    seed: u64,
) {
    write_dataset_with_key(dir, rows, shards, seed, None)
}

/// [`write_dataset`], processed for symmetric PIR with `key` when given (rows become keyword′
/// and encrypted values, the parameters carry the key's `SymmetricPirClientConfig`), as
/// `sift build` does for `symmetricPirArguments`.
pub fn write_dataset_with_key<K: AsRef<str>, V: AsRef<str>>(
    dir: &Path,
    rows: &[(K, V)],
    shards: usize,
    seed: u64,
    key: Option<&sift_spir::OprfPrivateKey>,
) {
    std::fs::create_dir_all(dir).unwrap();
    let ctx = Context::predefined(PARAMS).unwrap();
    let mut rows: Vec<(Vec<u8>, Vec<u8>)> = rows
        .iter()
        .map(|(k, v)| {
            (
                k.as_ref().as_bytes().to_vec(),
                v.as_ref().as_bytes().to_vec(),
            )
        })
        .collect();
    let symmetric = key.map(|k| sift_pir::wire::SymmetricPirClientConfig {
        server_public_key: k.public_key().to_vec(),
        config_type: sift_pir::wire::SymmetricPirConfigType::OprfP384AesGcm192Nonce96Tag128,
    });
    if let Some(k) = key {
        rows = sift_spir::process_database(k, rows).unwrap();
    }
    let max_value = rows.iter().map(|r| r.1.len()).max().unwrap_or(1);
    let mut cfg = KeywordPirConfig::default_for(&ctx.params, max_value);
    cfg.sharding = sift_pir::server::Sharding::ShardCount(shards);
    let processed = process_keyword_database(&ctx, rows, &cfg, seed).unwrap();
    for (i, s) in processed.iter().enumerate() {
        let mut proto = sift_pir::wire::pir_parameters_to_proto(&s.params);
        sift_pir::wire::set_symmetric_pir_client_config(&mut proto, symmetric.as_ref());
        let tmp = dir.join(format!("url-{i}.bin.tmp"));
        std::fs::write(&tmp, s.database.serialize(&ctx)).unwrap();
        std::fs::rename(&tmp, dir.join(format!("url-{i}.bin"))).unwrap();
        let tmp = dir.join(format!("url-{i}.params.tmp"));
        std::fs::write(&tmp, sift_proto::to_text(&proto).unwrap()).unwrap();
        std::fs::rename(&tmp, dir.join(format!("url-{i}.params.txtpb"))).unwrap();
    }
}

pub fn config(data: &Path, state: &Path, versions_kept: usize) -> sift_server::ServerConfig {
    let text = format!(
        r#"
        listen = "127.0.0.1:0"
        dev_plain_http = true
        require_tokens = false
        state_dir = "{}"
        report_dir = "{}"
        [[usecases]]
        name = "{USECASE}"
        dataset_dir = "{}"
        versions_kept = {versions_kept}
        "#,
        state.display(),
        state.join("reports").display(),
        data.display()
    );
    let cfg: sift_server::ServerConfig = toml::from_str(&text).unwrap();
    cfg.validate().unwrap();
    cfg
}

/// A server configuration for `data` that requires Privacy Pass tokens, with one user
/// (`user-token-1`, tier `tier1`) allowed to fetch them.
pub fn config_with_tokens(data: &Path, state: &Path) -> sift_server::ServerConfig {
    toml::from_str(&format!(
        r#"
        listen = "127.0.0.1:0"
        dev_plain_http = true
        state_dir = "{}"
        [[users]]
        tier = "tier1"
        tokens = ["user-token-1"]
        [[usecases]]
        name = "{USECASE}"
        dataset_dir = "{}"
        "#,
        state.display(),
        data.display()
    ))
    .unwrap()
}

pub async fn start(cfg: sift_server::ServerConfig) -> sift_server::RunningServer {
    sift_server::spawn(cfg, None).await.unwrap()
}

/// Writes `rows` as a dataset into `dir/data` (see [`write_dataset`]) and starts a server on it
/// with [`config`] (state in `dir/state`, two versions kept).
pub async fn start_with_dataset<K: AsRef<str>, V: AsRef<str>>(
    dir: &Path,
    rows: &[(K, V)],
    shards: usize,
    seed: u64,
) -> sift_server::RunningServer {
    write_dataset(&dir.join("data"), rows, shards, seed);
    start(config(&dir.join("data"), &dir.join("state"), 2)).await
}

/// Posts an empty `/config` to the server at `base` with `Authorization: auth` (a Privacy Pass
/// token) and returns the status.
pub async fn config_status_with_auth(base: &str, auth: String) -> u16 {
    reqwest::Client::new()
        .post(format!("{base}/config"))
        .header("Authorization", auth)
        .header("User-Identifier", "u")
        .header("User-Agent", "x iOS/26.0")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A device-like client speaking raw protobuf over HTTP.
pub struct Device {
    pub http: reqwest::Client,
    pub base: String,
    pub user: String,
    pub pir: Option<sift_pir::client::KeywordPirClient>,
    pub config_id: Vec<u8>,
    pub key_id: Vec<u8>,
}

impl Device {
    pub fn new(addr: std::net::SocketAddr, user: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: format!("http://{addr}"),
            user: user.into(),
            pir: None,
            config_id: vec![],
            key_id: vec![],
        }
    }

    pub async fn post(&self, path: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("User-Identifier", &self.user)
            .header("User-Agent", "com.apple.ciphermld/1.0 iOS/26.0")
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e:?}"));
        (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
    }

    /// `/config`, then builds the PIR client and uploads the key when the server lacks it.
    pub async fn setup(&mut self) -> api::ConfigResponse {
        let req = api::ConfigRequest {
            usecases: vec![USECASE.into()],
            existing_config_ids: vec![],
        };
        let (status, body) = self.post("/config", req.encode_to_vec()).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let resp = api::ConfigResponse::decode(body.as_slice()).unwrap();
        let cfg = &resp.configs[USECASE];
        let key_config = resp.key_info[0].key_config.clone().unwrap();
        self.config_id = cfg.config_id.clone();
        self.key_id = sha2_digest(&key_config.encode_to_vec());
        self.upload_new_key(&resp, 1_700_000_000).await;
        resp
    }

    /// Generates a fresh PIR client for the `/config` answer `resp` and uploads its key under this
    /// device's key id with `timestamp`; the client then answers this device's lookups.
    pub async fn upload_new_key(&mut self, resp: &api::ConfigResponse, timestamp: u64) {
        let Some(api::config::Config::PirConfig(pir)) = &resp.configs[USECASE].config else {
            panic!("no PIR config")
        };
        let key_config = resp.key_info[0].key_config.clone().unwrap();
        let shards = sift_client::pirconfig::shard_parameters(pir, &key_config).unwrap();
        let (client, key) = {
            let mut rng = rand::thread_rng();
            let client = sift_pir::client::KeywordPirClient::new(&shards, &mut rng).unwrap();
            let key = api::EvaluationKey {
                metadata: Some(api::EvaluationKeyMetadata {
                    timestamp,
                    identifier: self.key_id.clone(),
                }),
                evaluation_key: Some(client.evaluation_key(&mut rng).unwrap()),
            };
            (client, key)
        };
        let (status, body) = self.post_key(key).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        self.pir = Some(client);
    }

    /// Posts one evaluation key to `/key`.
    pub async fn post_key(&self, key: api::EvaluationKey) -> (u16, Vec<u8>) {
        self.post(
            "/key",
            api::EvaluationKeys { keys: vec![key] }.encode_to_vec(),
        )
        .await
    }

    pub fn request(&self, keyword: &str) -> api::Requests {
        let mut rng = rand::thread_rng();
        let mut q = self
            .pir
            .as_ref()
            .unwrap()
            .query(keyword.as_bytes(), &mut rng)
            .unwrap();
        q.configuration_hash = self.config_id.clone();
        q.evaluation_key_metadata = Some(api::EvaluationKeyMetadata {
            timestamp: 1_700_000_000,
            identifier: self.key_id.clone(),
        });
        api::Requests {
            requests: vec![api::Request {
                usecase: USECASE.into(),
                request: Some(api::request::Request::PirRequest(q)),
            }],
        }
    }

    /// Looks `keyword` up: `Ok(value or None)` on 200, `Err(status)` otherwise.
    pub async fn lookup(&self, keyword: &str) -> Result<Option<Vec<u8>>, u16> {
        let (status, body) = self
            .post("/queries", self.request(keyword).encode_to_vec())
            .await;
        if status != 200 {
            return Err(status);
        }
        let resp = api::Responses::decode(body.as_slice()).unwrap();
        let Some(api::response::Response::PirResponse(r)) = &resp.responses[0].response else {
            panic!("no PIR response")
        };
        Ok(self
            .pir
            .as_ref()
            .unwrap()
            .decode(keyword.as_bytes(), r)
            .unwrap())
    }
}

pub fn sha2_digest(b: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(b).to_vec()
}

/// The Redis URL for a test that needs a real Redis, or `None` (after printing a `SKIPPED` line
/// naming `test`) when `SIFT_TEST_REDIS_URL` is unset or its server does not accept a connection.
///
/// With `SIFT_REQUIRE_REDIS=1` (set by CI's `.ci/run`) a missing or unreachable Redis panics
/// instead, so CI cannot pass without having run the Redis tests.
pub fn redis_url_or_skip(test: &str) -> Option<String> {
    let required = std::env::var("SIFT_REQUIRE_REDIS").is_ok_and(|v| v == "1");
    let url = std::env::var("SIFT_TEST_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty());
    let problem = match &url {
        None => "SIFT_TEST_REDIS_URL is not set".to_string(),
        Some(u) => match redis_reachable(u) {
            Ok(()) => return url,
            Err(e) => format!("the Redis at {u} is unreachable ({e})"),
        },
    };
    if required {
        panic!(
            "{test}: SIFT_REQUIRE_REDIS=1 but {problem}; start redis-server and set \
             SIFT_TEST_REDIS_URL=redis://127.0.0.1:<port>/, or unset SIFT_REQUIRE_REDIS to skip"
        );
    }
    println!("SKIPPED {test}: {problem} (set SIFT_REQUIRE_REDIS=1 to make this a failure)");
    None
}

/// Whether the host:port of a `redis://host:port/…` URL accepts a TCP connection within 2 s.
fn redis_reachable(url: &str) -> Result<(), String> {
    use std::net::ToSocketAddrs;
    let rest = url
        .strip_prefix("redis://")
        .ok_or_else(|| "not a redis:// URL".to_string())?;
    let authority = rest.split('/').next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let host_port = if host_port.contains(':') {
        host_port.to_string()
    } else {
        format!("{host_port}:6379")
    };
    let addr = host_port
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or_else(|| format!("{host_port} resolves to no address"))?;
    std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2))
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Polls `cond` every 10 ms until it holds; panics naming `what` if it does not within 60 s
/// (a deadline for a hung server, not a timing margin: a slow machine only polls longer).
pub async fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after 60 s waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
