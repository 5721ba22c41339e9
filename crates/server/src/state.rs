//! The service's shared state: use cases with their live dataset versions, the key store, the
//! token authority and metrics. Reload swaps in a new version atomically (in-flight queries keep
//! the `Arc` of the version they started with) and keeps the last `versions_kept` versions, so
//! devices holding an older config id keep getting answers until it is retired (then 410).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use prost::Message;
use sha2::{Digest, Sha256};
use sift_pir::server::KeywordPirServer;
use sift_proto::{api, he, pir as pp};

use crate::auth::TokenAuthority;
use crate::config::{Limits, ServerConfig, UseCaseConfig};
use crate::keystore::KeyStore;
use crate::metrics::Metrics;

/// One loaded dataset version of a use case.
pub struct Version {
    /// `Config.config_id` = SHA-256 of the serialized `PIRConfig`.
    pub config_id: Vec<u8>,
    /// What `/config` returns.
    pub pir_config: api::PirConfig,
    /// The evaluation-key configuration (union over shards, Galois elements sorted).
    pub key_config: he::EvaluationKeyConfig,
    /// SHA-256 of the serialized key configuration: the identifier devices store keys under.
    pub key_config_id: Vec<u8>,
    /// The PIR evaluator.
    pub server: Arc<KeywordPirServer>,
    /// The OPRF key of a symmetric-PIR dataset (its public key is the one the shards publish);
    /// `None` for an ordinary keyword-PIR dataset.
    pub oprf_key: Option<sift_spir::OprfPrivateKey>,
    /// The dataset version id from its manifest; `None` for a legacy flat folder.
    pub dataset_version: Option<String>,
    /// The Bloom prefilter built with this dataset (`None` when the dataset has none); loaded
    /// and swapped together with the shards so `/prefilter` and `/queries` agree.
    pub prefilter: Option<Arc<crate::prefilter::PrefilterAsset>>,
    /// Modification signature of the dataset files (to notice changes).
    signature: String,
    /// Per shard, the mapped file it answers from (for [`Version::verified_files`]).
    mapped_files: Vec<Option<sift_dataset::FileIdentity>>,
}

impl Version {
    /// The mapped shard files this version has verified: a later version that shares them
    /// (hard links of an update or a `--from` build) need not hash them again.
    fn verified_files(&self) -> std::collections::HashSet<sift_dataset::FileIdentity> {
        self.server
            .shards()
            .iter()
            .zip(&self.mapped_files)
            .filter(|(s, _)| s.is_verified())
            .filter_map(|(_, f)| f.clone())
            .collect()
    }
}

/// A use case and its versions, newest last.
pub struct UseCase {
    /// Static configuration.
    pub config: UseCaseConfig,
    /// Live versions, oldest first; the last one is current.
    pub versions: Vec<Arc<Version>>,
}

impl UseCase {
    /// The version currently served to new clients.
    pub fn current(&self) -> &Arc<Version> {
        self.versions
            .last()
            .expect("a use case always has a version")
    }

    /// The kept version whose config id is `id`.
    pub fn by_config_id(&self, id: &[u8]) -> Option<&Arc<Version>> {
        self.versions.iter().rev().find(|v| v.config_id == id)
    }
}

/// Deserialized evaluation keys, bounded by bytes; keyed by (user, key id, config id and stored
/// timestamp).
type KeyCache =
    Mutex<crate::keystore::ByteLru<(String, Vec<u8>, Vec<u8>), Arc<sift_he::EvaluationKey>>>;

/// Everything the handlers share.
pub struct AppState {
    /// The configuration the server started with.
    pub config: ServerConfig,
    usecases: ArcSwap<BTreeMap<String, Arc<UseCase>>>,
    /// Evaluation-key storage.
    pub keys: Arc<dyn KeyStore>,
    /// Privacy Pass (or test) token checks.
    pub auth: Arc<dyn TokenAuthority>,
    /// Durable replay records (spent tokens, OHTTP requests), in the key store's backend.
    pub spent: Arc<dyn crate::spent::SpentStore>,
    /// The Privacy Pass issuer, when the config lists users.
    pub issuers: Option<Arc<crate::issuer::IssuerSet>>,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    /// Deserialized keys in memory.
    pub key_cache: KeyCache,
    /// Reload counters, the serving certificate, process metrics.
    pub ops: crate::ops::Operations,
    /// PIR requests per `User-Identifier` (`limits.queries_per_minute`), as last configured.
    query_limit: arc_swap::ArcSwapOption<crate::ratelimit::RateLimiter>,
    /// The rate-limit counts replicas share (Redis key store only).
    shared_limits: Option<Arc<dyn crate::ratelimit::SharedCounter>>,
    /// `[limits]` as last configured (the start config's, until a reload changes them).
    limits: ArcSwap<Limits>,
    /// `[log] access` as last configured.
    access_log: std::sync::atomic::AtomicBool,
    reload_lock: Mutex<()>,
    /// Per use case, the signature of a dataset that failed to load: not re-read until it
    /// changes (a refused version is immutable, so polling it again would only repeat the
    /// full read and the same error).
    refused: Mutex<HashMap<String, String>>,
}

