//! What an operator watches besides requests: reloads, the serving certificate's expiry, the
//! datasets in service and the process itself, rendered as Prometheus gauges and counters.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use crate::state::AppState;
use crate::tls::CertificateStore;

/// Counters and handles for operator metrics; one per server.
pub struct Operations {
    certificates: OnceLock<Arc<CertificateStore>>,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    started: Instant,
    started_unix: f64,
}

impl Default for Operations {
    fn default() -> Self {
        Self {
            certificates: OnceLock::new(),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            started: Instant::now(),
            started_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        }
    }
}

/// What one reload part did, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// Loaded (or nothing had changed).
    Ok,
    /// Refused; the previous state keeps serving.
    Failed,
}

impl Operations {
    /// Remembers the serving certificate store (set once at start when TLS is on).
    pub fn set_certificates(&self, c: Arc<CertificateStore>) {
        let _ = self.certificates.set(c);
    }

    /// The serving certificate store, when the listener terminates TLS.
    pub fn certificates(&self) -> Option<&Arc<CertificateStore>> {
        self.certificates.get()
    }

    /// Counts one reload attempt.
    pub fn count_reload(&self, outcome: ReloadOutcome) {
        match outcome {
            ReloadOutcome::Ok => &self.reloads_ok,
            ReloadOutcome::Failed => &self.reloads_failed,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// Appends the operator metrics for `state` to `out` (Prometheus text format).
    pub fn render(&self, state: &AppState, out: &mut String) {
        out.push_str("# HELP sift_reloads_total Reload attempts (SIGHUP, file change) by result.\n# TYPE sift_reloads_total counter\n");
        let _ = writeln!(
            out,
            "sift_reloads_total{{result=\"ok\"}} {}",
            self.reloads_ok.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "sift_reloads_total{{result=\"failed\"}} {}",
            self.reloads_failed.load(Ordering::Relaxed)
        );
        if let Some(c) = self.certificates() {
            out.push_str("# HELP sift_tls_certificate_expiry_timestamp_seconds Expiry of the serving TLS certificate (Unix time).\n# TYPE sift_tls_certificate_expiry_timestamp_seconds gauge\n");
            let _ = writeln!(
                out,
                "sift_tls_certificate_expiry_timestamp_seconds {}",
                c.not_after_unix()
            );
        }
        out.push_str("# HELP sift_dataset_info The current dataset of each use case: its version id (from the manifest; \"-\" for a flat folder) and config id prefix.\n# TYPE sift_dataset_info gauge\n");
        let mut shards = String::new();
        let mut versions = String::new();
        let mut rows = String::new();
        for (name, uc) in state.usecases().iter() {
            let name = crate::metrics::escape(name);
            let v = uc.current();
            let id = hex::encode(&v.config_id[..v.config_id.len().min(8)]);
            let version = crate::metrics::escape(v.dataset_version.as_deref().unwrap_or("-"));
            let _ = writeln!(
                out,
                "sift_dataset_info{{usecase=\"{name}\",version=\"{version}\",config_id=\"{id}\"}} 1"
            );
            let _ = writeln!(
                shards,
                "sift_dataset_shards{{usecase=\"{name}\"}} {}",
                v.server.shards().len()
            );
            let _ = writeln!(
                versions,
                "sift_dataset_versions_kept{{usecase=\"{name}\"}} {}",
                uc.versions.len()
            );
            if let Some(p) = &v.prefilter {
                let _ = writeln!(
                    rows,
                    "sift_dataset_rows{{usecase=\"{name}\"}} {}",
                    p.meta.item_count
                );
            }
        }
        out.push_str("# HELP sift_dataset_shards Shards of the current dataset version.\n# TYPE sift_dataset_shards gauge\n");
        out.push_str(&shards);
        out.push_str("# HELP sift_dataset_versions_kept Dataset versions still answering.\n# TYPE sift_dataset_versions_kept gauge\n");
        out.push_str(&versions);
        out.push_str("# HELP sift_dataset_rows Keys in the current dataset (from its prefilter).\n# TYPE sift_dataset_rows gauge\n");
        out.push_str(&rows);
        render_process(self.started, self.started_unix, out);
    }
}

/// Process metrics in Prometheus' conventional names (Linux: from /proc/self).
fn render_process(started: Instant, started_unix: f64, out: &mut String) {
    out.push_str("# HELP process_start_time_seconds Start time of the process since the Unix epoch.\n# TYPE process_start_time_seconds gauge\n");
    let _ = writeln!(out, "process_start_time_seconds {started_unix:.3}");
    out.push_str("# HELP process_uptime_seconds Seconds since the server started.\n# TYPE process_uptime_seconds gauge\n");
    let _ = writeln!(
        out,
        "process_uptime_seconds {}",
        started.elapsed().as_secs()
    );
    // VmRSS is in kB whatever the page size.
    if let Ok(status) = std::fs::read_to_string("/proc/self/status")
        && let Some(rss_kb) = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    {
        out.push_str("# HELP process_resident_memory_bytes Resident memory.\n# TYPE process_resident_memory_bytes gauge\n");
        let _ = writeln!(out, "process_resident_memory_bytes {}", rss_kb * 1024);
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        out.push_str(
            "# HELP process_open_fds Open file descriptors.\n# TYPE process_open_fds gauge\n",
        );
        let _ = writeln!(out, "process_open_fds {}", fds.count());
    }
}
