//! Conversions between this crate's (and `sift-he`'s) types and Apple's protobuf messages.

use sift_he::serialize as hs;
use sift_he::{EncryptionParameters, SEED_LEN};
use sift_proto::{he as pb, pir as pp};

use crate::PirError;
use crate::keyword::ShardingFunction;
use crate::params::{EvaluationKeyConfig, IndexPirParameter, KeyCompression};

/// Ciphertext bytes → protobuf.
pub fn ciphertext_to_proto(c: &hs::SerializedCiphertext) -> pb::SerializedCiphertext {
    use pb::serialized_ciphertext::SerializedCiphertextType as T;
    let t = match c {
        hs::SerializedCiphertext::Seeded(s) => T::Seeded(pb::SerializedSeededCiphertext {
            poly0: s.poly0.clone(),
            seed: s.seed.to_vec(),
        }),
        hs::SerializedCiphertext::Full(f) => T::Full(pb::SerializedFullCiphertext {
            polys: f.polys.clone(),
            skip_lsbs: f.skip_lsbs.clone(),
            correction_factor: f.correction_factor,
        }),
    };
    pb::SerializedCiphertext {
        serialized_ciphertext_type: Some(t),
    }
}

/// Protobuf → ciphertext bytes (checks the seed length).
pub fn ciphertext_from_proto(
    c: &pb::SerializedCiphertext,
) -> Result<hs::SerializedCiphertext, PirError> {
    use pb::serialized_ciphertext::SerializedCiphertextType as T;
    match &c.serialized_ciphertext_type {
        Some(T::Seeded(s)) => {
            let seed: [u8; SEED_LEN] = s
                .seed
                .as_slice()
                .try_into()
                .map_err(|_| PirError::Malformed(format!("seed of {} bytes", s.seed.len())))?;
            Ok(hs::SerializedCiphertext::Seeded(
                hs::SeededCiphertextBytes {
                    poly0: s.poly0.clone(),
                    seed,
                },
            ))
        }
        Some(T::Full(f)) => Ok(hs::SerializedCiphertext::Full(hs::FullCiphertextBytes {
            polys: f.polys.clone(),
            skip_lsbs: f.skip_lsbs.clone(),
            correction_factor: f.correction_factor,
        })),
        None => Err(PirError::Malformed("empty SerializedCiphertext".into())),
    }
}

fn ksk_to_proto(cts: &[hs::SerializedCiphertext]) -> pb::SerializedKeySwitchKey {
    pb::SerializedKeySwitchKey {
        key_switch_key: Some(pb::SerializedCiphertextVec {
            ciphertexts: cts.iter().map(ciphertext_to_proto).collect(),
        }),
    }
}

fn ksk_from_proto(
    k: &pb::SerializedKeySwitchKey,
) -> Result<Vec<hs::SerializedCiphertext>, PirError> {
    k.key_switch_key
        .as_ref()
        .ok_or_else(|| PirError::Malformed("empty key-switch key".into()))?
        .ciphertexts
        .iter()
        .map(ciphertext_from_proto)
        .collect()
}

/// Evaluation key bytes → protobuf.
pub fn evaluation_key_to_proto(k: &hs::SerializedEvaluationKey) -> pb::SerializedEvaluationKey {
    pb::SerializedEvaluationKey {
        galois_key: Some(pb::SerializedGaloisKey {
            key_switch_keys: k
                .galois
                .iter()
                .map(|(&g, c)| (g, ksk_to_proto(c)))
                .collect(),
        }),
        relin_key: k.relin.as_ref().map(|c| pb::SerializedRelinKey {
            relin_key: Some(ksk_to_proto(c)),
        }),
    }
}

/// Protobuf → evaluation key bytes.
pub fn evaluation_key_from_proto(
    k: &pb::SerializedEvaluationKey,
) -> Result<hs::SerializedEvaluationKey, PirError> {
    let mut out = hs::SerializedEvaluationKey::default();
    if let Some(g) = &k.galois_key {
        for (&e, ksk) in &g.key_switch_keys {
            out.galois.insert(e, ksk_from_proto(ksk)?);
        }
    }
    if let Some(r) = &k.relin_key {
        let ksk = r
            .relin_key
            .as_ref()
            .ok_or_else(|| PirError::Malformed("empty relinearization key".into()))?;
        out.relin = Some(ksk_from_proto(ksk)?);
    }
    Ok(out)
}

