//! The Oblivious Gateway Resource (RFC 9458 §4): decapsulates `message/ohttp-req` bodies into
//! `http` requests and encapsulates the answers as `message/ohttp-res`.

use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, StatusCode};
use rand_core::{OsRng, TryRngCore};

use crate::bhttp::{self, Limits};
use crate::config::{
    Aead, KEM_X25519_SHA256, KEYS_MEDIA_TYPE, REQUEST_MEDIA_TYPE, RESPONSE_MEDIA_TYPE,
    SymmetricSuite, X25519_LEN,
};
use crate::crypto;
use crate::error::OhttpError;
use crate::keys::{GatewayKey, KeyStore};
use crate::replay::{DEFAULT_CAPACITY, ReplayCache};

/// Problem details body for key problems (RFC 9458 §5.3).
const KEY_PROBLEM_JSON: &str = r#"{"type":"https://iana.org/assignments/http-problem-types#ohttp-key","title":"key configuration not accepted"}"#;

/// Default Date window: requests dated more than a minute from the gateway's clock are refused.
pub const DEFAULT_DATE_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

/// Problem details body for an inner request outside the Date window (RFC 9458 §6.5.1).
const DATE_PROBLEM_JSON: &str = r#"{"type":"https://iana.org/assignments/http-problem-types#date","title":"date is not acceptable"}"#;

/// A durable, shared record of accepted requests (disk, Redis), consulted after the in-memory
/// cache so that a restart or another replica does not accept a request twice.
pub trait SpentRequests: Send + Sync {
    /// Records the request whose encapsulated key is `enc`, made to the gateway key whose
    /// public key is `public_key`. `valid_until`: the end of the request's Date window (RFC 9458
    /// §6.5) when it carried a `Date`; after it the record may be dropped, since the request
    /// would be refused anyway (`None`: keep it as long as the key is accepted). `Ok(true)` the
    /// first time, `Ok(false)` for a replay, `Err` when the record cannot be consulted (the
    /// request is then refused with 503).
    fn spend(
        &self,
        public_key: &[u8; X25519_LEN],
        enc: &[u8; X25519_LEN],
        valid_until: Option<SystemTime>,
    ) -> Result<bool, String>;
}

/// Gateway settings.
#[derive(Debug, Clone, Copy)]
pub struct GatewayConfig {
    /// Largest encapsulated request body accepted, in bytes (larger: 413).
    pub max_request_body: usize,
    /// Remembered `enc` values for replay detection (0 disables it).
    pub replay_capacity: usize,
    /// Limits on the decrypted binary HTTP request.
    pub bhttp_limits: Limits,
    /// RFC 9458 §6.5: an inner request whose `Date` is further than this from the gateway's
    /// clock gets an encapsulated `400` with the `date` problem type and the gateway's `Date`
    /// (the client retries with its clock corrected); its replay record then only needs to
    /// outlive the window. Requests without `Date` are accepted and remembered as long as
    /// their key. `None` turns the check off.
    pub date_window: Option<std::time::Duration>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            max_request_body: 32 * 1024 * 1024,
            replay_capacity: DEFAULT_CAPACITY,
            bhttp_limits: Limits::default(),
            date_window: Some(DEFAULT_DATE_WINDOW),
        }
    }
}

/// Keys in use: the accepted ones (each with the end of its grace period, `None` for keys
/// without one) and the published configuration list.
struct KeyState {
    accepted: Vec<(GatewayKey, Option<SystemTime>)>,
    published: Bytes,
}