impl AppState {
    /// Loads every use case's dataset, the issuer keys and the key store. Without an explicit
    /// `auth`, PIR routes require Privacy Pass tokens of our issuer when `require_tokens` is set
    /// (the config must then list users) and accept everything otherwise.
    pub fn load(
        config: ServerConfig,
        auth: Option<Arc<dyn TokenAuthority>>,
    ) -> anyhow::Result<Self> {
        let shared_limits =
            crate::ratelimit::shared_counter(&config).context("opening the shared rate limits")?;
        let issuers = if config.users.is_empty() {
            None
        } else {
            Some(Arc::new(
                crate::issuer::IssuerSet::load(
                    &config.state_dir.join("issuer"),
                    &config.users,
                    &config.issuer,
                )?
                .with_issue_limit(crate::ratelimit::limiter(
                    "issue",
                    config.limits.issue_per_minute,
                    config.limits.issue_burst,
                    shared_limits.as_ref(),
                )),
            ))
        };
        let spent = crate::spent::open(&config).context("opening the replay store")?;
        let auth: Arc<dyn TokenAuthority> = match (auth, &issuers) {
            (Some(a), _) => a,
            (None, Some(i)) if config.require_tokens => {
                Arc::new(crate::issuer::PrivacyPassAuthority::new(i, spent.clone())?)
            }
            (None, None) if config.require_tokens => {
                anyhow::bail!(
                    "require_tokens is set but no [[users]] are configured to obtain tokens"
                )
            }
            (None, _) => Arc::new(crate::auth::AllowAll),
        };
        let mut map = BTreeMap::new();
        for uc in &config.usecases {
            let v = load_version(uc, false).with_context(|| format!("use case {}", uc.name))?;
            tracing::info!(usecase = %uc.name, config_id = %hex::encode(&v.config_id), "loaded dataset");
            map.insert(
                uc.name.clone(),
                Arc::new(UseCase {
                    config: uc.clone(),
                    versions: vec![Arc::new(v)],
                }),
            );
        }
        let keys = crate::keystore::open(&config)?;
        let key_cache = crate::keystore::ByteLru::new(
            config.limits.key_cache_bytes,
            config.limits.key_cache_entries,
        );
        let query_limit = crate::ratelimit::limiter(
            "queries",
            config.limits.queries_per_minute,
            config.limits.queries_burst,
            shared_limits.as_ref(),
        );
        Ok(Self {
            limits: ArcSwap::from_pointee(config.limits.clone()),
            access_log: std::sync::atomic::AtomicBool::new(config.log.access),
            config,
            usecases: ArcSwap::from_pointee(map),
            keys,
            auth,
            spent,
            issuers,
            metrics: Metrics::default(),
            key_cache: Mutex::new(key_cache),
            ops: crate::ops::Operations::default(),
            query_limit: arc_swap::ArcSwapOption::new(query_limit.map(Arc::new)),
            shared_limits,
            reload_lock: Mutex::new(()),
            refused: Mutex::new(HashMap::new()),
        })
    }

    /// `[limits]` as they apply now (a reload may have changed them since the start).
    pub fn limits(&self) -> Arc<Limits> {
        self.limits.load_full()
    }

    /// The per-`User-Identifier` query rate limiter, when `limits.queries_per_minute` is set.
    pub fn query_limit(&self) -> Option<Arc<crate::ratelimit::RateLimiter>> {
        self.query_limit.load_full()
    }