/// Encryption parameters → protobuf (BFV, quantum128 for predefined sets, σ = 3.2).
pub fn encryption_parameters_to_proto(p: &EncryptionParameters) -> pb::EncryptionParameters {
    pb::EncryptionParameters {
        polynomial_degree: p.n as u64,
        plaintext_modulus: p.t,
        coefficient_moduli: p.moduli.clone(),
        error_std_dev: pb::ErrorStdDev::Stddev32 as i32,
        security_level: if p.name.is_some_and(|n| !n.starts_with("insecure")) {
            pb::SecurityLevel::Quantum128 as i32
        } else {
            pb::SecurityLevel::Unspecified as i32
        },
        he_scheme: pb::HeScheme::Bfv as i32,
    }
}

/// Protobuf → encryption parameters (named when they equal a predefined set).
pub fn encryption_parameters_from_proto(
    p: &pb::EncryptionParameters,
) -> Result<EncryptionParameters, PirError> {
    if p.he_scheme == pb::HeScheme::Bgv as i32 {
        return Err(PirError::InvalidParameters("BGV is not supported".into()));
    }
    for name in EncryptionParameters::predefined_names() {
        let e = EncryptionParameters::predefined(name)?;
        if e.n as u64 == p.polynomial_degree
            && e.t == p.plaintext_modulus
            && e.moduli == p.coefficient_moduli
        {
            return Ok(e);
        }
    }
    let n = usize::try_from(p.polynomial_degree)
        .map_err(|_| PirError::InvalidParameters("degree too large".into()))?;
    Ok(EncryptionParameters::new(
        n,
        p.plaintext_modulus,
        p.coefficient_moduli.clone(),
    )?)
}

/// Evaluation-key config → protobuf.
pub fn evaluation_key_config_to_proto(
    c: &EvaluationKeyConfig,
    params: &EncryptionParameters,
) -> pb::EvaluationKeyConfig {
    pb::EvaluationKeyConfig {
        encryption_parameters: Some(encryption_parameters_to_proto(params)),
        galois_elements: c.galois_elements.iter().map(|&g| g as u32).collect(),
        has_relin_key: c.has_relin,
    }
}

/// Protobuf → evaluation-key config (elements sorted).
pub fn evaluation_key_config_from_proto(c: &pb::EvaluationKeyConfig) -> EvaluationKeyConfig {
    let mut g: Vec<usize> = c.galois_elements.iter().map(|&g| g as usize).collect();
    g.sort_unstable();
    g.dedup();
    EvaluationKeyConfig {
        galois_elements: g,
        has_relin: c.has_relin_key,
    }
}

/// Parameters of one keyword-PIR shard (everything in Apple's `PirParameters`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardParameters {
    /// Encryption parameters.
    pub encryption: EncryptionParameters,
    /// Index-PIR parameters (entry count = buckets per table; batch = hash functions).
    pub index: IndexPirParameter,
    /// Cuckoo hash functions.
    pub hash_function_count: usize,
    /// Sharding function of the use case.
    pub sharding_function: ShardingFunction,
}

/// Shard parameters → `PirParameters`.
pub fn pir_parameters_to_proto(s: &ShardParameters) -> pp::PirParameters {
    let sharding = match s.sharding_function {
        ShardingFunction::Sha256 => {
            pp::pir_sharding_function::Function::Sha256(pp::PirShardingFunctionSha256 {})
        }
        ShardingFunction::DoubleMod { other_shard_count } => {
            pp::pir_sharding_function::Function::DoubleMod(pp::PirShardingFunctionDoubleMod {
                other_shard_count,
            })
        }
    };
    pp::PirParameters {
        encryption_parameters: Some(encryption_parameters_to_proto(&s.encryption)),
        num_entries: s.index.entry_count as u64,
        entry_size: s.index.entry_size as u64,
        dimensions: s.index.dimensions.iter().map(|&d| d as u64).collect(),
        keyword_pir_params: Some(pp::KeywordPirParameters {
            num_hash_functions: s.hash_function_count as u64,
            symmetric_pir_client_config: None,
            sharding_function: Some(pp::PirShardingFunction {
                function: Some(sharding),
            }),
        }),
        algorithm: pp::PirAlgorithm::MulPir as i32,
        batch_size: s.index.batch_size as u64,
        evaluation_key_config: Some(evaluation_key_config_to_proto(
            &s.index.evaluation_key_config,
            &s.encryption,
        )),
        key_compression_strategy: match s.index.key_compression {
            KeyCompression::NoCompression => pp::KeyCompressionStrategy::Unspecified,
            KeyCompression::MaxCompression => pp::KeyCompressionStrategy::MaximumCompression,
            KeyCompression::HybridCompression => pp::KeyCompressionStrategy::HybridCompression,
        } as i32,
        encoding_entry_size: false,
    }
}

