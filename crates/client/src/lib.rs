//! A client that does what the device does: sub-URLs, prefilter, Privacy Pass token, PIR through
//! OHTTP. Used by `sift check`, `sift doctor`, `sift demo` and by end-to-end tests.
#![forbid(unsafe_code)]

pub mod device;
pub mod onboarding;
pub mod pirconfig;
pub mod tokens;
pub mod transport;

pub use transport::{HttpResponse, Transport};
