//! Sub-URL walk alone (parse + expansion, no hashing): a warm `SubUrlWalker` against the
//! allocating `suburls`, per URL shape; `normalize_key` (import path) against `parse_url`, the
//! reference parser it used alone before. Prints figures; bounded in time.

use sift_urlkeys::{SubUrlWalker, normalize_key, parse_url, suburls};
use std::hint::black_box;

#[path = "support/timing.rs"]
mod timing;

/// Seconds per call of `body`: the best of 5 rounds of `iters` calls.
fn per_call(iters: u32, body: impl FnMut()) -> f64 {
    timing::best_of_5(iters, body)
}

fn main() {
    let urls = [
        ("short", "https://www.example.com/"),
        ("typical", "https://www.example.com/news/article?id=42"),
        (
            "apple-doc",
            "https://www.sub1.example.com/a/b/c?id=123#fragment",
        ),
        ("idn", "https://www.bücher.de/katalog/neu?s=1"),
    ];
    let iters = 100_000;
    let mut w = SubUrlWalker::new();
    println!("sub-URL walk (parse + expansion, no hashing), best of 5 x {iters} calls");
    for (name, u) in urls {
        let mut sink = 0usize;
        let n = w.for_each(u, |_| {}).unwrap();
        let grouped = per_call(iters, || {
            w.for_each_group(black_box(u), |s, l| sink += s.len() + l.len())
                .unwrap();
        });
        let each = per_call(iters, || {
            w.for_each(black_box(u), |s| sink += s.len()).unwrap();
        });
        let alloc = per_call(iters, || {
            sink += suburls(black_box(u)).unwrap().len();
        });
        let norm = per_call(iters, || {
            sink += normalize_key(black_box(u)).unwrap().len();
        });
        let parse = per_call(iters, || {
            sink += parse_url(black_box(u)).unwrap().host.len();
        });
        black_box(sink);
        println!(
            "  {name:<9} ({n:>2} sub-URLs): walker groups {:5.0} ns, walker per sub-URL {:5.0} ns, \
             suburls() {:5.0} ns ({:.1}x); normalize_key {:4.0} ns (parse_url alone {:4.0} ns)",
            grouped * 1e9,
            each * 1e9,
            alloc * 1e9,
            alloc / grouped,
            norm * 1e9,
            parse * 1e9
        );
    }
}
