//! Prometheus text metrics: request counts by route and status, latency histograms by route and
//! use case, and the key-store size. Hand-rolled to keep the hot path to a few atomic adds.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// Latency bucket upper bounds in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    total: u64,
    sum: f64,
}

/// The service's counters.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Mutex<BTreeMap<(String, String), Histogram>>,
}

impl Metrics {
    /// Records one finished request.
    pub fn record(&self, route: &str, usecase: &str, status: u16, elapsed: Duration) {
        *self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((route.to_owned(), status))
            .or_default() += 1;
        let secs = elapsed.as_secs_f64();
        let mut lat = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        let h = lat
            .entry((route.to_owned(), usecase.to_owned()))
            .or_default();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                h.counts[i] += 1;
            }
        }
        h.total += 1;
        h.sum += secs;
    }

    /// Renders the Prometheus text exposition format.
    pub fn render(&self, key_store_size: usize) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        out.push_str("# HELP sift_requests_total Requests by route and status.\n# TYPE sift_requests_total counter\n");
        for ((route, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "sift_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP sift_request_seconds Request latency by route and use case.\n# TYPE sift_request_seconds histogram\n");
        for ((route, uc), h) in self
            .latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let labels = format!("route=\"{route}\",usecase=\"{}\"", uc.replace('"', ""));
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
        out.push_str("# HELP sift_stored_evaluation_keys Evaluation keys in the store.\n# TYPE sift_stored_evaluation_keys gauge\n");
        let _ = writeln!(out, "sift_stored_evaluation_keys {key_store_size}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_and_histogram() {
        let m = Metrics::default();
        m.record("/queries", "uc", 200, Duration::from_millis(3));
        m.record("/queries", "uc", 400, Duration::from_millis(30));
        let text = m.render(5);
        assert!(text.contains("sift_requests_total{route=\"/queries\",status=\"200\"} 1"));
        assert!(text.contains(
            "sift_request_seconds_bucket{route=\"/queries\",usecase=\"uc\",le=\"0.005\"} 1"
        ));
        assert!(text.contains("sift_request_seconds_count{route=\"/queries\",usecase=\"uc\"} 2"));
        assert!(text.contains("sift_stored_evaluation_keys 5"));
    }
}
