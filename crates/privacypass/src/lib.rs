//! Privacy Pass (RFC 9578) token type 2 — publicly verifiable Blind RSA-2048 tokens
//! (RSABSSA-SHA384-PSS-Deterministic), as used by Apple's pir-service-example to authorize PIR requests.
//! Pure library: wire formats, issuer, verifier with replay cache, and a client for tests.
#![forbid(unsafe_code)]

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use blind_rsa_signatures::{
    BlindSignature, BlindingResult, DefaultRng, KeyPairSha384PSSDeterministic as KeyPair,
    PublicKeySha384PSSDeterministic as RsaPk, SecretKeySha384PSSDeterministic as RsaSk, Signature,
};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Token type 2 (Blind RSA, 2048-bit) per RFC 9578.
pub const TOKEN_TYPE: u16 = 2;
/// RSA modulus length in bytes (Nk).
pub const NK: usize = 256;
/// Length of a serialized `TokenRequest`.
pub const TOKEN_REQUEST_LEN: usize = 2 + 1 + NK;
/// Length of a serialized `Token`.
pub const TOKEN_LEN: usize = 2 + 32 + 32 + 32 + NK;

/// Errors from parsing, issuing or verifying tokens.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// Input had the wrong length or structure.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// Token type other than 2.
    #[error("unsupported token type {0}")]
    UnsupportedType(u16),
    /// No issuer key matches the (truncated) key id.
    #[error("unknown token key")]
    UnknownKey,
    /// Signature did not verify.
    #[error("invalid token signature")]
    InvalidSignature,
    /// Nonce was already redeemed.
    #[error("token already redeemed")]
    Replay,
    /// Key generation, encoding or crypto failure.
    #[error("crypto: {0}")]
    Crypto(String),
}

fn cerr(e: impl std::fmt::Display) -> Error {
    Error::Crypto(e.to_string())
}

/// `TokenRequest` = type(2) ‖ truncated_key_id(1) ‖ blinded_msg(Nk).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRequest {
    /// Last byte of the issuer's token_key_id.
    pub truncated_key_id: u8,
    /// Blinded message (Nk bytes).
    pub blinded_msg: Vec<u8>,
}

/// Checks that the wire form `b` of a `what` is `len` bytes long and starts with [`TOKEN_TYPE`].
fn check_length_and_type(b: &[u8], len: usize, what: &'static str) -> Result<(), Error> {
    if b.len() != len {
        return Err(Error::Malformed(what));
    }
    let t = u16::from_be_bytes([b[0], b[1]]);
    if t != TOKEN_TYPE {
        return Err(Error::UnsupportedType(t));
    }
    Ok(())
}

impl TokenRequest {
    /// Parse the 259-byte wire form; rejects other token types.
    pub fn parse(b: &[u8]) -> Result<Self, Error> {
        check_length_and_type(b, TOKEN_REQUEST_LEN, "token request")?;
        Ok(Self {
            truncated_key_id: b[2],
            blinded_msg: b[3..].to_vec(),
        })
    }
    /// Serialize to the wire form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = TOKEN_TYPE.to_be_bytes().to_vec();
        v.push(self.truncated_key_id);
        v.extend_from_slice(&self.blinded_msg);
        v
    }
}

/// `TokenResponse` = blind_sig(Nk).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenResponse {
    /// Blind signature (Nk bytes).
    pub blind_sig: Vec<u8>,
}

impl TokenResponse {
    /// Parse the 256-byte wire form.
    pub fn parse(b: &[u8]) -> Result<Self, Error> {
        if b.len() != NK {
            return Err(Error::Malformed("token response"));
        }
        Ok(Self {
            blind_sig: b.to_vec(),
        })
    }
    /// Serialize to the wire form.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.blind_sig.clone()
    }
}

/// `Token` = type(2) ‖ nonce(32) ‖ challenge_digest(32) ‖ token_key_id(32) ‖ authenticator(Nk).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    /// Client nonce (replay key).
    pub nonce: [u8; 32],
    /// SHA-256 of the TokenChallenge (not checked by the verifier, as in Apple's service).
    pub challenge_digest: [u8; 32],
    /// SHA-256 of the issuer SPKI.
    pub token_key_id: [u8; 32],
    /// RSASSA-PSS signature over the first 98 bytes.
    pub authenticator: Vec<u8>,
}

