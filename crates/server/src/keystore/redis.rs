//! Evaluation keys in Redis, shared by several replicas of the service: a device may upload its
//! key through one replica and query through another.
//!
//! Layout (all under a configurable prefix, `sift` by default; `<u>` = hex SHA-256 of the user):
//! - `sift:key:<u>:<hex id>`: the serialized `EvaluationKey` (expires after `ttl_secs`);
//! - `sift:keys:<u>`: sorted set of the user's key ids by upload order (the per-user bound evicts
//!   the lowest);
//! - `sift:meta:<u>`: hash id → metadata timestamp (for `/config` without fetching megabytes);
//! - `sift:all`: sorted set `<u>:<hex id>` → expiry time, to count live keys for metrics;
//! - `sift:seq`: upload counter that orders keys across replicas.
//!
//! Uploads run as one Lua script, so replicas racing on one user cannot exceed the bound. The
//! key names are computed inside the script, so Redis Cluster is not supported (one primary,
//! optionally with replicas/Sentinel in front, is the intended deployment).

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use prost::Message;
use sift_proto::api;

use crate::config::RedisKeyStoreConfig;
use crate::keystore::{KeyStore, user_dir_name};

/// Stores a key, bumps it to newest, evicts the user's oldest beyond the bound; returns how many
/// were evicted.
const PUT_SCRIPT: &str = r#"
local seq = redis.call('INCR', KEYS[5])
local ttl = tonumber(ARGV[5])
if ttl > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ttl)
else
  redis.call('SET', KEYS[1], ARGV[1])
end
redis.call('ZADD', KEYS[2], seq, ARGV[2])
redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[4], ARGV[8], ARGV[7] .. ARGV[2])
local max = tonumber(ARGV[4])
local n = redis.call('ZCARD', KEYS[2])
local evicted = 0
if n > max then
  local old = redis.call('ZRANGE', KEYS[2], 0, n - max - 1)
  for _, id in ipairs(old) do
    redis.call('DEL', ARGV[6] .. id)
    redis.call('HDEL', KEYS[3], id)
    redis.call('ZREM', KEYS[4], ARGV[7] .. id)
  end
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, n - max - 1)
  evicted = #old
end
if ttl > 0 then
  redis.call('EXPIRE', KEYS[2], ttl)
  redis.call('EXPIRE', KEYS[3], ttl)
end
return evicted
"#;

/// Drops index entries whose keys expired, then counts the rest.
const COUNT_SCRIPT: &str = r#"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
return redis.call('ZCARD', KEYS[1])
"#;

/// Expiry score of keys without a TTL (year 2286).
const NEVER: u64 = 9_999_999_999;

/// Redis-backed [`KeyStore`] with a small pool of synchronous connections, each with connect,
/// read and write timeouts, so a stalled Redis turns into an error (503) rather than a hang.
pub struct RedisKeyStore {
    client: redis::Client,
    idle: Mutex<Vec<redis::Connection>>,
    pool_size: usize,
    timeout: Duration,
    prefix: String,
    max_per_user: usize,
    ttl_secs: u64,
    put: redis::Script,
    count: redis::Script,
}

