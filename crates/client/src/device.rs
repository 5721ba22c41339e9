//! The device's lookup path: sub-URLs of a request URL, the Bloom prefilter, and for prefilter
//! hits a keyword-PIR query (`/config`, `/key` once, `/queries`) to the PIR service.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use prost::Message;
use sha2::{Digest, Sha256};
use sift_bloom::BloomFilter;
use sift_pir::client::KeywordPirClient;
use sift_proto::api;
use sift_spir::{BlindEvaluation, ConfigType, OprfClient, ParsedOprfOutput};

use crate::transport::Transport;

/// How to reach and identify to the PIR service.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// Base URL of the PIR service, e.g. `https://pir.example.com`.
    pub base_url: String,
    /// Use-case name, e.g. `com.example.app.url.filtering`.
    pub usecase: String,
    /// `User-Agent` to send (Apple's service gates config formats on the platform version).
    pub user_agent: String,
    /// Pseudonymous `User-Identifier` (random per client, as on a device).
    pub user_identifier: String,
    /// A fixed `Authorization` header value for PIR routes, if any.
    pub authorization: Option<String>,
    /// Fetch a fresh Privacy Pass token for every PIR request, as the device does.
    pub tokens: Option<crate::tokens::TokenSource>,
}

impl ServiceConfig {
    /// A config with a random user identifier and an iOS 26 user agent.
    pub fn new(base_url: &str, usecase: &str) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            usecase: usecase.to_owned(),
            user_agent: "sift-check/0.1 iOS/26.0".to_owned(),
            user_identifier: hex::encode(rand::random::<[u8; 16]>()),
            authorization: None,
            tokens: None,
        }
    }
}

/// State after `/config` (and `/key`): what the device keeps between lookups.
struct Session {
    pir: KeywordPirClient,
    /// Set when the use case is symmetric PIR: every lookup runs the OPRF first.
    oprf: Option<OprfClient>,
    config_id: Vec<u8>,
    key_id: Vec<u8>,
}

/// Bytes and time spent on one PIR lookup.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct PirCost {
    /// Request body size (both requests for symmetric PIR: OPRF and keyword PIR).
    pub query_bytes: usize,
    /// Response body size (both responses for symmetric PIR).
    pub response_bytes: usize,
    /// Wall time for the round trip, including client-side encryption and decryption.
    pub millis: f64,
}

/// A device-like PIR client for one use case.
pub struct DeviceClient {
    transport: Transport,
    service: ServiceConfig,
    session: Option<Session>,
    /// Size of the uploaded evaluation key (0 until uploaded).
    pub key_bytes: usize,
}

impl DeviceClient {
    /// A client that will talk to `service` over `transport`.
    pub fn new(transport: Transport, service: ServiceConfig) -> Self {
        Self {
            transport,
            service,
            session: None,
            key_bytes: 0,
        }
    }

    /// Sends one request of this use case to `/queries`: the server's first response (if any),
    /// with the bytes sent and received.
    async fn query(
        &self,
        request: api::request::Request,
    ) -> anyhow::Result<(Option<api::response::Response>, usize, usize)> {
        let req = api::Requests {
            requests: vec![api::Request {
                usecase: self.service.usecase.clone(),
                request: Some(request),
            }],
        }
        .encode_to_vec();
        let sent = req.len();
        let body = self.post("/queries", req).await?;
        let resp = api::Responses::decode(body.as_ref()).context("decoding Responses")?;
        let first = resp.responses.into_iter().next().and_then(|r| r.response);
        Ok((first, sent, body.len()))
    }

    async fn post(&self, path: &str, body: Vec<u8>) -> anyhow::Result<Bytes> {
        let mut headers = vec![
            ("User-Identifier", self.service.user_identifier.clone()),
            ("User-Agent", self.service.user_agent.clone()),
        ];
        if let Some(src) = &self.service.tokens {
            headers.push(("Authorization", src.fetch(&self.transport).await?));
        } else if let Some(a) = &self.service.authorization {
            headers.push(("Authorization", a.clone()));
        }
        let url = format!("{}{path}", self.service.base_url);
        let resp = self
            .transport
            .send(http::Method::POST, &url, &headers, Bytes::from(body))
            .await?;
        if resp.status != 200 {
            bail!("POST {path}: HTTP {}: {}", resp.status, resp.body_text());
        }
        Ok(resp.body)
    }