/// An OHTTP gateway: accepted keys, replay cache and limits. Cheap to share behind an `Arc`;
/// all methods take `&self`.
pub struct Gateway {
    keys: RwLock<Arc<KeyState>>,
    replay: Mutex<ReplayCache>,
    spent: RwLock<Option<Arc<dyn SpentRequests>>>,
    config: GatewayConfig,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What is needed to encrypt the response to one decapsulated request. Use it once.
#[derive(Debug)]
pub struct ResponseContext {
    keys: crypto::ResponseSecret,
}

impl ResponseContext {
    /// Encodes `response` as known-length binary HTTP and encapsulates it.
    pub fn encapsulate(self, response: http::Response<Bytes>) -> Result<Bytes, OhttpError> {
        let plain = bhttp::encode_response(&response)?;
        self.encapsulate_bhttp(&plain)
    }

    /// Encapsulates an already encoded binary HTTP response with a fresh random nonce.
    pub fn encapsulate_bhttp(self, bhttp: &[u8]) -> Result<Bytes, OhttpError> {
        let mut nonce = vec![0u8; self.keys.aead.response_nonce_len()];
        OsRng
            .try_fill_bytes(&mut nonce)
            .map_err(|_| OhttpError::Internal("operating system RNG failed"))?;
        self.encapsulate_bhttp_with_nonce(bhttp, &nonce)
    }

    /// Encapsulation with a chosen response nonce (length max(Nn, Nk), 16 for AES-128-GCM,
    /// 32 for ChaCha20-Poly1305): only for known-answer tests such as RFC 9458 Appendix A.
    /// Real responses must use [`ResponseContext::encapsulate`], whose nonce is random.
    pub fn encapsulate_bhttp_with_nonce(
        self,
        bhttp: &[u8],
        nonce: &[u8],
    ) -> Result<Bytes, OhttpError> {
        if nonce.len() != self.keys.aead.response_nonce_len() {
            return Err(OhttpError::Internal("response nonce length"));
        }
        self.keys.seal(nonce, bhttp).map(Bytes::from)
    }

    /// The AEAD the client chose.
    pub fn aead(&self) -> Aead {
        self.keys.aead
    }
}

fn read_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

impl Gateway {
    /// A gateway accepting the keys of `store` (current and those in grace) at this moment.
    pub fn new(store: &KeyStore, config: GatewayConfig) -> Result<Self, OhttpError> {
        Ok(Self {
            keys: RwLock::new(Arc::new(Self::state(store)?)),
            replay: Mutex::new(ReplayCache::new(config.replay_capacity)),
            spent: RwLock::new(None),
            config,
        })
    }

    /// A gateway accepting exactly `keys` (no expiry), publishing the first one.
    pub fn with_keys(keys: Vec<GatewayKey>, config: GatewayConfig) -> Result<Self, OhttpError> {
        let first = keys
            .first()
            .ok_or(OhttpError::InvalidKeyConfig("no keys"))?;
        if keys
            .iter()
            .enumerate()
            .any(|(i, k)| keys[..i].iter().any(|o| o.key_id() == k.key_id()))
        {
            return Err(OhttpError::InvalidKeyConfig("duplicate key identifier"));
        }
        let published = Bytes::from(crate::config::encode_list(&[first.config()])?);
        Ok(Self {
            keys: RwLock::new(Arc::new(KeyState {
                accepted: keys.into_iter().map(|k| (k, None)).collect(),
                published,
            })),
            replay: Mutex::new(ReplayCache::new(config.replay_capacity)),
            spent: RwLock::new(None),
            config,
        })
    }

    /// Adds a durable record of accepted requests to the in-memory replay cache.
    pub fn set_spent_requests(&self, spent: Arc<dyn SpentRequests>) {
        *self.spent.write().unwrap_or_else(|e| e.into_inner()) = Some(spent);
    }

    fn state(store: &KeyStore) -> Result<KeyState, OhttpError> {
        Ok(KeyState {
            accepted: store.accepted_until(SystemTime::now()),
            published: Bytes::from(store.published_configs()?),
        })
    }

    /// Switches to the keys of `store` (after [`KeyStore::rotate`] or [`KeyStore::prune`]).
    /// Requests in flight finish with the keys they started with.
    pub fn update_keys(&self, store: &KeyStore) -> Result<(), OhttpError> {
        let state = Arc::new(Self::state(store)?);
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = state;
        Ok(())
    }

