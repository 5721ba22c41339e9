//! `sift … | head`: a reader that closes the pipe early must not make `sift` panic (issue 19).

use crate::common;

use std::process::Stdio;

#[test]
fn a_closed_stdout_ends_sift_quietly() {
    let mut child = common::sift()
        .args(["suburls", "https://a.b.c.d.e.example.com/1/2/3/4/5?q=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Close the read end before `sift` writes: its first write gets EPIPE.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
}