    /// Fetches the configuration and uploads a fresh evaluation key, as a device does on first
    /// use (and whenever the server reports no key).
    pub async fn setup(&mut self) -> anyhow::Result<()> {
        let req = api::ConfigRequest {
            usecases: vec![self.service.usecase.clone()],
            existing_config_ids: vec![],
        };
        let body = self.post("/config", req.encode_to_vec()).await?;
        let resp = api::ConfigResponse::decode(body.as_ref()).context("decoding ConfigResponse")?;
        let cfg = resp
            .configs
            .get(&self.service.usecase)
            .with_context(|| format!("server has no config for {}", self.service.usecase))?;
        let Some(api::config::Config::PirConfig(pir)) = &cfg.config else {
            bail!("config for {} is not a PIR config", self.service.usecase)
        };
        let key_config = resp
            .key_info
            .first()
            .and_then(|k| k.key_config.clone())
            .context("server sent no evaluation key config")?;
        let key_id = Sha256::digest(key_config.encode_to_vec()).to_vec();
        let shards = crate::pirconfig::shard_parameters(pir, &key_config)?;
        let oprf = match sift_pir::wire::symmetric_pir_client_config(&shards[0])
            .map_err(|e| anyhow::anyhow!("{e}"))?
        {
            Some(c) => Some(
                OprfClient::new(&c.server_public_key, ConfigType::default())
                    .context("symmetric PIR server public key")?,
            ),
            None => None,
        };
        let (pir, key) = {
            let mut rng = rand::thread_rng();
            let client =
                KeywordPirClient::new(&shards, &mut rng).map_err(|e| anyhow::anyhow!("{e}"))?;
            let key = client
                .evaluation_key(&mut rng)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            (client, key)
        };
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let keys = api::EvaluationKeys {
            keys: vec![api::EvaluationKey {
                metadata: Some(api::EvaluationKeyMetadata {
                    timestamp,
                    identifier: key_id.clone(),
                }),
                evaluation_key: Some(key),
            }],
        };
        let body = keys.encode_to_vec();
        self.key_bytes = body.len();
        self.post("/key", body).await?;
        self.session = Some(Session {
            pir,
            oprf,
            config_id: cfg.config_id.clone(),
            key_id,
        });
        Ok(())
    }

    /// Symmetric PIR's first round trip (Apple's `PIRClient.symmetricPirRequest`): blinds
    /// `keyword`, has the server evaluate it, verifies the proof and returns the OPRF output
    /// (keyword′ and the value's key), with the bytes sent and received.
    async fn oprf(
        &self,
        oprf: &OprfClient,
        config_id: &[u8],
        keyword: &[u8],
    ) -> anyhow::Result<(ParsedOprfOutput, usize, usize)> {
        let query = oprf.blind(keyword, &mut rand::rngs::OsRng)?;
        let (resp, sent, received) = self
            .query(api::request::Request::OprfRequest(api::OprfRequest {
                query_element: query.element().to_vec(),
                config_id: config_id.to_vec(),
            }))
            .await?;
        let Some(api::response::Response::OprfResponse(r)) = resp else {
            bail!("server sent no OPRF response")
        };
        let eval = BlindEvaluation::from_parts(&r.evaluated_element, &r.proof)?;
        let parsed = oprf
            .finalize(&query, &eval)
            .context("OPRF response from the server")?;
        Ok((parsed, sent, received))
    }

    /// Looks `keyword` up by PIR: its value (`Some(b"1")` means blocked) or `None`. For a
    /// symmetric-PIR use case: the OPRF first, keyword PIR for keyword′, then the value is
    /// decrypted (a value that fails to decrypt is an error, never a silent answer).
    pub async fn lookup(&mut self, keyword: &str) -> anyhow::Result<(Option<Vec<u8>>, PirCost)> {
        self.lookup_bytes(keyword.as_bytes()).await
    }