impl RedisKeyStore {
    /// Connects to `cfg.url` (failing now if Redis is unreachable, so a misconfigured replica
    /// does not start); `default_max_per_user` applies when `cfg.max_per_user` is unset.
    pub fn open(cfg: &RedisKeyStoreConfig, default_max_per_user: usize) -> anyhow::Result<Self> {
        let max_per_user = cfg.max_per_user.unwrap_or(default_max_per_user);
        anyhow::ensure!(
            max_per_user >= 1,
            "key_store.max_per_user must be at least 1"
        );
        anyhow::ensure!(
            cfg.timeout_ms >= 1,
            "key_store.timeout_ms must be at least 1"
        );
        anyhow::ensure!(
            !cfg.prefix.is_empty() && !cfg.prefix.contains(['{', '}']),
            "key_store.prefix must be non-empty without braces"
        );
        let client = redis::Client::open(cfg.url.as_str())
            .with_context(|| format!("invalid Redis URL {:?}", redact(&cfg.url)))?;
        let store = Self {
            client,
            idle: Mutex::new(Vec::new()),
            pool_size: cfg.pool_size,
            timeout: Duration::from_millis(cfg.timeout_ms),
            prefix: cfg.prefix.clone(),
            max_per_user,
            ttl_secs: cfg.ttl_secs,
            put: redis::Script::new(PUT_SCRIPT),
            count: redis::Script::new(COUNT_SCRIPT),
        };
        store
            .with_conn(|c| redis::cmd("PING").query::<String>(c))
            .with_context(|| format!("connecting to {}", redact(&cfg.url)))?;
        Ok(store)
    }

    fn connect(&self) -> redis::RedisResult<redis::Connection> {
        let c = self.client.get_connection_with_timeout(self.timeout)?;
        c.set_read_timeout(Some(self.timeout))?;
        c.set_write_timeout(Some(self.timeout))?;
        Ok(c)
    }