    /// Whether each request is logged (`[log] access`).
    pub fn access_log(&self) -> bool {
        self.access_log.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A snapshot of the use cases (cheap; stays valid during a reload).
    pub fn usecases(&self) -> Arc<BTreeMap<String, Arc<UseCase>>> {
        self.usecases.load_full()
    }

    /// Applies an edited config file (SIGHUP): new user tokens, use cases added, removed or
    /// changed, `[limits]` and `[log]`. Everything is checked first; on any error nothing
    /// changes and the old configuration keeps serving. Returns what changed, for the log.
    /// Listener settings (`listen`, `[tls]` paths, `[metrics] listen`), `[ohttp]`,
    /// `[key_store]`, `[prefilter]` and the limits fixed into the key store, the issuer and the
    /// gateway at start need a restart; a difference there is reported in the returned notes
    /// as "needs a restart to take effect". Open connections are kept either way.
    pub fn apply_config(&self, new: &ServerConfig) -> anyhow::Result<Vec<String>> {
        let _guard = self.reload_lock.lock().unwrap_or_else(|p| p.into_inner());
        new.validate()?;
        let mut notes = Vec::new();
        let old = self.usecases.load_full();
        let mut next = BTreeMap::new();
        for uc in &new.usecases {
            match old.get(&uc.name) {
                Some(cur) if cur.config == *uc => {
                    next.insert(uc.name.clone(), cur.clone());
                }
                Some(cur) => {
                    let v =
                        load_version(uc, true).with_context(|| format!("use case {}", uc.name))?;
                    let mut versions = cur.versions.clone();
                    versions.push(Arc::new(v));
                    let keep = uc.versions_kept.max(1);
                    if versions.len() > keep {
                        versions.drain(..versions.len() - keep);
                    }
                    notes.push(format!("use case {} reconfigured", uc.name));
                    next.insert(
                        uc.name.clone(),
                        Arc::new(UseCase {
                            config: uc.clone(),
                            versions,
                        }),
                    );
                }
                None => {
                    let v =
                        load_version(uc, false).with_context(|| format!("use case {}", uc.name))?;
                    notes.push(format!("use case {} added", uc.name));
                    next.insert(
                        uc.name.clone(),
                        Arc::new(UseCase {
                            config: uc.clone(),
                            versions: vec![Arc::new(v)],
                        }),
                    );
                }
            }
        }
        for name in old.keys().filter(|n| !next.contains_key(*n)) {
            notes.push(format!("use case {name} removed"));
        }
        let restart = |what: &str, differs: bool, notes: &mut Vec<String>| {
            if differs {
                notes.push(format!("{what} changed: needs a restart to take effect"));
            }
        };
        restart("listen", new.listen != self.config.listen, &mut notes);
        restart(
            "[tls] paths",
            new.tls.as_ref().map(|t| (&t.cert, &t.key))
                != self.config.tls.as_ref().map(|t| (&t.cert, &t.key)),
            &mut notes,
        );
        let (old_limits, new_limits) = (&self.config.limits, &new.limits);
        restart(
            "limits.max_body_bytes for the OHTTP gateway's encapsulated requests",
            new.ohttp.enabled && old_limits.max_body_bytes != new_limits.max_body_bytes,
            &mut notes,
        );
        restart(
            "[metrics] listen",
            new.metrics != self.config.metrics,
            &mut notes,
        );
        restart(
            "[key_store]",
            format!("{:?}", new.key_store) != format!("{:?}", self.config.key_store),
            &mut notes,
        );
        restart(
            "[prefilter]",
            format!("{:?}", new.prefilter) != format!("{:?}", self.config.prefilter),
            &mut notes,
        );
        restart("[issuer]", new.issuer != self.config.issuer, &mut notes);
        restart(
            "[ohttp]",
            format!("{:?}", new.ohttp) != format!("{:?}", self.config.ohttp),
            &mut notes,
        );
        // Last: the only step left that can fail checks before it changes anything.
        match (&self.issuers, new.users.is_empty()) {
            (Some(i), _) => {
                i.replace_users(&new.users)?;
                notes.push(format!(
                    "user tokens: {}",
                    new.users.iter().map(|t| t.tokens.len()).sum::<usize>()
                ));
            }
            (None, false) => anyhow::bail!(
                "[[users]] were added to a server started without them: restart to start the issuer"
            ),
            (None, true) => {}
        }
        self.usecases.store(Arc::new(next));
        let current = self.limits();
        if *current != new.limits {
            if crate::keystore::budget(&current) != crate::keystore::budget(&new.limits) {
                self.keys.set_budget(crate::keystore::budget(&new.limits));
                notes.push(
                    "key store budgets (max_keys_per_user, max_users, max_key_bytes_*) applied \
                     from the next upload"
                        .to_owned(),
                );
            }
            if (current.key_cache_bytes, current.key_cache_entries)
                != (new.limits.key_cache_bytes, new.limits.key_cache_entries)
            {
                // Cached keys are re-read from the store on their next use.
                *self.key_cache.lock().unwrap_or_else(|p| p.into_inner()) =
                    crate::keystore::ByteLru::new(
                        new.limits.key_cache_bytes,
                        new.limits.key_cache_entries,
                    );
            }
            if let Some(i) = &self.issuers
                && (current.issue_per_minute, current.issue_burst)
                    != (new.limits.issue_per_minute, new.limits.issue_burst)
            {
                i.set_issue_limit(crate::ratelimit::limiter(
                    "issue",
                    new.limits.issue_per_minute,
                    new.limits.issue_burst,
                    self.shared_limits.as_ref(),
                ));
            }
            if (current.queries_per_minute, current.queries_burst)
                != (new.limits.queries_per_minute, new.limits.queries_burst)
            {
                self.query_limit.store(
                    crate::ratelimit::limiter(
                        "queries",
                        new.limits.queries_per_minute,
                        new.limits.queries_burst,
                        self.shared_limits.as_ref(),
                    )
                    .map(Arc::new),
                );
            }
            self.limits.store(Arc::new(new.limits.clone()));
            notes.push("[limits] applied (connection limits from the next connection)".to_owned());
        }
        if self.access_log() != new.log.access {
            self.access_log
                .store(new.log.access, std::sync::atomic::Ordering::Relaxed);
            notes.push(format!(
                "access log {}",
                if new.log.access { "on" } else { "off" }
            ));
        }
        Ok(notes)
    }

    /// Reloads datasets whose files changed; returns the names of use cases that got a new
    /// version. A dataset that fails to load leaves the old versions serving (and is reported).
    pub fn reload(&self) -> Vec<String> {
        let _guard = self.reload_lock.lock().unwrap_or_else(|p| p.into_inner());
        let old = self.usecases.load_full();
        let mut next = (*old).clone();
        let mut changed = Vec::new();
        let mut refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        for (name, uc) in old.iter() {
            let sig = match version_signature(&uc.config) {
                Ok(sig) if sig == uc.current().signature => continue,
                Ok(sig) if refused.get(name) == Some(&sig) => continue,
                Ok(sig) => sig,
                Err(e) => {
                    tracing::warn!(usecase = %name, "dataset unreadable, keeping current version: {e:#}");
                    continue;
                }
            };
            let v = match load_version_trusting(&uc.config, true, &uc.current().verified_files()) {
                Ok(v) => Arc::new(v),
                Err(e) => {
                    tracing::error!(
                        usecase = %name,
                        dataset = %uc.config.dataset_dir.display(),
                        "refused the new dataset, still serving the current version: {e:#}"
                    );
                    self.ops.count_reload(crate::ops::ReloadOutcome::Failed);
                    refused.insert(name.clone(), sig);
                    continue;
                }
            };
            refused.remove(name);
            let mut versions = uc.versions.clone();
            if v.config_id == uc.current().config_id {
                // Same shape (config id covers parameters, not data): queries built for the
                // current config are valid against the new data, so replace it in place.
                *versions
                    .last_mut()
                    .expect("a use case always has a version") = v;
                tracing::info!(usecase = %name, "dataset updated in place (same configuration)");
            } else {
                versions.push(v);
                let keep = uc.config.versions_kept.max(1);
                if versions.len() > keep {
                    versions.drain(..versions.len() - keep);
                }
                tracing::info!(usecase = %name, versions = versions.len(), "new dataset version");
            }
            next.insert(
                name.clone(),
                Arc::new(UseCase {
                    config: uc.config.clone(),
                    versions,
                }),
            );
            changed.push(name.clone());
        }
        if !changed.is_empty() {
            self.usecases.store(Arc::new(next));
        }
        changed
    }
}

/// Loads `uc`'s dataset as the server would, without serving it, and describes it (for
/// `sift serve --check-config`).
pub fn check_usecase(uc: &UseCaseConfig) -> anyhow::Result<String> {
    let v = load_version(uc, true)?;
    let prefilter = match &v.prefilter {
        Some(p) => format!(
            "prefilter {} keys, tag {}…",
            p.meta.item_count,
            &p.meta.tag[..p.meta.tag.len().min(12)]
        ),
        None => "no prefilter (GET /prefilter answers 404)".to_owned(),
    };
    Ok(format!(
        "{} shard(s) in {}, config id {}…, {prefilter}",
        v.server.shards().len(),
        uc.dataset_dir.display(),
        hex::encode(&v.config_id[..6])
    ))
}

/// What the dataset folder would load now (the current version's id, or a legacy flat
/// folder's file times) plus [`companion_signature`], so that replacing any of them reloads.
fn version_signature(uc: &UseCaseConfig) -> anyhow::Result<String> {
    let mut sig = sift_dataset::signature(&uc.dataset_dir, &uc.stem)?;
    sig.push_str(&companion_signature(uc)?);
    Ok(sig)
}

/// The signatures of the files a use case loads beside its dataset version: the OPRF key file
/// (symmetric PIR) and the prefilter. The poll's [`version_signature`] and a loaded
/// [`Version`]'s signature both end with it, so an unchanged use case is never reloaded.
fn companion_signature(uc: &UseCaseConfig) -> anyhow::Result<String> {
    let mut sig = String::new();
    if let Some(sp) = &uc.symmetric_pir {
        sig.push_str(&sift_dataset::load::file_signature(
            &sp.database_encryption_key_file,
        )?);
    }
    for f in crate::prefilter::PrefilterAsset::files(uc) {
        sig.push_str(&sift_dataset::load::file_signature(&f)?);
    }
    Ok(sig)
}

/// The use case's OPRF key for symmetric PIR: read from the configured key file and checked
/// against the `SymmetricPirClientConfig` every shard publishes. A symmetric dataset without a
/// key, a key without a symmetric dataset, or a key that does not match are load errors.
fn load_oprf_key(
    uc: &UseCaseConfig,
    server: &KeywordPirServer,
) -> anyhow::Result<Option<sift_spir::OprfPrivateKey>> {
    let mut published = None;
    for (i, s) in server.shards().iter().enumerate() {
        let c = sift_pir::wire::symmetric_pir_client_config(&s.proto)
            .with_context(|| format!("shard {i}"))?;
        if i == 0 {
            published = c;
        } else {
            anyhow::ensure!(
                c == published,
                "shard {i} disagrees with shard 0 on the symmetric PIR config"
            );
        }
    }
    match (&uc.symmetric_pir, published) {
        (None, None) => Ok(None),
        (Some(sp), Some(c)) => {
            let key = sift_spir::read_key_file(&sp.database_encryption_key_file)?;
            anyhow::ensure!(
                key.public_key()[..] == c.server_public_key[..],
                "{} is not the key the dataset was processed with (its public key differs from \
                 the shards' symmetric_pir_client_config)",
                sp.database_encryption_key_file.display()
            );
            Ok(Some(key))
        }
        (None, Some(_)) => anyhow::bail!(
            "the dataset is processed for symmetric PIR: set [usecases.symmetric_pir] \
             database_encryption_key_file to its key"
        ),
        (Some(_), None) => anyhow::bail!(
            "[usecases.symmetric_pir] is set but the dataset's parameters carry no \
             symmetric_pir_client_config (build it with symmetricPirArguments)"
        ),
    }
}

/// Loads `uc`'s current dataset version. Mapped shards are verified (read whole and
/// checksummed) before this returns when `replacing` a version that keeps serving meanwhile
/// (a reload: a corrupt new version is then refused as a whole) or with `warm_up`; otherwise
/// (startup) in the background, each at the latest before its first answer.
fn load_version(uc: &UseCaseConfig, replacing: bool) -> anyhow::Result<Version> {
    load_version_trusting(uc, replacing, &Default::default())
}

/// [`load_version`], taking the mapped files in `trusted` as verified (see
/// [`sift_dataset::load_trusting`]).
fn load_version_trusting(
    uc: &UseCaseConfig,
    replacing: bool,
    trusted: &std::collections::HashSet<sift_dataset::FileIdentity>,
) -> anyhow::Result<Version> {
    let loaded = sift_dataset::load_trusting(&uc.dataset_dir, &uc.stem, trusted)?;
    // The signature of what was actually loaded (a switch between the two reads is noticed
    // at the next poll).
    let signature = loaded.signature.clone() + &companion_signature(uc)?;
    let server = Arc::new(loaded.server);
    if uc.warm_up || replacing {
        server
            .verify_all()
            .map_err(|e| anyhow::anyhow!("verifying {}: {e}", loaded.dir.display()))?;
    } else if server.shards().iter().any(|s| s.is_mapped()) {
        // Full verification off the serving path; a shard that fails it refuses queries.
        let (bg, dir) = (server.clone(), loaded.dir.clone());
        std::thread::Builder::new()
            .name("verify-dataset".into())
            .spawn(move || {
                if let Err(e) = bg.verify_all() {
                    tracing::error!(
                        "dataset {}: {e}; publish a good version (`sift build`) or run \
                         `sift dataset verify`",
                        dir.display()
                    );
                }
            })
            .context("starting the dataset verification thread")?;
    }
    let oprf_key = load_oprf_key(uc, &server)?;
    let prefilter = crate::prefilter::PrefilterAsset::load(uc)?.map(Arc::new);
    let (pir_config, key_config) = pir_config(&server)?;
    let key_config_id = Sha256::digest(key_config.encode_to_vec()).to_vec();
    let config_id = Sha256::digest(pir_config.encode_to_vec()).to_vec();
    Ok(Version {
        config_id,
        pir_config,
        key_config,
        key_config_id,
        server,
        oprf_key,
        prefilter,
        signature,
        dataset_version: loaded.manifest.map(|m| m.id),
        mapped_files: loaded.mapped_files,
    })
}

/// Builds Apple's `PIRConfig` and the key configuration for a loaded dataset
/// (pir-service-example `PirUsecase`): one shard config per shard, or a repeated shard config
/// when there are several identical shards.
pub fn pir_config(
    server: &KeywordPirServer,
) -> anyhow::Result<(api::PirConfig, he::EvaluationKeyConfig)> {
    let shards = server.shards();
    let first = shards
        .first()
        .ok_or_else(|| anyhow::anyhow!("dataset has no shards"))?;
    let key_config = sift_pir::params::EvaluationKeyConfig::union(
        shards.iter().map(|s| &s.params.index.evaluation_key_config),
    );
    let key_config =
        sift_pir::wire::evaluation_key_config_to_proto(&key_config, &server.context().params);
    let shard_config = |p: &pp::PirParameters| api::PirShardConfig {
        num_entries: p.num_entries,
        entry_size: p.entry_size,
        dimensions: p.dimensions.clone(),
        shard_id: Some(String::new()),
        compress_vectorized_pir_response: None,
        vectorized_pir_internal_batching_size: None,
    };
    let configs: Vec<api::PirShardConfig> = shards.iter().map(|s| shard_config(&s.proto)).collect();
    let all_equal = configs.len() > 1 && configs.iter().all(|c| *c == configs[0]);
    let mut cfg = api::PirConfig {
        encryption_parameters: first.proto.encryption_parameters.clone(),
        shard_configs: configs.clone(),
        keyword_pir_params: first.proto.keyword_pir_params.clone(),
        algorithm: pp::PirAlgorithm::MulPir as i32,
        batch_size: first.proto.batch_size,
        evaluation_key_config_hash: Sha256::digest(key_config.encode_to_vec()).to_vec(),
        pir_shard_configs: None,
        encoding_entry_size: None,
    };
    if all_equal {
        cfg.shard_configs.clear();
        cfg.pir_shard_configs = Some(api::PirShardConfigs {
            shard_configs: Some(api::pir_shard_configs::ShardConfigs::RepeatedShardConfig(
                api::PirFixedShardConfig {
                    shard_config: Some(configs[0].clone()),
                    shard_count: u32::try_from(configs.len())?,
                },
            )),
        });
    }
    Ok((cfg, key_config))
}

/// Expands a repeated shard config back into one entry per shard, for clients older than
/// iOS 18.2 / macOS 15.2 (pir-service-example `PirConfig+compatible`). Such clients only know
/// SHA-256 sharding; `Err` carries the reason otherwise.
pub fn downgrade_for_old_clients(cfg: &api::PirConfig) -> Result<api::PirConfig, String> {
    let mut out = cfg.clone();
    if let Some(api::PirShardConfigs {
        shard_configs: Some(api::pir_shard_configs::ShardConfigs::RepeatedShardConfig(r)),
    }) = out.pir_shard_configs.take()
    {
        let one = r.shard_config.unwrap_or_default();
        out.shard_configs = vec![one; r.shard_count as usize];
    }
    let sharding = out
        .keyword_pir_params
        .as_ref()
        .and_then(|k| k.sharding_function.as_ref())
        .and_then(|s| s.function.as_ref());
    if matches!(
        sharding,
        Some(pp::pir_sharding_function::Function::DoubleMod(_))
    ) {
        return Err("this client supports only SHA-256 sharding".into());
    }
    Ok(out)
}