impl Token {
    /// Parse the 354-byte wire form.
    pub fn parse(b: &[u8]) -> Result<Self, Error> {
        check_length_and_type(b, TOKEN_LEN, "token")?;
        let a = |o: usize| -> [u8; 32] {
            let mut x = [0u8; 32];
            x.copy_from_slice(&b[o..o + 32]);
            x
        };
        Ok(Self {
            nonce: a(2),
            challenge_digest: a(34),
            token_key_id: a(66),
            authenticator: b[98..].to_vec(),
        })
    }
    /// The signed part: type ‖ nonce ‖ challenge_digest ‖ token_key_id.
    pub fn signed_input(&self) -> Vec<u8> {
        token_input(&self.nonce, &self.challenge_digest, &self.token_key_id)
    }
    /// Serialize to the wire form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = self.signed_input();
        v.extend_from_slice(&self.authenticator);
        v
    }
    /// Format as an `Authorization` header value: `PrivateToken token=<base64url>`.
    pub fn to_header(&self) -> String {
        format!(
            "PrivateToken token={}",
            URL_SAFE_NO_PAD.encode(self.to_bytes())
        )
    }
    /// Parse an `Authorization` header value; tolerant to padding, quoting and extra params,
    /// strict on count: exactly one `PrivateToken` credential with exactly one `token`
    /// parameter (a header carrying two tokens is refused, not read as its first).
    pub fn from_header(h: &str) -> Result<Self, Error> {
        let h = h.trim();
        let (scheme, rest) = h
            .split_once(char::is_whitespace)
            .ok_or(Error::Malformed("authorization"))?;
        if !scheme.eq_ignore_ascii_case("PrivateToken") {
            return Err(Error::Malformed("authorization scheme"));
        }
        let mut found = None;
        for p in rest.split(',') {
            let p = p.trim();
            if p.split_whitespace()
                .next()
                .is_some_and(|w| w.eq_ignore_ascii_case("PrivateToken"))
            {
                // `…, PrivateToken token=…`: a second credential in the same header.
                return Err(Error::Malformed("authorization: more than one credential"));
            }
            if let Some((_, v)) = p
                .split_once('=')
                .filter(|(k, _)| k.trim().eq_ignore_ascii_case("token"))
            {
                if found.is_some() {
                    return Err(Error::Malformed("authorization: more than one token"));
                }
                found = Some(v.trim().trim_matches('"'));
            }
        }
        let v = found.ok_or(Error::Malformed("authorization: no token param"))?;
        let bytes = URL_SAFE_NO_PAD
            .decode(v.trim_end_matches('='))
            .or_else(|_| URL_SAFE.decode(v))
            .map_err(|_| Error::Malformed("token base64"))?;
        Self::parse(&bytes)
    }
}

fn token_input(nonce: &[u8; 32], cd: &[u8; 32], kid: &[u8; 32]) -> Vec<u8> {
    let mut v = Vec::with_capacity(98);
    v.extend_from_slice(&TOKEN_TYPE.to_be_bytes());
    v.extend_from_slice(nonce);
    v.extend_from_slice(cd);
    v.extend_from_slice(kid);
    v
}

/// RFC 9578 §2.1 TokenChallenge: type ‖ issuer_name(u16 len) ‖ redemption_context(u8 len) ‖ origin_info(u16 len).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenChallenge {
    /// Issuer name (host).
    pub issuer_name: String,
    /// Empty or 32 bytes.
    pub redemption_context: Vec<u8>,
    /// Origin names joined by ','; empty for Apple's device-built challenge.
    pub origin_info: String,
}

impl TokenChallenge {
    /// Challenge as Apple's device builds it: issuer name only.
    pub fn new(issuer_name: &str) -> Self {
        Self {
            issuer_name: issuer_name.into(),
            redemption_context: vec![],
            origin_info: String::new(),
        }
    }
    /// Encode per RFC 9578 §2.1.
    pub fn to_bytes(&self) -> Result<Vec<u8>, Error> {
        let mut v = TOKEN_TYPE.to_be_bytes().to_vec();
        let n =
            u16::try_from(self.issuer_name.len()).map_err(|_| Error::Malformed("issuer name"))?;
        v.extend_from_slice(&n.to_be_bytes());
        v.extend_from_slice(self.issuer_name.as_bytes());
        let r = u8::try_from(self.redemption_context.len())
            .map_err(|_| Error::Malformed("redemption context"))?;
        v.push(r);
        v.extend_from_slice(&self.redemption_context);
        let o =
            u16::try_from(self.origin_info.len()).map_err(|_| Error::Malformed("origin info"))?;
        v.extend_from_slice(&o.to_be_bytes());
        v.extend_from_slice(self.origin_info.as_bytes());
        Ok(v)
    }
    /// SHA-256 of the encoding (the token's challenge_digest).
    pub fn digest(&self) -> Result<[u8; 32], Error> {
        Ok(Sha256::digest(self.to_bytes()?).into())
    }
}

