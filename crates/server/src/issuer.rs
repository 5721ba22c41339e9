//! The Privacy Pass issuer (RFC 9578 token type 2) as Apple's example service runs it: one RSA
//! key per user tier, user tokens (`Authorization: Bearer …`) mapped to tiers, and token checks
//! on PIR routes.
//!
//! Keys rotate (`[issuer]`): each tier's keys live under `state_dir/issuer/<tier>.<start>.pem`
//! (`<start>`: Unix seconds from which the key signs). A key is accepted for
//! `key_lifetime_days` from its start; the next one is generated `key_overlap_days` before it
//! takes over, and published in the directory with its `not-before` meanwhile. Replicas sharing
//! `state_dir/issuer` agree on the keys (a key file is published once, with a hard link, and
//! every replica re-reads the folder each minute). A key file from before rotation
//! (`<tier>.pem`) becomes the tier's first key, starting when it is first seen.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, StatusCode, header};
use sift_privacypass::{
    Issuer, IssuerPublicKey, ReplayCache, TokenChallenge, TokenRequest, Verifier,
};
use subtle::ConstantTimeEq;

use crate::auth::{TokenAuthority, unauthorized};
use crate::config::{IssuerConfig, UserTier};
use crate::error::ApiError;

/// How often the key folder is re-read (keys of other replicas, rotation due).
const REFRESH_EVERY: u64 = 60;
/// Expired key files are deleted this long after their end.
const DELETE_AFTER: u64 = 86_400;

/// When keys start, stop signing and expire, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySchedule {
    /// Seconds a key is accepted from its start; 0: for ever (no rotation).
    lifetime: u64,
    /// Seconds the next key is published ahead, and the old one accepted after the switch.
    overlap: u64,
    /// Clock difference tolerated around a key's start (devices, replicas).
    skew: u64,
}

impl KeySchedule {
    /// A schedule: keys accepted for `lifetime` (zero: for ever), the next published `overlap`
    /// ahead of its start and the old one accepted `overlap` after it.
    pub fn new(lifetime: Duration, overlap: Duration) -> Self {
        let (lifetime, overlap) = (lifetime.as_secs(), overlap.as_secs());
        let overlap = if lifetime == 0 {
            0
        } else {
            overlap.min(lifetime / 2)
        };
        Self {
            lifetime,
            overlap,
            skew: (overlap / 4).min(3600),
        }
    }

    /// The schedule `[issuer]` describes.
    pub fn from_config(c: &IssuerConfig) -> Self {
        Self::new(
            Duration::from_secs(c.key_lifetime_days * 86_400),
            Duration::from_secs(c.key_overlap_days * 86_400),
        )
    }

    /// The end of a key starting at `start` (`None`: never).
    fn expiry(&self, start: u64) -> Option<u64> {
        (self.lifetime > 0).then(|| start.saturating_add(self.lifetime))
    }

    /// The `not-before` published for a key starting at `start`.
    fn not_before(&self, start: u64) -> Option<u64> {
        (self.lifetime > 0).then(|| start.saturating_sub(self.skew))
    }

    /// Whether a key starting at `start` verifies tokens at `now`.
    fn accepts(&self, start: u64, now: u64) -> bool {
        start <= now.saturating_add(self.skew) && self.expiry(start).is_none_or(|e| now < e)
    }
}

/// One tier's key and when it starts signing.
struct TierKey {
    tier: usize,
    start: u64,
    issuer: Issuer,
    path: PathBuf,
}

