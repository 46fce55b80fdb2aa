//! The day curve: how the request rate rises and falls over a day, and the time warp that
//! places a given share of the spans at the time the curve says.
//!
//! The relative load at a time of day `h` (hours, UTC) is
//! `1 + DIURNAL_AMPLITUDE * cos(2π (h - PEAK_HOUR_UTC) / 24)`: four times as many
//! requests at the 15:00 UTC peak as at the 03:00 trough. Its integral from the start of
//! the data, [`DayCurve::cumulative`], is the "load clock": spans are spread evenly on
//! the load clock and mapped back to wall time with [`DayCurve::inverse`], so any slice
//! of the spans lands in the time slice the curve gives it, whatever generated the
//! spans before it. That is what lets chunks be generated independently and in parallel.

use crate::{DIURNAL_AMPLITUDE, PEAK_HOUR_UTC};

const DAY_SECONDS: f64 = 86_400.0;
const OMEGA: f64 = std::f64::consts::TAU / DAY_SECONDS;
const DAY_NANOS: u64 = 86_400_000_000_000;

/// The day curve as seen from one start time; positions are seconds after that start.
#[derive(Clone, Copy, Debug)]
pub struct DayCurve {
    /// Phase of the curve at the start, radians.
    phase: f64,
}

impl DayCurve {
    /// The curve for data starting at `start_unix_nano`.
    pub fn new(start_unix_nano: u64) -> DayCurve {
        let second_of_day = (start_unix_nano % DAY_NANOS) as f64 / 1e9;
        DayCurve { phase: OMEGA * (second_of_day - PEAK_HOUR_UTC * 3600.0) }
    }

    /// The relative load (mean 1) `seconds` after the start.
    pub fn factor(&self, seconds: f64) -> f64 {
        1.0 + DIURNAL_AMPLITUDE * (OMEGA * seconds + self.phase).cos()
    }

    /// The integral of [`DayCurve::factor`] from the start to `seconds`: the load clock.
    pub fn cumulative(&self, seconds: f64) -> f64 {
        seconds + DIURNAL_AMPLITUDE / OMEGA * ((OMEGA * seconds + self.phase).sin() - self.phase.sin())
    }

    /// The time (seconds after the start) at which the load clock reads `load`; `guess`
    /// speeds it up when close. Safeguarded Newton: the derivative lies in
    /// `[1 - A, 1 + A]`, and the answer within `2A/ω` of `load`.
    pub fn inverse(&self, load: f64, guess: f64) -> f64 {
        let reach = 2.0 * DIURNAL_AMPLITUDE / OMEGA;
        let mut low = load - reach;
        let mut high = load + reach;
        let mut x = if guess > low && guess < high { guess } else { load };
        for _ in 0..100 {
            let error = self.cumulative(x) - load;
            if error.abs() < 1e-7 {
                break;
            }
            if error > 0.0 {
                high = x;
            } else {
                low = x;
            }
            let next = x - error / self.factor(x);
            x = if next > low && next < high { next } else { 0.5 * (low + high) };
        }
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_curve_peaks_at_the_peak_hour_and_averages_one() {
        let midnight = 1_795_651_200_000_000_000; // 2026-11-26T00:00:00Z
        let curve = DayCurve::new(midnight);
        let peak = curve.factor(PEAK_HOUR_UTC * 3600.0);
        let trough = curve.factor((PEAK_HOUR_UTC - 12.0) * 3600.0);
        assert!((peak - (1.0 + DIURNAL_AMPLITUDE)).abs() < 1e-9);
        assert!((trough - (1.0 - DIURNAL_AMPLITUDE)).abs() < 1e-9);
        assert!((curve.cumulative(DAY_SECONDS) - DAY_SECONDS).abs() < 1e-6);
    }

    #[test]
    fn inverse_undoes_cumulative() {
        for start in [0u64, 1_795_651_200_000_000_000, 1_795_694_412_345_678_901] {
            let curve = DayCurve::new(start);
            for step in 0..=200 {
                let x = step as f64 * 1234.5;
                let back = curve.inverse(curve.cumulative(x), 0.0);
                assert!((back - x).abs() < 1e-6, "{x} came back as {back}");
            }
        }
    }
}
