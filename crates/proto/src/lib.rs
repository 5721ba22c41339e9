//! Protobuf messages of Apple's PIR service, wire-compatible field for field.
//!
//! The `.proto` files under `proto/` are written from the schema facts in
//! `shared/spec/pir-protocol.md` §2 (Apple's `swift-homomorphic-encryption-protobuf` and
//! `pir-service-example`). Package names never appear on the wire, but they do name messages in
//! text format, so ours follow Apple's.
//!
//! Modules:
//! - [`he`]: `apple.swift_homomorphic_encryption.v1` (ciphertexts, keys, encryption parameters);
//! - [`pir`]: `apple.swift_homomorphic_encryption.pir.v1` (PIR parameters, keyword databases);
//! - [`api`]: `api.pir.v1` and `api.shared.v1` (the HTTP service envelope);
//! - [`service`]: messages of Apple's example service (URL filter reports);
//! - [`lcid`]: Live Caller ID Lookup (`CallIdentity`, `InputIdentities`).
#![forbid(unsafe_code)]

mod text;

pub use text::{TextFormatError, from_text, to_text};

/// Generated code, nested exactly as the protobuf packages so cross-package paths resolve.
#[allow(missing_docs, clippy::all)]
pub mod generated {
    /// `apple.*` packages.
    pub mod apple {
        /// `apple.swift_homomorphic_encryption.*` packages.
        pub mod swift_homomorphic_encryption {
            /// `apple.swift_homomorphic_encryption.v1`.
            pub mod v1 {
                include!(concat!(
                    env!("OUT_DIR"),
                    "/apple.swift_homomorphic_encryption.v1.rs"
                ));
            }
            /// `apple.swift_homomorphic_encryption.pir.*`.
            pub mod pir {
                /// `apple.swift_homomorphic_encryption.pir.v1`.
                pub mod v1 {
                    include!(concat!(
                        env!("OUT_DIR"),
                        "/apple.swift_homomorphic_encryption.pir.v1.rs"
                    ));
                }
            }
            /// `apple.swift_homomorphic_encryption.api.*`.
            pub mod api {
                /// `apple.swift_homomorphic_encryption.api.pir.*`.
                pub mod pir {
                    /// `apple.swift_homomorphic_encryption.api.pir.v1`.
                    pub mod v1 {
                        include!(concat!(
                            env!("OUT_DIR"),
                            "/apple.swift_homomorphic_encryption.api.pir.v1.rs"
                        ));
                    }
                }
                /// `apple.swift_homomorphic_encryption.api.shared.*`.
                pub mod shared {
                    /// `apple.swift_homomorphic_encryption.api.shared.v1`.
                    pub mod v1 {
                        include!(concat!(
                            env!("OUT_DIR"),
                            "/apple.swift_homomorphic_encryption.api.shared.v1.rs"
                        ));
                    }
                }
            }
        }
    }
    /// `sift.*` packages.
    pub mod sift {
        /// `sift.lcid.*`.
        pub mod lcid {
            /// `sift.lcid.v1`.
            pub mod v1 {
                include!(concat!(env!("OUT_DIR"), "/sift.lcid.v1.rs"));
            }
        }
        /// `sift.service.*`.
        pub mod service {
            /// `sift.service.v1`.
            pub mod v1 {
                include!(concat!(env!("OUT_DIR"), "/sift.service.v1.rs"));
            }
        }
    }
}

/// PIR parameter and database messages (`apple.swift_homomorphic_encryption.pir.v1`).
pub use generated::apple::swift_homomorphic_encryption::pir::v1 as pir;
/// Homomorphic-encryption messages (`apple.swift_homomorphic_encryption.v1`).
pub use generated::apple::swift_homomorphic_encryption::v1 as he;
/// Live Caller ID Lookup: `CallIdentity` (the identity use case's value) and
/// `InputIdentities` (the input of Apple's `ConstructDatabase`).
pub use generated::sift::lcid::v1 as lcid;
/// Messages of Apple's example service that are not in the HE protobuf repository.
pub use generated::sift::service::v1 as service;

/// The HTTP service envelope: `api.pir.v1` and `api.shared.v1` flattened into one namespace
/// (their message names do not overlap).
pub mod api {
    pub use crate::generated::apple::swift_homomorphic_encryption::api::pir::v1::*;
    pub use crate::generated::apple::swift_homomorphic_encryption::api::shared::v1::*;
}

/// The serialized file descriptor set of every message here (for reflection and text format).
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptors.bin"));