/// Seconds since the Unix epoch.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The tiers' issuer keys and the user tokens that may fetch tokens from them.
pub struct IssuerSet {
    dir: PathBuf,
    tier_names: Vec<String>,
    schedule: KeySchedule,
    /// Every tier's keys, oldest first; replaced whole by a refresh.
    keys: arc_swap::ArcSwap<Vec<Arc<TierKey>>>,
    /// Held while the key folder is re-read.
    refresh_lock: Mutex<()>,
    /// When the key folder is next re-read (Unix seconds).
    next_refresh: AtomicU64,
    /// Where spent nonces live, to forget those of keys gone (set by the authority).
    spent: OnceLock<Arc<dyn crate::spent::SpentStore>>,
    /// Digests of the challenges tokens may carry (`challenge_issuer_names`); empty: any.
    challenges: Vec<[u8; 32]>,
    /// Bearer user tokens and their tier index; replaced whole on reload.
    users: arc_swap::ArcSwap<Vec<(Vec<u8>, usize)>>,
    /// Tokens issued per user token (`limits.issue_per_minute`); replaced on reload.
    issue_limit: arc_swap::ArcSwapOption<crate::ratelimit::RateLimiter>,
}

impl IssuerSet {
    /// Loads each tier's keys from `dir` with the default `[issuer]` schedule, generating
    /// (and saving, mode 0600) the ones that are missing.
    pub fn load_or_create(dir: &Path, tiers: &[UserTier]) -> anyhow::Result<Self> {
        Self::load(dir, tiers, &IssuerConfig::default())
    }

    /// Loads each tier's keys from `dir` under the `[issuer]` settings `cfg`, generating (and
    /// saving, atomically, mode 0600) the ones that are due.
    pub fn load(dir: &Path, tiers: &[UserTier], cfg: &IssuerConfig) -> anyhow::Result<Self> {
        cfg.validate()?;
        Self::load_at(dir, tiers, cfg, KeySchedule::from_config(cfg), unix_now())
    }

