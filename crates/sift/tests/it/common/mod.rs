//! Shared helpers of the `sift` binary's integration tests.
#![allow(dead_code)]

use std::process::Command;

/// The `sift` binary built for these tests.
pub fn sift() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sift"))
}

/// Runs `cmd`, asserts that it exited successfully (showing the command and both output
/// streams if not), and returns its standard output.
pub fn stdout_of_success(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
