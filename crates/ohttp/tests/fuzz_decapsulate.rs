//! Bounded mutation fuzzing of the gateway (and the client's response side), run by
//! `cargo test` in CI.
//!
//! Starting from genuine encapsulated requests, each iteration builds one hostile input (bit
//! flips, truncation, extension, splices, random bytes behind a valid header, or a valid
//! encryption of random or mutated binary HTTP) and checks that nothing panics, that only the
//! genuine inputs decrypt, and that valid encryptions of junk are answered inside the
//! encryption. The loop stops after `SIFT_FUZZ_ITERS` iterations (default 1 000 000) or
//! `SIFT_FUZZ_SECS` seconds (default 3), whichever comes first; `SIFT_FUZZ_SEED` replays a
//! run (the seed is printed).

mod common;

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sift_ohttp::bhttp::{self, BhttpRequest, BhttpResponse, Limits};
use sift_ohttp::config::{KeyConfig, SymmetricSuite, decode_list};
use sift_ohttp::{ClientRequest, Gateway, GatewayConfig, GatewayKey, OhttpError};

/// splitmix64: small, seedable, good enough to drive mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Flips, truncates, extends, overwrites or splices `base`.
fn mutate(rng: &mut Rng, base: &[u8], other: &[u8]) -> Vec<u8> {
    let mut m = base.to_vec();
    match rng.below(6) {
        0 => {
            for _ in 0..1 + rng.below(4) {
                if !m.is_empty() {
                    let i = rng.below(m.len());
                    m[i] ^= 1 << rng.below(8);
                }
            }
        }
        1 => m.truncate(rng.below(m.len())),
        2 => {
            let n = 1 + rng.below(16);
            let extra = rng.bytes(n);
            m.extend_from_slice(&extra);
        }
        3 => {
            if !m.is_empty() {
                let start = rng.below(m.len());
                let end = (start + 1 + rng.below(8)).min(m.len());
                for b in &mut m[start..end] {
                    *b = rng.next() as u8;
                }
            }
        }
        4 => {
            let cut = rng.below(m.len().min(other.len()) + 1);
            m.truncate(cut);
            m.extend_from_slice(&other[cut.min(other.len())..]);
        }
        _ => {
            // Insert or delete one byte somewhere in the middle.
            let i = rng.below(m.len() + 1);
            if rng.below(2) == 0 || m.is_empty() {
                m.insert(i, rng.next() as u8);
            } else {
                m.remove(i.min(m.len() - 1));
            }
        }
    }
    m
}

/// Runs `f`, turning a panic into a test failure that names the input and the seed.
fn no_panic<T>(what: &str, seed: u64, input: &[u8], f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(_) => panic!(
            "{what} panicked (SIFT_FUZZ_SEED={seed}) on input {}",
            hex_of(input)
        ),
    }
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Binary HTTP decoding must not panic; what decodes must survive a re-encode unchanged.
fn check_bhttp(seed: u64, plain: &[u8]) {
    let limits = Limits::default();
    let req = no_panic("bhttp request decode", seed, plain, || {
        BhttpRequest::decode(plain, &limits)
    });
    if let Ok(req) = req {
        let again = req.encode_known_length().unwrap();
        assert_eq!(BhttpRequest::decode(&again, &limits).unwrap(), req);
        let again = req.encode_indeterminate_length().unwrap();
        assert_eq!(BhttpRequest::decode(&again, &limits).unwrap(), req);
        // The `http` conversion may reject (bad method, URI, field) but never panics.
        let _ = no_panic("bhttp into_http", seed, plain, || req.clone().into_http());
    }
    let resp = no_panic("bhttp response decode", seed, plain, || {
        BhttpResponse::decode(plain, &limits)
    });
    if let Ok(resp) = resp {
        let again = resp.encode_known_length().unwrap();
        assert_eq!(BhttpResponse::decode(&again, &limits).unwrap(), resp);
        let _ = no_panic("bhttp response into_http", seed, plain, || {
            resp.clone().into_http()
        });
    }
}

