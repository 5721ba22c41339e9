//! Keyword databases through `sift build` files and `sift serve` over HTTP: Apple's documented
//! NEURLFilter input, random binary keywords with values from 1 byte to 60 KB (entries that
//! need several response ciphertexts), and bad inputs refused with a position and no output.

use crate::common;

#[path = "../../../keyworddb/tests/support/textproto.rs"]
mod textproto;

use std::path::{Path, PathBuf};

use common::{assert_contains_all, sift, stdout_of_success};
use rand::{Rng, SeedableRng};
use textproto::quote;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/vectors/keyworddb");

fn build(inputs: &[&Path], out: &Path, extra: &[&str]) -> std::process::Output {
    sift()
        .arg("build")
        .args(inputs)
        .arg("-o")
        .arg(out)
        .args(["--trials-per-shard", "0"])
        .args(extra)
        .output()
        .unwrap()
}

/// Serves each `(use case, dataset dir)` over plain HTTP on loopback (no tokens) and returns
/// the server and one device client per use case.
async fn serve(
    state: &Path,
    datasets: &[(&str, &Path)],
) -> (
    sift_server::RunningServer,
    Vec<sift_client::device::DeviceClient>,
) {
    let mut toml_text = common::open_config_head(state);
    for (name, dir) in datasets {
        toml_text += &common::usecase_toml(name, &dir.display().to_string());
    }
    let names: Vec<&str> = datasets.iter().map(|(name, _)| *name).collect();
    common::serve_devices(&toml_text, &names).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apple_neurlfilter_testing_input_builds_and_answers_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let input = PathBuf::from(FIXTURES).join("neurlfilter-input.txtpb");
    let o = build(&[&input], &out, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("10 distinct keywords"), "{stderr}");
    let (server, mut clients) = serve(
        &dir.path().join("state"),
        &[("com.example.app.url.filtering", &out)],
    )
    .await;
    let device = &mut clients[0];
    for k in (1..=9)
        .map(|i| {
            if i == 1 {
                "example.com".to_string()
            } else {
                format!("example{i}.com")
            }
        })
        .chain(["example10.com/resource?query=bugs".to_string()])
    {
        assert_eq!(
            device.lookup(&k).await.unwrap().0.as_deref(),
            Some(&b"1"[..]),
            "{k}"
        );
    }
    for absent in [
        "example10.com",
        "example11.com",
        "www.example.com",
        "Example.com",
    ] {
        assert_eq!(device.lookup(absent).await.unwrap().0, None, "{absent}");
    }
    server.stop().await;
}