/// `PirParameters` → shard parameters (validated).
pub fn pir_parameters_from_proto(p: &pp::PirParameters) -> Result<ShardParameters, PirError> {
    let bad = |m: &str| PirError::InvalidParameters(m.to_string());
    if p.algorithm != pp::PirAlgorithm::MulPir as i32 {
        return Err(bad("only MulPir is supported"));
    }
    if p.encoding_entry_size {
        return Err(bad("encoding_entry_size is not supported"));
    }
    let encryption = encryption_parameters_from_proto(
        p.encryption_parameters
            .as_ref()
            .ok_or_else(|| bad("missing encryption parameters"))?,
    )?;
    let kw = p
        .keyword_pir_params
        .as_ref()
        .ok_or_else(|| bad("missing keyword PIR parameters"))?;
    // Symmetric PIR changes only the rows (keyword′ and encrypted values), not the processing:
    // validate the client config here; it travels in `PirParameters` (see
    // [`symmetric_pir_client_config`]).
    if let Some(c) = &kw.symmetric_pir_client_config {
        symmetric_pir_client_config_from_proto(c)?;
    }
    let sharding_function = match kw
        .sharding_function
        .as_ref()
        .and_then(|f| f.function.as_ref())
    {
        None | Some(pp::pir_sharding_function::Function::Sha256(_)) => ShardingFunction::Sha256,
        Some(pp::pir_sharding_function::Function::DoubleMod(d)) => ShardingFunction::DoubleMod {
            other_shard_count: d.other_shard_count,
        },
    };
    let to_usize = |v: u64| usize::try_from(v).map_err(|_| bad("value too large"));
    let dimensions = p
        .dimensions
        .iter()
        .map(|&d| to_usize(d))
        .collect::<Result<Vec<_>, _>>()?;
    if dimensions.len() != 2 || dimensions.contains(&0) {
        return Err(bad("need two non-zero dimensions"));
    }
    let entry_count = to_usize(p.num_entries)?;
    let entry_size = to_usize(p.entry_size)?;
    let batch_size = to_usize(p.batch_size)?;
    let hash_function_count = to_usize(kw.num_hash_functions)?;
    if entry_count == 0 || entry_size == 0 || batch_size == 0 || hash_function_count != batch_size {
        return Err(bad("inconsistent entry count, entry size or batch size"));
    }
    let bpp = encryption.bytes_per_plaintext();
    let per_pt = if entry_size <= bpp {
        bpp / entry_size
    } else {
        1
    };
    if dimensions[0].saturating_mul(dimensions[1]) < entry_count.div_ceil(per_pt) {
        return Err(bad("dimensions do not cover the entries"));
    }
    let key_compression = match p.key_compression_strategy {
        x if x == pp::KeyCompressionStrategy::MaximumCompression as i32 => {
            KeyCompression::MaxCompression
        }
        x if x == pp::KeyCompressionStrategy::HybridCompression as i32 => {
            KeyCompression::HybridCompression
        }
        _ => KeyCompression::NoCompression,
    };
    let evaluation_key_config = p
        .evaluation_key_config
        .as_ref()
        .map(evaluation_key_config_from_proto)
        .ok_or_else(|| bad("missing evaluation key config"))?;
    Ok(ShardParameters {
        encryption,
        index: IndexPirParameter {
            entry_count,
            entry_size,
            dimensions,
            batch_size,
            evaluation_key_config,
            key_compression,
        },
        hash_function_count,
        sharding_function,
    })
}

/// Bytes of the OPRF server public key in `SymmetricPirClientConfig` (compressed P-384 point).
pub const SYMMETRIC_PIR_PUBLIC_KEY_LEN: usize = 49;

/// Apple's symmetric-PIR configurations (`pir.v1.SymmetricPirConfigType`, UNSPECIFIED excluded).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SymmetricPirConfigType {
    /// VOPRF(P-384, SHA-384) keywords, AES-GCM-192 values (96-bit nonce, 128-bit tag).
    OprfP384AesGcm192Nonce96Tag128,
}

/// Apple's `SymmetricPirClientConfig`: what a device needs to run the OPRF before keyword PIR.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SymmetricPirClientConfig {
    /// The OPRF server's public key, a compressed P-384 point (49 bytes).
    pub server_public_key: Vec<u8>,
    /// The configuration type.
    pub config_type: SymmetricPirConfigType,
}

