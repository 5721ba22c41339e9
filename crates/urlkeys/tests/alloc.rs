//! A warmed-up [`SubUrlWalker`] allocates nothing while walking ASCII URLs: counted by a global
//! allocator that counts this thread's allocations (its own test binary, so nothing else is
//! measured).

use sift_urlkeys::SubUrlWalker;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

struct Counting;

// SAFETY: every call is forwarded unchanged to `System`, which upholds the `GlobalAlloc`
// contract; the only addition is bumping a const-initialised thread-local `Cell`, which
// itself never allocates (and `try_with` tolerates thread teardown).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same layout, forwarded to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same layout, forwarded to the system allocator.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: `ptr` came from `System` with `layout`; arguments forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

#[test]
fn warm_walker_allocates_nothing() {
    let urls = [
        "https://www.sub1.example.com/a/b/c?id=123#fragment",
        "https://www.example.com/news/article?id=42",
        "HTTP://User:Pw@WWW.Example.COM.:8080/A//B/?Q=1#F",
        "http://192.168.0.1/x/y",
        "example.com",
        "https://a.b.c.d.example.co.uk/one/two/three/four/five?x=1",
    ];
    let mut w = SubUrlWalker::new();
    let mut sink = 0usize;
    for u in urls {
        w.for_each(u, |k| sink += k.len()).unwrap();
    }
    let before = allocs();
    for _ in 0..3 {
        for u in urls {
            w.for_each(u, |k| sink += k.len()).unwrap();
            w.for_each_group(u, |s, lens| sink += s.len() + lens.len())
                .unwrap();
        }
    }
    let after = allocs();
    assert!(sink > 0);
    assert_eq!(after - before, 0, "allocations after warm-up");
    // The counter does count: a cold walker allocates its buffers.
    let mut cold = SubUrlWalker::new();
    cold.for_each(urls[0], |_| {}).unwrap();
    assert!(allocs() > after, "counter saw no allocation");
}
