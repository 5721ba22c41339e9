//! `[tls.acme]` as an operator writes it: the commented example in `examples/sift.toml` is a
//! valid configuration once uncommented, and `sift serve --check-config` says that the
//! certificate will be requested at start instead of reporting missing files.

fn repo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn the_example_acme_section_is_valid_and_check_config_explains_the_pending_certificate() {
    let example = std::fs::read_to_string(repo().join("examples/sift.toml")).unwrap();
    // The example with its file-based cert/key replaced by the commented ACME section.
    let mut text = String::new();
    let mut in_acme = false;
    for line in example.lines() {
        if line.starts_with("cert = ") || line.starts_with("key = ") {
            continue;
        }
        if line == "# [tls.acme]" {
            in_acme = true;
        }
        match line.strip_prefix("# ") {
            Some(l) if in_acme && (l.starts_with('[') || l.contains(" = ")) => {
                text += l;
            }
            _ => {
                if in_acme && !line.starts_with('#') {
                    in_acme = false;
                }
                text += line;
            }
        }
        text += "\n";
    }
    assert!(text.contains("\n[tls.acme]\n"), "{text}");
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let text = text
        .replace(
            "/var/lib/sift/acme",
            &state.join("acme").display().to_string(),
        )
        .replace("/var/lib/sift", &state.display().to_string());
    let cfg: sift_server::ServerConfig = toml::from_str(&text).unwrap();
    cfg.validate().unwrap();
    let acme = cfg.tls.as_ref().unwrap().acme.as_ref().unwrap();
    assert_eq!(
        acme.directory,
        sift_server::config::LETS_ENCRYPT_DIRECTORY,
        "Let's Encrypt by default"
    );
    assert_eq!(acme.contact_uris(), ["mailto:ops@example.com"]);
    assert_eq!(acme.domains.len(), 3);

    let path = tmp.path().join("sift.toml");
    std::fs::write(&path, &text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sift"))
        .args(["serve", "--check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    crate::common::assert_contains_all(
        &stdout,
        &[
            "tls       ACME: no certificate yet; `serve` requests one for pir.example.com, issuer.example.com, ohttp.example.com",
            &state.join("acme/cert.pem").display().to_string(),
        ],
    );
    assert!(!stdout.contains("tls       problem"), "{stdout}");
}
