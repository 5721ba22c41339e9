//! Property tests: for random keyword databases (arbitrary keyword bytes, values of 1 B to 2 KB,
//! 1 or 4 shards, several predefined parameter sets) every sampled present keyword is retrieved
//! with its value and absent keywords come back absent, with every message crossing as protobuf
//! bytes. The 100k-row case is `roundtrip.rs`'s `hundred_thousand_rows`.

use std::collections::HashMap;

use proptest::prelude::*;
use prost::Message;
use rand::SeedableRng;
use rand::rngs::StdRng;
use sift_he::Context;
use sift_pir::client::KeywordPirClient;
use sift_pir::server::{KeywordPirConfig, KeywordPirServer, Sharding, process_keyword_database};
use sift_pir::wire;
use sift_proto::{api, he as pb, pir as pp};

/// Parameter sets MulPir runs with enough noise budget (n = 4096, small t).
const PARAMS: &[&str] = &[
    "n_4096_logq_27_28_28_logt_5",
    "n_4096_logq_27_28_28_logt_4",
    "n_4096_logq_16_33_33_logt_4",
];

fn database(max_value: usize) -> impl Strategy<Value = HashMap<Vec<u8>, Vec<u8>>> {
    prop::collection::hash_map(
        prop::collection::vec(any::<u8>(), 1..48),
        prop::collection::vec(any::<u8>(), 1..=max_value),
        1..120,
    )
}

fn case() -> impl Strategy<Value = (usize, usize, HashMap<Vec<u8>, Vec<u8>>, u64)> {
    (
        0..PARAMS.len(),
        prop_oneof![Just(1usize), Just(4usize)],
        prop_oneof![Just(1usize), Just(2), Just(40), Just(2048)].prop_flat_map(database),
        any::<u64>(),
    )
        .prop_map(|(p, shards, db, seed)| (p, shards, db, seed))
}

fn check_database(
    param: &str,
    shards: usize,
    db: &HashMap<Vec<u8>, Vec<u8>>,
    seed: u64,
) -> Result<(), TestCaseError> {
    let ctx = Context::predefined(param).unwrap();
    let rows: Vec<(Vec<u8>, Vec<u8>)> = db.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let max_value = rows.iter().map(|r| r.1.len()).max().unwrap_or(1);
    let mut config = KeywordPirConfig::default_for(&ctx.params, max_value);
    config.sharding = Sharding::ShardCount(shards);
    let processed = process_keyword_database(&ctx, rows.clone(), &config, seed).unwrap();
    let protos: Vec<pp::PirParameters> = processed
        .iter()
        .map(|s| {
            let bytes = wire::pir_parameters_to_proto(&s.params).encode_to_vec();
            pp::PirParameters::decode(bytes.as_slice()).unwrap()
        })
        .collect();
    let server = KeywordPirServer::from_processed(processed).unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    let client = KeywordPirClient::new(&protos, &mut rng).unwrap();
    let key = client.evaluation_key(&mut rng).unwrap().encode_to_vec();
    let key = pb::SerializedEvaluationKey::decode(key.as_slice()).unwrap();
    let mut lookup = |kw: &[u8]| {
        let req = client.query(kw, &mut rng).unwrap().encode_to_vec();
        let req = api::PirRequest::decode(req.as_slice()).unwrap();
        let resp = server.answer(&req, &key).unwrap().encode_to_vec();
        let resp = api::PirResponse::decode(resp.as_slice()).unwrap();
        client.decode(kw, &resp).unwrap()
    };
    // Three present keywords spread over the table, and one that is not there.
    for i in 0..3.min(rows.len()) {
        let (k, v) = &rows[i * rows.len() / 3];
        let got = lookup(k);
        prop_assert_eq!(got.as_ref(), Some(v), "{} shards={}", param, shards);
    }
    let mut absent = b"absent:".to_vec();
    absent.extend_from_slice(&seed.to_le_bytes());
    if !db.contains_key(&absent) {
        prop_assert_eq!(lookup(&absent), None);
    }
    Ok(())
}

proptest! {
    // Each case generates keys and runs PIR queries: few cases, each one meaningful.
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn random_databases_answer_every_present_and_absent_keyword(
        (p, shards, db, seed) in case()
    ) {
        check_database(PARAMS[p], shards, &db, seed)?;
    }
}

#[test]
fn single_row_database_on_every_listed_parameter_set() {
    for param in PARAMS {
        let db = HashMap::from([(b"only.example".to_vec(), vec![7u8; 3])]);
        check_database(param, 1, &db, 1).unwrap();
    }
}
