//! Typed errors of the gateway, each with the HTTP status the server should answer with.

use crate::bhttp::BhttpError;

/// Everything that can go wrong between an encapsulated request and its response.
#[derive(Debug, thiserror::Error)]
pub enum OhttpError {
    /// The encapsulated request is too short or otherwise not an RFC 9458 message.
    #[error("malformed encapsulated request: {0}")]
    Malformed(&'static str),
    /// No current or retained key has this identifier (the client has a stale config).
    #[error("unknown key identifier {0}")]
    UnknownKeyId(u8),
    /// The request names a KEM, KDF or AEAD this gateway does not offer for the key.
    #[error("unsupported algorithms kem={kem:#06x} kdf={kdf:#06x} aead={aead:#06x}")]
    UnsupportedAlgorithm {
        /// KEM identifier in the request.
        kem: u16,
        /// KDF identifier in the request.
        kdf: u16,
        /// AEAD identifier in the request.
        aead: u16,
    },
    /// HPKE decapsulation or AEAD open failed (wrong key, tampering, garbage).
    #[error("could not decrypt the encapsulated request")]
    Decrypt,
    /// The same encapsulated key `enc` was seen recently: a replayed request.
    #[error("replayed encapsulated request")]
    Replay,
    /// The durable record of spent requests could not be consulted; the request is refused
    /// rather than risk accepting a replay (503).
    #[error("replay store unavailable: {0}")]
    ReplayStoreUnavailable(String),
    /// The body is larger than the configured limit.
    #[error("body of {actual} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// Configured limit in bytes.
        limit: usize,
        /// Size received (or at least that many).
        actual: usize,
    },
    /// The outer request does not carry `Content-Type: message/ohttp-req`.
    #[error("content type must be message/ohttp-req")]
    WrongContentType,
    /// The decrypted binary HTTP message is invalid.
    #[error("invalid binary HTTP: {0}")]
    Bhttp(#[from] BhttpError),
    /// A key configuration that cannot be encoded or decoded.
    #[error("invalid key configuration: {0}")]
    InvalidKeyConfig(&'static str),
    /// Reading or writing the key file failed.
    #[error("key file {path}: {source}")]
    KeyFile {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A client-side URI that `http` does not accept.
    #[error("invalid URI")]
    InvalidUri,
    /// The gateway answered an encapsulated request with an error status (client side).
    #[error("gateway rejected the request with status {status}{}", if *key_problem { " (key configuration not accepted)" } else { "" })]
    GatewayRejected {
        /// The outer HTTP status.
        status: u16,
        /// Whether the gateway reported the RFC 9458 §5.3 `ohttp-key` problem: the client
        /// should refetch the key configuration.
        key_problem: bool,
    },
    /// A cryptographic operation on our side failed (should not happen with valid keys).
    #[error("internal crypto error: {0}")]
    Internal(&'static str),
}

impl OhttpError {
    /// The HTTP status for the outer response: 413 for size, 415 for content type, 500 for
    /// our own failures, 400 for everything a client sent wrong. Key problems are 400 too, as
    /// RFC 9458 §5.3 recommends, but carry the `ohttp-key` problem type (see
    /// [`OhttpError::is_key_problem`]) so the client knows to refetch the key configuration.
    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            OhttpError::TooLarge { .. } | OhttpError::Bhttp(BhttpError::TooLarge { .. }) => {
                S::PAYLOAD_TOO_LARGE
            }
            OhttpError::WrongContentType => S::UNSUPPORTED_MEDIA_TYPE,
            OhttpError::GatewayRejected { .. } => S::BAD_GATEWAY,
            OhttpError::ReplayStoreUnavailable(_) => S::SERVICE_UNAVAILABLE,
            OhttpError::KeyFile { .. }
            | OhttpError::InvalidUri
            | OhttpError::Internal(_)
            | OhttpError::InvalidKeyConfig(_) => S::INTERNAL_SERVER_ERROR,
            OhttpError::UnknownKeyId(_)
            | OhttpError::UnsupportedAlgorithm { .. }
            | OhttpError::Malformed(_)
            | OhttpError::Decrypt
            | OhttpError::Replay
            | OhttpError::Bhttp(_) => S::BAD_REQUEST,
        }
    }

    /// Whether the request used a key identifier or algorithms the gateway does not accept:
    /// answered with problem type `https://iana.org/assignments/http-problem-types#ohttp-key`
    /// (RFC 9458 §5.3).
    pub fn is_key_problem(&self) -> bool {
        matches!(
            self,
            OhttpError::UnknownKeyId(_) | OhttpError::UnsupportedAlgorithm { .. }
        )
    }
}
