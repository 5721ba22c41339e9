//! The Privacy Pass issuer (RFC 9578 token type 2) as Apple's example service runs it: one RSA
//! key per user tier, user tokens (`Authorization: Bearer …`) mapped to tiers, and token checks
//! on PIR routes. Keys persist under `state_dir/issuer/<tier>.pem` so tokens stay valid across
//! restarts.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, StatusCode, header};
use sift_privacypass::{Issuer, ReplayCache, TokenRequest, Verifier};
use subtle::ConstantTimeEq;

use crate::auth::{TokenAuthority, unauthorized};
use crate::config::UserTier;
use crate::error::ApiError;

/// The tiers' issuer keys and the user tokens that may fetch tokens from them.
pub struct IssuerSet {
    tiers: Vec<(String, Issuer)>,
    /// Bearer user tokens and their tier index; replaced whole on reload.
    users: arc_swap::ArcSwap<Vec<(Vec<u8>, usize)>>,
    /// Tokens issued per user token (`limits.issue_per_minute`).
    issue_limit: Option<crate::ratelimit::RateLimiter>,
}

impl IssuerSet {
    /// Loads each tier's key from `dir/<tier>.pem`, generating (and saving, atomically, mode
    /// 0600) the ones that are missing.
    pub fn load_or_create(dir: &Path, tiers: &[UserTier]) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut out = IssuerSet {
            tiers: Vec::new(),
            users: Default::default(),
            issue_limit: None,
        };
        for t in tiers {
            anyhow::ensure!(
                !t.tier.is_empty()
                    && t.tier
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
                "tier name {:?} must be letters, digits, '-' or '_'",
                t.tier
            );
            let path = dir.join(format!("{}.pem", t.tier));
            let issuer = if path.exists() {
                let pem = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                Issuer::from_pkcs8_pem(&pem)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
            } else {
                let issuer = generate_distinct(&out.tiers)?;
                let pem = issuer.to_pkcs8_pem().map_err(|e| anyhow::anyhow!("{e}"))?;
                write_secret(&path, pem.as_bytes())?;
                tracing::info!(tier = %t.tier, "generated a new issuer key");
                issuer
            };
            out.tiers.push((t.tier.clone(), issuer));
        }
        out.users.store(Arc::new(user_tokens(tiers)?));
        Ok(out)
    }

    /// Replaces the user tokens (SIGHUP after editing `[[users]]`): requests already running
    /// finish with the old list, the next ones see the new one. The tiers themselves (and so
    /// the issuer keys devices' tokens are signed with) cannot change without a restart.
    pub fn replace_users(&self, tiers: &[UserTier]) -> anyhow::Result<()> {
        let names: Vec<&str> = tiers.iter().map(|t| t.tier.as_str()).collect();
        let current: Vec<&str> = self.tiers.iter().map(|(n, _)| n.as_str()).collect();
        anyhow::ensure!(
            names == current,
            "the [[users]] tiers changed ({} → {}): adding, removing or reordering tiers needs \
             a restart; only tokens are reloaded",
            current.join(", "),
            names.join(", ")
        );
        self.users.store(Arc::new(user_tokens(tiers)?));
        Ok(())
    }

    /// Limits issuance to `limiter` per user token.
    pub fn with_issue_limit(mut self, limiter: Option<crate::ratelimit::RateLimiter>) -> Self {
        self.issue_limit = limiter;
        self
    }

    /// The tier index for a Bearer user token; compares against every token in constant time.
    pub fn tier_for(&self, bearer: &str) -> Option<usize> {
        self.user_for(bearer).map(|(_, tier)| tier)
    }

    /// The (user index, tier index) of a Bearer user token, in constant time over all tokens.
    fn user_for(&self, bearer: &str) -> Option<(usize, usize)> {
        let mut found = None;
        for (i, (tok, tier)) in self.users.load().iter().enumerate() {
            if bool::from(tok.as_slice().ct_eq(bearer.as_bytes())) {
                found = Some((i, *tier));
            }
        }
        found
    }

    /// A verifier for tokens of every tier, with a bounded replay cache.
    pub fn verifier(&self) -> anyhow::Result<Verifier> {
        let keys = self
            .tiers
            .iter()
            .map(|(_, i)| i.public_key().clone())
            .collect();
        Verifier::new(keys, ReplayCache::new(1 << 20, Duration::from_secs(3600)))
            .map_err(|e| anyhow::anyhow!("{e}"))
    }
}

fn user_tokens(tiers: &[UserTier]) -> anyhow::Result<Vec<(Vec<u8>, usize)>> {
    let mut users = Vec::new();
    for (i, t) in tiers.iter().enumerate() {
        for tok in &t.tokens {
            anyhow::ensure!(!tok.is_empty(), "tier {} has an empty user token", t.tier);
            users.push((tok.as_bytes().to_vec(), i));
        }
    }
    Ok(users)
}

