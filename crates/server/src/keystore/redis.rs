//! Evaluation keys in Redis, shared by several replicas of the service: a device may upload its
//! key through one replica and query through another.
//!
//! Layout (all under a configurable prefix, `sift` by default; `<u>` = hex SHA-256 of the user):
//! - `sift:key:<u>:<hex id>`: the serialized `EvaluationKey` (expires after `ttl_secs`);
//! - `sift:keys:<u>`: sorted set of the user's key ids by upload order (the per-user bound evicts
//!   the lowest);
//! - `sift:meta:<u>`: hash id → metadata timestamp (for `/config` without fetching megabytes);
//! - `sift:all`: sorted set `<u>:<hex id>` → expiry time, to count live keys for metrics;
//! - `sift:sizes`: hash `<u>:<hex id>` → serialized bytes; `sift:bytes`: their total;
//! - `sift:lru`: sorted set `<u>:<hex id>` → last use, for the total byte budget;
//! - `sift:seq`: counter that orders uploads and uses across replicas.
//!
//! A key's last use is its upload or its last read, so the per-user bounds (`max_per_user`,
//! `limits.max_key_bytes_per_user`) and the total one (`limits.max_key_bytes_total`) evict the
//! least recently used keys, across replicas.
//!
//! Uploads run as one Lua script, so replicas racing on one user cannot exceed the bound. The
//! key names are computed inside the script, so Redis Cluster is not supported (one primary,
//! optionally with replicas/Sentinel in front, is the intended deployment).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use prost::Message;
use sift_proto::api;

use crate::config::RedisKeyStoreConfig;
use crate::keystore::{KeyStore, user_dir_name};

/// Stores a key as the user's most recently used, then evicts least recently used keys until
/// the user's count and bytes and the total bytes fit; returns how many were evicted.
///
/// KEYS: value, `keys:<u>` (id → last use), `meta:<u>`, `all`, `seq`, `sizes` (`<u>:<id>` →
/// bytes), `lru` (`<u>:<id>` → last use), `bytes` (total). ARGV: value, id, timestamp,
/// max keys per user, ttl, (unused), `<u>:`, expiry, max bytes per user, max bytes in total,
/// prefix, `<u>`, now.
const PUT_SCRIPT: &str = r#"
local p, u, id = ARGV[11], ARGV[12], ARGV[2]
local function drop(vu, vid)
  local m = vu .. ':' .. vid
  local sz = tonumber(redis.call('HGET', KEYS[6], m) or '0')
  redis.call('DEL', p .. ':key:' .. m)
  redis.call('HDEL', p .. ':meta:' .. vu, vid)
  redis.call('ZREM', p .. ':keys:' .. vu, vid)
  redis.call('HDEL', KEYS[6], m)
  redis.call('ZREM', KEYS[4], m)
  redis.call('ZREM', KEYS[7], m)
  redis.call('DECRBY', KEYS[8], sz)
end
-- Forget (a bounded number of) keys whose TTL ran out, so their bytes stop counting.
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', ARGV[13], 'LIMIT', 0, 100)) do
  local vu, vid = string.match(m, '^(%x+):(%x+)$')
  if vu then drop(vu, vid) else redis.call('ZREM', KEYS[4], m) end
end
local seq = redis.call('INCR', KEYS[5])
local ttl = tonumber(ARGV[5])
local me = u .. ':' .. id
local size = string.len(ARGV[1])
local old = tonumber(redis.call('HGET', KEYS[6], me) or '0')
if ttl > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ttl)
else
  redis.call('SET', KEYS[1], ARGV[1])
end
redis.call('ZADD', KEYS[2], seq, id)
redis.call('HSET', KEYS[3], id, ARGV[3])
redis.call('ZADD', KEYS[4], ARGV[8], me)
redis.call('HSET', KEYS[6], me, size)
redis.call('ZADD', KEYS[7], seq, me)
redis.call('INCRBY', KEYS[8], size - old)
local function user_bytes()
  local t = 0
  for _, k in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
    t = t + tonumber(redis.call('HGET', KEYS[6], u .. ':' .. k) or '0')
  end
  return t
end
local max, max_user, max_total = tonumber(ARGV[4]), tonumber(ARGV[9]), tonumber(ARGV[10])
local evicted = 0
while redis.call('ZCARD', KEYS[2]) > max or user_bytes() > max_user do
  local lru = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
  if lru == nil or lru == id then break end
  drop(u, lru)
  evicted = evicted + 1
end
while tonumber(redis.call('GET', KEYS[8]) or '0') > max_total do
  local m = redis.call('ZRANGE', KEYS[7], 0, 0)[1]
  if m == nil or m == me then break end
  local vu, vid = string.match(m, '^(%x+):(%x+)$')
  if vu then drop(vu, vid) else redis.call('ZREM', KEYS[7], m) end
  evicted = evicted + 1
