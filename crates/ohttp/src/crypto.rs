//! The RFC 9458 key schedule on top of HPKE (RFC 9180): request info string, the receiver
//! (gateway) through the `hpke` crate, the sender (client) through a short base-mode schedule
//! of our own that can take a fixed ephemeral key, and the response AEAD derived from the
//! exported secret (§4.4).

use aes_gcm::Aes128Gcm;
use aes_gcm::aead::{Aead as _, KeyInit, Payload};
use chacha20poly1305::ChaCha20Poly1305;
use hkdf::Hkdf;
use hpke::{
    Deserializable, OpModeR, aead::Aead as HpkeAead, kdf::HkdfSha256, kem::X25519HkdfSha256,
};
use rand_core::{OsRng, TryRngCore};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::config::{Aead, KDF_HKDF_SHA256, KEM_X25519_SHA256, X25519_LEN};
use crate::error::OhttpError;

/// HPKE info prefix for requests (RFC 9458 §4.3).
pub(crate) const LABEL_REQUEST: &[u8] = b"message/bhttp request";
/// HPKE export context for responses (RFC 9458 §4.4).
pub(crate) const LABEL_RESPONSE: &[u8] = b"message/bhttp response";
/// Length of the request header: key id, KEM, KDF, AEAD.
pub(crate) const HEADER_LEN: usize = 7;

type Kem = X25519HkdfSha256;

/// The request header `key_id || kem || kdf || aead`.
pub(crate) fn header(key_id: u8, aead: Aead) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0] = key_id;
    h[1..3].copy_from_slice(&KEM_X25519_SHA256.to_be_bytes());
    h[3..5].copy_from_slice(&KDF_HKDF_SHA256.to_be_bytes());
    h[5..7].copy_from_slice(&aead.id().to_be_bytes());
    h
}

/// The HPKE info: `"message/bhttp request" || 0x00 || header`.
pub(crate) fn request_info(hdr: &[u8; HEADER_LEN]) -> Vec<u8> {
    let mut info = Vec::with_capacity(LABEL_REQUEST.len() + 1 + HEADER_LEN);
    info.extend_from_slice(LABEL_REQUEST);
    info.push(0);
    info.extend_from_slice(hdr);
    info
}

fn open_with<A: HpkeAead>(
    sk: &<Kem as hpke::Kem>::PrivateKey,
    enc: &<Kem as hpke::Kem>::EncappedKey,
    info: &[u8],
    ct: &[u8],
    export_len: usize,
) -> Result<(Vec<u8>, Zeroizing<Vec<u8>>), OhttpError> {
    let mut ctx = hpke::setup_receiver::<A, HkdfSha256, Kem>(&OpModeR::Base, sk, enc, info)
        .map_err(|_| OhttpError::Decrypt)?;
    let pt = ctx.open(ct, b"").map_err(|_| OhttpError::Decrypt)?;
    let mut secret = Zeroizing::new(vec![0u8; export_len]);
    ctx.export(LABEL_RESPONSE, &mut secret)
        .map_err(|_| OhttpError::Internal("HPKE export"))?;
    Ok((pt, secret))
}

/// Receiver side: opens `ct` and exports the response secret (length max(Nn, Nk)).
pub(crate) fn open_request(
    aead: Aead,
    secret_key: &[u8; X25519_LEN],
    enc: &[u8; X25519_LEN],
    info: &[u8],
    ct: &[u8],
) -> Result<(Vec<u8>, Zeroizing<Vec<u8>>), OhttpError> {
    let sk = <Kem as hpke::Kem>::PrivateKey::from_bytes(secret_key)
        .map_err(|_| OhttpError::Internal("stored secret key"))?;
    let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(enc).map_err(|_| OhttpError::Decrypt)?;
    let n = aead.response_nonce_len();
    match aead {
        Aead::Aes128Gcm => open_with::<hpke::aead::AesGcm128>(&sk, &enc, info, ct, n),
        Aead::ChaCha20Poly1305 => open_with::<hpke::aead::ChaCha20Poly1305>(&sk, &enc, info, ct, n),
    }
}

