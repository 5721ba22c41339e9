//! The device's path end to end, as separate processes: `sift build` a dataset from a list,
//! `sift serve` it over TLS (a CA made here) with the OHTTP gateway and the Privacy Pass issuer,
//! then `sift check` blocked and allowed URLs through the gateway with real tokens.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::Stdio;

use crate::common;

use common::tls::TestCa;
use common::{Server, sift, stdout_of_success, usecase_toml, users_toml, verdicts, write_file};

const USECASE: &str = "com.example.e2e.url.filtering";
const USER_TOKEN: &str = "e2e-user-token";

/// Writes a test CA and a server certificate for 127.0.0.1 and localhost signed by it (the
/// chain in `cert.pem`); returns the CA path.
fn write_tls_material(dir: &Path) -> std::path::PathBuf {
    let ca = TestCa::named("sift e2e test CA");
    ca.write_leaf_for(dir, &["127.0.0.1", "localhost"], true);
    write_file(dir, "ca.pem", &ca.pem())
}

/// What `sift serve` printed to stderr (its logs), collected while it runs.
type Logs = std::sync::Arc<std::sync::Mutex<String>>;

/// Starts `sift serve` and returns it with its base URL and metrics URL, read from its stdout,
/// and its logs.
fn start_server(config: &Path) -> (Server, String, String, Logs) {
    let (mut server, mut lines) = common::spawn_serve(config, Stdio::piped());
    let stderr = server.0.stderr.take().unwrap();
    let logs = Logs::default();
    let sink = logs.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("{line}");
            let mut l = sink.lock().unwrap();
            l.push_str(&line);
            l.push('\n');
        }
    });
    let (mut base, mut metrics) = (None, None);
    while base.is_none() || metrics.is_none() {
        let line = common::next_line(&mut lines);
        if let Some(url) = line.strip_prefix(common::LISTENING) {
            base = Some(url.trim().to_owned());
        }
        if let Some(url) = line.strip_prefix("sift serve: metrics at ") {
            metrics = Some(url.trim().to_owned());
        }
    }
    common::drain(lines);
    (server, base.unwrap(), metrics.unwrap(), logs)
}

