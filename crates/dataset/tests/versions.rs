//! Versioned datasets: a rebuild, a corrupt or missing file, an interrupted build and updates
//! never produce a mixed or stale dataset, and the loader says why it refuses one.

#[path = "support/device.rs"]
mod device;

use std::path::Path;

use device::{Device, flip_last_bit};
use proptest::prelude::*;
use sift_dataset::process::{self, BuildReport, BuildRequest};
use sift_pir::server::{KeywordPirConfig, Sharding};

const PARAMS: &str = "n_4096_logq_27_28_28_logt_5";

fn keys(tag: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{tag}-{i}.example")).collect()
}

fn build(dir: &Path, keys: &[String], shards: usize, previous: bool) -> BuildReport {
    build_with(dir, keys, shards, previous, false)
}

/// [`build`], also writing Apple's `.bin` beside each shard's `.words` (`apple_layout`).
fn build_with(
    dir: &Path,
    keys: &[String],
    shards: usize,
    previous: bool,
    apple_layout: bool,
) -> BuildReport {
    let p = sift_he::EncryptionParameters::predefined(PARAMS).unwrap();
    let mut config = KeywordPirConfig::default_for(&p, 1);
    config.sharding = Sharding::ShardCount(shards);
    let req = BuildRequest {
        dataset_dir: dir.to_path_buf(),
        rows: keys
            .iter()
            .map(|k| (k.as_bytes().to_vec(), b"1".to_vec()))
            .collect(),
        rlwe_parameters: PARAMS.into(),
        config,
        stem: "url".into(),
        seed: 0,
        trials: 0,
        versions_kept: 2,
        symmetric: None,
        build_options: serde_json::json!({}),
        parsing: None,
        previous: previous.then(|| dir.to_path_buf()),
        keep_rows: true,
        apple_layout,
    };
    process::build(req, |_| Ok(None), &|_| {}).unwrap()
}

/// A fresh dataset directory holding one version of the 30 keys `a-<i>.example`, in `shards`
/// shards.
fn built_a30(shards: usize) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    build(tmp.path(), &keys("a", 30), shards, false);
    tmp
}

/// Looks each keyword up through a device-like client against what `dir` loads.
fn lookup(dir: &Path, words: &[&str]) -> Vec<Option<Vec<u8>>> {
    device::lookup_all(&sift_dataset::load(dir, "url").unwrap().server, words)
}

fn version_dir(dir: &Path) -> std::path::PathBuf {
    match sift_dataset::resolve(dir).unwrap() {
        sift_dataset::Layout::Versioned { dir, .. } => dir,
        l => panic!("not versioned: {l:?}"),
    }
}

#[test]
fn rebuild_with_fewer_shards_serves_only_the_new_version() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let old = keys("old", 40);
    build_with(d, &old, 3, false, true);
    // An operator's old flat layout next to it, with stale shards 1 and 2: ignored.
    let v1 = version_dir(d);
    for f in [
        "url-0.bin",
        "url-0.params.txtpb",
        "url-1.bin",
        "url-1.params.txtpb",
    ] {
        std::fs::copy(v1.join(f), d.join(f)).unwrap();
    }
    let mut new = old.clone();
    new.extend(keys("blocked", 8));
    build(d, &new, 1, false);
    let loaded = sift_dataset::load(d, "url").unwrap();
    assert_eq!(loaded.server.shards().len(), 1);
    let blocked = keys("blocked", 8);
    let words: Vec<&str> = blocked.iter().map(String::as_str).collect();
    assert!(
        lookup(d, &words).iter().all(|v| v.as_deref() == Some(b"1")),
        "every newly blocked key is found"
    );
}