/// The result of sealing a request: `enc`, ciphertext and the exported response secret.
pub(crate) struct Sealed {
    pub enc: [u8; X25519_LEN],
    pub ct: Vec<u8>,
    pub secret: Zeroizing<Vec<u8>>,
}

/// `"HPKE-v1"`, the version label of every labeled HKDF call (RFC 9180 §4).
const HPKE_V1: &[u8] = b"HPKE-v1";

/// `LabeledExtract(salt, label, ikm)` of RFC 9180 §4 with HKDF-SHA256.
fn labeled_extract(suite_id: &[u8], salt: &[u8], label: &[u8], ikm: &[u8]) -> Hkdf<Sha256> {
    let mut labeled = Zeroizing::new(Vec::with_capacity(
        HPKE_V1.len() + suite_id.len() + label.len() + ikm.len(),
    ));
    for part in [HPKE_V1, suite_id, label, ikm] {
        labeled.extend_from_slice(part);
    }
    Hkdf::<Sha256>::new(Some(salt), &labeled)
}

/// `LabeledExpand(prk, label, info, L)` of RFC 9180 §4 with HKDF-SHA256.
fn labeled_expand(
    prk: &Hkdf<Sha256>,
    suite_id: &[u8],
    label: &[u8],
    info: &[u8],
    out: &mut [u8],
) -> Result<(), OhttpError> {
    let len = u16::try_from(out.len()).map_err(|_| OhttpError::Internal("HKDF length"))?;
    let len = len.to_be_bytes();
    let parts: [&[u8]; 5] = [&len, HPKE_V1, suite_id, label, info];
    prk.expand_multi_info(&parts, out)
        .map_err(|_| OhttpError::Internal("HKDF expand"))
}

