//! Which SIMD instruction sets the hand-written and auto-vectorized kernels may use: what the
//! CPU has, capped by a process-wide setting (`SIFT_SIMD` or [`set_cap`]) so an operator can
//! rule out a wide instruction set and a benchmark can compare two sets in one run.
//!
//! One dispatch for every kernel: an operation takes a [`Level`] (by default [`level`], read
//! once per call), resolves it with [`Level::isa`] — the widest kernel family at most that
//! level which this CPU runs, so a caller can never select an instruction set the CPU lacks —
//! and matches on the [`Isa`] in one place: hand-written intrinsics modules
//! (`ntt/avx512.rs`, `keyprod/avx2.rs`, …) in a `match`, plain-Rust bodies compiled per set
//! by [`simd_dispatch!`](crate::simd_dispatch). A new level is a new [`Level`] variant, its
//! detection in `detect`, and an arm in [`Level::isa`] (plus kernels where it pays).

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
    /// AVX-512 as above plus VBMI (byte permutes: the 28-bit row unpacking of
    /// [`crate::pack28`]).
    Avx512Vbmi = 3,
}

/// The kernel family an operation runs, resolved from a [`Level`] by [`Level::isa`] on this
/// CPU: holding `Avx512` or `Avx2` means the CPU has that instruction set, which is what the
/// `unsafe` calls of the target-feature kernels rely on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// The plain Rust loops.
    Portable,
    /// The AVX2 kernels.
    Avx2,
    /// The AVX-512 F/BW/DQ/VL kernels.
    Avx512,
}

impl Level {
    /// Every level, from the portable loops up.
    pub const ALL: [Level; 4] = [
        Level::Portable,
        Level::Avx2,
        Level::Avx512,
        Level::Avx512Vbmi,
    ];

    /// The widest level at most `self` that this CPU supports.
    pub fn usable(self) -> Level {
        self.min(detected())
    }

    /// The kernel family an operation asked to run at `self` uses on this CPU (at most what
    /// the CPU has: [`Self::usable`]); the single place where a level becomes a choice of
    /// kernels.
    #[inline]
    pub fn isa(self) -> Isa {
        match self.usable() {
            Level::Portable => Isa::Portable,
            Level::Avx2 => Isa::Avx2,
            Level::Avx512 | Level::Avx512Vbmi => Isa::Avx512,
        }
    }

    /// Whether the AVX-512 VBMI kernels may run at `self` on this CPU.
    #[inline]
    pub fn vbmi(self) -> bool {
        self.usable() >= Level::Avx512Vbmi
    }

    /// Lower-case name, as `SIFT_SIMD` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Level::Portable => "portable",
            Level::Avx2 => "avx2",
            Level::Avx512 => "avx512",
            Level::Avx512Vbmi => "avx512vbmi",
        }
    }

    /// Parses a `SIFT_SIMD` value (`portable`, `avx2`, `avx512`, `avx512vbmi`).
    pub fn parse(s: &str) -> Option<Level> {
        match s.trim().to_ascii_lowercase().as_str() {
            "portable" | "none" | "scalar" => Some(Level::Portable),
            "avx2" => Some(Level::Avx2),
            "avx512" => Some(Level::Avx512),
            "avx512vbmi" => Some(Level::Avx512Vbmi),
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
            if std::arch::is_x86_feature_detected!("avx512vbmi") {
                return Level::Avx512Vbmi;
            }
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
        2 => Level::Avx512,
        _ => Level::Avx512Vbmi,
    };
    match CAP.load(Ordering::Relaxed) {
        UNSET => {
            let level = std::env::var("SIFT_SIMD")
                .ok()
                .and_then(|v| Level::parse(&v))
                .unwrap_or(Level::Avx512Vbmi);
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

/// Whether AVX-512 (F, BW, DQ, VL) kernels may run now: `level().isa() == Isa::Avx512`.
#[inline]
pub fn avx512() -> bool {
    level().isa() == Isa::Avx512
}

/// Whether AVX2 kernels may run now: `level().isa() >= Isa::Avx2`.
#[inline]
pub fn avx2() -> bool {
    level().isa() >= Isa::Avx2
}

/// Runs a plain-Rust kernel body compiled three ways (AVX-512, AVX2, baseline) and picks the
/// widest that [`level`]`.`[`isa`](Level::isa)`()` allows, returning its value from the enclosing function
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
            match $crate::simd::level().isa() {
                // SAFETY: `isa()` yields `Avx512` only when the CPU has these features
                // (run-time detection); the function is safe Rust compiled with them enabled.
                $crate::simd::Isa::Avx512 => return unsafe { with_avx512($($arg),*) },
                // SAFETY: as above, for AVX2.
                $crate::simd::Isa::Avx2 => return unsafe { with_avx2($($arg),*) },
                $crate::simd::Isa::Portable => {}
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
        for l in Level::ALL {
            assert_eq!(Level::parse(l.name()), Some(l));
            assert!(l.usable() <= detected() && l.usable() <= l);
            assert_eq!(l.isa() == Isa::Avx512, l.usable() >= Level::Avx512);
        }
        assert_eq!(Level::parse(" AVX2 "), Some(Level::Avx2));
        assert_eq!(Level::parse("sse9"), None);
        assert!(Level::Portable < Level::Avx2 && Level::Avx2 < Level::Avx512);
        assert!(level() <= detected());
    }
}
