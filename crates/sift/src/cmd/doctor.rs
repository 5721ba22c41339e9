//! `sift doctor`: checks a deployment's URLs against Apple's onboarding rules, prints the DNS TXT
//! record to publish, and with `--probe` connects: HTTP/2 and a valid key configuration on the
//! gateway, and (with a user token) Apple's test entry looked up through the gateway.

use std::process::ExitCode;

use sift_client::device::{DeviceClient, REQUEST_TIMEOUT, ServiceConfig};
use sift_client::onboarding::{
    APPLE_TEST_ENTRY, Finding, check_endpoint, check_separate_hosts, txt_record,
};
use sift_client::tokens::TokenSource;

/// Arguments of `sift doctor`.
#[derive(clap::Args)]
pub struct Args {
    /// PIR service URL as registered with Apple, e.g. `https://pir.example.com`.
    #[arg(long)]
    pub service: String,
    /// Privacy Pass issuer URL, e.g. `https://issuer.example.com`.
    #[arg(long)]
    pub issuer: String,
    /// OHTTP gateway URL, e.g. `https://ohttp.example.com`.
    #[arg(long)]
    pub gateway: String,
    /// The app's bundle id (the use case is `<bundle id>.url.filtering`).
    #[arg(long)]
    pub bundle_id: String,
    /// Connect to the deployment: check HTTP/2 and the key configuration on the gateway.
    #[arg(long)]
    pub probe: bool,
    /// A Bearer user token: with `--probe`, also look up Apple's test entry the way the device
    /// does (token and PIR through the gateway).
    #[arg(long, requires = "probe")]
    pub user_token: Option<String>,
    /// Extra CA certificate (PEM) to trust when probing, e.g. a staging CA.
    #[arg(long)]
    pub ca: Option<std::path::PathBuf>,
    /// Print findings as JSON.
    #[arg(long)]
    pub json: bool,
    /// The app's URL parsing configuration (its `urlParsingConfiguration`, JSON or TOML with
    /// Apple's property names): shown, compared with `--dataset`'s record, and used to check
    /// `--lists`.
    #[command(flatten)]
    pub parsing: super::parsing::ParsingArg,
    /// Dataset directory written by `sift build` (or a `sift prefilter build` folder): its
    /// `parsing.json` says which parsing its keys were normalised under.
    #[arg(long, value_name = "DIR")]
    pub dataset: Option<std::path::PathBuf>,
    /// The blocklists the dataset was built from: their keys (normalised as the build did) are
    /// checked against the app's parsing; keys the device can never ask for are counted, with
    /// examples.
    #[arg(long = "lists", value_name = "FILE", num_args = 1..)]
    pub lists: Vec<std::path::PathBuf>,
}

