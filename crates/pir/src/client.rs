//! Reference keyword-PIR client (Apple's `KeywordPirClient` + `MulPirClient`): evaluation key,
//! query, and response decoding, all through Apple's protobuf messages.

use rand_core::{CryptoRng, RngCore};
use sift_he::{Ciphertext, Context, EvaluationKey, Format, SecretKey};
use sift_proto::{api, he as pb, pir as pp};
use std::sync::Arc;

use crate::PirError;
use crate::bucket::HashBucket;
use crate::index_pir;
use crate::keyword::{hash_indices, keyword_hash};
use crate::wire::{self, ShardParameters, SymmetricPirClientConfig};

/// Client for one use case: the shards' parameters and a secret key.
pub struct KeywordPirClient {
    ctx: Arc<Context>,
    shards: Vec<ShardParameters>,
    sk: SecretKey,
    symmetric: Option<SymmetricPirClientConfig>,
}

impl KeywordPirClient {
    /// A client for the shards' `PirParameters` with a fresh secret key.
    pub fn new<R: RngCore + CryptoRng>(
        shards: &[pp::PirParameters],
        rng: &mut R,
    ) -> Result<KeywordPirClient, PirError> {
        let symmetric = match shards.first() {
            Some(p) => wire::symmetric_pir_client_config(p)?,
            None => None,
        };
        for p in shards {
            if wire::symmetric_pir_client_config(p)? != symmetric {
                return Err(PirError::InvalidParameters(
                    "shards disagree on the symmetric PIR config".into(),
                ));
            }
        }
        let shards = shards
            .iter()
            .map(wire::pir_parameters_from_proto)
            .collect::<Result<Vec<_>, _>>()?;
        let first = shards
            .first()
            .ok_or_else(|| PirError::InvalidParameters("no shards".into()))?;
        if shards.iter().any(|s| s.encryption != first.encryption) {
            return Err(PirError::InvalidParameters(
                "mixed encryption parameters".into(),
            ));
        }
        let ctx = Context::new(first.encryption.clone())?;
        let sk = SecretKey::generate(&ctx, rng);
        Ok(KeywordPirClient {
            ctx,
            shards,
            sk,
            symmetric,
        })
    }

    /// The use case's symmetric-PIR config, when its database is symmetric: the device must then
    /// run the OPRF first and query keyword′ (`KeywordPirParameters.symmetric_pir_client_config`).
    pub fn symmetric_pir_client_config(&self) -> Option<&SymmetricPirClientConfig> {
        self.symmetric.as_ref()
    }

    /// The evaluation key for the union of the shards' key configs.
    pub fn evaluation_key<R: RngCore + CryptoRng>(
        &self,
        rng: &mut R,
    ) -> Result<pb::SerializedEvaluationKey, PirError> {
        let cfg = crate::params::EvaluationKeyConfig::union(
            self.shards.iter().map(|s| &s.index.evaluation_key_config),
        );
        let key = EvaluationKey::generate(
            &self.ctx,
            &self.sk,
            &cfg.galois_elements,
            cfg.has_relin,
            rng,
        )?;
        Ok(wire::evaluation_key_to_proto(&key.serialize(&self.ctx)))
    }

    /// The shard holding `keyword`.
    pub fn shard_index(&self, keyword: &[u8]) -> Result<usize, PirError> {
        self.shards[0]
            .sharding_function
            .shard_index(keyword, self.shards.len())
    }

    /// A `PIRRequest` for `keyword` (shard index set; metadata and config hash left to the caller).
    pub fn query<R: RngCore + CryptoRng>(
        &self,
        keyword: &[u8],
        rng: &mut R,
    ) -> Result<api::PirRequest, PirError> {
        let shard = self.shard_index(keyword)?;
        let p = &self.shards[shard];
        let idx = hash_indices(keyword, p.index.entry_count, p.hash_function_count);
        let cts = index_pir::generate_query(&self.ctx, &p.index, &idx, &self.sk, rng)?;
        Ok(api::PirRequest {
            shard_index: shard as u32,
            query: Some(pp::EncryptedIndices {
                ciphertexts: cts
                    .iter()
                    .map(|c| wire::ciphertext_to_proto(&c.serialize(&self.ctx, false)))
                    .collect(),
                num_pir_calls: idx.len() as u64,
            }),
            ..Default::default()
        })
    }

    /// Decodes a response to the query for `keyword`: the value, or `None` if absent.
    pub fn decode(
        &self,
        keyword: &[u8],
        response: &api::PirResponse,
    ) -> Result<Option<Vec<u8>>, PirError> {
        let shard = self.shard_index(keyword)?;
        let p = &self.shards[shard];
        let idx = hash_indices(keyword, p.index.entry_count, p.hash_function_count);
        let replies = response
            .replies
            .iter()
            .map(|r| {
                r.ciphertexts
                    .iter()
                    .map(|c| {
                        Ok(Ciphertext::deserialize(
                            &self.ctx,
                            &wire::ciphertext_from_proto(c)?,
                            Some(1),
                            Format::Coeff,
                        )?)
                    })
                    .collect::<Result<Vec<_>, PirError>>()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let entries = index_pir::decrypt_response(&self.ctx, &p.index, &replies, &idx, &self.sk)?;
        let h = keyword_hash(keyword);
        for e in entries {
            if let Some(v) = HashBucket::deserialize(&e)?.find(h) {
                return Ok(Some(v.to_vec()));
            }
        }
        Ok(None)
    }

    /// The smallest remaining noise budget (bits) over the response's ciphertexts: how far a
    /// response is from decrypting wrongly. Used by `sift build`'s trial queries, as Apple's
    /// `trialsPerShard` checks that processed shards answer with enough budget left.
    pub fn response_noise_budget(&self, response: &api::PirResponse) -> Result<f64, PirError> {
        let mut min = f64::INFINITY;
        for reply in &response.replies {
            for c in &reply.ciphertexts {
                let ct = Ciphertext::deserialize(
                    &self.ctx,
                    &wire::ciphertext_from_proto(c)?,
                    Some(1),
                    Format::Coeff,
                )?;
                min = min.min(sift_he::bfv::noise_budget(&self.ctx, &ct, &self.sk)?);
            }
        }
        Ok(min)
    }
}
