//! Oblivious HTTP (RFC 9458) with binary HTTP (RFC 9292) for sift.
//!
//! Apple's devices reach the PIR service and the Privacy Pass issuer through Apple's OHTTP
//! relay, so the operator runs an Oblivious Gateway Resource. This crate is that gateway plus a
//! matching client (used by `sift check` to talk to a gateway the way a device does):
//!
//! - [`config`]: key configurations and the `application/ohttp-keys` format, media types;
//! - [`keys`]: gateway key pairs, the persisted key file (mode 0600, atomic writes) and
//!   rotation with a grace period for retired keys;
//! - [`gateway`]: decapsulation of `message/ohttp-req`, encapsulation of `message/ohttp-res`,
//!   replay detection, size limits and the outer HTTP error responses;
//! - [`client`]: encapsulation of requests to a published key configuration and
//!   decapsulation of the responses;
//! - [`bhttp`]: the binary HTTP codec used inside the encryption.
//!
//! Only DHKEM(X25519, HKDF-SHA256) with HKDF-SHA256 and AES-128-GCM or ChaCha20-Poly1305 is
//! implemented, the suite of RFC 9458's example and of Apple's relay. Everything runs in pure
//! Rust (the `hpke` crate for the gateway's HPKE, RustCrypto primitives elsewhere).
#![forbid(unsafe_code)]

pub mod bhttp;
pub mod client;
pub mod config;
mod crypto;
pub mod error;
pub mod gateway;
pub mod keys;
pub mod replay;

pub use client::{ClientRequest, ClientResponse};
pub use config::{
    KEYS_MEDIA_TYPE, KeyConfig, REQUEST_MEDIA_TYPE, RESPONSE_MEDIA_TYPE, SymmetricSuite,
};
pub use error::OhttpError;
pub use gateway::{
    DEFAULT_DATE_WINDOW, Gateway, GatewayConfig, ResponseContext, SpentRequests, error_response,
};
pub use keys::{DEFAULT_GRACE, GatewayKey, KeyStore};