    fn current_state(&self) -> Arc<KeyState> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The settings.
    pub fn config(&self) -> &GatewayConfig {
        &self.config
    }

    /// The `application/ohttp-keys` body to publish (current key only).
    pub fn key_configs(&self) -> Bytes {
        self.current_state().published.clone()
    }

    /// Removes the encapsulation: returns the binary HTTP request and the response context.
    /// Checks size, key identifier, algorithms and replays before and after decryption.
    pub fn decapsulate_bhttp(&self, body: &[u8]) -> Result<(Vec<u8>, ResponseContext), OhttpError> {
        let (plain, ctx, public_key) = self.open(body)?;
        self.record(&public_key, &ctx.keys.enc, None)?;
        Ok((plain, ctx))
    }

    /// Decrypts `body` after the checks that need no decryption; the request is not yet
    /// recorded as spent (see [`Gateway::record`]).
    fn open(
        &self,
        body: &[u8],
    ) -> Result<(Vec<u8>, ResponseContext, [u8; X25519_LEN]), OhttpError> {
        if body.len() > self.config.max_request_body {
            return Err(OhttpError::TooLarge {
                limit: self.config.max_request_body,
                actual: body.len(),
            });
        }
        let hdr: [u8; crypto::HEADER_LEN] = body
            .get(..crypto::HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(OhttpError::Malformed("shorter than the request header"))?;
        let key_id = hdr[0];
        let (kem, kdf, aead_id) = (read_u16(&hdr, 1), read_u16(&hdr, 3), read_u16(&hdr, 5));
        let state = self.current_state();
        let now = SystemTime::now();
        let key = state
            .accepted
            .iter()
            .find(|(k, until)| k.key_id() == key_id && until.is_none_or(|u| now < u))
            .map(|(k, _)| k)
            .ok_or(OhttpError::UnknownKeyId(key_id))?;
        let suite = SymmetricSuite { kdf, aead: aead_id };
        let aead = suite
            .supported_aead()
            .filter(|_| kem == KEM_X25519_SHA256 && key.suites().contains(&suite))
            .ok_or(OhttpError::UnsupportedAlgorithm {
                kem,
                kdf,
                aead: aead_id,
            })?;
        let enc: [u8; X25519_LEN] = body
            .get(crypto::HEADER_LEN..crypto::HEADER_LEN + X25519_LEN)
            .and_then(|e| e.try_into().ok())
            .ok_or(OhttpError::Malformed("truncated encapsulated key"))?;
        let ct = body
            .get(crypto::HEADER_LEN + X25519_LEN..)
            .unwrap_or_default();
        if ct.len() < aead.tag_len() {
            return Err(OhttpError::Malformed(
                "ciphertext shorter than the AEAD tag",
            ));
        }
        if self.replay_lock().contains(&enc) {
            return Err(OhttpError::Replay);
        }
        let info = crypto::request_info(&hdr);
        let (plain, secret) = crypto::open_request(aead, key.secret_bytes(), &enc, &info, ct)?;
        Ok((
            plain,
            ResponseContext {
                keys: crypto::ResponseSecret { aead, enc, secret },
            },
            *key.public_key(),
        ))
    }

    /// Records a decrypted request as spent: in the durable store (only requests that opened
    /// are recorded, so garbage cannot fill it), then in memory.
    fn record(
        &self,
        public_key: &[u8; X25519_LEN],
        enc: &[u8; X25519_LEN],
        valid_until: Option<SystemTime>,
    ) -> Result<(), OhttpError> {
        let spent = self.spent.read().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(spent) = spent {
            match spent.spend(public_key, enc, valid_until) {
                Ok(true) => {}
                Ok(false) => return Err(OhttpError::Replay),
                Err(e) => return Err(OhttpError::ReplayStoreUnavailable(e)),
            }
        }
        // The insert is atomic, so of two concurrent copies exactly one wins.
        if !self.replay_lock().insert(*enc) {
            return Err(OhttpError::Replay);
        }
        Ok(())
    }

    /// RFC 9458 §6.5: `Ok(Some(end of window))` for a request dated within the window,
    /// `Ok(None)` without a usable check (no `Date`, or no window), `Err(())` outside it.
    fn check_date(
        &self,
        req: &http::Request<Bytes>,
        now: SystemTime,
    ) -> Result<Option<SystemTime>, ()> {
        let Some(window) = self.config.date_window else {
            return Ok(None);
        };
        let Some(date) = req.headers().get(http::header::DATE) else {
            return Ok(None);
        };
        let date = date
            .to_str()
            .ok()
            .and_then(|d| httpdate::parse_http_date(d).ok())
            .ok_or(())?;
        let skew = match now.duration_since(date) {
            Ok(d) => d,
            Err(e) => e.duration(),
        };
        if skew > window {
            return Err(());
        }
        Ok(Some(date + window))
    }

    fn replay_lock(&self) -> std::sync::MutexGuard<'_, ReplayCache> {
        self.replay.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Removes the encapsulation and decodes the binary HTTP request.
    ///
    /// A binary HTTP error here loses the response context; [`Gateway::handle`] instead
    /// answers such requests with an encapsulated 400, as RFC 9458 §5.2 asks.
    pub fn decapsulate(
        &self,
        body: &[u8],
    ) -> Result<(http::Request<Bytes>, ResponseContext), OhttpError> {
        let (plain, ctx) = self.decapsulate_bhttp(body)?;
        let req = bhttp::decode_request(&plain, &self.config.bhttp_limits)?;
        Ok((req, ctx))
    }

    /// Decapsulates `body`, passes the inner request to `forward` (e.g. the service's own
    /// router, in process) and encapsulates its response. Errors after decryption (invalid
    /// binary HTTP) become an encapsulated 400 or 413; errors before it are returned.
    pub async fn handle<F, Fut>(&self, body: &[u8], forward: F) -> Result<Bytes, OhttpError>
    where
        F: FnOnce(http::Request<Bytes>) -> Fut,
        Fut: Future<Output = http::Response<Bytes>>,
    {
        let (plain, ctx, public_key) = self.open(body)?;
        let response = match bhttp::decode_request(&plain, &self.config.bhttp_limits) {
            Ok(req) => {
                let now = SystemTime::now();
                match self.check_date(&req, now) {
                    Ok(valid_until) => {
                        self.record(&public_key, &ctx.keys.enc, valid_until)?;
                        forward(req).await
                    }
                    // Not recorded: outside its window it is refused whenever it comes back,
                    // and inside it (a future date that became current) it is new.
                    Err(()) => date_problem(now),
                }
            }
            Err(e) => {
                self.record(&public_key, &ctx.keys.enc, None)?;
                tracing::debug!(error = %e, "invalid binary HTTP inside an OHTTP request");
                simple_response(OhttpError::Bhttp(e).status(), "invalid binary HTTP request")
            }
        };
        ctx.encapsulate(response)
    }

    /// The whole gateway route: checks the outer request (content type), runs
    /// [`Gateway::handle`] and builds the outer response — `200 message/ohttp-res` on success,
    /// otherwise the error's status (key problems as RFC 9458 §5.3 problem details).
    pub async fn serve<F, Fut>(
        &self,
        outer: http::Request<Bytes>,
        forward: F,
    ) -> http::Response<Bytes>
    where
        F: FnOnce(http::Request<Bytes>) -> Fut,
        Fut: Future<Output = http::Response<Bytes>>,
    {
        let result = match content_type_is(outer.headers(), REQUEST_MEDIA_TYPE) {
            true => self.handle(outer.body(), forward).await,
            false => Err(OhttpError::WrongContentType),
        };
        match result {
            Ok(body) => {
                let mut resp = http::Response::new(body);
                resp.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static(RESPONSE_MEDIA_TYPE));
                resp.headers_mut()
                    .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
                resp
            }
            Err(e) => error_response(&e),
        }
    }

