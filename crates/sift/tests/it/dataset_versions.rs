//! `sift build` killed at random points, and rebuilds with fewer shards, never leave the
//! service with a mixed or partial dataset: it keeps answering from a complete version.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::device::{Device, flip_last_bit};
use common::{build_cmd, sift, stdout_of_success, update};
use rand::Rng;

const USECASE: &str = "com.example.app.url.filtering";

fn write_list(path: &Path, keys: &[String]) {
    std::fs::write(path, keys.join("\n")).unwrap();
}

/// Looks `words` up against the server's current version (through its shards' published
/// parameters, as a device would).
fn lookup(state: &sift_server::state::AppState, words: &[String]) -> Vec<bool> {
    let ucs = state.usecases();
    let v = ucs[USECASE].current().clone();
    let device = Device::new(&v.server);
    words
        .iter()
        .map(|w| device.lookup(w).as_deref() == Some(b"1".as_slice()))
        .collect()
}

/// A plain-HTTP server config serving `data` as the URL-filter use case, state in `dir`.
fn config(dir: &Path, data: &Path) -> sift_server::ServerConfig {
    toml::from_str(&format!(
        "listen = \"127.0.0.1:0\"\ndev_plain_http = true\nrequire_tokens = false\n\
         state_dir = {:?}\n[[usecases]]\nname = {USECASE:?}\ndataset_dir = {:?}\n",
        dir.join("state").display().to_string(),
        data.display().to_string()
    ))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_builds_and_fewer_shards_never_serve_a_mixed_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let old: Vec<String> = (0..40).map(|i| format!("old-{i}.example")).collect();
    let blocked: Vec<String> = (0..8).map(|i| format!("blocked-{i}.example")).collect();
    let l1 = tmp.path().join("v1.txt");
    let l2 = tmp.path().join("v2.txt");
    write_list(&l1, &old);
    write_list(&l2, &[old.clone(), blocked.clone()].concat());
    stdout_of_success(&mut build_cmd(&[&l1], &data, 3));

    let server = sift_server::spawn(config(tmp.path(), &data), None)
        .await
        .unwrap();
    let probe: Vec<String> = [&old[..2], &blocked[..]].concat();
    let v1_answers: Vec<bool> = probe.iter().map(|w| w.starts_with("old")).collect();
    assert_eq!(lookup(&server.state, &probe), v1_answers);

    // How long a full rebuild takes here, to spread the kills over it.
    let start = Instant::now();
    let mut full = build_cmd(&[&l2], &tmp.path().join("timing"), 1)
        .spawn()
        .unwrap();
    assert!(full.wait().unwrap().success());
    let span = start.elapsed().as_millis() as u64;

    let mut rng = rand::thread_rng();
    let mut seen_new = false;
    for round in 0..6 {
        let mut child = build_cmd(&[&l2], &data, 1).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..=span.max(1))));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        server.state.reload();
        let got = lookup(&server.state, &probe);
        let v2_answers = vec![true; probe.len()];
        assert!(
            got == v1_answers || got == v2_answers,
            "round {round}: a mix of versions is served: {got:?}"
        );
        seen_new |= got == v2_answers;
        let shards = server.state.usecases()[USECASE]
            .current()
            .server
            .shards()
            .len();
        assert_eq!(
            shards,
            if got == v1_answers { 3 } else { 1 },
            "round {round}"
        );
    }
    // A build that finishes is served, with exactly its one shard.
    stdout_of_success(&mut build_cmd(&[&l2], &data, 1));
    server.state.reload();
    assert_eq!(lookup(&server.state, &probe), vec![true; probe.len()]);
    let _ = seen_new;

    // A corrupt new version is refused, the complete one keeps answering, and polling again
    // does not replace it either (a reload reads and checks the mapped shards before the
    // switch; the old version serves meanwhile).
    stdout_of_success(&mut build_cmd(&[&l1], &data, 2));
    let cur = std::fs::read_link(data.join("current")).unwrap();
    let bin = data.join(cur).join("url-1.words");
    let mut bytes = std::fs::read(&bin).unwrap();
    bytes[20] ^= 0xff;
    std::fs::write(&bin, bytes).unwrap();
    assert!(
        server.state.reload().is_empty(),
        "the corrupt version is refused"
    );
    assert!(server.state.reload().is_empty());
    assert_eq!(lookup(&server.state, &probe), vec![true; probe.len()]);
}