/// `GET url` over plain HTTP/1.0 (the metrics listener): status line and body.
fn http_get(url: &str) -> String {
    use std::io::{Read as _, Write as _};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn check_through_the_gateway_over_tls_with_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let list = root.join("blocklist.txt");
    std::fs::write(
        &list,
        "www.apple.com/url-filter-test\nbadsite.example\nexample.org/tracker\n",
    )
    .unwrap();
    let dataset = root.join("dataset");
    let stderr = common::stderr_of_success(sift().arg("build").arg(&list).arg("-o").arg(&dataset));
    // Apple's trialsPerShard (default 1): a test query per shard before it is written.
    assert!(
        stderr.contains("shard 0: 1 trial query answered correctly"),
        "{stderr}"
    );
    let ca = write_tls_material(root);
    let text = format!(
        "listen = \"127.0.0.1:0\"\nstate_dir = \"state\"\n{}{}\
         [tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n\
         [metrics]\nlisten = \"127.0.0.1:0\"\n[log]\naccess = true\n",
        users_toml(USER_TOKEN),
        usecase_toml(USECASE, "dataset")
    );
    let config = write_file(root, "sift.toml", &text);
    let (server, base, metrics_url, logs) = start_server(&config);
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");

    let stdout = stdout_of_success(
        sift()
            .args(["check", "--json", "--usecase", USECASE])
            .args(["--service", &base, "--issuer", &base, "--gateway", &base])
            .args(["--user-token", USER_TOKEN, "--ca"])
            .arg(&ca)
            .arg("--prefilter")
            .arg(dataset.join("current/prefilter"))
            .args([
                "https://www.apple.com/url-filter-test",
                "https://cdn.badsite.example/page?x=1",
                "https://example.org/tracker/pixel.gif",
                "https://www.example.com/",
                "https://example.org/",
            ]),
    );
    eprintln!("{stdout}");
    let first: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    let blocked = verdicts(&stdout);
    assert_eq!(
        blocked,
        vec![
            ("https://www.apple.com/url-filter-test".to_owned(), true),
            ("https://cdn.badsite.example/page?x=1".to_owned(), true),
            ("https://example.org/tracker/pixel.gif".to_owned(), true),
            ("https://www.example.com/".to_owned(), false),
            ("https://example.org/".to_owned(), false),
        ]
    );
    // The blocked verdicts came from PIR answers, not the prefilter alone.
    let pir_answers = first["suburls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["pir_blocked"] == serde_json::Value::Bool(true))
        .count();
    assert!(pir_answers >= 1, "{stdout}");

    // `sift doctor --probe`: HTTP/2 and the key configuration on the gateway, and Apple's test
    // entry through it. (The loopback URLs break the onboarding rules, so the exit code is 1.)
    let out = sift()
        .args(["doctor", "--probe", "--bundle-id", "com.example.e2e"])
        .args(["--service", &base, "--issuer", &base, "--gateway", &base])
        .args(["--user-token", USER_TOKEN, "--ca"])
        .arg(&ca)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    common::assert_contains_all(
        &stdout,
        &[
            "ok   gateway  answers over HTTP/2",
            "ok   gateway  publishes a usable key configuration",
            "ok   dataset  www.apple.com/url-filter-test is in the dataset",
            "FAIL",
        ],
    );

    // A wrong user token is refused by the issuer, through the gateway.
    let out = sift()
        .args(["check", "--usecase", USECASE])
        .args(["--service", &base, "--gateway", &base])
        .args(["--user-token", "not-a-user", "--ca"])
        .arg(&ca)
        .arg("--prefilter")
        .arg(dataset.join("current/prefilter"))
        .arg("https://www.apple.com/url-filter-test")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("401"), "{stderr}");

    // Metrics on their own listener, not on the public one; every request through the gateway
    // counted once as `/` and once with via="ohttp" under its own route.
    let metrics = http_get(&metrics_url);
    assert!(metrics.starts_with("HTTP/1.0 200"), "{metrics}");
    assert!(
        metrics.contains("sift_requests_total{route=\"/queries\",status=\"200\",via=\"ohttp\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "sift_issuer_requests_total{route=\"/token-key-for-user-token\",result=\"unauthorized\"} 1"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("sift_ohttp_requests_total{result=\"forwarded\"}"));
    assert!(metrics.contains("sift_tls_certificate_expiry_timestamp_seconds"));
    assert!(metrics.contains(&format!(
        "sift_dataset_info{{usecase=\"{USECASE}\",version=\""
    )));
    // The access log: one structured line per request, without the user token.
    let logs_so_far = logs.lock().unwrap().clone();
    let access: Vec<&str> = logs_so_far
        .lines()
        .filter(|l| l.contains("sift::access"))
        .collect();
    assert!(
        access
            .iter()
            .any(|l| l.contains("/queries") && l.contains("status=200")),
        "{logs_so_far}"
    );
    assert!(
        access.iter().all(|l| l.contains("duration_ms=")),
        "{logs_so_far}"
    );
    assert!(!logs_so_far.contains(USER_TOKEN), "{logs_so_far}");

    // SIGHUP re-reads the config: [limits] apply at once, a new listen address is named as
    // needing a restart, and the server keeps serving on its address.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replacen("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:1\"", 1)
            + "[limits]\nmax_report_urls = 5\n",
    )
    .unwrap();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let mut reloaded = String::new();
    for _ in 0..100 {
        reloaded = logs.lock().unwrap().clone();
        if reloaded.contains("listen changed: needs a restart to take effect") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        reloaded.contains("listen changed: needs a restart to take effect"),
        "{reloaded}"
    );
    assert!(reloaded.contains("[limits] applied"), "{reloaded}");
    assert!(!reloaded.contains("[metrics] listen changed"), "{reloaded}");
    // An unchanged dataset is not reloaded.
    assert!(
        !reloaded.contains(&format!("changed={USECASE}")),
        "{reloaded}"
    );
    let metrics = http_get(&metrics_url);
    assert!(
        metrics.contains("sift_reloads_total{result=\"failed\"} 0"),
        "{metrics}"
    );
}

/// Sets `params` valid from `from` days from now until `until` days from now.
fn valid_between(params: &mut rcgen::CertificateParams, from: i64, until: i64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let at = |days: i64| {
        let secs = now.checked_add_signed(days * 86_400).unwrap();
        rcgen::date_time_ymd(1970, 1, 1) + std::time::Duration::from_secs(secs)
    };
    params.not_before = at(from);
    params.not_after = at(until);
}

/// One way to get a certificate wrong (or right), written as `cert.pem`/`key.pem` in `dir`;
/// returns the CA's PEM to pass as `--ca`.
fn write_variant(dir: &Path, variant: &str) -> String {
    let ca = TestCa::new();
    let key = rcgen::KeyPair::generate().unwrap();
    let name = if variant == "name" {
        "pir.example.com"
    } else {
        "127.0.0.1"
    };
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
    match variant {
        "expired" => valid_between(&mut params, -60, -2),
        "not_yet" => valid_between(&mut params, 30, 90),
        "soon" => valid_between(&mut params, -30, 5),
        _ => {}
    }
    let (cert_pem, ca_pem) = if variant == "ca_leaf" {
        // What `openssl req -x509` makes: self-signed with CA:TRUE, trusted via --ca.
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let c = params.self_signed(&key).unwrap();
        (c.pem(), c.pem())
    } else {
        (ca.sign(&params, &key), ca.pem())
    };
    common::tls::write_cert_and_key(dir, &cert_pem, &key);
    ca_pem
}

#[test]
fn doctor_names_the_tls_cause_and_warns_before_expiry() {
    let root = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    // (variant, pass --ca, what doctor must say)
    let cases = [
        ("expired", true, "EXPIRED on"),
        ("not_yet", true, "NOT VALID YET"),
        ("name", true, "NAME MISMATCH; it names: pir.example.com"),
        ("unknown", false, "UNKNOWN ISSUER"),
        ("ca_leaf", true, "CA certificate USED AS END ENTITY"),
        (
            "soon",
            true,
            "WARN service  warning: the TLS certificate of",
        ),
    ];
    let mut servers = Vec::new();
    for (variant, with_ca, expect) in cases {
        let dir = root.path().join(variant);
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, write_variant(&dir, variant)).unwrap();
        let cfg: sift_server::ServerConfig = toml::from_str(&format!(
            "listen = \"127.0.0.1:0\"\nrequire_tokens = false\nstate_dir = \"{}\"\n\
             [tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            dir.join("state").display(),
            dir.join("cert.pem").display(),
            dir.join("key.pem").display()
        ))
        .unwrap();
        let server = rt.block_on(sift_server::spawn(cfg, None)).unwrap();
        let base = server.base_url();
        let mut cmd = sift();
        cmd.args(["doctor", "--probe", "--bundle-id", "com.example.tls"])
            .args(["--service", &base, "--issuer", &base, "--gateway", &base]);
        if with_ca {
            cmd.arg("--ca").arg(&ca);
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains(expect), "{variant}: {stdout}");
        assert!(
            !stdout.contains("error sending request"),
            "{variant}: {stdout}"
        );
        if variant == "soon" {
            // Still usable: the gateway answered after the warning.
            assert!(
                stdout.contains("ok   gateway  answers over HTTP/2"),
                "{stdout}"
            );
        }
        servers.push(server);
    }
    for s in servers {
        rt.block_on(s.stop());
    }
}
