//! Shared helpers of the `sift` binary's integration tests.
#![allow(dead_code)]

/// Test certificates, shared with the server crate's integration tests.
#[path = "../../../../server/tests/it/common/tls.rs"]
pub mod tls;

/// A device-like PIR client against a loaded dataset, shared with the dataset crate's tests.
#[path = "../../../../dataset/tests/support/device.rs"]
pub mod device;

use std::io::{BufRead as _, BufReader, Lines};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

/// The `sift` binary built for these tests.
pub fn sift() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sift"))
}

/// `sift build INPUTS -o OUT --shard-count SHARDS --trials-per-shard 0`, not yet run.
pub fn build_cmd(inputs: &[&Path], out: &Path, shards: usize) -> Command {
    let mut c = sift();
    c.arg("build").args(inputs).arg("-o").arg(out).args([
        "--shard-count",
        &shards.to_string(),
        "--trials-per-shard",
        "0",
    ]);
    c
}

/// Runs `sift update DATA --add ADD --remove REMOVE`, which must succeed; its stderr.
pub fn update(data: &Path, add: &Path, remove: &Path) -> String {
    stderr_of_success(
        sift()
            .arg("update")
            .arg(data)
            .arg("--add")
            .arg(add)
            .arg("--remove")
            .arg(remove),
    )
}

/// Runs `cmd`, asserts that it exited successfully (showing the command and both output
/// streams if not), and returns its standard output.
pub fn stdout_of_success(cmd: &mut Command) -> String {
    run_expecting(cmd, true).0
}

/// Runs `cmd`, asserts that its exit status is success exactly when `success` (showing the
/// command and both output streams if not), and returns its standard output and error.
fn run_expecting(cmd: &mut Command, success: bool) -> (String, String) {
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let should = if success { "succeed" } else { "fail" };
    assert_eq!(
        out.status.success(),
        success,
        "{cmd:?} should {should}: {stdout}\n{stderr}"
    );
    (stdout, stderr)
}

/// The prefix of the line `sift serve` prints on stdout once it listens.
pub const LISTENING: &str = "sift serve: listening on ";

/// A running `sift serve` process, killed when the test ends, pass or fail.
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `sift serve --poll-secs 0 --config config` with its stderr sent to `stderr`; returns
/// the process and the lines of its stdout.
pub fn spawn_serve(config: &Path, stderr: Stdio) -> (Server, Lines<BufReader<ChildStdout>>) {
    let mut child = sift()
        .args(["serve", "--poll-secs", "0", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    (Server(child), BufReader::new(stdout).lines())
}

/// The next line of a server's stdout; panics if the server exited.
pub fn next_line(lines: &mut Lines<BufReader<ChildStdout>>) -> String {
    lines
        .next()
        .expect("sift serve exited before listening")
        .unwrap()
}

/// Keeps reading a server's stdout so that it never blocks on a full pipe.
pub fn drain(lines: Lines<BufReader<ChildStdout>>) {
    std::thread::spawn(move || for _ in lines {});
}

/// Starts `sift serve` on `config` (its logs on the test's stderr) and returns it with the base
/// URL it printed.
pub fn serve(config: &Path) -> (Server, String) {
    let (server, mut lines) = spawn_serve(config, Stdio::inherit());
    let base = loop {
        if let Some(url) = next_line(&mut lines).strip_prefix(LISTENING) {
            break url.trim().to_owned();
        }
    };
    drain(lines);
    (server, base)
}

/// A fresh temporary directory holding one file, `name` with `text`, and that file's path.
pub fn temp_dir_with(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), name, text);
    (dir, path)
}

/// Writes `text` to `dir/name` and returns that path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The top-level lines of a server configuration on loopback (a free port) over plain HTTP
/// without tokens, with its state in `state`; tables follow.
pub fn open_config_head(state: &Path) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\ndev_plain_http = true\nrequire_tokens = false\nstate_dir = \"{}\"\n",
        state.display()
    )
}

/// A server configuration's `[[users]]` table: one tier, `tier1`, whose user token is `token`.
pub fn users_toml(token: &str) -> String {
    format!("[[users]]\ntier = \"tier1\"\ntokens = [\"{token}\"]\n")
}

/// A server configuration's `[[usecases]]` table for `name` served from `dataset_dir`.
pub fn usecase_toml(name: &str, dataset_dir: &str) -> String {
    format!("[[usecases]]\nname = \"{name}\"\ndataset_dir = \"{dataset_dir}\"\n")
}

/// A server configuration serving `name` from `dataset_dir` with symmetric PIR under the key
/// in `key_file` (plain HTTP on loopback, no tokens, state in `state`).
pub fn symmetric_config(state: &Path, name: &str, dataset_dir: &Path, key_file: &Path) -> String {
    format!(
        "{}{}[usecases.symmetric_pir]\ndatabase_encryption_key_file = \"{}\"\n",
        open_config_head(state),
        usecase_toml(name, &dataset_dir.display().to_string()),
        key_file.display()
    )
}

/// Starts an in-process server on the configuration `toml_text` and returns it with one device
/// client per use case in `usecases`.
pub async fn serve_devices(
    toml_text: &str,
    usecases: &[&str],
) -> (
    sift_server::RunningServer,
    Vec<sift_client::device::DeviceClient>,
) {
    let config: sift_server::ServerConfig = toml::from_str(toml_text).unwrap();
    let server = sift_server::spawn(config, None).await.unwrap();
    let clients = usecases
        .iter()
        .map(|name| {
            let transport =
                sift_client::Transport::new(None, std::time::Duration::from_secs(120)).unwrap();
            sift_client::device::DeviceClient::new(
                transport,
                sift_client::device::ServiceConfig::new(&server.base_url(), name),
            )
        })
        .collect();
    (server, clients)
}

/// Runs `cmd`, asserts that it failed, and returns its standard output and standard error.
pub fn output_of_failure(cmd: &mut Command) -> (String, String) {
    run_expecting(cmd, false)
}

/// Runs `cmd`, asserts that it succeeded, and returns its standard error (where sift reports).
pub fn stderr_of_success(cmd: &mut Command) -> String {
    run_expecting(cmd, true).1
}

/// The (url, blocked) verdicts of `sift check --json` output, one JSON object a line.
pub fn verdicts(stdout: &str) -> Vec<(String, bool)> {
    stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["url"].as_str().unwrap().to_owned(),
                v["blocked"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// Asserts that `text` contains every one of `needles`, naming the first one missing.
pub fn assert_contains_all(text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(text.contains(needle), "missing {needle:?} in {text}");
    }
}
