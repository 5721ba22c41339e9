//! Apple's `PIRProcessDatabase` JSON configuration, typed.
//!
//! Key spellings and nesting follow `Sources/PIRProcessDatabase/main.swift` and
//! `PrivateInformationRetrieval/KeywordPir/KeywordDatabase.swift` of swift-homomorphic-encryption:
//! `sharding` is `{"shardCount": N}` or `{"entryCountPerShard": M}` (exactly one key),
//! `shardingFunction` is `{"sha256": null}` or `{"doubleMod": K}` (K = the other use case's shard
//! count, a bare integer), `cuckooTableArguments.bucketCount` is
//! `{"allowExpansion": {"targetLoadFactor": f, "expansionFactor": f}}` or
//! `{"fixedSize": {"bucketCount": N}}`. Any other key is an error that names it.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use sift_pir::cuckoo::BucketCount;
use sift_pir::keyword::ShardingFunction;
use sift_pir::params::KeyCompression;
use sift_pir::server::{KeywordPirConfig, Sharding};

/// The whole `PIRProcessDatabase` JSON file. Every field is optional here because `sift build`
/// takes its inputs and outputs from the command line; Apple's tool requires `inputDatabase`,
/// `outputDatabase`, `outputPirParameters` and `rlweParameters`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProcessConfig {
    /// Path of the `KeywordDatabase` input (`.txtpb` or `.binpb`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_database: Option<String>,
    /// Output `.bin` path; must contain `SHARD_ID` when there is more than one shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_database: Option<String>,
    /// Output `PirParameters` path (`.txtpb`/`.binpb`), with `SHARD_ID` like `outputDatabase`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_pir_parameters: Option<String>,
    /// Output path of the evaluation-key configuration (union over shards).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_evaluation_key_config: Option<String>,
    /// Predefined encryption parameters, e.g. `n_4096_logq_27_28_28_logt_5`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rlwe_parameters: Option<String>,
    /// How many shards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sharding: Option<ShardingArg>,
    /// Keyword → shard function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sharding_function: Option<ShardingFunctionArg>,
    /// Cuckoo table options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cuckoo_table_arguments: Option<CuckooTableArguments>,
    /// PIR algorithm: only `mulPir`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<String>,
    /// `noCompression` | `hybridCompression` | `maxCompression`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_compression: Option<String>,
    /// Use `maxSerializedBucketSize` as the entry size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_max_serialized_bucket_size: Option<bool>,
    /// Test queries per processed shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trials_per_shard: Option<usize>,
    /// Symmetric PIR: the OPRF key used to encrypt the rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symmetric_pir_arguments: Option<SymmetricPirArguments>,
    /// Newer PIRProcessDatabase: `keyword` (the only kind `sift` processes) or `index`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_type: Option<String>,
}

/// Apple's `Sharding`: exactly one of the two keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum ShardingArg {
    /// Exactly this many shards.
    ShardCount(usize),
    /// `max(rows / M, 1)` shards.
    EntryCountPerShard(usize),
}

/// Apple's `ShardingFunction`: `{"sha256": null}` or `{"doubleMod": otherShardCount}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum ShardingFunctionArg {
    /// `LE_u64(SHA256(keyword)[0..8]) mod shardCount`. Apple writes `null` as the value and
    /// ignores it on reading; so do we.
    Sha256(#[serde(default)] serde_json::Value),
    /// `(sha256 index mod otherShardCount) mod shardCount`.
    DoubleMod(u32),
}

/// Apple's `CuckooTableArguments`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CuckooTableArguments {
    /// Hash functions (= PIR calls per query); default 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_function_count: Option<usize>,
    /// Evictions before the table grows; default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_eviction_count: Option<usize>,
    /// Largest serialized bucket in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_serialized_bucket_size: Option<usize>,
    /// Table sizing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_count: Option<TableSizeArg>,
    /// Slots per bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot_count: Option<usize>,
}

/// Apple's `TableSizeOption` (Swift's synthesized enum coding: one key, an object of the
/// associated values).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum TableSizeArg {
    /// Grow as needed.
    AllowExpansion(AllowExpansion),
    /// A fixed bucket count.
    FixedSize(FixedSize),
}

