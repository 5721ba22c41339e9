//! The client side of Oblivious HTTP (RFC 9458 §4.3, §4.4): encapsulates a binary HTTP request
//! to a gateway's published key configuration and opens the encapsulated response.
//!
//! `sift check` uses this to reach a gateway the way an Apple device does (through a relay or
//! directly). A [`ClientRequest`] is built once from the gateway's `application/ohttp-keys`
//! body and can encapsulate any number of requests; each encapsulation uses a fresh ephemeral
//! key and returns a single-use [`ClientResponse`] that decrypts the matching response.
//!
//! ```
//! use bytes::Bytes;
//! use sift_ohttp::{ClientRequest, Gateway, GatewayConfig, KeyStore, DEFAULT_GRACE};
//!
//! let store = KeyStore::generate(DEFAULT_GRACE).unwrap();
//! let gateway = Gateway::new(&store, GatewayConfig::default()).unwrap();
//! let client = ClientRequest::from_encoded_config_list(&gateway.key_configs()).unwrap();
//!
//! let request = http::Request::post("https://pir.example.com/queries")
//!     .body(Bytes::from_static(b"query"))
//!     .unwrap();
//! let (body, pending) = client.encapsulate(&request).unwrap();
//!
//! // The gateway side (normally behind the relay).
//! let (inner, ctx) = gateway.decapsulate(&body).unwrap();
//! assert_eq!(inner.body(), "query");
//! let reply = ctx.encapsulate(http::Response::new(Bytes::from_static(b"answer"))).unwrap();
//!
//! let response = pending.decapsulate(&reply).unwrap();
//! assert_eq!(response.body(), "answer");
//! ```

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};

use crate::bhttp::{self, Limits};
use crate::config::{
    Aead, KEM_X25519_SHA256, KeyConfig, REQUEST_MEDIA_TYPE, RESPONSE_MEDIA_TYPE, SymmetricSuite,
    X25519_LEN, decode_list,
};
use crate::crypto;
use crate::error::OhttpError;

/// A client bound to one gateway key configuration and one symmetric suite.
#[derive(Debug, Clone)]
pub struct ClientRequest {
    key_id: u8,
    public_key: [u8; X25519_LEN],
    aead: Aead,
    limits: Limits,
}

impl ClientRequest {
    /// A client for `config`, using the first of its suites that this crate implements (the
    /// gateway lists them in its order of preference).
    pub fn from_config(config: &KeyConfig) -> Result<Self, OhttpError> {
        let suite = config
            .suites
            .iter()
            .copied()
            .find(|s| s.supported_aead().is_some())
            .ok_or(OhttpError::UnsupportedAlgorithm {
                kem: config.kem,
                kdf: config.suites.first().map_or(0, |s| s.kdf),
                aead: config.suites.first().map_or(0, |s| s.aead),
            })?;
        Self::with_suite(config, suite)
    }

    /// A client for `config` using exactly `suite`, which the configuration must offer.
    pub fn with_suite(config: &KeyConfig, suite: SymmetricSuite) -> Result<Self, OhttpError> {
        let unsupported = OhttpError::UnsupportedAlgorithm {
            kem: config.kem,
            kdf: suite.kdf,
            aead: suite.aead,
        };
        if config.kem != KEM_X25519_SHA256 || !config.suites.contains(&suite) {
            return Err(unsupported);
        }
        let aead = suite.supported_aead().ok_or(unsupported)?;
        let public_key = config
            .public_key
            .as_slice()
            .try_into()
            .map_err(|_| OhttpError::InvalidKeyConfig("X25519 public key must be 32 bytes"))?;
        Ok(Self {
            key_id: config.key_id,
            public_key,
            aead,
            limits: Limits::default(),
        })
    }

    /// A client for one encoded key configuration (RFC 9458 §3.1, without a length prefix).
    pub fn from_encoded_config(encoded: &[u8]) -> Result<Self, OhttpError> {
        Self::from_config(&KeyConfig::decode(encoded)?)
    }

    /// A client for the first usable configuration of an `application/ohttp-keys` body
    /// (RFC 9458 §3.2): configurations with other KEMs or only unknown suites are skipped.
    pub fn from_encoded_config_list(encoded: &[u8]) -> Result<Self, OhttpError> {
        decode_list(encoded)?
            .iter()
            .find_map(|c| Self::from_config(c).ok())
            .ok_or(OhttpError::InvalidKeyConfig("no usable key configuration"))
    }

    /// Replaces the limits applied when decoding responses (default [`Limits::default`]).
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The key identifier requests will carry.
    pub fn key_id(&self) -> u8 {
        self.key_id
    }

    /// The AEAD chosen for requests and responses.
    pub fn aead(&self) -> Aead {
        self.aead
    }