/// Symmetric-PIR client config → protobuf.
pub fn symmetric_pir_client_config_to_proto(
    c: &SymmetricPirClientConfig,
) -> pp::SymmetricPirClientConfig {
    pp::SymmetricPirClientConfig {
        server_public_key: c.server_public_key.clone(),
        config_type: match c.config_type {
            SymmetricPirConfigType::OprfP384AesGcm192Nonce96Tag128 => {
                pp::SymmetricPirConfigType::OprfP384AesGcm192Nonce96Tag128
            }
        } as i32,
    }
}

/// Protobuf → symmetric-PIR client config. Rejects an UNSPECIFIED or unknown type (as Apple's
/// conversion does) and a public key that is not a 49-byte compressed point encoding (the point
/// itself is checked by the OPRF client).
pub fn symmetric_pir_client_config_from_proto(
    c: &pp::SymmetricPirClientConfig,
) -> Result<SymmetricPirClientConfig, PirError> {
    let bad = |m: String| PirError::InvalidParameters(m);
    let config_type =
        if c.config_type == pp::SymmetricPirConfigType::OprfP384AesGcm192Nonce96Tag128 as i32 {
            SymmetricPirConfigType::OprfP384AesGcm192Nonce96Tag128
        } else {
            return Err(bad(format!(
                "unsupported symmetric PIR config type {}",
                c.config_type
            )));
        };
    let k = &c.server_public_key;
    if k.len() != SYMMETRIC_PIR_PUBLIC_KEY_LEN || !matches!(k[0], 2 | 3) {
        return Err(bad(format!(
            "symmetric PIR server public key of {} bytes is not a compressed P-384 point",
            k.len()
        )));
    }
    Ok(SymmetricPirClientConfig {
        server_public_key: k.clone(),
        config_type,
    })
}

/// The symmetric-PIR client config a shard's `PirParameters` carries (in
/// `keyword_pir_params.symmetric_pir_client_config`), if any.
pub fn symmetric_pir_client_config(
    p: &pp::PirParameters,
) -> Result<Option<SymmetricPirClientConfig>, PirError> {
    p.keyword_pir_params
        .as_ref()
        .and_then(|k| k.symmetric_pir_client_config.as_ref())
        .map(symmetric_pir_client_config_from_proto)
        .transpose()
}

/// Sets (or clears) the symmetric-PIR client config of a shard's `PirParameters`, as
/// `PIRProcessDatabase` writes it for a symmetric-PIR database.
pub fn set_symmetric_pir_client_config(
    p: &mut pp::PirParameters,
    c: Option<&SymmetricPirClientConfig>,
) {
    p.keyword_pir_params
        .get_or_insert_with(Default::default)
        .symmetric_pir_client_config = c.map(symmetric_pir_client_config_to_proto);
}

#[cfg(test)]
mod symmetric_tests {
    use super::*;

    fn config(key: Vec<u8>) -> SymmetricPirClientConfig {
        SymmetricPirClientConfig {
            server_public_key: key,
            config_type: SymmetricPirConfigType::OprfP384AesGcm192Nonce96Tag128,
        }
    }

    #[test]
    fn symmetric_config_round_trips_through_parameters_and_text() {
        let mut key = vec![3u8; SYMMETRIC_PIR_PUBLIC_KEY_LEN];
        key[1] = 0x0a;
        let c = config(key);
        let mut p = pp::PirParameters::default();
        assert_eq!(symmetric_pir_client_config(&p).unwrap(), None);
        set_symmetric_pir_client_config(&mut p, Some(&c));
        assert_eq!(symmetric_pir_client_config(&p).unwrap(), Some(c.clone()));
        let text = sift_proto::to_text(&p).unwrap();
        assert!(
            text.contains("SYMMETRIC_PIR_CONFIG_TYPE_OPRF_P384_AES_GCM_192_NONCE_96_TAG_128"),
            "{text}"
        );
        let back: pp::PirParameters = sift_proto::from_text(&text).unwrap();
        assert_eq!(symmetric_pir_client_config(&back).unwrap(), Some(c));
        set_symmetric_pir_client_config(&mut p, None);
        assert_eq!(symmetric_pir_client_config(&p).unwrap(), None);
    }

    #[test]
    fn bad_symmetric_configs_are_rejected() {
        let mut proto = symmetric_pir_client_config_to_proto(&config(vec![2u8; 49]));
        assert!(symmetric_pir_client_config_from_proto(&proto).is_ok());
        proto.config_type = 0;
        assert!(symmetric_pir_client_config_from_proto(&proto).is_err());
        for key in [vec![2u8; 48], vec![4u8; 49], vec![]] {
            let proto = symmetric_pir_client_config_to_proto(&config(key));
            assert!(symmetric_pir_client_config_from_proto(&proto).is_err());
        }
    }
}
