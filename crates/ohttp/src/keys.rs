//! Gateway key pairs: generation, a JSON key file (mode 0600, written atomically), rotation with
//! a grace period for the previous key, and the published configuration.
//!
//! Clients fetch the key configuration rarely and cache it, so after a rotation requests made
//! with the previous key keep arriving for a while; the store keeps retired keys until their
//! grace period ends and the gateway accepts all of them, while only the current key is
//! published.

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hpke::{Deserializable, Kem as _, Serializable, kem::X25519HkdfSha256};
use rand_core::{OsRng, TryRngCore};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::config::{KEM_X25519_SHA256, KeyConfig, SymmetricSuite, X25519_LEN};
use crate::error::OhttpError;

/// Default time a retired key is still accepted: a week, longer than any client config cache.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(7 * 24 * 3600);

/// One X25519 key pair with its identifier and offered suites.
#[derive(Clone)]
pub struct GatewayKey {
    key_id: u8,
    secret: Zeroizing<[u8; X25519_LEN]>,
    public: [u8; X25519_LEN],
    suites: Vec<SymmetricSuite>,
}

impl std::fmt::Debug for GatewayKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayKey")
            .field("key_id", &self.key_id)
            .field("public", &hex::encode(self.public))
            .field("suites", &self.suites)
            .finish_non_exhaustive()
    }
}

impl GatewayKey {
    /// A fresh random key pair offering both supported suites.
    pub fn generate(key_id: u8) -> Result<Self, OhttpError> {
        let mut ikm = Zeroizing::new([0u8; X25519_LEN]);
        OsRng
            .try_fill_bytes(&mut ikm[..])
            .map_err(|_| OhttpError::Internal("operating system RNG failed"))?;
        let (sk, _) = X25519HkdfSha256::derive_keypair(&ikm[..]);
        let mut secret = Zeroizing::new([0u8; X25519_LEN]);
        secret.copy_from_slice(&sk.to_bytes());
        Self::from_secret(key_id, &secret[..], SymmetricSuite::DEFAULT.to_vec())
    }

    /// A key pair from a raw X25519 secret (as in RFC 9458 Appendix A).
    pub fn from_secret(
        key_id: u8,
        secret: &[u8],
        suites: Vec<SymmetricSuite>,
    ) -> Result<Self, OhttpError> {
        let sk = <X25519HkdfSha256 as hpke::Kem>::PrivateKey::from_bytes(secret)
            .map_err(|_| OhttpError::InvalidKeyConfig("X25519 secret must be 32 bytes"))?;
        let pk = X25519HkdfSha256::sk_to_pk(&sk);
        let mut public = [0u8; X25519_LEN];
        public.copy_from_slice(&pk.to_bytes());
        let mut s = Zeroizing::new([0u8; X25519_LEN]);
        s.copy_from_slice(secret);
        if suites.is_empty() || suites.iter().any(|s| s.supported_aead().is_none()) {
            return Err(OhttpError::InvalidKeyConfig("unsupported symmetric suite"));
        }
        Ok(Self {
            key_id,
            secret: s,
            public,
            suites,
        })
    }

    /// The key identifier.
    pub fn key_id(&self) -> u8 {
        self.key_id
    }

    /// The X25519 public key.
    pub fn public_key(&self) -> &[u8; X25519_LEN] {
        &self.public
    }

    /// The raw X25519 secret (for persistence; handle with care).
    pub(crate) fn secret_bytes(&self) -> &[u8; X25519_LEN] {
        &self.secret
    }

    /// The suites this key accepts.
    pub fn suites(&self) -> &[SymmetricSuite] {
        &self.suites
    }

    /// The public configuration of this key.
    pub fn config(&self) -> KeyConfig {
        KeyConfig {
            key_id: self.key_id,
            kem: KEM_X25519_SHA256,
            public_key: self.public.to_vec(),
            suites: self.suites.clone(),
        }
    }
}

/// A retired key still accepted until `retired_at + grace`.
#[derive(Debug, Clone)]
pub struct RetiredKey {
    /// The key.
    pub key: GatewayKey,
    /// When it stopped being current.
    pub retired_at: SystemTime,
}

/// The current key plus retired keys inside their grace period.
#[derive(Debug, Clone)]
pub struct KeyStore {
    current: GatewayKey,
    current_since: SystemTime,
    previous: Vec<RetiredKey>,
    grace: Duration,
}

#[derive(Serialize, Deserialize)]
struct KeyFileEntry {
    key_id: u8,
    /// Hex of the raw X25519 secret.
    secret: String,
    suites: Vec<[u16; 2]>,
    /// Unix seconds: creation for the current key, retirement for previous ones.
    since_unix: u64,
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    format: String,
    current: KeyFileEntry,
    #[serde(default)]
    previous: Vec<KeyFileEntry>,
    grace_secs: u64,
}