    /// The key configuration route's response: `200 application/ohttp-keys`, cacheable for a
    /// day (clients refetch after a key problem anyway).
    pub fn key_config_response(&self) -> http::Response<Bytes> {
        let mut resp = http::Response::new(self.key_configs());
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(KEYS_MEDIA_TYPE));
        resp.headers_mut().insert(
            CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=86400"),
        );
        resp
    }
}

/// Whether the `Content-Type` is `media` (parameters and case ignored).
fn content_type_is(headers: &http::HeaderMap, media: &str) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(media))
}

/// A plain-text response with `status`.
pub fn simple_response(status: StatusCode, text: &'static str) -> http::Response<Bytes> {
    let mut resp = http::Response::new(Bytes::from_static(text.as_bytes()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// The outer (unencrypted) response for a gateway error. Only generic text: the details stay
/// in logs, since the relay sees this response.
pub fn error_response(err: &OhttpError) -> http::Response<Bytes> {
    if err.is_key_problem() {
        let mut resp = http::Response::new(Bytes::from_static(KEY_PROBLEM_JSON.as_bytes()));
        *resp.status_mut() = err.status();
        resp.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        return resp;
    }
    let text = match err.status() {
        StatusCode::PAYLOAD_TOO_LARGE => "encapsulated request too large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "content type must be message/ohttp-req",
        StatusCode::INTERNAL_SERVER_ERROR => "gateway error",
        _ => "invalid encapsulated request",
    };
    simple_response(err.status(), text)
}

/// The encapsulated answer to a request outside the Date window: `400`, the `date` problem
/// type and the gateway's `Date` (RFC 9458 §6.5.1).
fn date_problem(now: SystemTime) -> http::Response<Bytes> {
    let mut resp = http::Response::new(Bytes::from_static(DATE_PROBLEM_JSON.as_bytes()));
    *resp.status_mut() = StatusCode::BAD_REQUEST;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(now)) {
        resp.headers_mut().insert(http::header::DATE, v);
    }
    resp
}

/// The vector files and their parser, shared with the integration tests.
#[cfg(test)]
#[path = "../tests/common/vectors.rs"]
mod test_vectors;

#[cfg(test)]
mod tests {
    use super::test_vectors::{RFC9458, vector};
    use super::*;
    use crate::config::KeyConfig;

    fn rfc_gateway() -> Gateway {
        let key = GatewayKey::from_secret(
            1,
            &vector(RFC9458, "server_secret_key"),
            SymmetricSuite::DEFAULT.to_vec(),
        )
        .unwrap();
        Gateway::with_keys(vec![key], GatewayConfig::default()).unwrap()
    }

    #[test]
    fn rfc9458_appendix_a_key_config() {
        let gw = rfc_gateway();
        let config = vector(RFC9458, "key_config");
        let decoded = KeyConfig::decode(&config).unwrap();
        assert_eq!(decoded.public_key, vector(RFC9458, "server_public_key"));
        // Our published list is the RFC's configuration with its u16 length prefix.
        let mut expected = (config.len() as u16).to_be_bytes().to_vec();
        expected.extend_from_slice(&config);
        assert_eq!(gw.key_configs(), expected);
    }

    #[test]
    fn rfc9458_appendix_a_request_and_response() {
        let gw = rfc_gateway();
        let enc_request = vector(RFC9458, "encapsulated_request");
        let (plain, ctx) = gw.decapsulate_bhttp(&enc_request).unwrap();
        assert_eq!(plain, vector(RFC9458, "request"));
        assert_eq!(ctx.aead(), Aead::Aes128Gcm);
        assert_eq!(
            &ctx.keys.secret[..],
            &vector(RFC9458, "response_secret")[..]
        );
        assert_eq!(&ctx.keys.enc[..], &vector(RFC9458, "client_public_key")[..]);
        let response = vector(RFC9458, "response");
        let enc_response = ctx
            .encapsulate_bhttp_with_nonce(&response, &vector(RFC9458, "response_nonce"))
            .unwrap();
        assert_eq!(
            &enc_response[..],
            &vector(RFC9458, "encapsulated_response")[..]
        );

        // The same request again is a replay.
        assert!(matches!(
            gw.decapsulate_bhttp(&enc_request),
            Err(OhttpError::Replay)
        ));

        // The decrypted request is GET https://example.com/ and the response a bare 200.
        let req = bhttp::decode_request(&plain, &Limits::default()).unwrap();
        assert_eq!(req.method(), "GET");
        assert_eq!(req.uri(), "https://example.com/");
        let resp = bhttp::decode_response(&response, &Limits::default()).unwrap();
        assert_eq!(resp.status(), 200);
        assert!(resp.body().is_empty());
    }

    #[test]
    fn rfc9458_response_key_schedule_intermediates() {
        // prk / key / nonce from Appendix A, through the same HKDF calls.
        let secret = vector(RFC9458, "response_secret");
        let salt = vector(RFC9458, "response_salt");
        let (prk, hk) = hkdf::Hkdf::<sha2::Sha256>::extract(Some(&salt), &secret);
        assert_eq!(&prk[..], &vector(RFC9458, "response_prk")[..]);
        let mut key = [0u8; 16];
        hk.expand(b"key", &mut key).unwrap();
        assert_eq!(&key[..], &vector(RFC9458, "response_aead_key")[..]);
        let mut nonce = [0u8; 12];
        hk.expand(b"nonce", &mut nonce).unwrap();
        assert_eq!(&nonce[..], &vector(RFC9458, "response_aead_nonce")[..]);
        assert_eq!(
            crypto::request_info(&crypto::header(1, Aead::Aes128Gcm)),
            vector(RFC9458, "request_info")
        );
    }

    #[test]
    fn duplicate_key_ids_are_refused() {
        let a = GatewayKey::generate(3).unwrap();
        let b = GatewayKey::generate(3).unwrap();
        assert!(Gateway::with_keys(vec![a.clone(), b], GatewayConfig::default()).is_err());
        assert!(Gateway::with_keys(Vec::new(), GatewayConfig::default()).is_err());
        assert!(Gateway::with_keys(vec![a], GatewayConfig::default()).is_ok());
    }

    #[test]
    fn outer_errors_map_to_statuses() {
        let gw = rfc_gateway();
        let enc_request = vector(RFC9458, "encapsulated_request");
        let run = |body: Vec<u8>, ct: &str| {
            let req = http::Request::builder()
                .method("POST")
                .header(CONTENT_TYPE, ct)
                .body(Bytes::from(body))
                .unwrap();
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            rt.block_on(gw.serve(req, |_req| async { simple_response(StatusCode::OK, "") }))
        };
        let wrong_type = run(enc_request.clone(), "application/octet-stream");
        assert_eq!(wrong_type.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

        let mut wrong_key = enc_request.clone();
        wrong_key[0] = 9;
        let resp = run(wrong_key, REQUEST_MEDIA_TYPE);
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        assert_eq!(resp.headers()[CONTENT_TYPE], "application/problem+json");
        assert!(
            std::str::from_utf8(resp.body())
                .unwrap()
                .contains("#ohttp-key")
        );

        let ok = run(enc_request.clone(), "message/ohttp-req; charset=binary");
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(ok.headers()[CONTENT_TYPE], RESPONSE_MEDIA_TYPE);
        let replay = run(enc_request, REQUEST_MEDIA_TYPE);
        assert_eq!(replay.status(), StatusCode::BAD_REQUEST);
    }
}
