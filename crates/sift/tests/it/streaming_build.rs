//! `sift build` streams its inputs through partitions on disk: with a buffer budget so small
//! that every row goes through the files it answers exactly and writes the same bytes as with
//! the default budget, and a build that fails leaves neither partitions nor a new version.

use crate::common::device::lookup_all;
use crate::common::{build_cmd, stdout_of_success};

use std::path::Path;
use std::process::Command;

fn build(inputs: &[&Path], out: &Path, shards: usize, buffer: Option<usize>) -> Command {
    let mut c = build_cmd(inputs, out, shards);
    match buffer {
        Some(b) => c.env(sift_dataset::partition::BUFFER_ENV, b.to_string()),
        None => c.env_remove(sift_dataset::partition::BUFFER_ENV),
    };
    c
}

/// The value the current version of `data` answers for each keyword (`None`: absent).
fn answers(data: &Path, keywords: &[&[u8]]) -> Vec<Option<Vec<u8>>> {
    lookup_all(&sift_dataset::load(data, "url").unwrap().server, keywords)
}

/// Every file of the current version except the manifest (which carries an id and a time).
fn version_files(data: &Path) -> Vec<(String, Vec<u8>)> {
    let dir = data.join("current");
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "manifest.json")
        .map(|n| (n.clone(), std::fs::read(dir.join(&n)).unwrap()))
        .collect();
    files.sort();
    files
}

#[test]
fn rows_spilled_to_partition_files_answer_exactly_and_match_the_in_memory_build() {
    let tmp = tempfile::tempdir().unwrap();
    // A URL list with duplicates and a keyword database whose rows repeat some URL keys with
    // the same value (merged) and add keywords with other values.
    let urls: Vec<String> = (0..400).map(|i| format!("host-{i}.example/p")).collect();
    let list = tmp.path().join("list.txt");
    std::fs::write(&list, [urls.join("\n"), urls[..50].join("\n")].join("\n")).unwrap();
    let db = tmp.path().join("extra.txtpb");
    let mut text = String::new();
    for i in 0..20 {
        text += &format!("rows {{ keyword: \"host-{i}.example/p\" value: \"1\" }}\n");
        text += &format!("rows {{ keyword: \"+1555{i:04}\" value: \"v{i}\" }}\n");
    }
    std::fs::write(&db, text).unwrap();

    let spilled = tmp.path().join("spilled");
    let out = stdout_of_success(&mut build(&[&list, &db], &spilled, 3, Some(1)));
    let _ = out;
    let memory = tmp.path().join("memory");
    stdout_of_success(&mut build(&[&list, &db], &memory, 3, None));
    assert_eq!(
        version_files(&spilled),
        version_files(&memory),
        "the same rows give the same shard files, whatever went through the disk"
    );
    let m = sift_dataset::Manifest::read(&spilled.join("current/manifest.json")).unwrap();
    assert_eq!(m.row_count, 420, "400 distinct URLs and 20 phone numbers");
    assert_eq!(m.shards.len(), 3);
    // Nothing of the partitions is left in the published version.
    assert!(!spilled.join("current").join(".partition").exists());

    let mut probe: Vec<Vec<u8>> = vec![
        urls[0].clone().into_bytes(),
        urls[399].clone().into_bytes(),
        b"+15550007".to_vec(),
        b"absent.example/p".to_vec(),
        b"+15559999".to_vec(),
    ];
    probe.extend(urls[100..110].iter().map(|u| u.clone().into_bytes()));
    let refs: Vec<&[u8]> = probe.iter().map(Vec::as_slice).collect();
    let got = answers(&spilled, &refs);
    let mut expected: Vec<Option<Vec<u8>>> = vec![
        Some(b"1".to_vec()),
        Some(b"1".to_vec()),
        Some(b"v7".to_vec()),
        None,
        None,
    ];
    expected.extend((0..10).map(|_| Some(b"1".to_vec())));
    assert_eq!(got, expected);
}

#[test]
fn a_failed_build_leaves_no_partition_files_and_no_new_version() {
    let tmp = tempfile::tempdir().unwrap();
    let list = tmp.path().join("list.txt");
    let urls: Vec<String> = (0..200).map(|i| format!("site-{i}.example")).collect();
    std::fs::write(&list, urls.join("\n")).unwrap();
    let data = tmp.path().join("data");
    stdout_of_success(&mut build(&[&list], &data, 2, None));
    let current = std::fs::read_link(data.join("current")).unwrap();
    let listing = |d: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let before = listing(&data.join("versions"));
    let top = listing(&data);

    // The last line gives a URL-list key another value: refused after every row went
    // through the partition files.
    let db = tmp.path().join("conflict.txtpb");
    std::fs::write(
        &db,
        "rows { keyword: \"+15550000\" value: \"a\" }\nrows { keyword: \"site-7.example\" value: \"2\" }\n",
    )
    .unwrap();
    for (out, existed) in [(&data, true), (&tmp.path().join("fresh"), false)] {
        let o = build(&[&list, &db], out, 2, Some(1)).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{err}");
        assert!(
            err.contains("keyword \"site-7.example\" has two different values")
                && err.contains("list.txt")
                && err.contains("conflict.txtpb:2:"),
            "{err}"
        );
        if existed {
            assert_eq!(
                listing(&data.join("versions")),
                before,
                "no staging folder left"
            );
            assert_eq!(listing(&data), top);
            assert_eq!(std::fs::read_link(data.join("current")).unwrap(), current);
        } else {
            assert!(!out.exists(), "a failed first build leaves no folder");
        }
    }
    assert_eq!(
        answers(&data, &[b"site-7.example", b"+15550000"]),
        vec![Some(b"1".to_vec()), None]
    );
}
