//! The summary `sift build` and `sift update` print once a version is published: what was
//! built, how large it is, and where to serve it from.

use std::path::Path;

use sift_dataset::process;

/// Prints what a build published: version, rows, shards, bytes and where to serve it from.
pub(crate) fn print_summary(report: &process::BuildReport, out: &Path, params: &str) {
    let m = &report.published.manifest;
    let min = report.shard_rows.iter().min().copied().unwrap_or(0);
    let max = report.shard_rows.iter().max().copied().unwrap_or(0);
    let db_bytes: u64 = m
        .shards
        .iter()
        .filter_map(|s| m.file(&s.database))
        .map(|f| f.size)
        .sum();
    eprintln!(
        "published version {} in {} ({} rows, {} shard(s) with {params}: {min}..{max} rows per shard; {} processed, {} shared with the previous version)",
        m.id,
        out.display(),
        m.row_count,
        m.shards.len(),
        report.processed,
        report.reused
    );
    eprintln!(
        "  bytes on disk: {} (shards {}); server memory for the shards: about {}",
        human_bytes(m.total_bytes()),
        human_bytes(db_bytes),
        human_bytes(db_bytes / 2)
    );
    if let Some(t) = report.largest_trial {
        eprintln!(
            "  expected server time per query (largest processed shard, measured now): {:.1} ms",
            t.answer_time.as_secs_f64() * 1e3
        );
    }
    if !report.published.removed.is_empty() {
        eprintln!(
            "  removed old version(s): {}",
            report.published.removed.join(", ")
        );
    }
    eprintln!(
        "  serve it with dataset_dir = {:?}; Apple's layout is in {}",
        out.display().to_string(),
        out.join("current").display()
    );
    if out.join(format!("{}-0.params.txtpb", m.stem)).exists() {
        eprintln!(
            "  note: the flat {}-<i>.* files of an older build in {} are no longer served; remove them",
            m.stem,
            out.display()
        );
    }
}

/// `n` bytes in binary units (KiB, MiB, …) with one decimal.
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