    fn load_at(
        dir: &Path,
        tiers: &[UserTier],
        cfg: &IssuerConfig,
        schedule: KeySchedule,
        now: u64,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for t in tiers {
            anyhow::ensure!(
                !t.tier.is_empty()
                    && t.tier
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
                "tier name {:?} must be letters, digits, '-' or '_'",
                t.tier
            );
        }
        let challenges = cfg
            .challenge_issuer_names
            .iter()
            .map(|n| TokenChallenge::new(n).digest())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("[issuer] challenge_issuer_names: {e}"))?;
        let out = IssuerSet {
            dir: dir.to_owned(),
            tier_names: tiers.iter().map(|t| t.tier.clone()).collect(),
            schedule,
            keys: Default::default(),
            refresh_lock: Mutex::new(()),
            next_refresh: AtomicU64::new(0),
            spent: OnceLock::new(),
            challenges,
            users: Default::default(),
            issue_limit: Default::default(),
        };
        out.refresh(now)?;
        out.users.store(Arc::new(user_tokens(tiers)?));
        Ok(out)
    }

    /// Re-reads the key folder when due (every minute): other replicas' keys, rotation.
    fn refresh_if_due(&self, now: u64) {
        let due = self.next_refresh.load(Ordering::Relaxed);
        // One caller refreshes; the others go on with the keys they have.
        if now < due
            || self
                .next_refresh
                .compare_exchange(
                    due,
                    now.saturating_add(REFRESH_EVERY),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_err()
        {
            return;
        }
        if let Err(e) = self.refresh(now) {
            tracing::error!(error = %format!("{e:#}"), "refreshing the issuer keys");
        }
    }

    /// Reads the key folder, adopts a pre-rotation key file, deletes long-expired keys,
    /// generates each tier's next key when it is due, and forgets the spent nonces of keys
    /// no longer accepted.
    fn refresh(&self, now: u64) -> anyhow::Result<()> {
        let _guard = self.refresh_lock.lock().unwrap_or_else(|p| p.into_inner());
        self.next_refresh
            .store(now.saturating_add(REFRESH_EVERY), Ordering::Relaxed);
        let old = self.keys.load_full();
        let mut keys: Vec<Arc<TierKey>> = Vec::new();
        let mut legacy = Vec::new();
        // Replay scopes of the keys deleted now.
        let mut gone = Vec::new();
        for entry in std::fs::read_dir(&self.dir)
            .with_context(|| format!("reading {}", self.dir.display()))?
        {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(stem) = name.strip_suffix(".pem") else {
                continue;
            };
            let (tier_name, start) = match stem.split_once('.') {
                Some((t, s)) => match s.parse::<u64>() {
                    Ok(s) => (t, Some(s)),
                    Err(_) => continue,
                },
                None => (stem, None),
            };
            let Some(tier) = self.tier_names.iter().position(|t| t == tier_name) else {
                continue;
            };
            let Some(start) = start else {
                legacy.push((tier, path));
                continue;
            };
            if self
                .schedule
                .expiry(start)
                .is_some_and(|e| e.saturating_add(DELETE_AFTER) <= now)
            {
                let id = match old.iter().find(|k| k.path == path) {
                    Some(k) => Some(k.issuer.public_key().token_key_id()),
                    None => read_key(&path).ok().map(|k| k.public_key().token_key_id()),
                };
                gone.extend(id.map(|id| token_scope(&id)));
                match std::fs::remove_file(&path) {
                    Ok(()) => {
                        tracing::info!(tier = tier_name, start, "deleted an expired issuer key")
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, path = %path.display(), "deleting an expired issuer key")
                    }
                }
                continue;
            }
            if let Some(k) = old.iter().find(|k| k.path == path) {
                keys.push(k.clone());
                continue;
            }
            keys.push(Arc::new(TierKey {
                tier,
                start,
                issuer: read_key(&path)?,
                path,
            }));
        }
        // A key from before rotation becomes its tier's first key, starting now.
        for (tier, path) in legacy {
            if keys.iter().any(|k| k.tier == tier) {
                continue;
            }
            let to = self.key_path(tier, now);
            match std::fs::hard_link(&path, &to) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e).with_context(|| format!("adopting {}", path.display())),
            }
            let _ = std::fs::remove_file(&path);
            tracing::info!(tier = %self.tier_names[tier], "issuer key adopted into the rotation schedule");
            keys.push(Arc::new(TierKey {
                tier,
                start: now,
                issuer: read_key(&to)?,
                path: to,
            }));
        }
        for tier in 0..self.tier_names.len() {
            let latest = keys
                .iter()
                .filter(|k| k.tier == tier)
                .map(|k| k.start)
                .max();
            let start = match latest {
                None => now,
                Some(_) if self.schedule.lifetime == 0 => continue,
                Some(l) => {
                    let switch = l.saturating_add(self.schedule.lifetime - self.schedule.overlap);
                    if now.saturating_add(self.schedule.overlap) < switch {
                        continue;
                    }
                    switch.max(now)
                }
            };
            let path = self.key_path(tier, start);
            let issuer = generate_distinct(&keys)?;
            let pem = issuer.to_pkcs8_pem().map_err(|e| anyhow::anyhow!("{e}"))?;
            let issuer = if publish_secret(&path, pem.as_bytes())? {
                tracing::info!(tier = %self.tier_names[tier], start, "generated a new issuer key");
                issuer
            } else {
                // Another replica published this key first: use theirs.
                read_key(&path)?
            };
            keys.push(Arc::new(TierKey {
                tier,
                start,
                issuer,
                path,
            }));
        }
        keys.sort_by_key(|k| (k.tier, k.start));
        self.keys.store(Arc::new(keys));
        // The nonces of a deleted key's tokens can never verify again: forget them. (Only the
        // scopes of keys deleted here, so replicas with other keys lose nothing.)
        if let Some(spent) = self.spent.get() {
            for scope in gone {
                if let Err(e) = spent.retire_scope(&scope) {
                    tracing::warn!(error = %e, "could not forget the spent tokens of an expired key");
                }
            }
        }
        Ok(())
    }

    fn key_path(&self, tier: usize, start: u64) -> PathBuf {
        self.dir
            .join(format!("{}.{start}.pem", self.tier_names[tier]))
    }

    /// The key `tier` signs with at `now`: its latest started key.
    fn signing_key(&self, tier: usize, now: u64) -> Option<Arc<TierKey>> {
        self.keys
            .load()
            .iter()
            .filter(|k| k.tier == tier && k.start <= now)
            .max_by_key(|k| k.start)
            .cloned()
    }

    /// The accepted key with this full key id at `now`, or why not.
    fn verifying_key(
        &self,
        token_key_id: &[u8; 32],
        now: u64,
    ) -> Result<Arc<TierKey>, &'static str> {
        let keys = self.keys.load();
        let k = keys
            .iter()
            .find(|k| bool::from(k.issuer.public_key().token_key_id().ct_eq(token_key_id)))
            .ok_or("unknown issuer key")?;
        if !self.schedule.accepts(k.start, now) {
            return Err(if k.start > now {
                "issuer key not valid yet"
            } else {
                "issuer key expired"
            });
        }
        Ok(k.clone())
    }

    /// The directory's keys at `now`: each tier's signing key first, then the others still
    /// accepted or about to start, with their `not-before`.
    fn directory_keys(&self, now: u64) -> Vec<(IssuerPublicKey, Option<u64>)> {
        let keys = self.keys.load();
        let mut out = Vec::new();
        let mut rest = Vec::new();
        for tier in 0..self.tier_names.len() {
            let signing = self.signing_key(tier, now);
            for k in keys.iter().filter(|k| k.tier == tier).rev() {
                if self.schedule.expiry(k.start).is_some_and(|e| e <= now) {
                    continue;
                }
                let entry = (
                    k.issuer.public_key().clone(),
                    self.schedule.not_before(k.start),
                );
                if signing.as_ref().is_some_and(|s| Arc::ptr_eq(s, k)) {
                    out.push(entry);
                } else {
                    rest.push(entry);
                }
            }
        }
        out.extend(rest);
        out
    }

    /// Replaces the user tokens (SIGHUP after editing `[[users]]`): requests already running
    /// finish with the old list, the next ones see the new one. The tiers themselves (and so
    /// the issuer keys devices' tokens are signed with) cannot change without a restart.
    pub fn replace_users(&self, tiers: &[UserTier]) -> anyhow::Result<()> {
        let names: Vec<&str> = tiers.iter().map(|t| t.tier.as_str()).collect();
        let current: Vec<&str> = self.tier_names.iter().map(String::as_str).collect();
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
    pub fn with_issue_limit(self, limiter: Option<crate::ratelimit::RateLimiter>) -> Self {
        self.set_issue_limit(limiter);
        self
    }

    /// Replaces the issuance limit (SIGHUP after editing `limits.issue_per_minute` or
    /// `issue_burst`); callers' buckets start full again.
    pub fn set_issue_limit(&self, limiter: Option<crate::ratelimit::RateLimiter>) {
        self.issue_limit.store(limiter.map(Arc::new));
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

    /// A verifier for tokens of every tier's current key, with a bounded in-memory replay
    /// cache (tests and tools; the service checks tokens with [`PrivacyPassAuthority`]).
    pub fn verifier(&self) -> anyhow::Result<Verifier> {
        let now = unix_now();
        let keys = (0..self.tier_names.len())
            .filter_map(|t| self.signing_key(t, now))
            .map(|k| k.issuer.public_key().clone())
            .collect();
        Verifier::new(keys, ReplayCache::new(1 << 20, Duration::from_secs(3600)))
            .map_err(|e| anyhow::anyhow!("{e}"))
    }
}

fn read_key(path: &Path) -> anyhow::Result<Issuer> {
    let pem =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Issuer::from_pkcs8_pem(&pem).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
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

/// Generates a key whose truncated key id differs from every other known key's (Apple's
/// clients and verifiers pick the key by that byte).
fn generate_distinct(existing: &[Arc<TierKey>]) -> anyhow::Result<Issuer> {
    for _ in 0..16 {
        let k = Issuer::generate().map_err(|e| anyhow::anyhow!("{e}"))?;
        let id = k.public_key().truncated_key_id();
        if existing
            .iter()
            .all(|e| e.issuer.public_key().truncated_key_id() != id)
        {
            return Ok(k);
        }
    }
    anyhow::bail!("could not generate an issuer key with a distinct key id")
}

/// Writes a secret file (mode 0600) at `path` unless it exists: written aside, synced, then
/// hard-linked into place, so of two replicas publishing the same key file one wins and
/// neither sees a partial file. `Ok(false)`: it existed.
fn publish_secret(path: &Path, bytes: &[u8]) -> anyhow::Result<bool> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e).with_context(|| format!("writing {}", path.display())),
    }
}