    /// Runs `f` on a pooled connection; a connection that saw an error is dropped, not reused.
    /// A pooled connection that turns out broken (Redis restarted since it was opened) is
    /// replaced by a fresh one and `f` tried once more, so the store recovers by itself when
    /// Redis comes back. (Every command here may run twice: the upload script only bumps the
    /// key to newest again.)
    fn with_conn<T>(
        &self,
        mut f: impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> anyhow::Result<T> {
        let pooled = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let fresh = |_| {
            self.connect()
                .map_err(|e| anyhow::anyhow!("Redis unavailable: {e}"))
        };
        let (mut conn, out) = match pooled {
            Some(mut c) => match f(&mut c) {
                Err(e) if e.is_io_error() || e.is_connection_dropped() => {
                    let mut c = fresh(())?;
                    let out = f(&mut c);
                    (c, out)
                }
                out => (c, out),
            },
            None => {
                let mut c = fresh(())?;
                let out = f(&mut c);
                (c, out)
            }
        };
        let out = out.map_err(|e| anyhow::anyhow!("Redis error: {e}"))?;
        let _ = &mut conn;
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.pool_size {
            idle.push(conn);
        }
        Ok(out)
    }

    /// Runs `f` on a pooled connection (for the replay store sharing this Redis).
    pub(crate) fn run<T>(
        &self,
        f: impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> anyhow::Result<T> {
        self.with_conn(f)
    }

    /// The Redis key recording a spent identifier of `scope`.
    pub(crate) fn spent_key(&self, scope: &str, id: &[u8]) -> String {
        format!("{}:spent:{scope}:{}", self.prefix, hex::encode(id))
    }

    fn value_key(&self, user_hash: &str, id: &[u8]) -> String {
        format!("{}:key:{user_hash}:{}", self.prefix, hex::encode(id))
    }
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl KeyStore for RedisKeyStore {
    fn put(&self, user: &str, key: &api::EvaluationKey) -> anyhow::Result<()> {
        let meta = key
            .metadata
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("key without metadata"))?;
        let u = user_dir_name(user);
        let id = hex::encode(&meta.identifier);
        let p = &self.prefix;
        let expiry = if self.ttl_secs > 0 {
            now_secs().saturating_add(self.ttl_secs)
        } else {
            NEVER
        };
        let evicted: i64 = self.with_conn(|c| {
            self.put
                .key(self.value_key(&u, &meta.identifier))
                .key(format!("{p}:keys:{u}"))
                .key(format!("{p}:meta:{u}"))
                .key(format!("{p}:all"))
                .key(format!("{p}:seq"))
                .arg(key.encode_to_vec())
                .arg(&id)
                .arg(meta.timestamp)
                .arg(self.max_per_user)
                .arg(self.ttl_secs)
                .arg(format!("{p}:key:{u}:"))
                .arg(format!("{u}:"))
                .arg(expiry)
                .invoke(c)
        })?;
        if evicted > 0 {
            tracing::debug!(evicted, "evicted a user's oldest evaluation keys");
        }
        Ok(())
    }

    fn get(&self, user: &str, identifier: &[u8]) -> anyhow::Result<Option<api::EvaluationKey>> {
        let k = self.value_key(&user_dir_name(user), identifier);
        let bytes: Option<Vec<u8>> = self.with_conn(|c| redis::cmd("GET").arg(&k).query(c))?;
        bytes
            .map(|b| api::EvaluationKey::decode(b.as_slice()).context("stored key is corrupt"))
            .transpose()
    }

    fn timestamp(&self, user: &str, identifier: &[u8]) -> anyhow::Result<Option<u64>> {
        let u = user_dir_name(user);
        let k = self.value_key(&u, identifier);
        let (exists, ts): (bool, Option<u64>) = self.with_conn(|c| {
            redis::pipe()
                .cmd("EXISTS")
                .arg(&k)
                .cmd("HGET")
                .arg(format!("{}:meta:{u}", self.prefix))
                .arg(hex::encode(identifier))
                .query(c)
        })?;
        // The value may have expired while the metadata (refreshed by later uploads) lives on.
        Ok(if exists { Some(ts.unwrap_or(0)) } else { None })
    }

    fn len(&self) -> usize {
        let all = format!("{}:all", self.prefix);
        match self.with_conn(|c| self.count.key(&all).arg(now_secs()).invoke::<u64>(c)) {
            Ok(n) => usize::try_from(n).unwrap_or(usize::MAX),
            Err(e) => {
                tracing::warn!("counting stored keys: {e:#}");
                0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{KeyStoreConfig, ServerConfig};

    #[test]
    fn config_selects_redis() {
        let cfg: ServerConfig = toml::from_str(
            r#"
            state_dir = "/x"
            [key_store]
            kind = "redis"
            url = "redis://127.0.0.1:6379/0"
            ttl_secs = 86400
            max_per_user = 3
            "#,
        )
        .unwrap();
        let KeyStoreConfig::Redis(r) = cfg.key_store else {
            panic!("redis store expected, got {:?}", cfg.key_store)
        };
        assert_eq!(r.url, "redis://127.0.0.1:6379/0");
        assert_eq!((r.ttl_secs, r.max_per_user), (86400, Some(3)));
        assert_eq!(
            (r.timeout_ms, r.pool_size, r.prefix.as_str()),
            (2000, 16, "sift")
        );
        let cfg: ServerConfig = toml::from_str("state_dir = \"/x\"").unwrap();
        assert!(matches!(cfg.key_store, KeyStoreConfig::File));
        assert!(
            toml::from_str::<ServerConfig>(
                "state_dir = \"/x\"\n[key_store]\nkind = \"redis\"\nurl = \"redis://h\"\nttl = 1"
            )
            .is_err(),
            "unknown fields are rejected"
        );
        assert!(
            toml::from_str::<ServerConfig>("state_dir = \"/x\"\n[key_store]\nkind = \"memcache\"")
                .is_err()
        );
    }

    #[test]
    fn unreachable_redis_is_an_error_not_a_hang() {
        let cfg = RedisKeyStoreConfig {
            // Port 1 on loopback: connection refused at once.
            url: "redis://127.0.0.1:1/".into(),
            ttl_secs: 0,
            max_per_user: None,
            timeout_ms: 500,
            pool_size: 2,
            prefix: "sift".into(),
        };
        let err = RedisKeyStore::open(&cfg, 4).err().expect("must fail");
        assert!(format!("{err:#}").contains("127.0.0.1:1"), "{err:#}");
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("redis://u:secret@h:1/0"), "redis://***@h:1/0");
        assert_eq!(redact("redis://h:1/0"), "redis://h:1/0");
    }
}