/// `allowExpansion`'s fields (defaults 0.9 and 1.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AllowExpansion {
    /// Target load factor (default 0.9).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_load_factor: Option<f64>,
    /// Growth factor (default 1.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expansion_factor: Option<f64>,
}

/// `fixedSize`'s field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FixedSize {
    /// Buckets per table.
    pub bucket_count: usize,
}

/// Apple's `SymmetricPirArguments`. Apple's current tool reads `databaseEncryptionKeyFilePath`
/// and requires `configType`; `outputDatabaseEncryptionKeyFilePath` (generate a key and write
/// it there) is from another version of the tool and is accepted too.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SymmetricPirArguments {
    /// An existing key file (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_encryption_key_file_path: Option<String>,
    /// Generate a key and write it to this file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_database_encryption_key_file_path: Option<String>,
    /// Only `OPRF_P384_AES_GCM_192_NONCE_96_TAG_128`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_type: Option<String>,
}

impl ProcessConfig {
    /// Parses the JSON text; an unknown key or a wrong type is an error naming it.
    pub fn from_json(text: &str) -> anyhow::Result<ProcessConfig> {
        let cfg: ProcessConfig = serde_json::from_str(text)
            .map_err(|e| anyhow::anyhow!("{e} (see PIRProcessDatabase's JSON keys)"))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads and parses a config file.
    pub fn read(path: &Path) -> anyhow::Result<ProcessConfig> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        ProcessConfig::from_json(&text).with_context(|| format!("in {}", path.display()))
    }

    /// Checks what serde cannot: algorithm, database type, key compression, sharding values.
    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some(a) = &self.algorithm
            && a != "mulPir"
        {
            bail!("algorithm must be \"mulPir\" (the only one Apple's clients use), found {a:?}");
        }
        if let Some(t) = &self.database_type
            && t != "keyword"
        {
            bail!("databaseType must be \"keyword\" (sift processes keyword PIR), found {t:?}");
        }
        if let Some(k) = &self.key_compression {
            parse_key_compression(k)?;
        }
        match self.sharding {
            Some(ShardingArg::ShardCount(0)) => bail!("sharding.shardCount must be at least 1"),
            Some(ShardingArg::EntryCountPerShard(0)) => {
                bail!("sharding.entryCountPerShard must be at least 1")
            }
            _ => {}
        }
        if let Some(ShardingFunctionArg::DoubleMod(0)) = self.sharding_function {
            bail!(
                "shardingFunction.doubleMod (the other use case's shard count) must be at least 1"
            );
        }
        Ok(())
    }

    /// The sharding rule, if the config gives one.
    pub fn sharding(&self) -> Option<Sharding> {
        self.sharding.map(|s| match s {
            ShardingArg::ShardCount(n) => Sharding::ShardCount(n),
            ShardingArg::EntryCountPerShard(m) => Sharding::EntryCountPerShard(m),
        })
    }

    /// Applies the processing keys (everything but sharding, which the caller decides, and
    /// paths) onto `cfg`.
    pub fn apply(&self, cfg: &mut KeywordPirConfig) -> anyhow::Result<()> {
        if let Some(s) = self.sharding() {
            cfg.sharding = s;
        }
        match &self.sharding_function {
            Some(ShardingFunctionArg::Sha256(_)) => {
                cfg.sharding_function = ShardingFunction::Sha256
            }
            Some(ShardingFunctionArg::DoubleMod(k)) => {
                cfg.sharding_function = ShardingFunction::DoubleMod {
                    other_shard_count: *k,
                }
            }
            None => {}
        }
        if let Some(c) = &self.cuckoo_table_arguments {
            if let Some(n) = c.hash_function_count {
                cfg.cuckoo.hash_function_count = n;
            }
            if let Some(n) = c.max_eviction_count {
                cfg.cuckoo.max_eviction_count = n;
            }
            if let Some(n) = c.max_serialized_bucket_size {
                cfg.cuckoo.max_serialized_bucket_size = n;
            }
            if let Some(n) = c.slot_count {
                cfg.cuckoo.slot_count = n;
            }
            match c.bucket_count {
                Some(TableSizeArg::AllowExpansion(a)) => {
                    cfg.cuckoo.bucket_count = BucketCount::AllowExpansion {
                        expansion_factor: a.expansion_factor.unwrap_or(1.1),
                        target_load_factor: a.target_load_factor.unwrap_or(0.9),
                    }
                }
                Some(TableSizeArg::FixedSize(f)) => {
                    cfg.cuckoo.bucket_count = BucketCount::FixedSize {
                        bucket_count: f.bucket_count,
                    }
                }
                None => {}
            }
        }
        if let Some(k) = &self.key_compression {
            cfg.key_compression = parse_key_compression(k)?;
        }
        if let Some(b) = self.use_max_serialized_bucket_size {
            cfg.use_max_serialized_bucket_size = b;
        }
        Ok(())
    }
}