/// Sender side of HPKE base mode (RFC 9180 §5.1, §5.2, §5.3) for DHKEM(X25519, HKDF-SHA256)
/// and HKDF-SHA256 with a caller-chosen ephemeral secret: seals `pt` (AAD empty, sequence
/// number 0) and exports the response secret.
///
/// The `hpke` crate derives its ephemeral key from random input and cannot take a given one,
/// which RFC 9458 Appendix A needs to be reproduced; this short schedule is checked against
/// that example and against the `hpke` receiver (in the gateway) by the tests.
pub(crate) fn seal_request_with_ephemeral(
    aead: Aead,
    public_key: &[u8],
    ephemeral_secret: &[u8; X25519_LEN],
    info: &[u8],
    pt: &[u8],
) -> Result<Sealed, OhttpError> {
    let pk_r: [u8; X25519_LEN] = public_key
        .try_into()
        .map_err(|_| OhttpError::InvalidKeyConfig("X25519 public key must be 32 bytes"))?;
    let sk_e = x25519_dalek::StaticSecret::from(*ephemeral_secret);
    let enc = x25519_dalek::PublicKey::from(&sk_e).to_bytes();
    let dh = sk_e.diffie_hellman(&x25519_dalek::PublicKey::from(pk_r));
    if !dh.was_contributory() {
        // RFC 9180 §7.1.4: an all-zero X25519 output (low-order public key) must be rejected.
        return Err(OhttpError::InvalidKeyConfig(
            "X25519 public key of low order",
        ));
    }

    // ExtractAndExpand (RFC 9180 §4.1) with the KEM's suite id.
    let mut kem_suite = *b"KEM\0\0";
    kem_suite[3..].copy_from_slice(&KEM_X25519_SHA256.to_be_bytes());
    let mut kem_context = [0u8; 2 * X25519_LEN];
    kem_context[..X25519_LEN].copy_from_slice(&enc);
    kem_context[X25519_LEN..].copy_from_slice(&pk_r);
    let eae_prk = labeled_extract(&kem_suite, b"", b"eae_prk", dh.as_bytes());
    let mut shared_secret = Zeroizing::new([0u8; 32]);
    labeled_expand(
        &eae_prk,
        &kem_suite,
        b"shared_secret",
        &kem_context,
        &mut shared_secret[..],
    )?;

    // KeySchedule (RFC 9180 §5.1), mode_base: empty psk and psk_id.
    let mut suite = [0u8; 10];
    suite[..4].copy_from_slice(b"HPKE");
    suite[4..6].copy_from_slice(&KEM_X25519_SHA256.to_be_bytes());
    suite[6..8].copy_from_slice(&KDF_HKDF_SHA256.to_be_bytes());
    suite[8..].copy_from_slice(&aead.id().to_be_bytes());
    let (psk_id_hash, _) =
        Hkdf::<Sha256>::extract(Some(b""), &[HPKE_V1, &suite[..], b"psk_id_hash"].concat());
    let mut info_ikm = [HPKE_V1, &suite[..], b"info_hash"].concat();
    info_ikm.extend_from_slice(info);
    let (info_hash, _) = Hkdf::<Sha256>::extract(Some(b""), &info_ikm);
    let mut ks_context = Vec::with_capacity(1 + 2 * 32);
    ks_context.push(0u8);
    ks_context.extend_from_slice(&psk_id_hash);
    ks_context.extend_from_slice(&info_hash);
    let secret = labeled_extract(&suite, &shared_secret[..], b"secret", b"");
    let mut key = Zeroizing::new(vec![0u8; aead.key_len()]);
    labeled_expand(&secret, &suite, b"key", &ks_context, &mut key)?;
    let mut base_nonce = [0u8; 12];
    labeled_expand(&secret, &suite, b"base_nonce", &ks_context, &mut base_nonce)?;
    let mut exporter_secret = Zeroizing::new([0u8; 32]);
    labeled_expand(
        &secret,
        &suite,
        b"exp",
        &ks_context,
        &mut exporter_secret[..],
    )?;

    // Seal with sequence number 0: the nonce is the base nonce itself.
    let ct = aead_seal(aead, &key, &base_nonce, pt)?;
    // Export (RFC 9180 §5.3): LabeledExpand(exporter_secret, "sec", context, L).
    let exporter = Hkdf::<Sha256>::from_prk(&exporter_secret[..])
        .map_err(|_| OhttpError::Internal("HKDF PRK"))?;
    let mut response_secret = Zeroizing::new(vec![0u8; aead.response_nonce_len()]);
    labeled_expand(
        &exporter,
        &suite,
        b"sec",
        LABEL_RESPONSE,
        &mut response_secret,
    )?;
    Ok(Sealed {
        enc,
        ct,
        secret: response_secret,
    })
}

/// Sender side with a fresh random ephemeral key (the normal client path).
pub(crate) fn seal_request(
    aead: Aead,
    public_key: &[u8],
    info: &[u8],
    pt: &[u8],
) -> Result<Sealed, OhttpError> {
    let mut eph = Zeroizing::new([0u8; X25519_LEN]);
    OsRng
        .try_fill_bytes(&mut eph[..])
        .map_err(|_| OhttpError::Internal("operating system RNG failed"))?;
    seal_request_with_ephemeral(aead, public_key, &eph, info, pt)
}

/// AEAD seal with empty associated data.
fn aead_seal(aead: Aead, key: &[u8], nonce: &[u8; 12], pt: &[u8]) -> Result<Vec<u8>, OhttpError> {
    let payload = Payload { msg: pt, aad: b"" };
    match aead {
        Aead::Aes128Gcm => Aes128Gcm::new_from_slice(key)
            .map_err(|_| OhttpError::Internal("AEAD key"))?
            .encrypt(nonce.into(), payload),
        Aead::ChaCha20Poly1305 => ChaCha20Poly1305::new_from_slice(key)
            .map_err(|_| OhttpError::Internal("AEAD key"))?
            .encrypt(nonce.into(), payload),
    }
    .map_err(|_| OhttpError::Internal("AEAD seal"))
}

