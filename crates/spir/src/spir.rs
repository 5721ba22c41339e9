//! Apple's database transform (`KeywordDatabase.symmetricPIRProcess`) and the client's entry
//! decryption (`OprfClient.decrypt`): the OPRF output (48 bytes) gives keyword′ = `[0, 16)`,
//! nonce = `[0, 12)` and AES-GCM-192 key = `[24, 48)`; a value is stored as ciphertext ‖ tag.

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::aes::Aes192;
use aes_gcm::{AesGcm, Nonce};
use rayon::prelude::*;

use crate::{
    ConfigType, ENTRY_KEY_LEN, NONCE_LEN, OBLIVIOUS_KEYWORD_LEN, OUTPUT_LEN, OprfError,
    OprfPrivateKey, TAG_LEN,
};

/// AES-GCM with a 192-bit key and a 96-bit nonce (tag 128 bits).
type Aes192Gcm = AesGcm<Aes192, U12>;

/// The OPRF output for one keyword, split as Apple's `ParsedOprfOutput`.
#[derive(Clone, PartialEq, Eq)]
pub struct ParsedOprfOutput {
    /// The whole 48-byte OPRF output.
    pub output: [u8; OUTPUT_LEN],
    /// The configuration the split follows.
    pub config_type: ConfigType,
}

impl std::fmt::Debug for ParsedOprfOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParsedOprfOutput")
            .field("oblivious_keyword", &hex::encode(self.oblivious_keyword()))
            .finish_non_exhaustive()
    }
}

impl ParsedOprfOutput {
    /// Wraps a raw OPRF output.
    pub fn new(output: [u8; OUTPUT_LEN], config_type: ConfigType) -> Self {
        Self {
            output,
            config_type,
        }
    }

    /// keyword′, the keyword the PIR database is indexed by: the first 16 bytes.
    pub fn oblivious_keyword(&self) -> &[u8] {
        &self.output[..OBLIVIOUS_KEYWORD_LEN]
    }

    /// The AES-GCM nonce: the first 12 bytes (overlapping keyword′, as in Apple's code).
    pub fn nonce(&self) -> &[u8] {
        &self.output[..NONCE_LEN]
    }

    /// The AES-GCM-192 key: the last 24 bytes.
    pub fn entry_key(&self) -> &[u8] {
        &self.output[OUTPUT_LEN - ENTRY_KEY_LEN..]
    }

    fn cipher(&self) -> Aes192Gcm {
        // The slice is ENTRY_KEY_LEN = 24 bytes by construction, the AES-192 key size.
        Aes192Gcm::new(aes_gcm::Key::<Aes192Gcm>::from_slice(self.entry_key()))
    }

    /// Encrypts a value as the database stores it: ciphertext ‖ 16-byte tag, no associated data.
    pub fn encrypt(&self, value: &[u8]) -> Vec<u8> {
        self.cipher()
            .encrypt(Nonce::<U12>::from_slice(self.nonce()), value)
            // AES-GCM fails only for plaintexts over 2^36 bytes, which keyword PIR never stores.
            .unwrap_or_default()
    }

    /// Decrypts an entry the PIR lookup returned (ciphertext ‖ tag); fails if the tag does not
    /// verify (wrong keyword, wrong key, corrupted entry).
    pub fn decrypt(&self, entry: &[u8]) -> Result<Vec<u8>, OprfError> {
        if entry.len() < TAG_LEN {
            return Err(OprfError::Decryption);
        }
        self.cipher()
            .decrypt(Nonce::<U12>::from_slice(self.nonce()), entry)
            .map_err(|_| OprfError::Decryption)
    }
}

/// Keyword-value rows, as keyword-PIR processing takes them.
pub type Rows = Vec<(Vec<u8>, Vec<u8>)>;

/// One row transformed: `(keyword′, ciphertext ‖ tag)`.
pub fn encrypt_entry(
    key: &OprfPrivateKey,
    keyword: &[u8],
    value: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), OprfError> {
    let out = ParsedOprfOutput::new(key.evaluate(keyword)?, ConfigType::default());
    Ok((out.oblivious_keyword().to_vec(), out.encrypt(value)))
}

/// Apple's `KeywordDatabase.symmetricPIRProcess`: every row becomes `(keyword′, ciphertext ‖
/// tag)`, in the same order (rows in parallel; one OPRF evaluation each). Two keywords whose
/// keyword′ collide (probability about n²/2¹²⁹) would make keyword-PIR processing reject the
/// database as holding a duplicate keyword.
pub fn process_database(key: &OprfPrivateKey, rows: Rows) -> Result<Rows, OprfError> {
    rows.into_par_iter()
        .map(|(k, v)| encrypt_entry(key, &k, &v))
        .collect()
}