/// What `SHARD_ID` in `outputDatabase` / `outputPirParameters` stands for.
pub const SHARD_ID: &str = "SHARD_ID";

/// Where one shard goes in Apple's layout (`outputDatabase` / `outputPirParameters`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppleOutput {
    /// The shard's `.bin`.
    pub database: PathBuf,
    /// The shard's `PirParameters`: binary when it ends in `.binpb`, else text format.
    pub parameters: PathBuf,
}

impl ProcessConfig {
    /// The input `inputDatabase` names, for a build given no input on the command line.
    pub fn input(&self) -> Option<PathBuf> {
        self.input_database.as_ref().map(PathBuf::from)
    }

    /// Whether the config asks for Apple's output files.
    pub fn has_apple_outputs(&self) -> bool {
        self.output_database.is_some() || self.output_pir_parameters.is_some()
    }

    /// Apple's output paths for `shard_count` shards (`SHARD_ID` replaced by the shard
    /// index), or None when the config names none. Refused: only one of the two keys, or
    /// several shards without `SHARD_ID` in a path (every shard would overwrite the last).
    pub fn apple_outputs(&self, shard_count: usize) -> anyhow::Result<Option<Vec<AppleOutput>>> {
        let (db, params) = match (&self.output_database, &self.output_pir_parameters) {
            (None, None) => return Ok(None),
            (Some(d), Some(p)) => (d, p),
            (Some(_), None) => bail!(
                "outputDatabase is set but outputPirParameters is not: Apple's layout needs both \
                 (e.g. \"outputPirParameters\": \"url-SHARD_ID.params.txtpb\")"
            ),
            (None, Some(_)) => bail!(
                "outputPirParameters is set but outputDatabase is not: Apple's layout needs both \
                 (e.g. \"outputDatabase\": \"url-SHARD_ID.bin\")"
            ),
        };
        if shard_count > 1 {
            for (key, path) in [("outputDatabase", db), ("outputPirParameters", params)] {
                if !path.contains(SHARD_ID) {
                    bail!(
                        "{key} {path:?} has no {SHARD_ID}, but the build has {shard_count} \
                         shards: put {SHARD_ID} in the path (replaced by each shard's index)"
                    );
                }
            }
        }
        if db == params {
            bail!("outputDatabase and outputPirParameters are the same path {db:?}");
        }
        Ok(Some(
            (0..shard_count)
                .map(|i| AppleOutput {
                    database: PathBuf::from(db.replace(SHARD_ID, &i.to_string())),
                    parameters: PathBuf::from(params.replace(SHARD_ID, &i.to_string())),
                })
                .collect(),
        ))
    }