/// Checks `Authorization: PrivateToken token=…` on PIR routes: one well-formed token, signed by
/// one of our tiers' keys that is accepted now, for a challenge this issuer would be named in
/// (when `challenge_issuer_names` is set), whose nonce has not been spent before — on this
/// server or on any replica sharing the replay store, before or after a restart. A spent nonce
/// is kept until its key expires.
pub struct PrivacyPassAuthority {
    issuers: Arc<IssuerSet>,
    spent: Arc<dyn crate::spent::SpentStore>,
}

impl PrivacyPassAuthority {
    /// An authority accepting tokens of `issuers`' keys, recording spent nonces in `spent`
    /// (which also forgets the nonces of keys once they expire).
    pub fn new(
        issuers: &Arc<IssuerSet>,
        spent: Arc<dyn crate::spent::SpentStore>,
    ) -> anyhow::Result<Self> {
        let _ = issuers.spent.set(spent.clone());
        Ok(Self {
            issuers: issuers.clone(),
            spent,
        })
    }

    fn authorize_at(&self, authorization: Option<&str>, now: u64) -> Result<(), ApiError> {
        let h = authorization.ok_or_else(|| unauthorized("missing Authorization: PrivateToken"))?;
        let token = sift_privacypass::Token::from_header(h)
            .map_err(|e| unauthorized(&format!("invalid token: {e}")))?;
        self.issuers.refresh_if_due(now);
        let key = self
            .issuers
            .verifying_key(&token.token_key_id, now)
            .map_err(|why| unauthorized(&format!("invalid token: {why}")))?;
        let challenges = &self.issuers.challenges;
        if !challenges.is_empty() && !challenges.contains(&token.challenge_digest) {
            return Err(unauthorized(
                "invalid token: its challenge does not name this issuer",
            ));
        }
        key.issuer
            .public_key()
            .verify_signature(&token)
            .map_err(|e| unauthorized(&format!("invalid token: {e}")))?;
        let keep_until = self
            .issuers
            .schedule
            .expiry(key.start)
            .map(|e| UNIX_EPOCH + Duration::from_secs(e));
        match self
            .spent
            .spend(&token_scope(&token.token_key_id), &token.nonce, keep_until)
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

/// Scope of the spent-nonce records of tokens signed by the key with `token_key_id`: they are
/// kept until that key expires.
fn token_scope(token_key_id: &[u8; 32]) -> String {
    format!("token-{}", &hex::encode(token_key_id)[..16])
}

impl TokenAuthority for PrivacyPassAuthority {
    fn authorize(&self, authorization: Option<&str>) -> Result<(), ApiError> {
        self.authorize_at(authorization, unix_now())
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
    let now = unix_now();
    issuers.refresh_if_due(now);
    let keys = issuers.directory_keys(now);
    let keys: Vec<_> = keys.iter().map(|(k, nb)| (k, *nb)).collect();
    (
        [(
            header::CONTENT_TYPE,
            "application/private-token-issuer-directory",
        )],
        sift_privacypass::issuer_directory_json_with_not_before(&keys),
    )
        .into_response()
}

/// The key `tier` signs with now (503 if the key folder cannot provide one).
fn signing_key_now(issuers: &IssuerSet, tier: usize) -> Result<Arc<TierKey>, ApiError> {
    let now = unix_now();
    issuers.refresh_if_due(now);
    issuers.signing_key(tier, now).ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no issuer key is available yet",
        )
    })
}