/// Generates a key whose truncated key id differs from the existing tiers' (the verifier picks
/// the key by that byte).
fn generate_distinct(existing: &[(String, Issuer)]) -> anyhow::Result<Issuer> {
    for _ in 0..16 {
        let k = Issuer::generate().map_err(|e| anyhow::anyhow!("{e}"))?;
        let id = k.public_key().truncated_key_id();
        if existing
            .iter()
            .all(|(_, e)| e.public_key().truncated_key_id() != id)
        {
            return Ok(k);
        }
    }
    anyhow::bail!("could not generate an issuer key with a distinct key id")
}

fn write_secret(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("pem.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Checks `Authorization: PrivateToken token=…` on PIR routes: one well-formed token, signed by
/// one of our tiers' keys, whose nonce has not been spent before — on this server or on any
/// replica sharing the replay store, before or after a restart.
pub struct PrivacyPassAuthority {
    keys: std::collections::HashMap<u8, sift_privacypass::IssuerPublicKey>,
    spent: Arc<dyn crate::spent::SpentStore>,
}

impl PrivacyPassAuthority {
    /// An authority accepting tokens of `issuers`' keys, recording spent nonces in `spent`.
    pub fn new(
        issuers: &IssuerSet,
        spent: Arc<dyn crate::spent::SpentStore>,
    ) -> anyhow::Result<Self> {
        let mut keys = std::collections::HashMap::new();
        for (tier, i) in &issuers.tiers {
            let k = i.public_key().clone();
            anyhow::ensure!(
                keys.insert(k.truncated_key_id(), k).is_none(),
                "tier {tier}: two issuer keys share a truncated key id"
            );
        }
        Ok(Self { keys, spent })
    }
}

/// Scope of the spent-nonce records of tokens signed by the key with `token_key_id`: they are
/// kept as long as that key is (issuer keys do not rotate, so for good).
fn token_scope(token_key_id: &[u8; 32]) -> String {
    format!("token-{}", &hex::encode(token_key_id)[..16])
}

impl TokenAuthority for PrivacyPassAuthority {
    fn authorize(&self, authorization: Option<&str>) -> Result<(), ApiError> {
        let h = authorization.ok_or_else(|| unauthorized("missing Authorization: PrivateToken"))?;
        let token = sift_privacypass::Token::from_header(h)
            .map_err(|e| unauthorized(&format!("invalid token: {e}")))?;
        let key = self
            .keys
            .get(&token.token_key_id[31])
            .filter(|k| k.token_key_id() == token.token_key_id)
            .ok_or_else(|| unauthorized("invalid token: unknown issuer key"))?;
        key.verify_signature(&token)
            .map_err(|e| unauthorized(&format!("invalid token: {e}")))?;
        match self
            .spent
            .spend(&token_scope(&token.token_key_id), &token.nonce, None)
        {
            Ok(true) => Ok(()),
            Ok(false) => Err(unauthorized("token already spent")),
            Err(e) => {
                tracing::error!(error = %e, "replay store unavailable");
                Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "token check temporarily unavailable",
                ))
            }
        }
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

fn user_tier(issuers: &IssuerSet, headers: &HeaderMap) -> Result<usize, ApiError> {
    bearer(headers)
        .and_then(|b| issuers.tier_for(b))
        .ok_or_else(|| unauthorized("missing or unknown Bearer user token"))
}

/// Issuer routes: the directory, the user's token key, and token issuance.
pub fn routes(issuers: Arc<IssuerSet>) -> Router {
    Router::new()
        .route(
            "/.well-known/private-token-issuer-directory",
            get(directory),
        )
        .route("/token-key-for-user-token", get(token_key))
        .route("/issue", post(issue))
        .with_state(issuers)
}

async fn directory(State(issuers): State<Arc<IssuerSet>>) -> Response {
    let keys: Vec<_> = issuers.tiers.iter().map(|(_, i)| i.public_key()).collect();
    (
        [(
            header::CONTENT_TYPE,
            "application/private-token-issuer-directory",
        )],
        sift_privacypass::issuer_directory_json(&keys),
    )
        .into_response()
}

async fn token_key(
    State(issuers): State<Arc<IssuerSet>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tier = user_tier(&issuers, &headers)?;
    Ok(issuers.tiers[tier]
        .1
        .public_key()
        .spki_der()
        .to_vec()
        .into_response())
}

async fn issue(
    State(issuers): State<Arc<IssuerSet>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (user, tier) = bearer(&headers)
        .and_then(|b| issuers.user_for(b))
        .ok_or_else(|| unauthorized("missing or unknown Bearer user token"))?;
    if let Some(limit) = &issuers.issue_limit {
        limit.check(&user.to_be_bytes())?;
    }
    let req = TokenRequest::parse(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid token request: {e}")))?;
    let issuers2 = issuers.clone();
    let resp = tokio::task::spawn_blocking(move || issuers2.tiers[tier].1.issue(&req))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError::bad_request(format!("cannot issue: {e}")))?;
    Ok((
        [(header::CONTENT_TYPE, "application/private-token-response")],
        resp.to_bytes(),
    )
        .into_response())
}
