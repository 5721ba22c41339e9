//! Start-up time of the embedded evaluation-key store with many stored keys.
//!
//! `cargo bench -p sift-server --bench keystore` (or `--workspace --bench keystore`) stores
//! `SIFT_BENCH_KEYS` keys (default 100,000; one per user, 1 KiB each: start-up reads the index,
//! not the keys, so their size does not matter) in a temporary directory, then times opening
//! the store from its index log and, for comparison, from a directory listing that reads every
//! key file (the layout before the index existed). Goal: under 2 s for 100,000 keys.

use std::time::Instant;

use prost::Message as _;
use sift_proto::api;
use sift_server::keystore::{Budget, FileKeyStore, KeyStore as _};

fn key(id: u64) -> api::EvaluationKey {
    sift_server::keystore::stand_in_key(
        sha2_like(id),
        1_700_000_000 + id,
        vec![7; 1024],
        id.to_le_bytes().to_vec(),
    )
}

/// A 32-byte identifier like Apple's configuration hashes.
fn sha2_like(id: u64) -> Vec<u8> {
    let mut v = vec![0u8; 32];
    v[..8].copy_from_slice(&id.to_le_bytes());
    v
}

fn main() -> anyhow::Result<()> {
    let n: u64 = std::env::var("SIFT_BENCH_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let budget = Budget {
        max_keys_per_user: 4,
        max_bytes_per_user: 8 << 20,
        max_users: 1_000_000,
        max_bytes_total: 1 << 40,
    };
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("keys");
    let store = FileKeyStore::open(&root, budget)?;
    let t = Instant::now();
    for i in 0..n {
        store.put(&format!("user-{i}"), &key(i))?;
    }
    let put_s = t.elapsed().as_secs_f64();
    println!(
        "stored {n} keys of {} bytes in {put_s:.2} s ({:.0} uploads/s)",
        key(0).encoded_len(),
        n as f64 / put_s
    );
    drop(store);

    let t = Instant::now();
    let store = FileKeyStore::open(&root, budget)?;
    let index_s = t.elapsed().as_secs_f64();
    assert_eq!(store.len() as u64, n);
    assert!(store.get("user-0", &sha2_like(0))?.is_some());
    drop(store);
    println!("start-up from the index log: {index_s:.3} s for {n} keys (goal < 2 s)");

    std::fs::remove_file(root.join("index.log"))?;
    let t = Instant::now();
    let store = FileKeyStore::open(&root, budget)?;
    let scan_s = t.elapsed().as_secs_f64();
    assert_eq!(store.len() as u64, n);
    println!(
        "start-up reading every key file (old layout): {scan_s:.3} s; index is {:.1}x faster",
        scan_s / index_s
    );
    Ok(())
}