async fn token_key(
    State(issuers): State<Arc<IssuerSet>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tier = user_tier(&issuers, &headers)?;
    Ok(signing_key_now(&issuers, tier)?
        .issuer
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
    if let Some(limit) = issuers.issue_limit.load_full() {
        limit.check(&user.to_be_bytes())?;
    }
    let req = TokenRequest::parse(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid token request: {e}")))?;
    let key = signing_key_now(&issuers, tier)?;
    let resp = tokio::task::spawn_blocking(move || key.issuer.issue(&req))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError::bad_request(format!("cannot issue: {e}")))?;
    Ok((
        [(header::CONTENT_TYPE, "application/private-token-response")],
        resp.to_bytes(),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sift_privacypass::{Token, client_request};
    use std::sync::Mutex as StdMutex;

    /// Records what was spent and until when, like a real store.
    #[derive(Default)]
    struct Recorder(StdMutex<Vec<Spent>>, StdMutex<Vec<String>>);

    /// (scope, id, kept until)
    type Spent = (String, Vec<u8>, Option<SystemTime>);

    impl crate::spent::SpentStore for Recorder {
        fn spend(&self, scope: &str, id: &[u8], keep: Option<SystemTime>) -> anyhow::Result<bool> {
            let mut v = self.0.lock().unwrap();
            if v.iter().any(|(s, i, _)| s == scope && i == id) {
                return Ok(false);
            }
            v.push((scope.to_owned(), id.to_vec(), keep));
            Ok(true)
        }

        fn retire_scope(&self, scope: &str) -> anyhow::Result<()> {
            self.1.lock().unwrap().push(scope.to_owned());
            Ok(())
        }
    }

    fn tiers() -> Vec<UserTier> {
        vec![UserTier {
            tier: "gold".into(),
            tokens: vec!["u1".into()],
        }]
    }

    /// A token from `tier`'s signing key at `now`, for issuer name `name`.
    fn token(set: &IssuerSet, now: u64, name: &str) -> Token {
        let key = set.signing_key(0, now).unwrap();
        let (req, pending) =
            client_request(key.issuer.public_key(), &TokenChallenge::new(name)).unwrap();
        pending.finalize(&key.issuer.issue(&req).unwrap()).unwrap()
    }

    fn check(auth: &PrivacyPassAuthority, t: &Token, now: u64) -> Result<(), String> {
        auth.authorize_at(Some(&t.to_header()), now)
            .map_err(|e| format!("{} {}", e.status.as_u16(), e.message))
    }

    #[test]
    fn keys_rotate_on_schedule_and_expired_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        // Lifetime 1000 s, overlap 300 s: a key signs for 700 s, then verifies 300 s more.
        let schedule = KeySchedule::new(Duration::from_secs(1000), Duration::from_secs(300));
        let t0 = 1_000_000;
        let set = Arc::new(
            IssuerSet::load_at(dir.path(), &tiers(), &IssuerConfig::default(), schedule, t0)
                .unwrap(),
        );
        let spent = Arc::new(Recorder::default());
        let auth = PrivacyPassAuthority::new(&set, spent.clone()).unwrap();
        let k0 = set.signing_key(0, t0).unwrap();
        assert_eq!(k0.start, t0);
        assert_eq!(set.directory_keys(t0).len(), 1, "no next key yet");

        let a = token(&set, t0, "issuer.example.com");
        check(&auth, &a, t0 + 1).unwrap();
        assert!(
            check(&auth, &a, t0 + 2)
                .unwrap_err()
                .contains("already spent")
        );
        // Kept exactly until its key expires.
        let kept = spent.0.lock().unwrap()[0].2;
        assert_eq!(kept, Some(UNIX_EPOCH + Duration::from_secs(t0 + 1000)));

        // 300 s before the switch the next key is generated and published, not yet signing.
        set.refresh(t0 + 450).unwrap();
        let dir_keys = set.directory_keys(t0 + 450);
        assert_eq!(dir_keys.len(), 2);
        assert_eq!(
            dir_keys[0].0.token_key_id(),
            k0.issuer.public_key().token_key_id()
        );
        let skew = schedule.skew;
        assert_eq!(
            dir_keys[1].1,
            Some(t0 + 700 - skew),
            "not-before of the next key"
        );
        assert!(Arc::ptr_eq(&set.signing_key(0, t0 + 450).unwrap(), &k0));
        let b = token(&set, t0 + 650, "issuer.example.com");

        // After the switch the new key signs; the old key's tokens verify until it expires.
        let k1 = set.signing_key(0, t0 + 700).unwrap();
        assert_eq!(k1.start, t0 + 700);
        let c = token(&set, t0 + 700, "issuer.example.com");
        check(&auth, &c, t0 + 701).unwrap();
        check(&auth, &b, t0 + 999).unwrap();
        let d = token(&set, t0 + 690, "issuer.example.com");
        let e = check(&auth, &d, t0 + 1000).unwrap_err();
        assert!(e.starts_with("401") && e.contains("expired"), "{e}");

        // A day after its end the old key is deleted, and its spent nonces forgotten.
        assert!(k0.path.exists());
        set.refresh(t0 + 1000 + DELETE_AFTER).unwrap();
        assert!(!k0.path.exists());
        assert_eq!(
            *spent.1.lock().unwrap(),
            [token_scope(&k0.issuer.public_key().token_key_id())]
        );

        // A restart reads the same keys back.
        let again = IssuerSet::load_at(
            dir.path(),
            &tiers(),
            &IssuerConfig::default(),
            schedule,
            t0 + 701,
        )
        .unwrap();
        assert_eq!(
            again
                .signing_key(0, t0 + 701)
                .unwrap()
                .issuer
                .public_key()
                .token_key_id(),
            k1.issuer.public_key().token_key_id()
        );
    }

    #[test]
    fn challenge_must_name_a_configured_issuer() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = IssuerConfig {
            challenge_issuer_names: vec!["issuer.example.com".into()],
            ..IssuerConfig::default()
        };
        let now = unix_now();
        let set = Arc::new(
            IssuerSet::load_at(
                dir.path(),
                &tiers(),
                &cfg,
                KeySchedule::from_config(&cfg),
                now,
            )
            .unwrap(),
        );
        let auth = PrivacyPassAuthority::new(&set, Arc::new(Recorder::default())).unwrap();
        check(&auth, &token(&set, now, "issuer.example.com"), now).unwrap();
        let e = check(&auth, &token(&set, now, "evil.example.net"), now).unwrap_err();
        assert!(e.starts_with("401") && e.contains("challenge"), "{e}");
    }

    #[test]
    fn a_key_from_before_rotation_is_adopted() {
        let dir = tempfile::tempdir().unwrap();
        let legacy = Issuer::generate().unwrap();
        std::fs::write(dir.path().join("gold.pem"), legacy.to_pkcs8_pem().unwrap()).unwrap();
        let set = IssuerSet::load_at(
            dir.path(),
            &tiers(),
            &IssuerConfig::default(),
            KeySchedule::from_config(&IssuerConfig::default()),
            5_000,
        )
        .unwrap();
        let k = set.signing_key(0, 5_000).unwrap();
        assert_eq!(k.start, 5_000);
        assert_eq!(
            k.issuer.public_key().token_key_id(),
            legacy.public_key().token_key_id()
        );
        assert!(!dir.path().join("gold.pem").exists());
        assert!(dir.path().join("gold.5000.pem").exists());
    }
}
