//! The sift HTTP service: Apple's PIR API (`/config`, `/key`, `/queries`, `/report`), the Privacy
//! Pass issuer and the OHTTP gateway, with config reload, key store and metrics.