#[test]
fn fuzz_decapsulate() {
    let seed = env_u64("SIFT_FUZZ_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let max_iters = env_u64("SIFT_FUZZ_ITERS").unwrap_or(1_000_000);
    let budget = Duration::from_secs(env_u64("SIFT_FUZZ_SECS").unwrap_or(3));
    println!("fuzz_decapsulate: SIFT_FUZZ_SEED={seed} iterations<={max_iters} budget={budget:?}");
    let mut rng = Rng(seed);

    // Two keys (ids 1 and 2), both suites; replay detection off so genuine inputs always
    // succeed and "only genuine inputs succeed" is exact.
    let key2 = GatewayKey::from_secret(2, &[0x42; 32], SymmetricSuite::DEFAULT.to_vec()).unwrap();
    let gw = Gateway::with_keys(
        vec![common::rfc_key(), key2.clone()],
        GatewayConfig {
            replay_capacity: 0,
            ..GatewayConfig::default()
        },
    )
    .unwrap();
    let config1 = KeyConfig::decode(&common::vector(common::RFC9458, "key_config")).unwrap();
    let clients = [
        ClientRequest::with_suite(&config1, SymmetricSuite::AES_128_GCM).unwrap(),
        ClientRequest::with_suite(&config1, SymmetricSuite::CHACHA20_POLY1305).unwrap(),
        ClientRequest::with_suite(&key2.config(), SymmetricSuite::AES_128_GCM).unwrap(),
        ClientRequest::with_suite(&key2.config(), SymmetricSuite::CHACHA20_POLY1305).unwrap(),
    ];

    // Binary HTTP seeds: the RFC examples and some requests of our own.
    let mut bhttp_seeds = vec![
        common::vector(common::RFC9458, "request"),
        common::vector(common::RFC9292, "request_known_length"),
        common::vector(common::RFC9292, "request_indeterminate_length"),
        common::vector(common::RFC9292, "response_indeterminate_length"),
        common::vector(common::RFC9292, "response_known_length_chunked"),
    ];
    for (uri, body) in [
        ("https://pir.example.com/queries", vec![9u8; 700]),
        ("/config", Vec::new()),
        (
            "https://issuer.example.com/token-request?x=1",
            b"abc".to_vec(),
        ),
    ] {
        let req = http::Request::post(uri)
            .header("authorization", "PrivateToken token=abc")
            .header("user-identifier", "u")
            .body(Bytes::from(body))
            .unwrap();
        bhttp_seeds.push(bhttp::encode_request(&req).unwrap());
        bhttp_seeds.push(
            BhttpRequest::from_http(&req)
                .encode_indeterminate_length()
                .unwrap(),
        );
    }

    // Genuine encapsulated requests and what they decrypt to.
    let mut genuine: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for (i, plain) in bhttp_seeds.iter().enumerate() {
        let (body, _) = clients[i % clients.len()].encapsulate_bhttp(plain).unwrap();
        genuine.push((body.to_vec(), plain.clone()));
    }
    let genuine_set: HashSet<Vec<u8>> = genuine.iter().map(|(b, _)| b.clone()).collect();
    let headers: Vec<Vec<u8>> = genuine.iter().map(|(b, _)| b[..7].to_vec()).collect();

    let start = Instant::now();
    let mut counts = [0u64; 5];
    let mut accepted_mutants = 0u64;
    let mut iters = 0u64;
    while iters < max_iters && start.elapsed() < budget {
        iters += 1;
        let strategy = rng.below(counts.len());
        counts[strategy] += 1;
        match strategy {
            // Mutants of genuine requests, or random bytes behind a valid header.
            0 | 1 => {
                let (base, _) = rng.pick(&genuine).clone();
                let input = if strategy == 0 {
                    let (other, _) = rng.pick(&genuine);
                    mutate(&mut rng, &base, other)
                } else {
                    let mut v = rng.pick(&headers).clone();
                    let n = rng.below(160);
                    v.extend(rng.bytes(n));
                    v
                };
                let result = no_panic("decapsulate_bhttp", seed, &input, || {
                    gw.decapsulate_bhttp(&input)
                });
                match (&result, genuine_set.contains(&input)) {
                    (Ok((plain, _)), true) => {
                        let expected = &genuine.iter().find(|(b, _)| *b == input).unwrap().1;
                        assert_eq!(plain, expected);
                    }
                    (Ok(_), false) => panic!(
                        "a forged request decrypted (SIFT_FUZZ_SEED={seed}): {}",
                        hex_of(&input)
                    ),
                    (Err(e), true) => panic!("a genuine request failed: {e}"),
                    (Err(e), false) => {
                        assert!(
                            !matches!(e, OhttpError::Internal(_)),
                            "internal error on hostile input {}: {e}",
                            hex_of(&input)
                        );
                        assert!(e.status().is_client_error());
                    }
                }
                if result.is_ok() {
                    accepted_mutants += 1;
                }
            }
            // Pure random bytes (any header at all).
            2 => {
                let n = rng.below(120);
                let input = rng.bytes(n);
                let r = no_panic("decapsulate", seed, &input, || gw.decapsulate(&input));
                assert!(r.is_err(), "random bytes decrypted: {}", hex_of(&input));
            }
            // A valid encryption of random or mutated binary HTTP: decrypts, never panics in
            // decoding, and `handle` answers it inside the encryption.
            3 => {
                let plain = if rng.below(3) == 0 {
                    let n = rng.below(64);
                    rng.bytes(n)
                } else {
                    let base = rng.pick(&bhttp_seeds).clone();
                    let other = rng.pick(&bhttp_seeds).clone();
                    mutate(&mut rng, &base, &other)
                };
                check_bhttp(seed, &plain);
                let client = rng.pick(&clients);
                let (body, pending) = client.encapsulate_bhttp(&plain).unwrap();
                let (opened, _) = gw.decapsulate_bhttp(&body).unwrap();
                assert_eq!(opened, plain);
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                let enc = no_panic("handle", seed, &plain, || {
                    rt.block_on(gw.handle(&body, |req| async move {
                        http::Response::new(req.into_body())
                    }))
                })
                .expect("a valid encryption is always answered");
                let resp = pending.decapsulate(&enc).unwrap();
                let decodes = bhttp::decode_request(&plain, &Limits::default()).is_ok();
                assert_eq!(resp.status().is_success(), decodes);
            }
            // Client side: mutated responses and key configuration lists.
            _ => {
                let (body, pending) = clients[0]
                    .encapsulate_bhttp(b"\x00\x03GET\x00\x00\x01/")
                    .unwrap();
                let (_, ctx) = gw.decapsulate_bhttp(&body).unwrap();
                let good = ctx.encapsulate_bhttp(b"\x01\x40\xc8").unwrap();
                let bad = mutate(&mut rng, &good, &good);
                let r = no_panic("client decapsulate", seed, &bad, || {
                    pending.decapsulate(&bad)
                });
                assert_eq!(r.is_ok(), bad == good[..], "response {}", hex_of(&bad));
                let list = gw.key_configs();
                let mutated = mutate(&mut rng, &list, &list);
                let _ = no_panic("decode_list", seed, &mutated, || decode_list(&mutated));
                let _ = no_panic("client from list", seed, &mutated, || {
                    ClientRequest::from_encoded_config_list(&mutated)
                });
            }
        }
    }
    println!(
        "fuzz_decapsulate: {iters} iterations in {:?} (mutants {}, header+random {}, random {}, \
         valid-encryption {}, client side {}), {accepted_mutants} genuine inputs accepted",
        start.elapsed(),
        counts[0],
        counts[1],
        counts[2],
        counts[3],
        counts[4]
    );
    assert!(iters >= 50 || iters == max_iters, "fuzz loop barely ran");
}