    /// Looks up a keyword given as raw bytes (a phone number, a binary key), exactly as
    /// [`DeviceClient::lookup`] does for a URL key.
    pub async fn lookup_bytes(
        &mut self,
        keyword: &[u8],
    ) -> anyhow::Result<(Option<Vec<u8>>, PirCost)> {
        if self.session.is_none() {
            self.setup().await?;
        }
        let start = Instant::now();
        let s = self.session.as_ref().expect("set up above");
        let (pir_keyword, parsed, oprf_sent, oprf_received) = match &s.oprf {
            Some(oprf) => {
                let (parsed, sent, received) = self.oprf(oprf, &s.config_id, keyword).await?;
                (
                    parsed.oblivious_keyword().to_vec(),
                    Some(parsed),
                    sent,
                    received,
                )
            }
            None => (keyword.to_vec(), None, 0, 0),
        };
        let mut q = {
            let mut rng = rand::thread_rng();
            s.pir
                .query(&pir_keyword, &mut rng)
                .map_err(|e| anyhow::anyhow!("{e}"))?
        };
        q.configuration_hash = s.config_id.clone();
        q.evaluation_key_metadata = Some(api::EvaluationKeyMetadata {
            timestamp: 0,
            identifier: s.key_id.clone(),
        });
        let (resp, query_bytes, response_bytes) =
            self.query(api::request::Request::PirRequest(q)).await?;
        let Some(api::response::Response::PirResponse(r)) = resp else {
            bail!("server sent no PIR response")
        };
        let s = self.session.as_ref().expect("set up above");
        let value = s
            .pir
            .decode(&pir_keyword, &r)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let value = match (value, &parsed) {
            (Some(v), Some(p)) => Some(
                p.decrypt(&v)
                    .context("decrypting the symmetric-PIR value")?,
            ),
            (v, _) => v,
        };
        let cost = PirCost {
            query_bytes: query_bytes + oprf_sent,
            response_bytes: response_bytes + oprf_received,
            millis: start.elapsed().as_secs_f64() * 1e3,
        };
        Ok((value, cost))
    }
}

/// What the device concluded for one sub-URL.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SubUrlResult {
    /// The sub-URL (lookup key).
    pub key: String,
    /// `true` when the prefilter says "maybe".
    pub prefilter_hit: bool,
    /// The PIR answer for prefilter hits: `Some(true)` blocked, `Some(false)` a false positive.
    pub pir_blocked: Option<bool>,
    /// PIR cost, for prefilter hits.
    pub pir: Option<PirCost>,
}

/// The verdict for a URL.
#[derive(Clone, Debug, serde::Serialize)]
pub struct UrlVerdict {
    /// The URL as given.
    pub url: String,
    /// `true` when any sub-URL is in the dataset.
    pub blocked: bool,
    /// Per sub-URL details.
    pub suburls: Vec<SubUrlResult>,
    /// Time spent on sub-URL expansion and prefilter tests.
    pub prefilter_micros: f64,
}

/// Checks `url` as the device does: every sub-URL against the prefilter, PIR for the hits.
/// Sub-URLs follow the iOS 26 default parsing; [`check_url_with`] takes the app's.
pub async fn check_url(
    client: &mut DeviceClient,
    prefilter: &BloomFilter,
    url: &str,
) -> anyhow::Result<UrlVerdict> {
    check_url_with(
        client,
        prefilter,
        url,
        &mut sift_urlkeys::SubUrlWalker::new(),
    )
    .await
}

/// [`check_url`] with the sub-URLs of `walker`, e.g. one made with
/// [`sift_urlkeys::SubUrlWalker::with_parsing`] for the app's parsing configuration.
pub async fn check_url_with(
    client: &mut DeviceClient,
    prefilter: &BloomFilter,
    url: &str,
    walker: &mut sift_urlkeys::SubUrlWalker,
) -> anyhow::Result<UrlVerdict> {
    let start = Instant::now();
    let mut keys = Vec::new();
    let mut hits = Vec::new();
    walker
        .for_each(url, |k| {
            keys.push(k.to_owned());
            hits.push(prefilter.contains(k.as_bytes()));
        })
        .map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
    let prefilter_micros = start.elapsed().as_secs_f64() * 1e6;
    let mut suburls = Vec::with_capacity(keys.len());
    let mut blocked = false;
    for (key, hit) in keys.into_iter().zip(hits) {
        let (pir_blocked, pir) = if hit {
            let (value, cost) = client.lookup(&key).await?;
            let b = value.as_deref() == Some(b"1");
            blocked |= b;
            (Some(b), Some(cost))
        } else {
            (None, None)
        };
        suburls.push(SubUrlResult {
            key,
            prefilter_hit: hit,
            pir_blocked,
            pir,
        });
    }
    Ok(UrlVerdict {
        url: url.to_owned(),
        blocked,
        suburls,
        prefilter_micros,
    })
}

/// Default timeout for one HTTP request of the client.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