/// Runs `sift doctor`; exits 1 when a rule fails.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut findings: Vec<Finding> = Vec::new();
    findings.extend(check_endpoint("service", &args.service));
    findings.extend(check_endpoint("issuer", &args.issuer));
    findings.extend(check_endpoint("gateway", &args.gateway));
    findings.push(check_separate_hosts(
        &args.service,
        &args.issuer,
        &args.gateway,
    ));
    if args.probe {
        findings.extend(probe(&args));
    }
    findings.extend(super::parsing::doctor_findings(
        &args.parsing,
        args.dataset.as_deref(),
        &args.lists,
    )?);
    let ok = findings.iter().all(|f| f.ok);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&findings)?);
    } else {
        for f in &findings {
            let tag = if !f.ok {
                "FAIL"
            } else if f.message.starts_with("warning:") {
                "WARN"
            } else {
                "ok  "
            };
            println!("{tag} {:8} {}", f.subject, f.message);
        }
        println!(
            "\nPublish this DNS record on the service host:\n  {}",
            txt_record(&args.service, &args.bundle_id)
        );
        if !args.probe {
            println!(
                "Not checked: HTTP/2 on the gateway (Apple's relay requires it); run with --probe to connect."
            );
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Connects to the gateway (HTTP/2, key configuration) and, with a user token, looks up the
/// test entry through it.
fn probe(args: &Args) -> Vec<Finding> {
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return vec![finding("probe", false, format!("no async runtime: {e}"))],
    };
    rt.block_on(async {
        let ca = match args.ca.as_ref().map(std::fs::read).transpose() {
            Ok(ca) => ca,
            Err(e) => return vec![finding("probe", false, format!("reading --ca: {e}"))],
        };
        let transport = match sift_client::Transport::new(ca.as_deref(), REQUEST_TIMEOUT) {
            Ok(t) => t,
            Err(e) => return vec![finding("probe", false, format!("{e:#}"))],
        };
        let mut out = Vec::new();
        // TLS first, once per host: a refused certificate is named here, not as a failed GET.
        let mut seen = std::collections::HashSet::new();
        let mut gateway_tls_ok = true;
        for (subject, url) in [
            ("service", &args.service),
            ("issuer", &args.issuer),
            ("gateway", &args.gateway),
        ] {
            let origin = reqwest::Url::parse(url)
                .map(|u| (u.host_str().map(str::to_owned), u.port_or_known_default()))
                .ok();
            if !seen.insert(origin) {
                continue;
            }
            let found = tls::check(subject, url, ca.as_deref()).await;
            if subject == "gateway" || url == &args.gateway {
                gateway_tls_ok &= found.iter().all(|f| f.ok);
            }
            out.extend(found);
        }
        if !gateway_tls_ok {
            return out;
        }
        let url = format!("{}/ohttp-keys", args.gateway.trim_end_matches('/'));
        let keys = match transport.http().get(&url).send().await {
            Err(e) => {
                out.push(finding(
                    "gateway",
                    false,
                    format!("GET {url}: {}", error_chain(&e)),
                ));
                return out;
            }
            Ok(resp) => {
                let h2 = resp.version() == reqwest::Version::HTTP_2;
                out.push(finding(
                    "gateway",
                    h2,
                    if h2 {
                        "answers over HTTP/2".to_owned()
                    } else {
                        format!(
                            "answered over {:?}; Apple's relay requires HTTP/2 (enable h2 in ALPN)",
                            resp.version()
                        )
                    },
                ));
                let status = resp.status();
                match resp.bytes().await {
                    Ok(body) if status.is_success() => body.to_vec(),
                    Ok(_) => {
                        out.push(finding(
                            "gateway",
                            false,
                            format!("GET {url}: HTTP {status}"),
                        ));
                        return out;
                    }
                    Err(e) => {
                        out.push(finding("gateway", false, format!("GET {url}: {e}")));
                        return out;
                    }
                }
            }
        };
        let transport = match transport.via_gateway(&args.gateway, &keys) {
            Ok(t) => {
                out.push(finding(
                    "gateway",
                    true,
                    format!(
                        "publishes a usable key configuration ({} bytes)",
                        keys.len()
                    ),
                ));
                t
            }
            Err(e) => {
                out.push(finding(
                    "gateway",
                    false,
                    format!("key configuration: {e:#}"),
                ));
                return out;
            }
        };
        if let Some(token) = &args.user_token {
            out.push(test_entry(args, transport, token).await);
        }
        out
    })
}

/// An error and its causes on one line (`a: b: c`), as reqwest's own message omits them.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let c = cause.to_string();
        if !text.contains(&c) {
            text.push_str(": ");
            text.push_str(&c);
        }
        next = cause.source();
    }
    text
}

fn finding(subject: &str, ok: bool, message: String) -> Finding {
    Finding {
        subject: subject.into(),
        ok,
        message,
    }
}

async fn test_entry(args: &Args, transport: sift_client::Transport, token: &str) -> Finding {
    let usecase = format!("{}.url.filtering", args.bundle_id);
    let result = async {
        {
            let mut svc = ServiceConfig::new(&args.service, &usecase);
            svc.tokens = Some(TokenSource {
                issuer_url: args.issuer.clone(),
                user_token: token.to_owned(),
            });
            let mut device = DeviceClient::new(transport, svc);
            // Looked up as a device would: in its normalised, scheme-less, `www`-less form.
            let key = sift_urlkeys::normalize_key(APPLE_TEST_ENTRY)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let (value, _) = device.lookup(&key).await?;
            anyhow::Ok(value.as_deref() == Some(b"1"))
        }
    }
    .await;
    let (ok, message) = match result {
        Ok(true) => (
            true,
            format!(
                "{APPLE_TEST_ENTRY} is in the dataset with value 1 (looked up through the gateway)"
            ),
        ),
        Ok(false) => (
            false,
            format!("{APPLE_TEST_ENTRY} is missing: add it to the blocklist and rebuild"),
        ),
        Err(e) => (false, format!("could not query the test entry: {e:#}")),
    };
    Finding {
        subject: "dataset".into(),
        ok,
        message,
    }
}