    /// Writes the shards of the dataset version in `version_dir` (described by `manifest`) at
    /// the config's Apple paths, as PIRProcessDatabase would have written them: each shard's
    /// `.bin`, its `PirParameters` (converted to binary for a `.binpb` path) and, when
    /// `outputEvaluationKeyConfig` is set, the evaluation-key configuration. Parent folders are
    /// created. Returns the files written; nothing when the config names no Apple output.
    pub fn write_apple_outputs(
        &self,
        version_dir: &Path,
        manifest: &crate::manifest::Manifest,
    ) -> anyhow::Result<Vec<PathBuf>> {
        let Some(outputs) = self.apple_outputs(manifest.shards.len())? else {
            return Ok(Vec::new());
        };
        let mut written = Vec::new();
        let write = |path: &Path, bytes: &[u8], written: &mut Vec<PathBuf>| {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
            written.push(path.to_path_buf());
            anyhow::Ok(())
        };
        let read = |name: &str| {
            let p = version_dir.join(name);
            std::fs::read(&p).with_context(|| format!("reading {}", p.display()))
        };
        for (shard, out) in manifest.shards.iter().zip(&outputs) {
            let bin = shard.database.as_ref().with_context(|| {
                format!(
                    "version {} has no Apple .bin for {}: build it with --apple-layout (sift \
                     build sets it when the configuration names Apple outputs)",
                    manifest.id, shard.parameters
                )
            })?;
            write(&out.database, &read(bin)?, &mut written)?;
            let text = read(&shard.parameters)?;
            let params = if out.parameters.extension().is_some_and(|e| e == "binpb") {
                let proto = sift_pir::server::parse_parameters(Path::new(&shard.parameters), &text)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                prost::Message::encode_to_vec(&proto)
            } else {
                text
            };
            write(&out.parameters, &params, &mut written)?;
        }
        if let Some(path) = &self.output_evaluation_key_config {
            let name = format!("{}-evaluation-key-config.txtpb", manifest.stem);
            write(Path::new(path), &read(&name)?, &mut written)?;
        }
        Ok(written)
    }
}

