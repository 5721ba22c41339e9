//! Which SIMD instruction sets the hand-written and auto-vectorized kernels may use: what the
//! CPU has, capped by a process-wide setting (`SIFT_SIMD` or [`set_cap`]) so an operator can
//! rule out a wide instruction set and a benchmark can compare two sets in one run.
//!
//! Every kernel dispatch asks [`avx512`] or [`avx2`], which are true only when the CPU has
//! the set (run-time detection) and the cap allows it, so the target-feature functions they
//! guard are always safe to call.

use std::sync::atomic::{AtomicU8, Ordering};

/// An instruction-set level, from the portable loops up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Plain Rust loops, no target features.
    Portable = 0,
    /// AVX2 (256-bit vectors).
    Avx2 = 1,
    /// AVX-512 F/BW/DQ/VL (512-bit vectors).
    Avx512 = 2,
}

impl Level {
    /// Lower-case name, as `SIFT_SIMD` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Level::Portable => "portable",
            Level::Avx2 => "avx2",
            Level::Avx512 => "avx512",
        }
    }

    /// Parses a `SIFT_SIMD` value (`portable`, `avx2`, `avx512`).
    pub fn parse(s: &str) -> Option<Level> {
        match s.trim().to_ascii_lowercase().as_str() {
            "portable" | "none" | "scalar" => Some(Level::Portable),
            "avx2" => Some(Level::Avx2),
            "avx512" => Some(Level::Avx512),
            _ => None,
        }
    }
}

/// Unset marker of [`CAP`]: read `SIFT_SIMD` on first use.
const UNSET: u8 = u8::MAX;

/// The cap as a [`Level`] discriminant, or [`UNSET`].
static CAP: AtomicU8 = AtomicU8::new(UNSET);

/// The widest level this CPU supports (detected once per process: every kernel dispatch
/// asks, so this is one load after the first call).
pub fn detected() -> Level {
    static DETECTED: std::sync::OnceLock<Level> = std::sync::OnceLock::new();
    *DETECTED.get_or_init(detect)
}

/// Run-time detection behind [`detected`].
fn detect() -> Level {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512dq")
            && std::arch::is_x86_feature_detected!("avx512vl")
        {
            return Level::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            return Level::Avx2;
        }
    }
    Level::Portable
}

/// Caps the level every kernel dispatch may use from now on (process-wide).
pub fn set_cap(level: Level) {
    CAP.store(level as u8, Ordering::Relaxed);
}

/// The current cap: [`set_cap`]'s, else `SIFT_SIMD`'s (an unknown value is ignored), else
/// no cap.
pub fn cap() -> Level {
    let from = |v: u8| match v {
        0 => Level::Portable,
        1 => Level::Avx2,
        _ => Level::Avx512,
    };
    match CAP.load(Ordering::Relaxed) {
        UNSET => {
            let level = std::env::var("SIFT_SIMD")
                .ok()
                .and_then(|v| Level::parse(&v))
                .unwrap_or(Level::Avx512);
            // A concurrent set_cap wins over the environment.
            let _ = CAP.compare_exchange(UNSET, level as u8, Ordering::Relaxed, Ordering::Relaxed);
            from(CAP.load(Ordering::Relaxed))
        }
        v => from(v),
    }
}

/// The level kernels use now: what the CPU has, capped.
pub fn level() -> Level {
    detected().min(cap())
}

/// Whether AVX-512 (F, BW, DQ, VL) kernels may run: the CPU has them and the cap allows.
#[inline]
pub fn avx512() -> bool {
    level() >= Level::Avx512
}

/// Whether AVX2 kernels may run: the CPU has AVX2 and the cap allows.
#[inline]
pub fn avx2() -> bool {
    level() >= Level::Avx2
}

/// Runs a plain-Rust kernel body compiled three ways (AVX-512, AVX2, baseline) and picks the
/// widest that [`avx512`] / [`avx2`] allow, returning its value from the enclosing function
/// (so it is the last statement of a dispatching function).
///
/// - `simd_dispatch!(body, (a: &[u64], b: u32) -> u64)` calls `body(a, b)`;
/// - `simd_dispatch!((p: &Plan, a: &[u64]) -> u64 => { p.run(a) } (self, a))` runs the block
///   with the parameters bound to the listed values.
///
/// The code the body calls should be `#[inline(always)]` so that each copy is vectorized for
/// its own instruction set.
#[macro_export]
macro_rules! simd_dispatch {
    ($body:path, ($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?) => {
        $crate::simd_dispatch!(($($arg: $ty),*) $(-> $ret)? => { $body($($arg),*) } ($($arg),*))
    };
    (($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $body:block ($($val:expr),* $(,)?)) => {{
        // Bound first, so no caller expression is expanded inside the unsafe blocks below.
        let ($($arg,)*) = ($($val,)*);
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
            fn with_avx512($($arg: $ty),*) $(-> $ret)? $body
            #[target_feature(enable = "avx2")]
            fn with_avx2($($arg: $ty),*) $(-> $ret)? $body
            if $crate::simd::avx512() {
                // SAFETY: `avx512()` is true only when the CPU has these features (run-time
                // detection); the function is safe Rust compiled with them enabled.
                return unsafe { with_avx512($($arg),*) };
            }
            if $crate::simd::avx2() {
                // SAFETY: as above, for AVX2.
                return unsafe { with_avx2($($arg),*) };
            }
        }
        #[inline(always)]
        fn portable($($arg: $ty),*) $(-> $ret)? $body
        portable($($arg),*)
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_and_order() {
        for l in [Level::Portable, Level::Avx2, Level::Avx512] {
            assert_eq!(Level::parse(l.name()), Some(l));
        }
        assert_eq!(Level::parse(" AVX2 "), Some(Level::Avx2));
        assert_eq!(Level::parse("sse9"), None);
        assert!(Level::Portable < Level::Avx2 && Level::Avx2 < Level::Avx512);
        assert!(level() <= detected());
    }
}