/// `sift doctor --probe`'s own TLS handshake with each host: names the reason a client refuses
/// the certificate (expired, not yet valid, name mismatch, unknown issuer, CA used as end
/// entity) instead of a transport error, and warns [`EXPIRY_WARNING_DAYS`] days before
/// expiry. Trusts what the device would (the public web PKI) plus `--ca`.
///
/// [`EXPIRY_WARNING_DAYS`]: sift_server::tls::EXPIRY_WARNING_DAYS
mod tls {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use rustls::client::WebPkiServerVerifier;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
    use sift_client::onboarding::Finding;
    use sift_server::tls::EXPIRY_WARNING_DAYS;

    /// Verifies as a client normally does, remembering the end-entity certificate it was
    /// shown so a refusal can be explained from its contents.
    #[derive(Debug)]
    struct Recorder {
        inner: Arc<WebPkiServerVerifier>,
        seen: Mutex<Option<Vec<u8>>>,
    }

    impl ServerCertVerifier for Recorder {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            server_name: &ServerName<'_>,
            ocsp_response: &[u8],
            now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(end_entity.to_vec());
            self.inner.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            )
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.inner.supported_verify_schemes()
        }
    }

    fn finding(subject: &str, ok: bool, message: String) -> Finding {
        Finding {
            subject: subject.into(),
            ok,
            message,
        }
    }

    /// `YYYY-MM-DD` of a Unix time (UTC).
    pub fn date(unix: i64) -> String {
        // Howard Hinnant's days-to-civil algorithm.
        let z = unix.div_euclid(86_400) + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        format!("{y:04}-{m:02}-{d:02}")
    }

    fn now_unix() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }

    /// Connects to `url`'s host and port, shakes hands, and reports the certificate: one
    /// finding, or two when it is valid but expires within two weeks.
    pub async fn check(subject: &str, url: &str, extra_ca: Option<&[u8]>) -> Vec<Finding> {
        let Ok(parsed) = reqwest::Url::parse(url) else {
            return Vec::new(); // the URL rules already reported it
        };
        if parsed.scheme() != "https" {
            return Vec::new();
        }
        let Some(host) = parsed
            .host_str()
            .map(|h| h.trim_matches(['[', ']']).to_owned())
        else {
            return Vec::new();
        };
        let port = parsed.port_or_known_default().unwrap_or(443);
        match handshake(&host, port, extra_ca).await {
            Ok(findings) => findings
                .into_iter()
                .map(|(ok, m)| finding(subject, ok, m))
                .collect(),
            Err(m) => vec![finding(subject, false, m)],
        }
    }

    async fn handshake(
        host: &str,
        port: u16,
        extra_ca: Option<&[u8]>,
    ) -> Result<Vec<(bool, String)>, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        if let Some(pem) = extra_ca {
            for c in CertificateDer::pem_slice_iter(pem) {
                let c = c.map_err(|e| format!("reading --ca: {e}"))?;
                roots
                    .add(c)
                    .map_err(|e| format!("--ca is not a usable CA certificate: {e}"))?;
            }
        }
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| format!("building the certificate verifier: {e}"))?;
        let recorder = Arc::new(Recorder {
            inner,
            seen: Mutex::new(None),
        });
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS versions: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(recorder.clone())
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| format!("{host} is not a valid TLS server name: {e}"))?;
        let at = format!("{host}:{port}");
        let tcp = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::net::TcpStream::connect((host, port)),
        )
        .await
        .map_err(|_| format!("cannot connect to {at}: no answer within 10 s (firewall?)"))?
        .map_err(|e| format!("cannot connect to {at}: {e} (is the server running there?)"))?;
        let result = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp),
        )
        .await
        .map_err(|_| format!("{at}: the TLS handshake did not finish within 10 s"))?;
        let seen = recorder
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let facts = seen
            .as_deref()
            .and_then(|der| sift_server::tls::certificate_facts(der).ok());
        match result {
            Ok(_) => {
                let Some((not_after, _, names)) = facts else {
                    return Ok(vec![(true, format!("{at}: TLS certificate accepted"))]);
                };
                let days = (not_after - now_unix()).div_euclid(86_400);
                let mut out = vec![(
                    true,
                    format!(
                        "{at}: TLS certificate accepted for {host} (names: {}), valid until {}",
                        names.join(", "),
                        date(not_after)
                    ),
                )];
                if days < EXPIRY_WARNING_DAYS {
                    out.push((
                        true,
                        format!(
                            "warning: the TLS certificate of {at} expires in {days} day(s), on {}: \
                             renew it now and send SIGHUP to sift serve (no restart needed)",
                            date(not_after)
                        ),
                    ));
                }
                Ok(out)
            }
            Err(e) => {
                let cause = e
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>());
                Err(match cause {
                    Some(cause) => explain(cause, host, &at, facts.as_ref()),
                    None => format!("{at}: TLS handshake failed: {e}"),
                })
            }
        }
    }

    /// What a refused certificate means for the operator, and what to do.
    pub fn explain(
        e: &rustls::Error,
        host: &str,
        at: &str,
        facts: Option<&(i64, bool, Vec<String>)>,
    ) -> String {
        let names = facts
            .map(|f| {
                if f.2.is_empty() {
                    "no DNS names".to_owned()
                } else {
                    f.2.join(", ")
                }
            })
            .unwrap_or_else(|| "unknown names".to_owned());
        let is_ca = facts.is_some_and(|f| f.1);
        let ca_note = if is_ca {
            "; it is also a CA certificate (basicConstraints CA:TRUE, the default of \
             `openssl req -x509`), which devices refuse as a server certificate even once trusted"
        } else {
            ""
        };
        let rustls::Error::InvalidCertificate(ce) = e else {
            return format!("{at}: TLS handshake failed: {e}");
        };
        match ce {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                let when = match (ce, facts) {
                    (CertificateError::ExpiredContext { not_after, .. }, _) => {
                        date(not_after.as_secs() as i64)
                    }
                    (_, Some(f)) => date(f.0),
                    _ => "an earlier date".to_owned(),
                };
                format!(
                    "{at}: the TLS certificate EXPIRED on {when}: devices refuse it; renew it and \
                     send SIGHUP to sift serve"
                )
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                let when = match ce {
                    CertificateError::NotValidYetContext { not_before, .. } => {
                        format!(" before {}", date(not_before.as_secs() as i64))
                    }
                    _ => String::new(),
                };
                format!(
                    "{at}: the TLS certificate is NOT VALID YET (not{when}): check the clock of \
                     this machine and of whoever issued it, or wait"
                )
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!(
                    "{at}: the TLS certificate does not cover {host} (NAME MISMATCH; it names: \
                     {names}): get one whose subjectAltName lists {host}; one certificate may \
                     cover the service, issuer and gateway names"
                )
            }
            CertificateError::UnknownIssuer => format!(
                "{at}: the TLS certificate is signed by an UNKNOWN ISSUER (not a public CA, or the \
                 intermediate is missing): serve the full chain (fullchain.pem), or pass --ca \
                 for a test CA{ca_note}"
            ),
            CertificateError::Other(o) if o.to_string().contains("CaUsedAsEndEntity") || is_ca => {
                format!(
                    "{at}: the TLS certificate is a CA certificate USED AS END ENTITY \
                     (basicConstraints CA:TRUE, the default of `openssl req -x509`): devices \
                     refuse it; issue a server (leaf) certificate, see docs/deploy.md"
                )
            }
            _ => format!("{at}: the TLS certificate is refused: {e}"),
        }
    }
}