end
if ttl > 0 then
  redis.call('EXPIRE', KEYS[2], ttl)
  redis.call('EXPIRE', KEYS[3], ttl)
end
return evicted
"#;

/// Reads a key and marks it most recently used. KEYS: value, `seq`, `keys:<u>`, `lru`;
/// ARGV: id, `<u>:<id>`.
const GET_SCRIPT: &str = r#"
local v = redis.call('GET', KEYS[1])
if v then
  local seq = redis.call('INCR', KEYS[2])
  redis.call('ZADD', KEYS[3], 'XX', seq, ARGV[1])
  redis.call('ZADD', KEYS[4], 'XX', seq, ARGV[2])
end
return v
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
    max_per_user: AtomicUsize,
    /// `max_per_user` comes from `[key_store]`, not `[limits]` (a reload leaves it).
    fixed_per_user: bool,
    max_bytes_per_user: AtomicU64,
    max_bytes_total: AtomicU64,
    ttl_secs: u64,
    put: redis::Script,
    get: redis::Script,
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
            max_per_user: AtomicUsize::new(max_per_user),
            fixed_per_user: cfg.max_per_user.is_some(),
            max_bytes_per_user: AtomicU64::new(u64::MAX),
            max_bytes_total: AtomicU64::new(u64::MAX),
            ttl_secs: cfg.ttl_secs,
            put: redis::Script::new(PUT_SCRIPT),
            get: redis::Script::new(GET_SCRIPT),
            count: redis::Script::new(COUNT_SCRIPT),
        };
        store
            .with_conn(|c| redis::cmd("PING").query::<String>(c))
            .with_context(|| format!("connecting to {}", redact(&cfg.url)))?;
        Ok(store)
    }

    /// Applies byte budgets (`limits.max_key_bytes_per_user`, `max_key_bytes_total`) from the
    /// next upload on.
    pub fn with_byte_budget(self, per_user: u64, total: u64) -> Self {
        self.max_bytes_per_user.store(per_user, Ordering::Relaxed);
        self.max_bytes_total.store(total, Ordering::Relaxed);
        self
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

    /// `key` under this store's prefix.
    pub(crate) fn prefixed(&self, key: &str) -> String {
        format!("{}:{key}", self.prefix)
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
        let bytes = key.encode_to_vec();
        let (per_user, total) = (
            self.max_bytes_per_user.load(Ordering::Relaxed),
            self.max_bytes_total.load(Ordering::Relaxed),
        );
        anyhow::ensure!(
            bytes.len() as u64 <= per_user.min(total),
            "the key has {} bytes, more than limits.max_key_bytes_per_user ({per_user}) or \
             limits.max_key_bytes_total ({total})",
            bytes.len()
        );
        let evicted: i64 = self.with_conn(|c| {
            self.put
                .key(self.value_key(&u, &meta.identifier))
                .key(format!("{p}:keys:{u}"))
                .key(format!("{p}:meta:{u}"))
                .key(format!("{p}:all"))
                .key(format!("{p}:seq"))
                .key(format!("{p}:sizes"))
                .key(format!("{p}:lru"))
                .key(format!("{p}:bytes"))
                .arg(&bytes)
                .arg(&id)
                .arg(meta.timestamp)
                .arg(self.max_per_user.load(Ordering::Relaxed))
                .arg(self.ttl_secs)
                .arg("")
                .arg(format!("{u}:"))
                .arg(expiry)
                .arg(per_user)
                .arg(total)
                .arg(p)
                .arg(&u)
                .arg(now_secs())
                .invoke(c)
        })?;
        if evicted > 0 {
            tracing::debug!(evicted, "evicted a user's oldest evaluation keys");
        }
        Ok(())
    }

    fn get(&self, user: &str, identifier: &[u8]) -> anyhow::Result<Option<api::EvaluationKey>> {
        let u = user_dir_name(user);
        let id = hex::encode(identifier);
        let p = &self.prefix;
        let bytes: Option<Vec<u8>> = self.with_conn(|c| {
            self.get
                .key(self.value_key(&u, identifier))
                .key(format!("{p}:seq"))
                .key(format!("{p}:keys:{u}"))
                .key(format!("{p}:lru"))
                .arg(&id)
                .arg(format!("{u}:{id}"))
                .invoke(c)
        })?;
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

    fn stored_bytes(&self) -> Option<u64> {
        let k = format!("{}:bytes", self.prefix);
        self.with_conn(|c| redis::cmd("GET").arg(&k).query::<Option<i64>>(c))
            .ok()
            .flatten()
            .map(|b| b.max(0) as u64)
    }

    fn set_budget(&self, b: crate::keystore::Budget) {
        if !self.fixed_per_user {
            self.max_per_user
                .store(b.max_keys_per_user.max(1), Ordering::Relaxed);
        }
        self.max_bytes_per_user
            .store(b.max_bytes_per_user, Ordering::Relaxed);
        self.max_bytes_total
            .store(b.max_bytes_total, Ordering::Relaxed);
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