#[test]
fn a_corrupt_shard_is_refused_and_named() {
    let tmp = built_a30(2);
    let d = tmp.path();
    // Served shards are mapped, not read, at load.
    let loaded = sift_dataset::load(d, "url").unwrap();
    assert!(loaded.server.shards().iter().all(|s| s.is_mapped()));
    loaded.server.verify_all().unwrap();
    drop(loaded);

    // One flipped bit in a mapped shard: the load is quick (header and sizes only), but the
    // shard refuses every query (checksum before its first answer) and the warm-up fails;
    // the intact shard still answers.
    let words = version_dir(d).join("url-1.words");
    let bytes = flip_last_bit(&words);
    let loaded = sift_dataset::load(d, "url").unwrap();
    let e = loaded.server.verify_all().unwrap_err().to_string();
    assert!(e.contains("url-1.words") && e.contains("SHA-256"), "{e}");
    let device = Device::new(&loaded.server);
    let mut refused = 0;
    for k in keys("a", 30) {
        let (q, answer) = device.ask(&k);
        match answer {
            Ok(r) => {
                assert_eq!(q.shard_index, 0);
                assert_eq!(
                    device.client.decode(k.as_bytes(), &r).unwrap().as_deref(),
                    Some(&b"1"[..])
                );
            }
            Err(e) => {
                assert_eq!(q.shard_index, 1);
                assert!(e.to_string().contains("url-1.words"), "{e}");
                refused += 1;
            }
        }
    }
    assert!(refused > 0, "some keys live in the corrupt shard");
    assert!(
        sift_dataset::load::verify(&version_dir(d), &loaded.manifest.clone().unwrap(), true)
            .is_err()
    );
    drop(loaded);

    // Truncation is caught by size at load.
    std::fs::write(&words, &bytes[..100]).unwrap();
    let e = format!("{:#}", sift_dataset::load(d, "url").err().unwrap());
    assert!(e.contains("url-1.words") && e.contains("bytes"), "{e}");

    // A shard without a .words file (older versions) is read whole and checked at load.
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    build_with(d, &keys("a", 30), 2, false, true);
    let v = version_dir(d);
    let mpath = v.join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
    for s in m["shards"].as_array_mut().unwrap() {
        s.as_object_mut().unwrap().remove("words");
    }
    std::fs::write(&mpath, serde_json::to_vec(&m).unwrap()).unwrap();
    assert!(
        sift_dataset::load(d, "url")
            .unwrap()
            .server
            .shards()
            .iter()
            .all(|s| !s.is_mapped())
    );
    let bin = v.join("url-1.bin");
    let mut bytes = std::fs::read(&bin).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&bin, &bytes).unwrap();
    let e = format!("{:#}", sift_dataset::load(d, "url").err().unwrap());
    assert!(e.contains("url-1.bin") && e.contains("SHA-256"), "{e}");
}

/// A shard is stored once, as `.words`, unless the build asks for Apple's layout: then each
/// shard's `.bin` is there too (also for shards shared with the previous version) and the
/// version folder serves through Apple's flat layout as well.
#[test]
fn shards_are_stored_once_unless_apples_layout_is_asked_for() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let list = keys("k", 40);
    let words: Vec<&str> = list.iter().map(String::as_str).take(6).collect();
    build(d, &list, 2, false);
    let v = version_dir(d);
    let m = sift_dataset::load(d, "url").unwrap().manifest.unwrap();
    assert!(
        m.shards
            .iter()
            .all(|s| s.database.is_none() && s.words.is_some())
    );
    assert!(!v.join("url-0.bin").exists() && v.join("url-0.words").exists());

    build_with(d, &list, 2, true, true);
    let v = version_dir(d);
    let m = sift_dataset::load(d, "url").unwrap().manifest.unwrap();
    assert!(
        m.shards
            .iter()
            .all(|s| s.database.is_some() && s.words.is_some())
    );
    let flat = sift_pir::server::KeywordPirServer::load(&v, "url").unwrap();
    assert_eq!(
        device::lookup_all(&flat, &words),
        vec![Some(b"1".to_vec()); words.len()]
    );

    // Not asked for again: the .bin files are left behind, the .words shared.
    let r = build(d, &list, 2, true);
    assert_eq!(r.reused, 2);
    assert!(!version_dir(d).join("url-1.bin").exists());
    assert_eq!(lookup(d, &words), vec![Some(b"1".to_vec()); words.len()]);
}

/// A reload after an update hashes only new shard files: files a running server verified
/// and the new version shares (hard links: same inode, size and SHA-256) are taken as
/// verified; the same bytes in another file (a fresh build) are not.
#[test]
fn a_reload_trusts_only_the_verified_files_it_shares() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let mut list = keys("k", 80);
    build(d, &list, 4, false);
    let first = sift_dataset::load(d, "url").unwrap();
    assert!(first.server.shards().iter().all(|s| !s.is_verified()));
    first.server.verify_all().unwrap();
    let trusted: std::collections::HashSet<_> =
        first.mapped_files.iter().flatten().cloned().collect();
    assert_eq!(trusted.len(), 4);

    list.push("added.example".into());
    let r = build(d, &list, 4, true);
    assert_eq!((r.processed, r.reused), (1, 3));
    let next = sift_dataset::load_trusting(d, "url", &trusted).unwrap();
    let verified = next
        .server
        .shards()
        .iter()
        .filter(|s| s.is_verified())
        .count();
    assert_eq!(verified, 3, "the three shared shards need no hashing");
    next.server.verify_all().unwrap();

    // The same rows built afresh into another folder: equal bytes, other files.
    let other = tmp.path().join("other");
    build(&other, &list, 4, false);
    let fresh = sift_dataset::load_trusting(&other, "url", &trusted).unwrap();
    assert!(fresh.server.shards().iter().all(|s| !s.is_verified()));
}

