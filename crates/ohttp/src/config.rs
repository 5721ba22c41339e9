//! Key configurations (RFC 9458 §3) and the `application/ohttp-keys` list format.
//!
//! Only DHKEM(X25519, HKDF-SHA256) with HKDF-SHA256 and AES-128-GCM or ChaCha20-Poly1305 is
//! supported: that is what Apple's relay and clients use and what RFC 9458's example shows.

use crate::error::OhttpError;

/// HPKE KEM identifier of DHKEM(X25519, HKDF-SHA256) (RFC 9180 §7.1).
pub const KEM_X25519_SHA256: u16 = 0x0020;
/// HPKE KDF identifier of HKDF-SHA256 (RFC 9180 §7.2).
pub const KDF_HKDF_SHA256: u16 = 0x0001;
/// HPKE AEAD identifier of AES-128-GCM (RFC 9180 §7.3).
pub const AEAD_AES_128_GCM: u16 = 0x0001;
/// HPKE AEAD identifier of ChaCha20-Poly1305 (RFC 9180 §7.3).
pub const AEAD_CHACHA20_POLY1305: u16 = 0x0003;
/// Length of an X25519 public key and of the encapsulated key `enc` (Npk = Nenc = 32).
pub const X25519_LEN: usize = 32;
/// Media type of an encapsulated request.
pub const REQUEST_MEDIA_TYPE: &str = "message/ohttp-req";
/// Media type of an encapsulated response.
pub const RESPONSE_MEDIA_TYPE: &str = "message/ohttp-res";
/// Media type of a key configuration list.
pub const KEYS_MEDIA_TYPE: &str = "application/ohttp-keys";

/// An AEAD this gateway can use for requests and responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Aead {
    /// AES-128-GCM (Nk 16, Nn 12).
    Aes128Gcm,
    /// ChaCha20-Poly1305 (Nk 32, Nn 12).
    ChaCha20Poly1305,
}

impl Aead {
    /// The HPKE identifier.
    pub fn id(self) -> u16 {
        match self {
            Aead::Aes128Gcm => AEAD_AES_128_GCM,
            Aead::ChaCha20Poly1305 => AEAD_CHACHA20_POLY1305,
        }
    }

    /// The AEAD for an HPKE identifier, if supported.
    pub fn from_id(id: u16) -> Option<Self> {
        match id {
            AEAD_AES_128_GCM => Some(Aead::Aes128Gcm),
            AEAD_CHACHA20_POLY1305 => Some(Aead::ChaCha20Poly1305),
            _ => None,
        }
    }

    /// Key length Nk.
    pub fn key_len(self) -> usize {
        match self {
            Aead::Aes128Gcm => 16,
            Aead::ChaCha20Poly1305 => 32,
        }
    }

    /// Nonce length Nn.
    pub fn nonce_len(self) -> usize {
        12
    }

    /// Tag length Nt.
    pub fn tag_len(self) -> usize {
        16
    }

    /// Length of the response nonce and exported secret: max(Nn, Nk) (RFC 9458 §4.4).
    pub fn response_nonce_len(self) -> usize {
        self.key_len().max(self.nonce_len())
    }
}

/// A KDF and AEAD pair offered in a key configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SymmetricSuite {
    /// HPKE KDF identifier.
    pub kdf: u16,
    /// HPKE AEAD identifier.
    pub aead: u16,
}

impl SymmetricSuite {
    /// HKDF-SHA256 with AES-128-GCM.
    pub const AES_128_GCM: Self = Self {
        kdf: KDF_HKDF_SHA256,
        aead: AEAD_AES_128_GCM,
    };
    /// HKDF-SHA256 with ChaCha20-Poly1305.
    pub const CHACHA20_POLY1305: Self = Self {
        kdf: KDF_HKDF_SHA256,
        aead: AEAD_CHACHA20_POLY1305,
    };
    /// The suites a gateway offers by default (both supported ones, AES first).
    pub const DEFAULT: [Self; 2] = [Self::AES_128_GCM, Self::CHACHA20_POLY1305];

    /// The AEAD when this suite is one this crate implements.
    pub fn supported_aead(self) -> Option<Aead> {
        if self.kdf == KDF_HKDF_SHA256 {
            Aead::from_id(self.aead)
        } else {
            None
        }
    }
}

/// One key configuration as published to clients (RFC 9458 §3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyConfig {
    /// Key identifier; the first byte of every encapsulated request for this key.
    pub key_id: u8,
    /// HPKE KEM identifier.
    pub kem: u16,
    /// The KEM public key (32 bytes for X25519).
    pub public_key: Vec<u8>,
    /// Offered symmetric suites, in preference order.
    pub suites: Vec<SymmetricSuite>,
}

