//! Per-request cost of the OHTTP layer: client encapsulation, gateway decapsulation (HPKE
//! open, replay check, binary HTTP decode) and response encapsulation/decapsulation, for a
//! small request (a `/config`-sized body) and a PIR-query-sized one, with both AEADs.
//!
//! `cargo bench -p sift-ohttp --bench gateway` prints the figures of one run.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sift_ohttp::config::SymmetricSuite;
use sift_ohttp::{ClientRequest, Gateway, GatewayConfig, GatewayKey, KeyConfig};

/// Runs `f` repeatedly for about `budget` and returns the mean time per call.
fn time(budget: Duration, mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed() < budget || n < 10 {
        f();
        n += 1;
    }
    start.elapsed() / n
}

fn main() {
    let budget = Duration::from_millis(
        std::env::var("SIFT_BENCH_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1500),
    );
    let key = GatewayKey::generate(1).unwrap();
    let config: KeyConfig = key.config();
    let gw = Gateway::with_keys(
        vec![key],
        GatewayConfig {
            replay_capacity: 1 << 16,
            ..GatewayConfig::default()
        },
    )
    .unwrap();
    println!(
        "suite              body      client seal  gateway open  gw response  client open  total/req   req/s (1 core)"
    );
    for (suite, name) in [
        (SymmetricSuite::AES_128_GCM, "AES-128-GCM"),
        (SymmetricSuite::CHACHA20_POLY1305, "ChaCha20-Poly1305"),
    ] {
        let client = ClientRequest::with_suite(&config, suite).unwrap();
        for size in [64usize, 64 * 1024, 1024 * 1024] {
            let req = http::Request::post("https://pir.example.com/queries")
                .header("content-type", "application/octet-stream")
                .header(
                    "authorization",
                    "PrivateToken token=AAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                )
                .body(Bytes::from(vec![7u8; size]))
                .unwrap();
            let resp_body = Bytes::from(vec![9u8; size]);
            let seal = time(budget, || {
                black_box(client.encapsulate(&req).unwrap());
            });
            // Fresh requests for the gateway (each `enc` is accepted once).
            let n = 64;
            let bodies: Vec<_> = (0..n).map(|_| client.encapsulate(&req).unwrap()).collect();
            let mut i = 0;
            let mut contexts = Vec::new();
            let start = Instant::now();
            for (body, _) in &bodies {
                contexts.push(gw.decapsulate(body).unwrap().1);
                i += 1;
            }
            let open = start.elapsed() / i;
            let mut responses = Vec::new();
            let start = Instant::now();
            for ctx in contexts {
                responses.push(
                    ctx.encapsulate(http::Response::new(resp_body.clone()))
                        .unwrap(),
                );
            }
            let respond = start.elapsed() / n as u32;
            let start = Instant::now();
            for ((_, pending), enc) in bodies.into_iter().zip(&responses) {
                black_box(pending.decapsulate(enc).unwrap());
            }
            let client_open = start.elapsed() / n as u32;
            let gw_total = open + respond;
            println!(
                "{name:<18} {:>7}  {:>11.1?}  {:>12.1?}  {:>11.1?}  {:>11.1?}  {:>9.1?}  {:>8.0}",
                if size >= 1024 * 1024 {
                    format!("{}MiB", size >> 20)
                } else if size >= 1024 {
                    format!("{}KiB", size >> 10)
                } else {
                    format!("{size}B")
                },
                seal,
                open,
                respond,
                client_open,
                gw_total,
                1.0 / gw_total.as_secs_f64()
            );
        }
    }
    println!(
        "(gateway open = HPKE open + replay check + bhttp decode; total/req = gateway open + gateway response)"
    );
}
