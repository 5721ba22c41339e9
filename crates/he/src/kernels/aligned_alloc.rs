//! A global allocator that hands out large blocks on cache-line (64-byte) boundaries.
//!
//! Polynomial rows are `Vec<u64>`, which the system allocator aligns to 16 bytes only; the
//! AVX-512 kernels then split many of their 64-byte loads and stores across two cache lines
//! (the NTT reading one buffer and writing another measured ~10% slower that way). A binary
//! that installs [`CacheAligned`] as its `#[global_allocator]` gets every block of 4 KiB or
//! more 64-byte aligned; smaller blocks are left to the system allocator untouched.

use std::alloc::{GlobalAlloc, Layout, System};

/// Blocks at least this large get 64-byte alignment.
pub const THRESHOLD: usize = 4096;

/// Cache-line alignment given to large blocks.
pub const ALIGN: usize = 64;

/// The system allocator, with blocks of [`THRESHOLD`] bytes or more aligned to [`ALIGN`].
#[derive(Clone, Copy, Debug, Default)]
pub struct CacheAligned;

/// Another allocator (e.g. mimalloc) with blocks of [`THRESHOLD`] bytes or more aligned to
/// [`ALIGN`], as [`CacheAligned`] does for the system allocator.
#[derive(Clone, Copy, Debug, Default)]
pub struct CacheAlignedOn<A>(pub A);

/// The layout actually requested from the system for `layout`: the same size, with the
/// alignment raised to [`ALIGN`] for large blocks. A pure function of the layout, so the
/// same layout is computed again when the block is freed or resized.
fn adjust(layout: Layout) -> Layout {
    if layout.size() >= THRESHOLD && layout.align() < ALIGN {
        // Fails only for sizes within 63 bytes of isize::MAX; those keep their layout.
        Layout::from_size_align(layout.size(), ALIGN).unwrap_or(layout)
    } else {
        layout
    }
}

// SAFETY: every method forwards to the inner allocator with `adjust(layout)`, whose size equals the
// caller's and whose alignment is at least the caller's, so each block satisfies the caller's
// layout. Blocks are freed (or resized) with `adjust` of the layout the caller passes, which
// by the `GlobalAlloc` contract is the one they were allocated with, so the inner allocator always sees
// a block with the layout it allocated it with.
unsafe impl<A: GlobalAlloc> GlobalAlloc for CacheAlignedOn<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: `layout` has non-zero size (caller's contract), and so has `adjust(layout)`.
        unsafe { self.0.alloc(adjust(layout)) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        unsafe { self.0.alloc_zeroed(adjust(layout)) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by this allocator with `layout` (caller's contract),
        // hence by the inner allocator with `adjust(layout)`.
        unsafe { self.0.dealloc(ptr, adjust(layout)) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = adjust(layout);
        // SAFETY: the caller guarantees new_size > 0 and that rounding it up to
        // layout.align() does not overflow isize (the `realloc` contract).
        let wanted = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let new = adjust(wanted);
        if new.align() == old.align() {
            // SAFETY: `ptr` is an inner allocator's block of layout `old`; the resized block has layout
            // (new_size, old.align()) = `new`, which is `adjust` of what the caller will
            // later pass for it.
            return unsafe { self.0.realloc(ptr, old, new_size) };
        }
        // The alignment changes (the block crosses THRESHOLD): move it.
        // SAFETY: `new` has non-zero size; on success both blocks are valid for
        // min(old size, new size) bytes and do not overlap; `ptr` is freed with its layout.
        unsafe {
            let moved = self.0.alloc(new);
            if !moved.is_null() {
                std::ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
                self.0.dealloc(ptr, old);
            }
            moved
        }
    }
}

// SAFETY: every method forwards to `CacheAlignedOn(System)`, whose methods are sound by the
// comment above, with the caller's arguments and so the caller's guarantees.
unsafe impl GlobalAlloc for CacheAligned {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's guarantees, passed on.
        unsafe { CacheAlignedOn(System).alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's guarantees, passed on.
        unsafe { CacheAlignedOn(System).alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's guarantees, passed on.
        unsafe { CacheAlignedOn(System).dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's guarantees, passed on.
        unsafe { CacheAlignedOn(System).realloc(ptr, layout, new_size) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_layouts_get_cache_line_alignment() {
        let small = Layout::from_size_align(THRESHOLD - 1, 8).unwrap();
        assert_eq!(adjust(small), small);
        let large = Layout::from_size_align(THRESHOLD, 8).unwrap();
        assert_eq!(adjust(large).align(), ALIGN);
        assert_eq!(adjust(large).size(), THRESHOLD);
        let wide = Layout::from_size_align(THRESHOLD, 128).unwrap();
        assert_eq!(adjust(wide), wide);
    }
}
