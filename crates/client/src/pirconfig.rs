//! What a device derives from the service's `/config` answer: one `PirParameters` per shard,
//! rebuilt from `PIRConfig` (shard configs, possibly as one repeated config) and the key config
//! from `KeyStatus`, as Apple's client does before querying.

use sift_proto::{api, he, pir as pp};

/// Per-shard PIR parameters for a use case's `PIRConfig` and its evaluation-key config.
pub fn shard_parameters(
    cfg: &api::PirConfig,
    key_config: &he::EvaluationKeyConfig,
) -> anyhow::Result<Vec<pp::PirParameters>> {
    let shards: Vec<api::PirShardConfig> = match cfg
        .pir_shard_configs
        .as_ref()
        .and_then(|s| s.shard_configs.as_ref())
    {
        Some(api::pir_shard_configs::ShardConfigs::RepeatedShardConfig(r)) => {
            let one = r
                .shard_config
                .clone()
                .ok_or_else(|| anyhow::anyhow!("repeated shard config is empty"))?;
            anyhow::ensure!(
                r.shard_count >= 1 && r.shard_count <= 1 << 16,
                "bad shard count {}",
                r.shard_count
            );
            vec![one; r.shard_count as usize]
        }
        None => cfg.shard_configs.clone(),
    };
    anyhow::ensure!(!shards.is_empty(), "PIR config has no shards");
    Ok(shards
        .iter()
        .map(|s| pp::PirParameters {
            encryption_parameters: cfg.encryption_parameters.clone(),
            num_entries: s.num_entries,
            entry_size: s.entry_size,
            dimensions: s.dimensions.clone(),
            keyword_pir_params: cfg.keyword_pir_params.clone(),
            algorithm: cfg.algorithm,
            batch_size: cfg.batch_size,
            evaluation_key_config: Some(key_config.clone()),
            key_compression_strategy: 0,
            encoding_entry_size: cfg.encoding_entry_size.unwrap_or(false),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_shard_config_expands() {
        let shard = api::PirShardConfig {
            num_entries: 10,
            entry_size: 5,
            dimensions: vec![2, 2],
            ..Default::default()
        };
        let cfg = api::PirConfig {
            batch_size: 2,
            pir_shard_configs: Some(api::PirShardConfigs {
                shard_configs: Some(api::pir_shard_configs::ShardConfigs::RepeatedShardConfig(
                    api::PirFixedShardConfig {
                        shard_config: Some(shard),
                        shard_count: 3,
                    },
                )),
            }),
            ..Default::default()
        };
        let p = shard_parameters(&cfg, &he::EvaluationKeyConfig::default()).unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[2].num_entries, 10);
        assert_eq!(p[0].batch_size, 2);
    }

    #[test]
    fn empty_config_is_an_error() {
        assert!(
            shard_parameters(
                &api::PirConfig::default(),
                &he::EvaluationKeyConfig::default()
            )
            .is_err()
        );
    }
}
