//! Reload to a new dataset version while clients query: no failures; the old version keeps
//! answering until retired, then 410.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::*;

/// `example.com` plus `n` filler keys tagged `tag`: a different `n` gives a different shape.
fn rows(tag: &str, n: usize) -> Vec<(String, String)> {
    let mut r = vec![("example.com".to_string(), "1".to_string())];
    r.extend((0..n).map(|i| (format!("{tag}-{i}.example"), "1".to_string())));
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_drops_no_query() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_dataset(&data, &[("example.com", "1"), ("v1.example", "1")], 1, 1);
    let server = start(config(&data, &tmp.path().join("state"), 2)).await;

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for c in 0..8 {
        let (stop, ok, addr) = (stop.clone(), ok.clone(), server.addr);
        tasks.push(tokio::spawn(async move {
            let mut dev = Device::new(addr, &format!("user-{c}"));
            dev.setup().await;
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && n < 200 {
                // Pinned to its first config: served by the kept old version after reload.
                assert_eq!(
                    dev.lookup("example.com").await,
                    Ok(Some(b"1".to_vec())),
                    "client {c}"
                );
                ok.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
            dev
        }));
    }
    // Polled with a deadline, not slept: lookups are under way before the reload and go on
    // after it (or every client has finished its 200).
    let all_done = 8 * 200;
    wait_for("lookups before the reload", || {
        ok.load(Ordering::Relaxed) >= 8
    })
    .await;
    write_dataset(&data, &rows("v2", 60), 1, 2);
    assert_eq!(server.state.reload(), vec![USECASE.to_string()]);
    let at_reload = ok.load(Ordering::Relaxed);
    wait_for("lookups after the reload", || {
        let n = ok.load(Ordering::Relaxed);
        n >= at_reload + 8 || n >= all_done
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let mut devs = Vec::new();
    for t in tasks {
        devs.push(t.await.expect("no client saw a failed query"));
    }
    assert!(ok.load(Ordering::Relaxed) >= 8);

    // A fresh client sees version 2.
    let mut fresh = Device::new(server.addr, "fresh");
    fresh.setup().await;
    assert_eq!(fresh.lookup("v2-0.example").await, Ok(Some(b"1".to_vec())));
    assert_ne!(fresh.config_id, devs[0].config_id);

    // A third version retires the first (versions_kept = 2): old clients now get 410.
    write_dataset(&data, &rows("v3", 300), 1, 3);
    assert_eq!(server.state.reload(), vec![USECASE.to_string()]);
    assert_eq!(devs[0].lookup("example.com").await, Err(410));
    assert_eq!(
        fresh.lookup("v2-0.example").await,
        Ok(Some(b"1".to_vec())),
        "version 2 still kept"
    );
    // Nothing changed: reload is a no-op.
    assert!(server.state.reload().is_empty());

    // Same shape, new data: replaced in place, and clients with the current config see it.
    let mut same = rows("v3", 300);
    same[1] = ("changed.example".into(), "1".into());
    write_dataset(&data, &same, 1, 3);
    assert_eq!(server.state.reload(), vec![USECASE.to_string()]);
    let mut latest = Device::new(server.addr, "latest");
    latest.setup().await;
    assert_eq!(
        latest.lookup("changed.example").await,
        Ok(Some(b"1".to_vec()))
    );
    server.stop().await;
}
