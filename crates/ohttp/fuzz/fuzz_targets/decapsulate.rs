//! Arbitrary bytes as an encapsulated request: the gateway must return an error, never panic,
//! and nothing random may decrypt. Replay detection is off so the input alone decides.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sift_ohttp::config::SymmetricSuite;
use sift_ohttp::{Gateway, GatewayConfig, GatewayKey};

fn gateway() -> &'static Gateway {
    static GW: OnceLock<Gateway> = OnceLock::new();
    GW.get_or_init(|| {
        let key = GatewayKey::from_secret(1, &[0x42; 32], SymmetricSuite::DEFAULT.to_vec())
            .expect("fixed key");
        let config = GatewayConfig {
            replay_capacity: 0,
            ..GatewayConfig::default()
        };
        Gateway::with_keys(vec![key], config).expect("gateway")
    })
}

fuzz_target!(|data: &[u8]| {
    let result = gateway().decapsulate(data);
    assert!(result.is_err(), "random input decrypted");
});