/// `sift update` killed at random points (SIGKILL) while a server reloads never leaves a
/// mixed or partial dataset: the server answers either from the complete previous version or
/// from the complete updated one. Updates alternate between overlays and rewrites, and go back
/// and forth between the two key sets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_updates_never_serve_a_mixed_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, _, _) = built_for_update(tmp.path(), 60, 3);
    let added: Vec<String> = (0..6).map(|i| format!("added-{i}.example")).collect();
    let removed: Vec<String> = (0..4).map(|i| format!("k-{i}.example")).collect();
    let (plus, minus) = (tmp.path().join("plus.txt"), tmp.path().join("minus.txt"));
    write_list(&plus, &added);
    write_list(&minus, &removed);
    let server = sift_server::spawn(config(tmp.path(), &data), None)
        .await
        .unwrap();
    let probe: Vec<String> = [&added[..], &removed[..], &["k-50.example".to_string()]].concat();
    let before: Vec<bool> = probe.iter().map(|w| !w.starts_with("added")).collect();
    let after: Vec<bool> = probe.iter().map(|w| !removed.contains(w)).collect();
    assert_eq!(lookup(&server.state, &probe), before);
    // `forward`: the next update goes from `before` to `after` (else back).
    let update_cmd = |forward: bool, round: usize| {
        let (add, remove) = if forward {
            (&plus, &minus)
        } else {
            (&minus, &plus)
        };
        let mut c = sift();
        c.arg("update")
            .arg(&data)
            .arg("--add")
            .arg(add)
            .arg("--remove")
            .arg(remove)
            .args([
                "--max-overlay",
                if round.is_multiple_of(2) { "1" } else { "0" },
            ]);
        c
    };
    let start = Instant::now();
    stdout_of_success(&mut update_cmd(true, 0));
    let span = start.elapsed().as_millis() as u64;
    server.state.reload();
    assert_eq!(lookup(&server.state, &probe), after);

    let mut rng = rand::thread_rng();
    let mut forward = false;
    let mut completed = 0;
    for round in 0..8 {
        let mut child = update_cmd(forward, round).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..=span.max(1))));
        let _ = child.kill();
        let _ = child.wait();
        server.state.reload();
        let got = lookup(&server.state, &probe);
        let (from, to) = if forward {
            (&before, &after)
        } else {
            (&after, &before)
        };
        assert!(
            got == *from || got == *to,
            "round {round}: a mix of versions is served: {got:?}"
        );
        if got == *to {
            forward = !forward;
            completed += 1;
        }
        // Whatever the kill left, the dataset loads whole.
        sift_dataset::load(&data, "url")
            .unwrap()
            .server
            .verify_all()
            .unwrap();
    }
    let _ = completed;
}

#[test]
fn sift_update_takes_an_empty_remove_list() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, add, remove) = built_for_update(tmp.path(), 10, 1);
    std::fs::write(&remove, "").unwrap();
    let err = update(&data, &add, &remove);
    assert!(err.contains("0 removed, 1 added"), "{err}");
    let loaded = sift_dataset::load(&data, "url").unwrap();
    assert_eq!(loaded.manifest.unwrap().row_count, 11);
    assert!(loaded.server.shards().iter().all(|s| s.is_mapped()));

    // `sift dataset verify` checks every file; a flipped bit in a mapped shard fails it.
    let out = verify(&data);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("all match"), "{text}");
    flip_last_bit(&loaded.dir.join("url-0.words"));
    let out = verify(&data);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("url-0.words"),
        "{err}"
    );
}

#[test]
fn sift_update_adds_and_removes_keys_sharing_other_shards() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, add, remove) = built_for_update(tmp.path(), 40, 4);
    write_list(&remove, &["k-3.example".to_string()]);
    let err = update(&data, &add, &remove);
    assert!(err.contains("1 removed, 1 added"), "{err}");
    assert!(err.contains("shared with the previous version"), "{err}");
    let loaded = sift_dataset::load(&data, "url").unwrap();
    assert_eq!(loaded.manifest.unwrap().row_count, 40);
    let device = Device::new(&loaded.server);
    for (w, expect) in [
        ("new.example", true),
        ("k-3.example", false),
        ("k-4.example", true),
    ] {
        assert_eq!(device.lookup(w).is_some(), expect, "{w}");
    }
}

/// Builds `k-0.example` … `k-<n-1>.example` into `dir/data` in `shards` shards and writes the
/// add list `dir/add.txt` (`new.example`); returns the dataset, the add and the remove list paths.
fn built_for_update(dir: &Path, n: usize, shards: usize) -> (PathBuf, PathBuf, PathBuf) {
    let data = dir.join("data");
    let keys: Vec<String> = (0..n).map(|i| format!("k-{i}.example")).collect();
    let list = dir.join("list.txt");
    write_list(&list, &keys);
    stdout_of_success(&mut build_cmd(&[&list], &data, shards));
    let add = dir.join("add.txt");
    write_list(&add, &["new.example".to_string()]);
    (data, add, dir.join("remove.txt"))
}

/// Runs `sift dataset verify DATA`.
fn verify(data: &std::path::Path) -> std::process::Output {
    sift()
        .args(["dataset", "verify"])
        .arg(data)
        .output()
        .unwrap()
}
