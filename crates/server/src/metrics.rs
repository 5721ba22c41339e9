//! Prometheus text metrics: request counts by route, status and path (direct or through the
//! OHTTP gateway), latency histograms by route and use case, the gateway's and the issuer's
//! outcomes, and the key-store size. Hand-rolled to keep the hot path to a few map updates.
//!
//! Every label value comes from a fixed set (route names from [`crate::routes::route_label`],
//! status codes the handlers produce, configured use-case names), so no client can grow the
//! exposition.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Latency bucket upper bounds in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    total: u64,
    sum: f64,
}

/// How a request reached the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Via {
    /// Straight from the client (or a load balancer).
    Direct,
    /// Decapsulated by this server's OHTTP gateway and run in process: the outer `POST /` is
    /// counted too, as route `/`.
    Ohttp,
}

impl Via {
    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Via::Direct => "direct",
            Via::Ohttp => "ohttp",
        }
    }
}

/// What the OHTTP gateway did with one encapsulated request (`POST /`), read from its outer
/// response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayOutcome {
    /// Decapsulated, forwarded and answered (whatever the inner status).
    Forwarded,
    /// Unknown key id or algorithms (RFC 9458 §5.3 problem): the client must refetch keys.
    KeyProblem,
    /// Not decryptable, malformed, or a replay.
    Invalid,
    /// Over the body limit.
    TooLarge,
    /// Not `message/ohttp-req`.
    WrongContentType,
    /// The replay store or the upstream was unavailable, or an internal error.
    Unavailable,
}

impl GatewayOutcome {
    const ALL: [GatewayOutcome; 6] = [
        GatewayOutcome::Forwarded,
        GatewayOutcome::KeyProblem,
        GatewayOutcome::Invalid,
        GatewayOutcome::TooLarge,
        GatewayOutcome::WrongContentType,
        GatewayOutcome::Unavailable,
    ];

    fn label(self) -> &'static str {
        match self {
            GatewayOutcome::Forwarded => "forwarded",
            GatewayOutcome::KeyProblem => "key_problem",
            GatewayOutcome::Invalid => "invalid",
            GatewayOutcome::TooLarge => "too_large",
            GatewayOutcome::WrongContentType => "wrong_content_type",
            GatewayOutcome::Unavailable => "unavailable",
        }
    }

    /// Classifies the gateway's outer response.
    pub fn from_response(status: u16, problem_json: bool) -> Self {
        match status {
            200..=299 => GatewayOutcome::Forwarded,
            400 | 401 | 422 if problem_json => GatewayOutcome::KeyProblem,
            413 => GatewayOutcome::TooLarge,
            415 => GatewayOutcome::WrongContentType,
            400..=499 => GatewayOutcome::Invalid,
            _ => GatewayOutcome::Unavailable,
        }
    }
}

/// The issuer's routes a device calls for tokens, in counter order.
const ISSUER_ROUTES: [&str; 2] = ["/token-key-for-user-token", "/issue"];

/// What the Privacy Pass issuer did with one `GET /token-key-for-user-token` or `POST /issue`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuerOutcome {
    /// A token was issued.
    Issued,
    /// Missing or unknown user token.
    Unauthorized,
    /// Over the user token's issuance rate (`limits.issue_per_minute`).
    RateLimited,
    /// A malformed token request.
    Invalid,
    /// Anything else (internal error, timeout).
    Failed,
}

impl IssuerOutcome {
    const ALL: [IssuerOutcome; 5] = [
        IssuerOutcome::Issued,
        IssuerOutcome::Unauthorized,
        IssuerOutcome::RateLimited,
        IssuerOutcome::Invalid,
        IssuerOutcome::Failed,
    ];

    fn label(self) -> &'static str {
        match self {
            IssuerOutcome::Issued => "issued",
            IssuerOutcome::Unauthorized => "unauthorized",
            IssuerOutcome::RateLimited => "rate_limited",
            IssuerOutcome::Invalid => "invalid",
            IssuerOutcome::Failed => "failed",
        }
    }

    /// Classifies the issuer's response status.
    pub fn from_status(status: u16) -> Self {
        match status {
            200..=299 => IssuerOutcome::Issued,
            401 | 403 => IssuerOutcome::Unauthorized,
            429 => IssuerOutcome::RateLimited,
            400..=499 => IssuerOutcome::Invalid,
            _ => IssuerOutcome::Failed,
        }
    }
}

/// One finished request, as the metrics layer saw it.
#[derive(Debug, Clone, Copy)]
pub struct RequestRecord<'a> {
    /// Route label (a fixed set).
    pub route: &'static str,
    /// Direct or through the gateway.
    pub via: Via,
    /// Configured use-case name, or `-`.
    pub usecase: &'a str,
    /// Response status.
    pub status: u16,
    /// Time to the response head.
    pub elapsed: Duration,
}

/// The service's counters.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, Via, u16), u64>>,
    latency: Mutex<BTreeMap<(&'static str, String), Histogram>>,
    gateway: [AtomicU64; GatewayOutcome::ALL.len()],
    issuer: [[AtomicU64; IssuerOutcome::ALL.len()]; ISSUER_ROUTES.len()],
}