impl KeyConfig {
    /// Encodes one configuration (without the list length prefix).
    pub fn encode(&self) -> Result<Vec<u8>, OhttpError> {
        let suites_len = self.suites.len() * 4;
        if self.suites.is_empty() || suites_len > 0xfffc {
            return Err(OhttpError::InvalidKeyConfig("symmetric suite count"));
        }
        let mut out = Vec::with_capacity(1 + 2 + self.public_key.len() + 2 + suites_len);
        out.push(self.key_id);
        out.extend_from_slice(&self.kem.to_be_bytes());
        out.extend_from_slice(&self.public_key);
        out.extend_from_slice(&(suites_len as u16).to_be_bytes());
        for s in &self.suites {
            out.extend_from_slice(&s.kdf.to_be_bytes());
            out.extend_from_slice(&s.aead.to_be_bytes());
        }
        Ok(out)
    }

    /// Decodes one configuration that must fill `buf` exactly. Only the X25519 KEM is
    /// understood (its public key length is needed to find the suites).
    pub fn decode(buf: &[u8]) -> Result<Self, OhttpError> {
        let bad = OhttpError::InvalidKeyConfig;
        let key_id = *buf.first().ok_or(bad("truncated"))?;
        let kem = u16::from_be_bytes(
            buf.get(1..3)
                .ok_or(bad("truncated"))?
                .try_into()
                .map_err(|_| bad("truncated"))?,
        );
        if kem != KEM_X25519_SHA256 {
            return Err(OhttpError::UnsupportedAlgorithm {
                kem,
                kdf: 0,
                aead: 0,
            });
        }
        let public_key = buf
            .get(3..3 + X25519_LEN)
            .ok_or(bad("truncated public key"))?
            .to_vec();
        let rest = buf.get(3 + X25519_LEN..).unwrap_or_default();
        let suites_len = rest
            .get(..2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
            .ok_or(bad("truncated"))?;
        let suites_bytes = rest.get(2..).unwrap_or_default();
        if suites_len == 0 || suites_len % 4 != 0 || suites_bytes.len() != suites_len {
            return Err(bad("symmetric suites length"));
        }
        let suites = suites_bytes
            .chunks_exact(4)
            .map(|c| SymmetricSuite {
                kdf: u16::from_be_bytes([c[0], c[1]]),
                aead: u16::from_be_bytes([c[2], c[3]]),
            })
            .collect();
        Ok(Self {
            key_id,
            kem,
            public_key,
            suites,
        })
    }
}

/// Encodes a list of configurations as `application/ohttp-keys`: each prefixed by its u16
/// length (RFC 9458 §3.2).
pub fn encode_list(configs: &[KeyConfig]) -> Result<Vec<u8>, OhttpError> {
    let mut out = Vec::new();
    for c in configs {
        let enc = c.encode()?;
        let len = u16::try_from(enc.len()).map_err(|_| OhttpError::InvalidKeyConfig("too long"))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&enc);
    }
    Ok(out)
}

/// Decodes an `application/ohttp-keys` list. Configurations with a KEM this crate does not
/// know are skipped (a client must ignore them); malformed framing is an error.
pub fn decode_list(buf: &[u8]) -> Result<Vec<KeyConfig>, OhttpError> {
    let mut out = Vec::new();
    let mut rest = buf;
    while !rest.is_empty() {
        let len = rest
            .get(..2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
            .ok_or(OhttpError::InvalidKeyConfig("truncated list"))?;
        let body = rest
            .get(2..2 + len)
            .ok_or(OhttpError::InvalidKeyConfig("truncated list entry"))?;
        match KeyConfig::decode(body) {
            Ok(c) => out.push(c),
            Err(OhttpError::UnsupportedAlgorithm { .. }) => {}
            Err(e) => return Err(e),
        }
        rest = rest.get(2 + len..).unwrap_or_default();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_list() {
        let c = KeyConfig {
            key_id: 7,
            kem: KEM_X25519_SHA256,
            public_key: vec![9; 32],
            suites: SymmetricSuite::DEFAULT.to_vec(),
        };
        let enc = c.encode().unwrap();
        assert_eq!(enc.len(), 1 + 2 + 32 + 2 + 8);
        assert_eq!(KeyConfig::decode(&enc).unwrap(), c);
        let list = encode_list(&[c.clone(), c.clone()]).unwrap();
        assert_eq!(decode_list(&list).unwrap(), vec![c.clone(), c]);
        assert!(decode_list(&list[..list.len() - 1]).is_err());
        assert!(KeyConfig::decode(&enc[..enc.len() - 1]).is_err());
    }

    #[test]
    fn unknown_kem_is_skipped_in_lists() {
        let mut other = vec![0u8, 0x00, 0x10];
        other.extend_from_slice(&[4; 65]);
        other.extend_from_slice(&[0, 4, 0, 1, 0, 1]);
        let mut list = (other.len() as u16).to_be_bytes().to_vec();
        list.extend_from_slice(&other);
        assert!(decode_list(&list).unwrap().is_empty());
    }
}
