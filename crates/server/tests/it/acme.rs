//! Automatic certificates (`[tls.acme]`) against a real ACME server on loopback: Let's
//! Encrypt's test server `pebble` (Debian package `pebble`) validates our TLS-ALPN-01 answer on
//! the server's own TLS listener, issues the certificate, and the server serves it; a restart
//! serves the cached certificate with the CA gone.
//!
//! Without pebble the test is skipped, unless `SIFT_REQUIRE_PEBBLE=1` (set by CI's `.ci/run`),
//! which makes a missing pebble a failure.

use crate::common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The pebble binary, or `None` (after printing a `SKIPPED` line) when it is not installed and
/// not required.
fn pebble_or_skip(test: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("pebble"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        if std::env::var("SIFT_REQUIRE_PEBBLE").is_ok_and(|v| v == "1") {
            panic!(
                "{test}: SIFT_REQUIRE_PEBBLE=1 but no `pebble` on PATH; install it \
                 (apt-get install pebble) or unset SIFT_REQUIRE_PEBBLE to skip"
            );
        }
        println!(
            "SKIPPED {test}: no `pebble` on PATH (set SIFT_REQUIRE_PEBBLE=1 to make this a failure)"
        );
    }
    found
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills pebble when the test ends, passed or not.
struct Pebble(Child);

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts pebble with its HTTPS certificate from a fresh test CA (written to `dir`), validating
/// TLS-ALPN-01 on `tls_port`; returns it with its directory URL, management port and the CA
/// file that the ACME client must trust.
fn start_pebble(bin: &Path, dir: &Path, tls_port: u16) -> (Pebble, String, u16, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    std::fs::write(dir.join("pebble-cert.pem"), leaf.pem()).unwrap();
    std::fs::write(dir.join("pebble-key.pem"), key.serialize_pem()).unwrap();
    let ca_file = dir.join("pebble-ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let (api, mgmt) = (free_port(), free_port());
    let config = serde_json::json!({
        "pebble": {
            "listenAddress": format!("127.0.0.1:{api}"),
            "managementListenAddress": format!("127.0.0.1:{mgmt}"),
            "certificate": dir.join("pebble-cert.pem"),
            "privateKey": dir.join("pebble-key.pem"),
            "httpPort": free_port(),
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false
        }
    });
    std::fs::write(dir.join("pebble.json"), config.to_string()).unwrap();
    let child = Command::new(bin)
        .arg("-config")
        .arg(dir.join("pebble.json"))
        // No random validation delay, no deliberately rejected nonces: a quick, steady test.
        .env("PEBBLE_VA_NOSLEEP", "1")
        .env("PEBBLE_WFE_NONCEREJECT", "0")
        .env("PEBBLE_AUTHZREUSE", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting pebble");
    let pebble = Pebble(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", api)).is_err() {
        assert!(
            Instant::now() < deadline,
            "pebble did not listen within 10 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (
        pebble,
        format!("https://127.0.0.1:{api}/dir"),
        mgmt,
        ca_file,
    )
}

fn acme_config(
    dir: &Path,
    port: u16,
    directory: &str,
    ca_file: &Path,
) -> sift_server::ServerConfig {
    let data = dir.join("data");
    if !data.exists() {
        common::write_dataset(&data, &[("example.com", "1")], 1, 1);
    }
    toml::from_str(&format!(
        r#"
        listen = "127.0.0.1:{port}"
        require_tokens = false
        state_dir = "{state}"
        [tls.acme]
        directory = "{directory}"
        contact = ["ops@example.com"]
        domains = ["localhost"]
        ca_file = "{ca}"
        [[usecases]]
        name = "{usecase}"
        dataset_dir = "{data}"
        "#,
        state = dir.join("state").display(),
        ca = ca_file.display(),
        usecase = common::USECASE,
        data = data.display(),
    ))
    .unwrap()
}

/// An HTTPS client for `localhost` on loopback that trusts only `root_pem`.
fn client_trusting(root_pem: &[u8], port: u16) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(root_pem).unwrap())
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_certificate_is_obtained_served_and_cached_across_restarts() {
    let Some(bin) =
        pebble_or_skip("acme_certificate_is_obtained_served_and_cached_across_restarts")
    else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let port = free_port();
    let (pebble, directory, mgmt, ca_file) = start_pebble(&bin, dir, port);
    let server = common::start(acme_config(dir, port, &directory, &ca_file)).await;
    let store = server.state.ops.certificates().unwrap().clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !store.has_certificate() {
        assert!(
            Instant::now() < deadline,
            "no certificate from pebble within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cert_file = dir.join("state/acme/cert.pem");
    let key_file = dir.join("state/acme/key.pem");
    let issued = std::fs::read(&cert_file).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the private key is readable by its owner only"
        );
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        store.not_after_unix() > now + 86_400,
        "the expiry metric follows the new certificate"
    );

    // The served certificate chains to pebble's issuing root (fetched from its management API).
    let mgmt_client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&ca_file).unwrap()).unwrap(),
        )
        .build()
        .unwrap();
    let root = common::bytes_of(mgmt_client.get(format!("https://127.0.0.1:{mgmt}/roots/0"))).await;
    let client = client_trusting(&root, port);
    let url = format!("https://localhost:{port}/healthz");
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    let metrics = client
        .get(format!("https://localhost:{port}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!(
            "sift_tls_certificate_expiry_timestamp_seconds {}",
            store.not_after_unix()
        )),
        "{metrics}"
    );
    server.stop().await;

    // Restart with the CA gone: the cached certificate serves at once, nothing is re-ordered.
    drop(pebble);
    let server = common::start(acme_config(dir, port, &directory, &ca_file)).await;
    assert!(server.state.ops.certificates().unwrap().has_certificate());
    let client = client_trusting(&root, port);
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    assert_eq!(std::fs::read(&cert_file).unwrap(), issued);
    server.stop().await;
}