    /// Encodes `request` as known-length binary HTTP and encapsulates it with a fresh
    /// ephemeral key. Returns the `message/ohttp-req` body and the response context.
    pub fn encapsulate(
        &self,
        request: &http::Request<Bytes>,
    ) -> Result<(Bytes, ClientResponse), OhttpError> {
        self.encapsulate_bhttp(&bhttp::encode_request(request)?)
    }

    /// Encapsulates an already encoded binary HTTP request with a fresh ephemeral key.
    pub fn encapsulate_bhttp(&self, bhttp: &[u8]) -> Result<(Bytes, ClientResponse), OhttpError> {
        let hdr = crypto::header(self.key_id, self.aead);
        let info = crypto::request_info(&hdr);
        let sealed = crypto::seal_request(self.aead, &self.public_key, &info, bhttp)?;
        Ok(self.finish(&hdr, sealed))
    }

    /// Deterministic encapsulation with a chosen ephemeral X25519 secret key, for
    /// known-answer tests (RFC 9458 Appendix A). Never use a fixed key for real traffic: the
    /// gateway's replay cache rejects a repeated `enc`, and the requests become linkable.
    pub fn encapsulate_bhttp_with_ephemeral(
        &self,
        bhttp: &[u8],
        ephemeral_secret: &[u8; X25519_LEN],
    ) -> Result<(Bytes, ClientResponse), OhttpError> {
        let hdr = crypto::header(self.key_id, self.aead);
        let info = crypto::request_info(&hdr);
        let sealed = crypto::seal_request_with_ephemeral(
            self.aead,
            &self.public_key,
            ephemeral_secret,
            &info,
            bhttp,
        )?;
        Ok(self.finish(&hdr, sealed))
    }

    fn finish(
        &self,
        hdr: &[u8; crypto::HEADER_LEN],
        sealed: crypto::Sealed,
    ) -> (Bytes, ClientResponse) {
        let mut body = Vec::with_capacity(hdr.len() + X25519_LEN + sealed.ct.len());
        body.extend_from_slice(hdr);
        body.extend_from_slice(&sealed.enc);
        body.extend_from_slice(&sealed.ct);
        let pending = ClientResponse {
            keys: crypto::ResponseSecret {
                aead: self.aead,
                enc: sealed.enc,
                secret: sealed.secret,
            },
            limits: self.limits,
        };
        (Bytes::from(body), pending)
    }

    /// The outer request to POST to a relay or gateway at `uri`: the encapsulated body with
    /// `Content-Type: message/ohttp-req`.
    pub fn outer_request(uri: &str, body: Bytes) -> Result<http::Request<Bytes>, OhttpError> {
        http::Request::post(uri)
            .header(CONTENT_TYPE, HeaderValue::from_static(REQUEST_MEDIA_TYPE))
            .body(body)
            .map_err(|_| OhttpError::InvalidUri)
    }
}

/// What a client keeps to open the response to one encapsulated request. Use it once.
#[derive(Debug)]
pub struct ClientResponse {
    keys: crypto::ResponseSecret,
    limits: Limits,
}

impl ClientResponse {
    /// Opens a `message/ohttp-res` body and returns the binary HTTP response inside.
    pub fn decapsulate_bhttp(self, body: &[u8]) -> Result<Vec<u8>, OhttpError> {
        self.keys.open(body)
    }

    /// Opens a `message/ohttp-res` body and decodes the response inside (informational
    /// responses and trailers are dropped).
    pub fn decapsulate(self, body: &[u8]) -> Result<http::Response<Bytes>, OhttpError> {
        let limits = self.limits;
        let plain = self.decapsulate_bhttp(body)?;
        Ok(bhttp::decode_response(&plain, &limits)?)
    }

    /// Checks the outer response of the gateway (status 200, `Content-Type:
    /// message/ohttp-res`) and opens its body. A gateway error becomes
    /// [`OhttpError::GatewayRejected`], marked as a key problem when the gateway answered
    /// with the RFC 9458 §5.3 `ohttp-key` problem type (refetch the key configuration).
    pub fn decapsulate_outer(
        self,
        outer: &http::Response<Bytes>,
    ) -> Result<http::Response<Bytes>, OhttpError> {
        if outer.status() != http::StatusCode::OK {
            let key_problem = std::str::from_utf8(outer.body())
                .is_ok_and(|b| b.contains("http-problem-types#ohttp-key"));
            return Err(OhttpError::GatewayRejected {
                status: outer.status().as_u16(),
                key_problem,
            });
        }
        let content_type_ok = outer
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case(RESPONSE_MEDIA_TYPE));
        if !content_type_ok {
            return Err(OhttpError::Malformed(
                "gateway response is not message/ohttp-res",
            ));
        }
        self.decapsulate(outer.body())
    }
}