/// Issuer public key: RSA-2048 with its RFC 9578 SPKI (id-RSASSA-PSS, SHA-384/MGF1-SHA-384/salt 48).
#[derive(Clone, Debug)]
pub struct IssuerPublicKey {
    pk: RsaPk,
    spki: Vec<u8>,
    key_id: [u8; 32],
}

impl IssuerPublicKey {
    fn from_pk(pk: RsaPk) -> Result<Self, Error> {
        let spki = pk.to_spki().map_err(cerr)?;
        let key_id = Sha256::digest(&spki).into();
        Ok(Self { pk, spki, key_id })
    }
    /// Load from SPKI DER (RSASSA-PSS or rsaEncryption form); re-encodes to the canonical PSS SPKI.
    pub fn from_spki(der: &[u8]) -> Result<Self, Error> {
        let pk = RsaPk::from_spki(der)
            .or_else(|_| RsaPk::from_der(der))
            .map_err(cerr)?;
        Self::from_pk(pk)
    }
    /// SPKI DER as served in the issuer directory and `/token-key-for-user-token`.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }
    /// token_key_id = SHA-256(SPKI DER).
    pub fn token_key_id(&self) -> [u8; 32] {
        self.key_id
    }
    /// Truncated key id = last byte of token_key_id.
    pub fn truncated_key_id(&self) -> u8 {
        self.key_id[31]
    }
    /// Verify a token's authenticator (no replay check).
    pub fn verify_signature(&self, t: &Token) -> Result<(), Error> {
        if !ct_eq(&t.token_key_id, &self.key_id) {
            return Err(Error::UnknownKey);
        }
        self.pk
            .verify(&Signature(t.authenticator.clone()), None, t.signed_input())
            .map_err(|_| Error::InvalidSignature)
    }
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Issuer: holds one RSA-2048 secret key and signs blinded token requests.
#[derive(Clone, Debug)]
pub struct Issuer {
    sk: RsaSk,
    public: IssuerPublicKey,
}

impl Issuer {
    /// Generate a fresh RSA-2048 issuer key.
    pub fn generate() -> Result<Self, Error> {
        let kp = KeyPair::generate(&mut DefaultRng, 2048).map_err(cerr)?;
        Self::from_sk(kp.sk)
    }
    fn from_sk(sk: RsaSk) -> Result<Self, Error> {
        let public = IssuerPublicKey::from_pk(sk.public_key().map_err(cerr)?)?;
        if public.pk.components().n().len() != NK {
            return Err(Error::Crypto("issuer key must be RSA-2048".into()));
        }
        Ok(Self { sk, public })
    }
    /// Load from a PKCS#8 (or PKCS#1) PEM so keys survive restarts.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, Error> {
        Self::from_sk(RsaSk::from_pem(pem).map_err(cerr)?)
    }
    /// Export as PKCS#8 PEM.
    pub fn to_pkcs8_pem(&self) -> Result<String, Error> {
        self.sk.to_pem().map_err(cerr)
    }
    /// The public key (SPKI, key id).
    pub fn public_key(&self) -> &IssuerPublicKey {
        &self.public
    }
    /// Sign a token request after checking its type and truncated key id.
    pub fn issue(&self, req: &TokenRequest) -> Result<TokenResponse, Error> {
        if req.truncated_key_id != self.public.truncated_key_id() {
            return Err(Error::UnknownKey);
        }
        if req.blinded_msg.len() != NK {
            return Err(Error::Malformed("blinded message"));
        }
        let s = self.sk.blind_sign(&req.blinded_msg).map_err(cerr)?;
        Ok(TokenResponse { blind_sig: s.0 })
    }
}

/// Issuer directory JSON (`/.well-known/private-token-issuer-directory`) for the given keys.
pub fn issuer_directory_json(keys: &[&IssuerPublicKey]) -> String {
    let keys: Vec<_> = keys.iter().map(|k| (*k, None)).collect();
    issuer_directory_json_with_not_before(&keys)
}

/// Issuer directory JSON whose keys may carry RFC 9578's `not-before` (Unix seconds from which
/// clients may use the key), listed in order of preference.
pub fn issuer_directory_json_with_not_before(keys: &[(&IssuerPublicKey, Option<u64>)]) -> String {
    let ks: Vec<String> = keys
        .iter()
        .map(|(k, not_before)| {
            let nb = not_before.map_or(String::new(), |t| format!(",\"not-before\":{t}"));
            format!(
                "{{\"token-type\":2,\"token-key\":\"{}\"{nb}}}",
                URL_SAFE_NO_PAD.encode(k.spki_der())
            )
        })
        .collect();
    format!(
        "{{\"issuer-request-uri\":\"/issue\",\"token-keys\":[{}]}}",
        ks.join(",")
    )
}

