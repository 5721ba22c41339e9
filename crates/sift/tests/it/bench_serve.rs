//! `sift bench serve` run tiny: the output has every concurrency level with consistent figures
//! (shape only; no timing thresholds).

use crate::common;

use common::{sift, stdout_of_success};

fn bench(extra: &[&str]) -> String {
    stdout_of_success(
        sift()
            .args(["bench", "serve", "--rows", "1000", "--prepared", "4"])
            .args(extra),
    )
}

#[test]
fn json_output_has_every_level() {
    let out = bench(&["--seconds", "1", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["rows"], 1000);
    assert!(
        v["parameters"].as_str().unwrap().starts_with("n=4096"),
        "{v}"
    );
    assert!(v["evaluation_key_bytes"].as_u64().unwrap() > 1000);
    assert!(
        v["timed"]
            .as_str()
            .unwrap()
            .contains("outside the timed path")
    );
    let levels = v["levels"].as_array().unwrap();
    let conc: Vec<u64> = levels
        .iter()
        .map(|l| l["concurrency"].as_u64().unwrap())
        .collect();
    assert_eq!(conc, [1, 2, 8]);
    for l in levels {
        let queries = l["queries"].as_f64().unwrap();
        let secs = l["seconds"].as_f64().unwrap();
        let qps = l["qps"].as_f64().unwrap();
        let (p50, p99) = (l["p50_ms"].as_f64().unwrap(), l["p99_ms"].as_f64().unwrap());
        assert!(queries >= 1.0 && secs > 0.0, "{l}");
        assert!((qps - queries / secs).abs() <= 1e-6 * qps.max(1.0), "{l}");
        assert!(0.0 < p50 && p50 <= p99, "{l}");
        assert!(l["qps_ratio_to_first"].as_f64().unwrap() > 0.0, "{l}");
    }
    assert_eq!(levels[0]["qps_ratio_to_first"], 1.0);
}

#[test]
fn table_output_and_query_cap() {
    let out = bench(&[
        "--seconds",
        "30",
        "--max-queries",
        "3",
        "--concurrency",
        "1,2",
    ]);
    assert!(out.contains("sift bench serve: 1000 rows"), "{out}");
    assert!(out.contains("timed: POST /queries"), "{out}");
    assert!(out.contains("queries/s"), "{out}");
    assert!(out.contains("ratios 1→2 clients: queries/s ×"), "{out}");
    // The cap bounds each level: exactly 3 queries per row of the table.
    let rows: Vec<&str> = out
        .lines()
        .filter(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.len() == 8 && w[0].parse::<usize>().is_ok()
        })
        .collect();
    assert_eq!(rows.len(), 2, "{out}");
    for r in rows {
        assert_eq!(r.split_whitespace().nth(1), Some("3"), "{out}");
    }
}