impl Metrics {
    /// Records one finished request.
    pub fn record(&self, r: &RequestRecord<'_>) {
        *self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((r.route, r.via, r.status))
            .or_default() += 1;
        let secs = r.elapsed.as_secs_f64();
        let mut lat = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        let h = lat.entry((r.route, r.usecase.to_owned())).or_default();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                h.counts[i] += 1;
            }
        }
        h.total += 1;
        h.sum += secs;
    }

    /// Counts one encapsulated request by outcome.
    pub fn count_gateway(&self, outcome: GatewayOutcome) {
        let i = GatewayOutcome::ALL
            .iter()
            .position(|o| *o == outcome)
            .unwrap_or(0);
        self.gateway[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one request to an issuer route (`/token-key-for-user-token` or `/issue`; others
    /// are ignored) by outcome.
    pub fn count_issuer(&self, route: &str, outcome: IssuerOutcome) {
        let Some(r) = ISSUER_ROUTES.iter().position(|x| *x == route) else {
            return;
        };
        let i = IssuerOutcome::ALL
            .iter()
            .position(|o| *o == outcome)
            .unwrap_or(0);
        self.issuer[r][i].fetch_add(1, Ordering::Relaxed);
    }

    /// Renders the Prometheus text exposition format. `key_store` is the number of stored
    /// evaluation keys and, where the store knows it, their size in bytes.
    pub fn render(&self, key_store: (usize, Option<u64>), gateway: bool, issuer: bool) -> String {
        let mut out = String::new();
        out.push_str("# HELP sift_requests_total Requests by route, status and path (via=\"ohttp\": decapsulated by this server's gateway, whose POST / is counted as route \"/\").\n# TYPE sift_requests_total counter\n");
        for ((route, via, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "sift_requests_total{{route=\"{route}\",status=\"{status}\",via=\"{}\"}} {n}",
                via.label()
            );
        }
        out.push_str("# HELP sift_request_seconds Request latency by route and use case.\n# TYPE sift_request_seconds histogram\n");
        for ((route, uc), h) in self
            .latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let labels = format!("route=\"{route}\",usecase=\"{}\"", escape(uc));
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "sift_request_seconds_bucket{{{labels},le=\"{b}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "sift_request_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.total
            );
            let _ = writeln!(out, "sift_request_seconds_sum{{{labels}}} {}", h.sum);
            let _ = writeln!(out, "sift_request_seconds_count{{{labels}}} {}", h.total);
        }
        if gateway {
            out.push_str("# HELP sift_ohttp_requests_total Encapsulated requests (POST /) by what the gateway did.\n# TYPE sift_ohttp_requests_total counter\n");
            for (o, n) in GatewayOutcome::ALL.iter().zip(&self.gateway) {
                let _ = writeln!(
                    out,
                    "sift_ohttp_requests_total{{result=\"{}\"}} {}",
                    o.label(),
                    n.load(Ordering::Relaxed)
                );
            }
        }
        if issuer {
            out.push_str("# HELP sift_issuer_requests_total Privacy Pass issuer requests by route and result (\"issued\": a token, or the token key, was handed out).\n# TYPE sift_issuer_requests_total counter\n");
            for (route, counts) in ISSUER_ROUTES.iter().zip(&self.issuer) {
                for (o, n) in IssuerOutcome::ALL.iter().zip(counts) {
                    let _ = writeln!(
                        out,
                        "sift_issuer_requests_total{{route=\"{route}\",result=\"{}\"}} {}",
                        o.label(),
                        n.load(Ordering::Relaxed)
                    );
                }
            }
        }
        out.push_str("# HELP sift_stored_evaluation_keys Evaluation keys in the store.\n# TYPE sift_stored_evaluation_keys gauge\n");
        let _ = writeln!(out, "sift_stored_evaluation_keys {}", key_store.0);
        if let Some(bytes) = key_store.1 {
            out.push_str("# HELP sift_stored_evaluation_key_bytes Size of the stored evaluation keys.\n# TYPE sift_stored_evaluation_key_bytes gauge\n");
            let _ = writeln!(out, "sift_stored_evaluation_key_bytes {bytes}");
        }
        out
    }
}

/// A label value with the characters the text format would need escaped removed.
pub fn escape(v: &str) -> String {
    v.replace(['"', '\\', '\n'], "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_and_histogram() {
        let m = Metrics::default();
        let mut r = RequestRecord {
            route: "/queries",
            via: Via::Direct,
            usecase: "uc",
            status: 200,
            elapsed: Duration::from_millis(3),
        };
        m.record(&r);
        r.status = 400;
        r.via = Via::Ohttp;
        r.elapsed = Duration::from_millis(30);
        m.record(&r);
        m.count_gateway(GatewayOutcome::from_response(200, false));
        m.count_gateway(GatewayOutcome::from_response(400, true));
        m.count_issuer("/issue", IssuerOutcome::from_status(429));
        m.count_issuer("/other", IssuerOutcome::from_status(200));
        let text = m.render((5, Some(1000)), true, true);
        assert!(
            text.contains(
                "sift_requests_total{route=\"/queries\",status=\"200\",via=\"direct\"} 1"
            )
        );
        assert!(
            text.contains("sift_requests_total{route=\"/queries\",status=\"400\",via=\"ohttp\"} 1")
        );
        assert!(text.contains(
            "sift_request_seconds_bucket{route=\"/queries\",usecase=\"uc\",le=\"0.005\"} 1"
        ));
        assert!(text.contains("sift_request_seconds_count{route=\"/queries\",usecase=\"uc\"} 2"));
        assert!(text.contains("sift_ohttp_requests_total{result=\"forwarded\"} 1"));
        assert!(text.contains("sift_ohttp_requests_total{result=\"key_problem\"} 1"));
        assert!(
            text.contains("sift_issuer_requests_total{route=\"/issue\",result=\"rate_limited\"} 1")
        );
        assert!(text.contains("sift_issuer_requests_total{route=\"/issue\",result=\"issued\"} 0"));
        assert!(text.contains("sift_stored_evaluation_keys 5"));
        assert!(text.contains("sift_stored_evaluation_key_bytes 1000"));
        let bare = m.render((0, None), false, false);
        assert!(!bare.contains("sift_ohttp") && !bare.contains("sift_issuer"));
        assert!(!bare.contains("key_bytes"));
    }
}
