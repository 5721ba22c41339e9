//! Keyword PIR end to end under every SIMD level this CPU has (AVX-512 VBMI, AVX-512, AVX2, portable), each
//! capped process-wide with `sift_he::simd::set_cap`: the same database answers every present
//! and absent keyword, and the responses are byte-identical across levels (the kernels compute
//! the same integers). This file holds one test, so the process-wide cap affects nothing else
//! (the first-dimension unit tests run at the widest level only, for that reason).
//!
//! Two servers answer at each level: one built at the widest level (its database packed into
//! 28 bits when the CPU has AVX-512 VBMI) and one built under the cap (packed only where VBMI
//! is allowed), so the packed and plain first-dimension kernels both run at every narrower
//! level. The test writes the levels it covered to stderr past the test harness's capture, so
//! every `cargo test` log (CI's included) says which SIMD paths ran.

use std::io::Write;

use rand::SeedableRng;
use rand::rngs::StdRng;
use sift_he::Context;
use sift_he::simd::{self, Level};
use sift_pir::client::KeywordPirClient;
use sift_pir::server::{KeywordPirConfig, KeywordPirServer, process_keyword_database};
use sift_pir::wire;

#[test]
fn every_simd_level_gives_the_same_answers() {
    let ctx = Context::predefined("n_4096_logq_27_28_28_logt_4").unwrap();
    let rows: Vec<(Vec<u8>, Vec<u8>)> = (0..3000u32)
        .map(|i| {
            (
                format!("site{i}.example/path").into_bytes(),
                i.to_le_bytes().to_vec(),
            )
        })
        .collect();
    let cfg = KeywordPirConfig::default_for(&ctx.params, 4);
    let shards = process_keyword_database(&ctx, rows.clone(), &cfg, 5).unwrap();
    let protos: Vec<_> = shards
        .iter()
        .map(|s| wire::pir_parameters_to_proto(&s.params))
        .collect();
    let top = simd::level();
    let vbmi = sift_he::pack28::vbmi();
    let server = KeywordPirServer::from_processed(shards.clone()).unwrap();
    let mut rng = StdRng::seed_from_u64(9);
    let client = KeywordPirClient::new(&protos, &mut rng).unwrap();
    let key = client.evaluation_key(&mut rng).unwrap();
    let present = [&rows[0], &rows[1234], &rows[2999]];
    let mut requests: Vec<_> = present
        .iter()
        .map(|(k, _)| client.query(k, &mut rng).unwrap())
        .collect();
    requests.push(client.query(b"absent.example/", &mut rng).unwrap());
    let levels: Vec<Level> = Level::ALL
        .into_iter()
        .rev()
        .filter(|&l| l <= simd::detected())
        .collect();
    let mut first: Option<Vec<_>> = None;
    let mut ran = Vec::new();
    for &level in &levels {
        simd::set_cap(level);
        assert_eq!(simd::level(), level);
        let built_here = KeywordPirServer::from_processed(shards.clone()).unwrap();
        let packed_here = sift_he::pack28::vbmi();
        for (server, packed) in [(&server, vbmi), (&built_here, packed_here)] {
            let what = format!(
                "{} with a {} database",
                level.name(),
                if packed { "28-bit packed" } else { "plain" }
            );
            let answers: Vec<_> = requests
                .iter()
                .map(|r| server.answer(r, &key).unwrap())
                .collect();
            for ((kw, value), resp) in present.iter().zip(&answers) {
                let got = client.decode(kw, resp).unwrap();
                assert_eq!(got.as_deref(), Some(value.as_slice()), "{what}");
            }
            let absent = client.decode(b"absent.example/", &answers[3]).unwrap();
            assert_eq!(absent, None, "{what}");
            match &first {
                None => first = Some(answers),
                Some(f) => assert!(f == &answers, "{what} differs from the widest level"),
            }
            if !ran.contains(&what) {
                ran.push(what);
            }
        }
    }
    simd::set_cap(top);
    let _ = writeln!(
        std::io::stderr(),
        "SIMD coverage: this CPU has {} (AVX-512 VBMI: {}); keyword PIR answers compared \
         byte for byte at: {}",
        simd::detected().name(),
        if vbmi { "yes" } else { "no" },
        ran.join(", ")
    );
    // Every CI machine is x86-64 with AVX2: the portable and AVX2 paths must both have run.
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        assert!(levels.contains(&Level::Avx2) && levels.contains(&Level::Portable));
    }
}
