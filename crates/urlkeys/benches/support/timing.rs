//! Bench timing shared by path between the `urlkeys` and `bloom` benches.

use std::time::Instant;

/// Seconds per call of `body`: the best of 5 rounds of `round` calls each, the round least
/// disturbed by other processes on a shared machine.
pub fn best_of_5(round: u32, mut body: impl FnMut()) -> f64 {
    (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..round {
                body();
            }
            t.elapsed().as_secs_f64() / f64::from(round)
        })
        .fold(f64::INFINITY, f64::min)
}