/// (current generation, previous generation, start of current generation).
type Generations = (HashSet<[u8; 32]>, HashSet<[u8; 32]>, Instant);

/// Bounded replay cache: two generations of nonces rotated every `period` or when the current one
/// reaches `capacity`. Memory stays ≤ 2·capacity nonces. Trade-off: a nonce is remembered for at least
/// one period unless traffic exceeds `capacity` per period, in which case it may be forgotten earlier.
#[derive(Debug)]
pub struct ReplayCache {
    inner: Mutex<Generations>,
    capacity: usize,
    period: Duration,
}

impl ReplayCache {
    /// New cache holding up to `capacity` nonces per generation, rotating every `period`.
    pub fn new(capacity: usize, period: Duration) -> Self {
        Self {
            inner: Mutex::new((HashSet::new(), HashSet::new(), Instant::now())),
            capacity: capacity.max(1),
            period,
        }
    }
    /// Record a nonce; returns `Err(Replay)` if already seen.
    pub fn check_and_insert(&self, nonce: &[u8; 32]) -> Result<(), Error> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (cur, old, since) = &mut *g;
        if cur.contains(nonce) || old.contains(nonce) {
            return Err(Error::Replay);
        }
        if cur.len() >= self.capacity || since.elapsed() >= self.period {
            *old = std::mem::take(cur);
            *since = Instant::now();
        }
        cur.insert(*nonce);
        Ok(())
    }
}

/// Verifier over several issuer keys (one per tier), selected by the last byte of token_key_id.
#[derive(Debug)]
pub struct Verifier {
    keys: HashMap<u8, IssuerPublicKey>,
    replay: ReplayCache,
}

impl Verifier {
    /// Build from keys and a replay cache; errors if two keys share a truncated id.
    pub fn new(keys: Vec<IssuerPublicKey>, replay: ReplayCache) -> Result<Self, Error> {
        let mut m = HashMap::new();
        for k in keys {
            if m.insert(k.truncated_key_id(), k).is_some() {
                return Err(Error::Crypto("duplicate truncated key id".into()));
            }
        }
        Ok(Self { keys: m, replay })
    }
    /// Verify a token and consume its nonce. Returns the truncated key id (tier selector).
    /// The challenge digest is not checked (as in Apple's service).
    pub fn verify(&self, t: &Token) -> Result<u8, Error> {
        let k = self
            .keys
            .get(&t.token_key_id[31])
            .ok_or(Error::UnknownKey)?;
        k.verify_signature(t)?;
        self.replay.check_and_insert(&t.nonce)?;
        Ok(t.token_key_id[31])
    }
    /// Parse an `Authorization` header and verify.
    pub fn verify_header(&self, h: &str) -> Result<u8, Error> {
        self.verify(&Token::from_header(h)?)
    }
}

/// Client state between request and response.
#[derive(Debug)]
pub struct PendingToken {
    nonce: [u8; 32],
    challenge_digest: [u8; 32],
    blinding: BlindingResult,
    key: IssuerPublicKey,
}

/// Client: blind a token request for `key` and `challenge`.
pub fn client_request(
    key: &IssuerPublicKey,
    challenge: &TokenChallenge,
) -> Result<(TokenRequest, PendingToken), Error> {
    let mut nonce = [0u8; 32];
    rand::Rng::fill(&mut rand::thread_rng(), &mut nonce);
    let challenge_digest = challenge.digest()?;
    let msg = token_input(&nonce, &challenge_digest, &key.key_id);
    let blinding = key.pk.blind(&mut DefaultRng, &msg).map_err(cerr)?;
    let req = TokenRequest {
        truncated_key_id: key.truncated_key_id(),
        blinded_msg: blinding.blind_message.0.clone(),
    };
    Ok((
        req,
        PendingToken {
            nonce,
            challenge_digest,
            blinding,
            key: key.clone(),
        },
    ))
}

impl PendingToken {
    /// Unblind the issuer's response into a token (verifies the signature).
    pub fn finalize(self, resp: &TokenResponse) -> Result<Token, Error> {
        let msg = token_input(&self.nonce, &self.challenge_digest, &self.key.key_id);
        let sig = self
            .key
            .pk
            .finalize(
                &BlindSignature(resp.blind_sig.clone()),
                &self.blinding,
                &msg,
            )
            .map_err(|_| Error::InvalidSignature)?;
        Ok(Token {
            nonce: self.nonce,
            challenge_digest: self.challenge_digest,
            token_key_id: self.key.key_id,
            authenticator: sig.0,
        })
    }
}