#[test]
fn a_manifest_naming_a_missing_file_is_refused() {
    let tmp = built_a30(2);
    let d = tmp.path();
    let p = version_dir(d).join("url-0.params.txtpb");
    std::fs::remove_file(&p).unwrap();
    let e = format!("{:#}", sift_dataset::load(d, "url").err().unwrap());
    assert!(e.contains("url-0.params.txtpb"), "{e}");
}

#[test]
fn a_version_without_manifest_is_refused() {
    let tmp = built_a30(1);
    let d = tmp.path();
    std::fs::remove_file(version_dir(d).join("manifest.json")).unwrap();
    let e = format!("{:#}", sift_dataset::load(d, "url").err().unwrap());
    assert!(e.contains("incomplete"), "{e}");
}

#[test]
fn old_versions_are_pruned_but_never_the_current_one() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    for i in 0..4 {
        build(d, &keys(&format!("v{i}"), 10), 1, false);
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let ids = sift_dataset::layout::list_versions(d).unwrap();
    assert_eq!(ids.len(), 2, "versions_kept = 2: {ids:?}");
    let cur = version_dir(d);
    assert!(ids.iter().any(|i| cur.ends_with(i)));
    // An abandoned staging folder (a killed build) is removed by the next build.
    let staging = d.join("versions/.staging-abandoned");
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::write(staging.join("url-0.bin"), b"partial").unwrap();
    build(d, &keys("v9", 10), 1, false);
    assert!(!staging.exists());
}

#[test]
fn an_update_shares_untouched_shards_and_changes_one() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let mut list = keys("k", 80);
    build(d, &list, 4, false);
    let before = version_dir(d);
    list.push("added.example".into());
    let r = build(d, &list, 4, true);
    assert_eq!((r.processed, r.reused), (1, 3));
    let after = version_dir(d);
    assert_ne!(before, after);
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let shared = (0..4)
            .filter(|i| {
                let f = format!("url-{i}.words");
                std::fs::metadata(before.join(&f)).unwrap().ino()
                    == std::fs::metadata(after.join(&f)).unwrap().ino()
            })
            .count();
        assert_eq!(shared, 3, "untouched shard files are hard links");
    }
    assert_eq!(
        lookup(d, &["added.example", "k-3.example", "absent.example"]),
        vec![Some(b"1".to_vec()), Some(b"1".to_vec()), None]
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4, .. ProptestConfig::default() })]

    /// After random additions and removals applied as updates, every shard file is identical
    /// to a fresh build of the final list, so every query answers the same.
    #[test]
    fn random_updates_match_a_fresh_build(
        steps in prop::collection::vec(
            (prop::collection::vec(0usize..60, 0..6), prop::collection::vec(0usize..60, 0..6)),
            1..4,
        )
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("updated");
        let mut set: std::collections::BTreeSet<String> = keys("k", 30).into_iter().collect();
        build(&d, &set.iter().cloned().collect::<Vec<_>>(), 3, false);
        for (add, remove) in &steps {
            for a in add { set.insert(format!("n-{a}.example")); }
            for r in remove { set.remove(&format!("k-{r}.example")); }
            if set.is_empty() { set.insert("last.example".into()); }
            build(&d, &set.iter().cloned().collect::<Vec<_>>(), 3, true);
        }
        let fresh = tmp.path().join("fresh");
        build(&fresh, &set.iter().cloned().collect::<Vec<_>>(), 3, false);
        let (a, b) = (version_dir(&d), version_dir(&fresh));
        for i in 0..3 {
            for f in [format!("url-{i}.words"), format!("url-{i}.params.txtpb")] {
                prop_assert!(
                    std::fs::read(a.join(&f)).unwrap() == std::fs::read(b.join(&f)).unwrap(),
                    "{f} differs"
                );
            }
        }
        let probe: Vec<String> = set.iter().take(2).cloned().chain(["k-999.example".to_string()]).collect();
        let words: Vec<&str> = probe.iter().map(String::as_str).collect();
        prop_assert_eq!(lookup(&d, &words), lookup(&fresh, &words));
    }
}