fn random_rows(rng: &mut impl Rng, sizes: &[usize]) -> Vec<(Vec<u8>, Vec<u8>)> {
    sizes
        .iter()
        .map(|&n| {
            let klen = rng.gen_range(1..24);
            let k: Vec<u8> = (0..klen).map(|_| rng.r#gen()).collect();
            let v: Vec<u8> = (0..n).map(|_| rng.r#gen()).collect();
            (k, v)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_binary_keywords_and_large_values_round_trip_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(17);
    // Small values in text format; values needing several plaintexts (3 KB: two; 60 KB: many
    // response ciphertexts) in binary. Each set is its own dataset, as an operator would
    // split small and large entries.
    let small = random_rows(&mut rng, &[1, 1, 60, 60, 300, 300, 0, 1]);
    let medium = random_rows(&mut rng, &[3000, 3000, 2999, 1]);
    let large = random_rows(&mut rng, &[60_000, 65_535]);
    let txt = dir.path().join("small.txtpb");
    let text: String = small
        .iter()
        .map(|(k, v)| format!("rows {{ keyword: {} value: {} }}\n", quote(k), quote(v)))
        .collect();
    std::fs::write(&txt, text).unwrap();
    let mid = dir.path().join("medium.binpb");
    std::fs::write(&mid, sift_keyworddb::encode_binary(&medium)).unwrap();
    let big = dir.path().join("large.binpb");
    std::fs::write(&big, sift_keyworddb::encode_binary(&large)).unwrap();
    let mut outs = Vec::new();
    for (name, input) in [("small", &txt), ("medium", &mid), ("large", &big)] {
        let out = dir.path().join(name);
        let o = build(&[input], &out, &["--no-prefilter"]);
        assert!(
            o.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(!out.join("current/prefilter").exists());
        outs.push(out);
    }
    let (server, mut clients) = serve(
        &dir.path().join("state"),
        &[
            ("t.small", &outs[0]),
            ("t.medium", &outs[1]),
            ("t.large", &outs[2]),
        ],
    )
    .await;
    for (device, rows) in clients.iter_mut().zip([&small, &medium, &large]) {
        for (k, v) in rows.iter() {
            let got = device.lookup_bytes(k).await.unwrap().0;
            assert_eq!(
                got.as_deref(),
                Some(v.as_slice()),
                "keyword {k:?}, {} bytes",
                v.len()
            );
        }
        for absent in [&b"absent"[..], b"\x00", b""] {
            assert_eq!(
                device.lookup_bytes(absent).await.unwrap().0,
                None,
                "{absent:?}"
            );
        }
    }
    server.stop().await;
}

/// Runs a build expected to fail; returns stderr and asserts the output folder stayed empty.
fn refused(dir: &Path, name: &str, contents: &[u8]) -> String {
    let input = dir.join(name);
    std::fs::write(&input, contents).unwrap();
    let out = dir.join(format!("out-{name}"));
    let o = build(&[&input], &out, &[]);
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "{name} was accepted: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(&out)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{name}: output left behind: {left:?}");
    stderr
}

#[test]
fn bad_keyword_databases_are_refused_with_position_and_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let e = refused(d, "braces.txtpb", b"rows {\n  keyword: \"a\"\n");
    assert!(e.contains("braces.txtpb:1:6: unbalanced braces"), "{e}");
    let e = refused(d, "escape.txtpb", b"rows { keyword: \"a\\qb\" }");
    assert!(e.contains("escape.txtpb:1:19: bad escape \\q"), "{e}");
    let e = refused(
        d,
        "field.txtpb",
        b"rows { keyword: \"a\" }\nrows { name: \"x\" }",
    );
    assert!(e.contains("field.txtpb:2:8: unknown field `name`"), "{e}");
    let mut bin = sift_keyworddb::encode_binary(&[(b"a".to_vec(), b"1".to_vec())]);
    bin.extend_from_slice(&[0x0a, 0x20, 0x0a]);
    let e = refused(d, "cut.binpb", &bin);
    assert!(e.contains("cut.binpb:byte 8: truncated row"), "{e}");
    let big = sift_keyworddb::encode_binary(&[
        (b"ok".to_vec(), vec![1; 10]),
        (b"big".to_vec(), vec![0; 65_536]),
    ]);
    let e = refused(d, "big.binpb", &big);
    assert!(
        e.contains("big.binpb:byte 18: the value is 65536 bytes, over the limit of 65535"),
        "{e}"
    );
    let e = refused(
        d,
        "dup.txtpb",
        b"rows { keyword: \"+1\" value: \"\\001\" }\nrows { keyword: \"+2\" value: \"x\" }\n\
          rows { keyword: \"+1\" value: \"\\000\" }",
    );
    assert!(
        e.contains("keyword \"+1\" has two different values")
            && e.contains("dup.txtpb:1:6")
            && e.contains("dup.txtpb:3:6"),
        "{e}"
    );
}

#[test]
fn identical_duplicates_merge_and_url_like_keywords_are_kept_with_a_warning() {
    let (dir, input) = common::temp_dir_with(
        "urls.txtpb",
        "rows: [{ keyword: \"https://Example.com/a\" value: \"1\" },\
         { keyword: \"www.example.com\" value: \"1\" }, { keyword: \"ok.example\" value: \"1\" },\
         { keyword: \"ok.example\" value: \"1\" }]",
    );
    let out = dir.path().join("out");
    let o = build(&[&input], &out, &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let scheme = "urls.txtpb:1:8: \"https://Example.com/a\": it has a scheme";
    assert_contains_all(
        &stderr,
        &[
            "3 distinct keywords",
            "1 identical duplicates merged",
            "2 keyword(s) are kept as given",
            scheme,
        ],
    );
    assert!(out.join("current/url-0.words").exists());
    assert!(
        !out.join("current/url-0.bin").exists(),
        "a shard is stored once"
    );
    let _ = stdout_of_success;
}