const KEY_FILE_FORMAT: &str = "sift-ohttp-keys-v1";

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn entry(key: &GatewayKey, since: SystemTime) -> KeyFileEntry {
    KeyFileEntry {
        key_id: key.key_id,
        secret: hex::encode(key.secret_bytes()),
        suites: key.suites.iter().map(|s| [s.kdf, s.aead]).collect(),
        since_unix: unix(since),
    }
}

fn from_entry(e: &KeyFileEntry) -> Result<(GatewayKey, SystemTime), OhttpError> {
    let secret = Zeroizing::new(
        hex::decode(&e.secret).map_err(|_| OhttpError::InvalidKeyConfig("secret is not hex"))?,
    );
    let suites = e
        .suites
        .iter()
        .map(|[kdf, aead]| SymmetricSuite {
            kdf: *kdf,
            aead: *aead,
        })
        .collect();
    let key = GatewayKey::from_secret(e.key_id, &secret, suites)?;
    let since = UNIX_EPOCH
        .checked_add(Duration::from_secs(e.since_unix))
        .ok_or(OhttpError::InvalidKeyConfig("key time out of range"))?;
    Ok((key, since))
}

impl KeyStore {
    /// A store with a fresh random current key (identifier 1).
    pub fn generate(grace: Duration) -> Result<Self, OhttpError> {
        Ok(Self::with_key(GatewayKey::generate(1)?, grace))
    }

    /// A store whose current key is `key`.
    pub fn with_key(key: GatewayKey, grace: Duration) -> Self {
        Self {
            current: key,
            current_since: SystemTime::now(),
            previous: Vec::new(),
            grace,
        }
    }

    /// The key new clients should use.
    pub fn current(&self) -> &GatewayKey {
        &self.current
    }

    /// Retired keys still stored (call [`KeyStore::prune`] to drop expired ones).
    pub fn previous(&self) -> &[RetiredKey] {
        &self.previous
    }

    /// How long retired keys stay accepted.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// Changes how long retired keys stay accepted (takes effect for the gateway at its next
    /// [`crate::Gateway::update_keys`]).
    pub fn set_grace(&mut self, grace: Duration) {
        self.grace = grace;
    }

    /// Keys the gateway should accept at `now`: the current one and unexpired retired ones.
    pub fn accepted_keys(&self, now: SystemTime) -> Vec<GatewayKey> {
        self.accepted_until(now)
            .into_iter()
            .map(|(key, _)| key)
            .collect()
    }

    /// When a key retired at `retired_at` stops being accepted (`None`: never, the sum does
    /// not fit in a `SystemTime`).
    fn expiry(&self, retired_at: SystemTime) -> Option<SystemTime> {
        retired_at.checked_add(self.grace)
    }

    /// The keys accepted at `now`, each with the instant it stops being accepted (`None` for
    /// the current key): the gateway checks expiry per request, so a retired key stops
    /// working at the end of its grace period even if nobody refreshes the gateway.
    pub(crate) fn accepted_until(&self, now: SystemTime) -> Vec<(GatewayKey, Option<SystemTime>)> {
        let mut keys = vec![(self.current.clone(), None)];
        for r in &self.previous {
            let until = self.expiry(r.retired_at);
            if until.is_none_or(|u| now < u) {
                keys.push((r.key.clone(), until));
            }
        }
        keys
    }

    /// Replaces the current key by a fresh one, retiring the old one at `now`. The new
    /// identifier is the next one not used by any stored key, so a stale client never hits
    /// a different key with its old identifier.
    pub fn rotate(&mut self, now: SystemTime) -> Result<&GatewayKey, OhttpError> {
        self.prune(now);
        let used: Vec<u8> = std::iter::once(self.current.key_id)
            .chain(self.previous.iter().map(|r| r.key.key_id))
            .collect();
        let mut id = self.current.key_id;
        loop {
            id = id.wrapping_add(1);
            if !used.contains(&id) {
                break;
            }
            if id == self.current.key_id {
                return Err(OhttpError::InvalidKeyConfig("no free key identifier"));
            }
        }
        let mut key = GatewayKey::generate(id)?;
        key.suites = self.current.suites.clone();
        let old = std::mem::replace(&mut self.current, key);
        self.previous.push(RetiredKey {
            key: old,
            retired_at: now,
        });
        self.current_since = now;
        Ok(&self.current)
    }

    /// Whether the current key is older than `max_age` at `now` (time to rotate).
    pub fn needs_rotation(&self, now: SystemTime, max_age: Duration) -> bool {
        now.duration_since(self.current_since)
            .is_ok_and(|age| age >= max_age)
    }

    /// Drops retired keys whose grace period has ended at `now`.
    pub fn prune(&mut self, now: SystemTime) {
        let grace = self.grace;
        self.previous
            .retain(|r| r.retired_at.checked_add(grace).is_none_or(|u| now < u));
    }

    /// The `application/ohttp-keys` body to publish: the current key only.
    pub fn published_configs(&self) -> Result<Vec<u8>, OhttpError> {
        crate::config::encode_list(&[self.current.config()])
    }