/// Parses Apple's `PirKeyCompressionStrategy` names.
pub fn parse_key_compression(s: &str) -> anyhow::Result<KeyCompression> {
    Ok(match s {
        "noCompression" => KeyCompression::NoCompression,
        "hybridCompression" => KeyCompression::HybridCompression,
        "maxCompression" => KeyCompression::MaxCompression,
        _ => bail!(
            "unknown key compression {s:?}: use noCompression, hybridCompression or maxCompression"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apple_example_config_parses() {
        // The shape PIRProcessDatabase prints as its default (main.swift `defaultJsonString`).
        let c = ProcessConfig::from_json(
            r#"{
              "algorithm" : "mulPir",
              "cuckooTableArguments" : {
                "bucketCount" : { "allowExpansion" : { "expansionFactor" : 1.1, "targetLoadFactor" : 0.9 } },
                "hashFunctionCount" : 2, "maxEvictionCount" : 100, "maxSerializedBucketSize" : 1024
              },
              "inputDatabase" : "/path/to/input/database.txtpb",
              "keyCompression" : "noCompression",
              "outputDatabase" : "/path/to/output/database-SHARD_ID.bin",
              "outputEvaluationKeyConfig" : "/path/to/output/evaluation-key-config.txtpb",
              "outputPirParameters" : "path/to/output/pir-parameters-SHARD_ID.txtpb",
              "rlweParameters" : "n_4096_logq_27_28_28_logt_5",
              "sharding" : { "shardCount" : 1 },
              "shardingFunction" : { "sha256" : null },
              "trialsPerShard" : 1
            }"#,
        )
        .unwrap();
        assert_eq!(c.sharding, Some(ShardingArg::ShardCount(1)));
        assert_eq!(
            c.rlwe_parameters.as_deref(),
            Some("n_4096_logq_27_28_28_logt_5")
        );
        let p = sift_he::EncryptionParameters::predefined("n_4096_logq_27_28_28_logt_5").unwrap();
        let mut cfg = KeywordPirConfig::default_for(&p, 1);
        c.apply(&mut cfg).unwrap();
        assert_eq!(cfg.cuckoo.max_serialized_bucket_size, 1024);
        assert_eq!(cfg.sharding_function, ShardingFunction::Sha256);
    }

    /// `SHARD_ID` becomes each shard's index; several shards need it in both paths; the two
    /// keys come together; `inputDatabase` is the input.
    #[test]
    fn apple_output_paths() {
        let c = ProcessConfig::from_json(
            r#"{"inputDatabase": "in.txtpb", "outputDatabase": "o/db-SHARD_ID.bin",
                "outputPirParameters": "o/p-SHARD_ID.txtpb"}"#,
        )
        .unwrap();
        assert_eq!(c.input(), Some(PathBuf::from("in.txtpb")));
        let outs = c.apple_outputs(3).unwrap().unwrap();
        assert_eq!(outs.len(), 3);
        assert_eq!(outs[2].database, PathBuf::from("o/db-2.bin"));
        assert_eq!(outs[2].parameters, PathBuf::from("o/p-2.txtpb"));
        let one = ProcessConfig::from_json(
            r#"{"outputDatabase": "db.bin", "outputPirParameters": "p.binpb"}"#,
        )
        .unwrap();
        assert_eq!(
            one.apple_outputs(1).unwrap().unwrap()[0].database,
            PathBuf::from("db.bin")
        );
        let e = one.apple_outputs(2).unwrap_err().to_string();
        assert!(
            e.contains("outputDatabase") && e.contains("SHARD_ID"),
            "{e}"
        );
        let half = ProcessConfig::from_json(r#"{"outputDatabase": "db.bin"}"#).unwrap();
        assert!(
            half.apple_outputs(1)
                .unwrap_err()
                .to_string()
                .contains("outputPirParameters")
        );
        assert_eq!(ProcessConfig::default().apple_outputs(4).unwrap(), None);
    }

    #[test]
    fn every_key_is_typed() {
        let c = ProcessConfig::from_json(
            r#"{"sharding":{"entryCountPerShard":50000},"shardingFunction":{"doubleMod":7},
                "cuckooTableArguments":{"bucketCount":{"fixedSize":{"bucketCount":64}},"slotCount":2},
                "keyCompression":"hybridCompression","useMaxSerializedBucketSize":true,
                "symmetricPirArguments":{"databaseEncryptionKeyFilePath":"k.txt",
                  "configType":"OPRF_P384_AES_GCM_192_NONCE_96_TAG_128"},
                "databaseType":"keyword"}"#,
        )
        .unwrap();
        let p = sift_he::EncryptionParameters::predefined("n_4096_logq_27_28_28_logt_5").unwrap();
        let mut cfg = KeywordPirConfig::default_for(&p, 1);
        c.apply(&mut cfg).unwrap();
        assert_eq!(cfg.sharding, Sharding::EntryCountPerShard(50000));
        assert_eq!(
            cfg.sharding_function,
            ShardingFunction::DoubleMod {
                other_shard_count: 7
            }
        );
        assert_eq!(
            cfg.cuckoo.bucket_count,
            BucketCount::FixedSize { bucket_count: 64 }
        );
        assert_eq!(cfg.cuckoo.slot_count, 2);
        assert_eq!(cfg.key_compression, KeyCompression::HybridCompression);
        assert!(cfg.use_max_serialized_bucket_size);
    }

    #[test]
    fn unknown_or_misspelt_keys_are_named() {
        for (json, word) in [
            (r#"{"shardCount":3}"#, "shardCount"),
            (r#"{"sharding":{"shards":3}}"#, "shards"),
            (
                r#"{"cuckooTableArguments":{"hashFunctions":2}}"#,
                "hashFunctions",
            ),
            (r#"{"shardingFunction":{"md5":null}}"#, "md5"),
            (r#"{"rlweParameter":"x"}"#, "rlweParameter"),
        ] {
            let e = ProcessConfig::from_json(json).unwrap_err().to_string();
            assert!(e.contains(word), "{json}: {e}");
        }
        for bad in [
            r#"{"algorithm":"aclsPir"}"#,
            r#"{"sharding":{"shardCount":0}}"#,
            r#"{"sharding":{"shardCount":2,"entryCountPerShard":5}}"#,
            r#"{"keyCompression":"some"}"#,
            r#"{"databaseType":"index"}"#,
            r#"{"trialsPerShard":-1}"#,
        ] {
            assert!(ProcessConfig::from_json(bad).is_err(), "{bad}");
        }
    }
}
