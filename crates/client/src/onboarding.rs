//! Apple's onboarding rules for a URL-filter deployment that can be checked from the URLs alone
//! (`shared/spec/README.md`, "Onboarding facts"): HTTPS, no custom port, no path, no trailing
//! slash, and service, issuer and gateway on separate hosts.

use url::Url;

/// One rule's outcome.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// Which URL or rule this is about.
    pub subject: String,
    /// `true` when the rule holds.
    pub ok: bool,
    /// What was checked and, on failure, what to change.
    pub message: String,
}

impl Finding {
    fn new(subject: &str, ok: bool, message: impl Into<String>) -> Self {
        Self {
            subject: subject.to_owned(),
            ok,
            message: message.into(),
        }
    }
}

/// Checks one endpoint URL as Apple's relay wants it: `https://host` and nothing else.
pub fn check_endpoint(role: &str, raw: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    let url = match Url::parse(raw) {
        Ok(u) => u,
        Err(e) => {
            out.push(Finding::new(
                role,
                false,
                format!("`{raw}` is not a valid URL: {e}"),
            ));
            return out;
        }
    };
    out.push(Finding::new(
        role,
        url.scheme() == "https",
        format!("scheme is `{}` (HTTPS required)", url.scheme()),
    ));
    out.push(Finding::new(
        role,
        url.port().is_none(),
        match url.port() {
            Some(p) => format!("custom port {p} is not allowed: serve on 443"),
            None => "no custom port".to_owned(),
        },
    ));
    let path_ok = url.path() == "/" && !raw.trim_end().ends_with('/');
    out.push(Finding::new(
        role,
        path_ok,
        if url.path() != "/" {
            format!(
                "path `{}` is not allowed (custom paths were removed in iOS/macOS 26.4): use a subdomain",
                url.path()
            )
        } else if raw.trim_end().ends_with('/') {
            "remove the trailing slash".to_owned()
        } else {
            "no path, no trailing slash".to_owned()
        },
    ));
    out.push(Finding::new(
        role,
        url.query().is_none() && url.fragment().is_none(),
        "no query or fragment",
    ));
    let ip_host = matches!(
        url.host(),
        Some(url::Host::Ipv4(_)) | Some(url::Host::Ipv6(_))
    );
    out.push(Finding::new(
        role,
        !ip_host,
        if ip_host {
            "an IP address cannot carry a DNS TXT record: use a host name"
        } else {
            "host is a DNS name"
        },
    ));
    out
}

/// Checks that service, issuer and gateway are on separate hosts.
pub fn check_separate_hosts(service: &str, issuer: &str, gateway: &str) -> Finding {
    let host = |s: &str| {
        Url::parse(s)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
    };
    let (a, b, c) = (host(service), host(issuer), host(gateway));
    let ok = a.is_some() && b.is_some() && c.is_some() && a != b && b != c && a != c;
    Finding::new(
        "hosts",
        ok,
        "service, issuer and OHTTP gateway must be on separate subdomains",
    )
}

/// The DNS TXT record Apple's validator looks for on the service host.
pub fn txt_record(service: &str, app_bundle_id: &str) -> String {
    let host = Url::parse(service)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| service.to_owned());
    format!("{host}. IN TXT \"apple-url-filter={app_bundle_id}\"")
}

/// The dataset entry Apple's validator queries; it must be present with value `1`.
pub const APPLE_TEST_ENTRY: &str = "www.apple.com/url-filter-test";

#[cfg(test)]
mod tests {
    use super::*;

    fn failures(raw: &str) -> Vec<String> {
        check_endpoint("x", raw)
            .into_iter()
            .filter(|f| !f.ok)
            .map(|f| f.message)
            .collect()
    }

    #[test]
    fn good_endpoint_passes_every_rule() {
        assert!(failures("https://pir.example.com").is_empty());
    }

    #[test]
    fn each_rule_catches_its_violation() {
        assert!(failures("http://pir.example.com")[0].contains("HTTPS"));
        assert!(failures("https://pir.example.com:8443")[0].contains("port"));
        assert!(failures("https://example.com/pir")[0].contains("path"));
        assert!(failures("https://pir.example.com/")[0].contains("trailing slash"));
        assert!(failures("https://127.0.0.1")[0].contains("IP address"));
        assert!(!failures("not a url").is_empty());
    }

    #[test]
    fn hosts_must_differ() {
        assert!(check_separate_hosts("https://a.x.com", "https://b.x.com", "https://c.x.com").ok);
        assert!(!check_separate_hosts("https://a.x.com", "https://a.x.com", "https://c.x.com").ok);
    }

    #[test]
    fn txt_record_names_the_bundle() {
        assert_eq!(
            txt_record("https://pir.example.com", "com.example.app"),
            "pir.example.com. IN TXT \"apple-url-filter=com.example.app\""
        );
    }
}