    /// Loads the key file at `path`.
    pub fn load(path: &Path) -> Result<Self, OhttpError> {
        let io = |source| OhttpError::KeyFile {
            path: path.display().to_string(),
            source,
        };
        let text = Zeroizing::new(fs::read_to_string(path).map_err(io)?);
        let file: KeyFile = serde_json::from_str(&text).map_err(|e| io(e.into()))?;
        if file.format != KEY_FILE_FORMAT {
            return Err(OhttpError::InvalidKeyConfig("unknown key file format"));
        }
        let (current, current_since) = from_entry(&file.current)?;
        let previous = file
            .previous
            .iter()
            .map(|e| from_entry(e).map(|(key, retired_at)| RetiredKey { key, retired_at }))
            .collect::<Result<Vec<_>, _>>()?;
        // Identifiers select the key for each request: they must be unique.
        let mut ids: Vec<u8> = previous.iter().map(|r| r.key.key_id).collect();
        ids.push(current.key_id);
        ids.sort_unstable();
        if ids.windows(2).any(|w| w[0] == w[1]) {
            return Err(OhttpError::InvalidKeyConfig(
                "duplicate key identifier in key file",
            ));
        }
        Ok(Self {
            current,
            current_since,
            previous,
            grace: Duration::from_secs(file.grace_secs),
        })
    }

    /// Writes the key file atomically: a temporary file in the same directory created with
    /// mode 0600, synced, then renamed over `path` (readers see the old or the new file).
    pub fn save(&self, path: &Path) -> Result<(), OhttpError> {
        let io = |source| OhttpError::KeyFile {
            path: path.display().to_string(),
            source,
        };
        let file = KeyFile {
            format: KEY_FILE_FORMAT.to_string(),
            current: entry(&self.current, self.current_since),
            previous: self
                .previous
                .iter()
                .map(|r| entry(&r.key, r.retired_at))
                .collect(),
            grace_secs: self.grace.as_secs(),
        };
        let text = Zeroizing::new(serde_json::to_string_pretty(&file).map_err(|e| io(e.into()))?);
        sift_fsutil::write_private(path, text.as_bytes()).map_err(io)
    }

    /// Loads `path`, or generates a new store and saves it there when the file is missing.
    /// `grace` (the operator's current setting) replaces the one stored in the file. A file
    /// that exists but cannot be read or parsed is an error: a new key would silently
    /// invalidate every client's cached configuration.
    pub fn load_or_generate(path: &Path, grace: Duration) -> Result<Self, OhttpError> {
        match Self::load(path) {
            Ok(mut s) => {
                s.grace = grace;
                Ok(s)
            }
            Err(OhttpError::KeyFile { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                let s = Self::generate(grace)?;
                s.save(path)?;
                Ok(s)
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_round_trip_with_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/ohttp-keys.json");
        let mut store = KeyStore::load_or_generate(&path, Duration::from_secs(60)).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let first = store.current().clone();
        let again = KeyStore::load_or_generate(&path, Duration::from_secs(60)).unwrap();
        assert_eq!(again.current().public_key(), first.public_key());

        let t0 = SystemTime::now();
        store.rotate(t0).unwrap();
        assert_eq!(store.current().key_id(), 2);
        assert_ne!(store.current().public_key(), first.public_key());
        store.save(&path).unwrap();
        let loaded = KeyStore::load(&path).unwrap();
        assert_eq!(loaded.current().public_key(), store.current().public_key());
        assert_eq!(loaded.previous().len(), 1);
        assert_eq!(loaded.previous()[0].key.public_key(), first.public_key());
        assert_eq!(loaded.accepted_keys(t0).len(), 2);
        assert_eq!(
            loaded.accepted_keys(t0 + Duration::from_secs(61)).len(),
            1,
            "previous key expires after the grace period"
        );
        // Only the current key is published.
        let published = crate::config::decode_list(&loaded.published_configs().unwrap()).unwrap();
        assert_eq!(published, vec![loaded.current().config()]);
        // No temp files left behind.
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn corrupt_key_file_is_an_error_not_a_new_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.json");
        fs::write(&path, "{not json").unwrap();
        assert!(KeyStore::load_or_generate(&path, DEFAULT_GRACE).is_err());
        assert_eq!(fs::read_to_string(&path).unwrap(), "{not json");
    }

    #[test]
    fn rotation_skips_identifiers_in_use_and_wraps() {
        let mut store = KeyStore::with_key(GatewayKey::generate(255).unwrap(), DEFAULT_GRACE);
        let now = SystemTime::now();
        store.rotate(now).unwrap();
        assert_eq!(store.current().key_id(), 0);
        store.rotate(now).unwrap();
        assert_eq!(store.current().key_id(), 1);
        let ids: Vec<u8> = store
            .accepted_keys(now)
            .iter()
            .map(GatewayKey::key_id)
            .collect();
        assert_eq!(ids, vec![1, 255, 0]);
        assert!(store.needs_rotation(now + Duration::from_secs(10), Duration::from_secs(5)));
        assert!(!store.needs_rotation(now, Duration::from_secs(5)));
    }
}