/// Derives the response AEAD key and nonce: `prk = Extract(enc || response_nonce, secret)`,
/// `key = Expand(prk, "key", Nk)`, `nonce = Expand(prk, "nonce", Nn)`.
fn response_key(
    aead: Aead,
    secret: &[u8],
    enc: &[u8],
    response_nonce: &[u8],
) -> Result<(Zeroizing<Vec<u8>>, [u8; 12]), OhttpError> {
    let mut salt = Vec::with_capacity(enc.len() + response_nonce.len());
    salt.extend_from_slice(enc);
    salt.extend_from_slice(response_nonce);
    let hk = Hkdf::<Sha256>::new(Some(&salt), secret);
    let mut key = Zeroizing::new(vec![0u8; aead.key_len()]);
    let mut nonce = [0u8; 12];
    hk.expand(b"key", &mut key)
        .and_then(|()| hk.expand(b"nonce", &mut nonce))
        .map_err(|_| OhttpError::Internal("HKDF expand"))?;
    Ok((key, nonce))
}

/// What both ends of one exchange derive the response key from (RFC 9458 §4.4): the AEAD, the
/// request's encapsulated key and the secret exported from its HPKE context. The client opens
/// the response with it, the gateway seals it; Debug shows the AEAD only.
pub(crate) struct ResponseSecret {
    /// The AEAD of the request's suite.
    pub(crate) aead: Aead,
    /// The request's encapsulated key.
    pub(crate) enc: [u8; X25519_LEN],
    /// The secret exported with [`LABEL_RESPONSE`].
    pub(crate) secret: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for ResponseSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseSecret")
            .field("aead", &self.aead)
            .finish_non_exhaustive()
    }
}

impl ResponseSecret {
    /// Seals a response: returns `response_nonce || Seal(key, nonce, "", pt)`.
    pub(crate) fn seal(&self, response_nonce: &[u8], pt: &[u8]) -> Result<Vec<u8>, OhttpError> {
        seal_response(self.aead, &self.secret, &self.enc, response_nonce, pt)
    }

    /// Opens an encapsulated response (`response_nonce || ct`).
    pub(crate) fn open(&self, enc_response: &[u8]) -> Result<Vec<u8>, OhttpError> {
        open_response(self.aead, &self.secret, &self.enc, enc_response)
    }
}

/// Seals a response: returns `response_nonce || Seal(key, nonce, "", pt)`.
fn seal_response(
    aead: Aead,
    secret: &[u8],
    enc: &[u8],
    response_nonce: &[u8],
    pt: &[u8],
) -> Result<Vec<u8>, OhttpError> {
    let (key, nonce) = response_key(aead, secret, enc, response_nonce)?;
    let ct = aead_seal(aead, &key, &nonce, pt)?;
    let mut out = Vec::with_capacity(response_nonce.len() + ct.len());
    out.extend_from_slice(response_nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Opens an encapsulated response (`response_nonce || ct`).
fn open_response(
    aead: Aead,
    secret: &[u8],
    enc: &[u8],
    enc_response: &[u8],
) -> Result<Vec<u8>, OhttpError> {
    let n = aead.response_nonce_len();
    if enc_response.len() < n + aead.tag_len() {
        return Err(OhttpError::Malformed("encapsulated response too short"));
    }
    let (response_nonce, ct) = enc_response.split_at(n);
    let (key, nonce) = response_key(aead, secret, enc, response_nonce)?;
    let payload = Payload { msg: ct, aad: b"" };
    match aead {
        Aead::Aes128Gcm => Aes128Gcm::new_from_slice(&key)
            .map_err(|_| OhttpError::Internal("AEAD key"))?
            .decrypt((&nonce).into(), payload),
        Aead::ChaCha20Poly1305 => ChaCha20Poly1305::new_from_slice(&key)
            .map_err(|_| OhttpError::Internal("AEAD key"))?
            .decrypt((&nonce).into(), payload),
    }
    .map_err(|_| OhttpError::Decrypt)
}
