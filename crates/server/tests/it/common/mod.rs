//! Test fixtures: a small processed dataset on disk, a running server, and a device-like client.

#![allow(dead_code)]

pub mod tls;

use std::path::Path;

pub use tls::write_leaf;

use prost::Message;
use sift_he::Context;
use sift_pir::server::{KeywordPirConfig, process_keyword_database};
use sift_proto::api;

pub const USECASE: &str = "com.example.app.url.filtering";
pub const PARAMS: &str = "n_4096_logq_27_28_28_logt_5";
/// The one row most tests serve: `example.com` → `1`.
pub const EXAMPLE_ROWS: &[(&str, &str)] = &[("example.com", "1")];

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

/// A server configuration for the one use case [`USECASE`] on `data` (state and reports in
/// `state`, `versions_kept` versions kept), over plain HTTP and without tokens; validated.
pub fn config(data: &Path, state: &Path, versions_kept: usize) -> sift_server::ServerConfig {
    parse_config(&format!(
        "{}report_dir = \"{}\"\n{}versions_kept = {versions_kept}\n",
        config_head(state, false),
        state.join("reports").display(),
        usecase_toml(data)
    ))
}

/// A server configuration for `data` that requires Privacy Pass tokens, with one user
/// (`user-token-1`, tier `tier1`) allowed to fetch them.
pub fn config_with_tokens(data: &Path, state: &Path) -> sift_server::ServerConfig {
    toml::from_str(&format!(
        "{}{USERS_TOML}{}",
        config_head(state, true),
        usecase_toml(data)
    ))
    .unwrap()
}

/// The top-level lines every test configuration starts with: loopback on a free port, plain
/// HTTP, state in `state`, and `require_tokens = false` unless `tokens`. Tables follow it.
pub fn config_head(state: &Path, tokens: bool) -> String {
    let require = if tokens {
        ""
    } else {
        "require_tokens = false\n"
    };
    format!(
        "listen = \"127.0.0.1:0\"\ndev_plain_http = true\n{require}state_dir = \"{}\"\n",
        state.display()
    )
}

/// The `[[users]]` table of the one test user tier: `tier1`, token `user-token-1`.
pub const USERS_TOML: &str = "[[users]]\ntier = \"tier1\"\ntokens = [\"user-token-1\"]\n";

/// The `[[usecases]]` table for [`USECASE`] served from `data`.
pub fn usecase_toml(data: &Path) -> String {
    format!(
        "[[usecases]]\nname = \"{USECASE}\"\ndataset_dir = \"{}\"\n",
        data.display()
    )
}

/// Parses `text` as a server configuration and validates it as `sift serve` does.
pub fn parse_config(text: &str) -> sift_server::ServerConfig {
    let cfg: sift_server::ServerConfig =
        toml::from_str(text).unwrap_or_else(|e| panic!("test config: {e}\n{text}"));
    cfg.validate().unwrap();
    cfg
}

/// Switches `cfg` to TLS with `dir/cert.pem` and `dir/key.pem` (see [`tls::write_leaf`]).
pub fn use_tls(cfg: &mut sift_server::ServerConfig, dir: &Path) {
    cfg.dev_plain_http = false;
    cfg.tls = Some(sift_server::config::TlsConfig {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
        acme: None,
    });
}

/// An HTTPS client that trusts the CA `ca` (PEM); with `http2` it speaks HTTP/2 from the start.
pub fn https_client(ca: &str, http2: bool) -> reqwest::Client {
    let b = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap());
    let b = if http2 { b.http2_prior_knowledge() } else { b };
    b.build().unwrap()
}

/// Writes the one-row dataset most tests serve (`example.com` → `1`, one shard, seed 1) into
/// `dir/data` and returns that path.
pub fn example_dataset(dir: &Path) -> std::path::PathBuf {
    let data = dir.join("data");
    write_dataset(&data, EXAMPLE_ROWS, 1, 1);
    data
}

/// [`example_dataset`] in `dir` served by [`config_with_tokens`] (state in `dir/state`).
pub fn example_config_with_tokens(dir: &Path) -> sift_server::ServerConfig {
    config_with_tokens(&example_dataset(dir), &dir.join("state"))
}

/// Sends `req` and returns the response's status (panics if there is no response).
pub async fn status_of(req: reqwest::RequestBuilder) -> u16 {
    req.send().await.unwrap().status().as_u16()
}

/// Sends `req` and returns the response's body, whatever the status.
pub async fn bytes_of(req: reqwest::RequestBuilder) -> Vec<u8> {
    req.send().await.unwrap().bytes().await.unwrap().to_vec()
}

/// `GET url`: the status and the body as text.
pub async fn get_text(url: String) -> (u16, String) {
    let r = reqwest::get(url).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// `GET url`: the body as bytes, whatever the status.
pub async fn get_bytes(url: String) -> Vec<u8> {
    bytes_of(reqwest::Client::new().get(url)).await
}

/// An encapsulated `GET /healthz` for the gateway whose key list is `keys`.
pub fn encapsulated_healthz(keys: &[u8]) -> Vec<u8> {
    let inner = http::Request::get("https://sift.example/healthz")
        .body(bytes::Bytes::new())
        .unwrap();
    let client = sift_ohttp::ClientRequest::from_encoded_config_list(keys).unwrap();
    client.encapsulate(&inner).unwrap().0.to_vec()
}

/// Posts `body` as an encapsulated OHTTP request to the gateway at `base` and returns the status.
pub async fn post_ohttp(base: &str, body: Vec<u8>) -> u16 {
    status_of(
        reqwest::Client::new()
            .post(format!("{base}/"))
            .header("content-type", "message/ohttp-req")
            .body(body),
    )
    .await
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

/// A server on the [`EXAMPLE_ROWS`] dataset in `dir` (see [`start_with_dataset`]) and a device
/// `user` set up against it (configuration fetched, key uploaded).
pub async fn example_server_with_device(
    dir: &Path,
    user: &str,
) -> (sift_server::RunningServer, Device) {
    let server = start_with_dataset(dir, EXAMPLE_ROWS, 1, 1).await;
    let mut dev = Device::new(server.addr, user);
    dev.setup().await;
    (server, dev)
}

/// Posts an empty `/config` to the server at `base` with `Authorization: auth` (a Privacy Pass
/// token) and returns the status.
pub async fn config_status_with_auth(base: &str, auth: String) -> u16 {
    status_of(
        reqwest::Client::new()
            .post(format!("{base}/config"))
            .header("Authorization", auth)
            .header("User-Identifier", "u")
            .header("User-Agent", "x iOS/26.0"),
    )
    .await
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

/// Asserts that `text` contains every one of `needles`, naming the first one missing.
pub fn assert_contains_all(text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(text.contains(needle), "{needle:?} missing in\n{text}");
    }
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