#[test]
fn acme_settings_are_checked() {
    let parse = |acme: &str| {
        let text = format!("state_dir = \"/tmp/x\"\n[tls.acme]\n{acme}\n");
        toml::from_str::<sift_server::ServerConfig>(&text)
            .map_err(|e| e.to_string())
            .and_then(|c| c.validate().map_err(|e| format!("{e:#}")))
    };
    assert!(parse("domains = [\"pir.example.com\"]").is_ok());
    for (acme, expected) in [
        ("domains = []", "domains is empty"),
        ("domains = [\"*.example.com\"]", "wildcard"),
        ("domains = [\"a b\"]", "not a DNS name"),
        (
            "domains = [\"a.example\"]\ndirectory = \"http://ca/dir\"",
            "https://",
        ),
        (
            "domains = [\"a.example\"]\ncontact = [\"nobody\"]",
            "contact",
        ),
    ] {
        let err = parse(acme).unwrap_err();
        assert!(err.contains(expected), "{acme:?}: {err}");
    }
    // Without ACME both files are required.
    let no_key = toml::from_str::<sift_server::ServerConfig>(
        "state_dir = \"/tmp/x\"\n[tls]\ncert = \"c.pem\"\n",
    )
    .unwrap();
    assert!(format!("{:#}", no_key.validate().unwrap_err()).contains("cert and key"));
    // The ACME files default to <state_dir>/acme.
    let mut tls = toml::from_str::<sift_server::ServerConfig>(
        "state_dir = \"/srv/sift\"\n[tls.acme]\ndomains = [\"a.example\"]\n",
    )
    .unwrap()
    .tls
    .unwrap();
    tls.resolve_acme_paths(Path::new("/srv/sift"));
    assert_eq!(tls.cert, Path::new("/srv/sift/acme/cert.pem"));
    assert_eq!(tls.key, Path::new("/srv/sift/acme/key.pem"));
    assert_eq!(
        tls.acme.unwrap().contact_uris(),
        Vec::<String>::new(),
        "no contact is fine"
    );
}
