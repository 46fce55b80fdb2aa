//! A splitmix64 pseudo-random stream and the few distributions the workload draws from.

/// A splitmix64 pseudo-random stream: tiny, fast and good enough for workload data.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
    /// The second normal deviate of the last Box-Muller pair, not yet used.
    spare_normal: Option<f64>,
}

/// One splitmix64 step on `value`: a bijective 64-bit mix, used to derive seeds and ids.
#[inline]
pub fn mix64(value: u64) -> u64 {
    let mut z = value.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Rng {
    /// A stream for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng { state: seed, spare_normal: None }
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let value = mix64(self.state);
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        value
    }

    /// A number in `0..bound` (`bound` > 0), by multiply-shift (bias below 2^-32).
    #[inline]
    pub fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }

    /// A float in `[0, 1)`.
    #[inline]
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with probability `p`.
    #[inline]
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// A standard normal deviate (Box-Muller, using both values of each pair).
    pub fn normal(&mut self) -> f64 {
        if let Some(spare) = self.spare_normal.take() {
            return spare;
        }
        // 1 - unit() lies in (0, 1], so the logarithm is finite.
        let radius = (-2.0 * (1.0 - self.unit()).ln()).sqrt();
        let angle = std::f64::consts::TAU * self.unit();
        self.spare_normal = Some(radius * angle.sin());
        radius * angle.cos()
    }

    /// A log-normal duration in ns with the given median and shape `sigma` (at least 1 µs).
    pub fn log_normal_ns(&mut self, median_ns: f64, sigma: f64) -> u64 {
        (median_ns * (sigma * self.normal()).exp()).max(1000.0) as u64
    }

    /// An exponential deviate with the given mean.
    pub fn exponential(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.unit()).ln()
    }

    /// An index drawn with the given cumulative integer weights.
    pub fn pick(&mut self, cumulative: &[u32]) -> usize {
        let total = cumulative.last().copied().unwrap_or(0);
        let target = self.below(u64::from(total.max(1))) as u32;
        cumulative.partition_point(|&c| c <= target).min(cumulative.len().saturating_sub(1))
    }

    /// An index drawn with the given cumulative float weights.
    pub fn pick_f64(&mut self, cumulative: &[f64]) -> usize {
        let total = cumulative.last().copied().unwrap_or(0.0);
        let target = self.unit() * total;
        cumulative.partition_point(|&c| c <= target).min(cumulative.len().saturating_sub(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_follow_their_weights() {
        let mut rng = Rng::new(9);
        let cumulative = [1u32, 1, 4];
        let mut counts = [0u32; 3];
        for _ in 0..40_000 {
            counts[rng.pick(&cumulative)] += 1;
        }
        assert_eq!(counts[1], 0, "a zero weight is never picked");
        let share = f64::from(counts[2]) / 40_000.0;
        assert!((0.72..0.78).contains(&share), "{share}");
        let floats = [0.5, 0.5, 2.0];
        let mut counts = [0u32; 3];
        for _ in 0..40_000 {
            counts[rng.pick_f64(&floats)] += 1;
        }
        assert_eq!(counts[1], 0);
        assert!((0.22..0.28).contains(&(f64::from(counts[0]) / 40_000.0)));
    }

    #[test]
    fn log_normal_has_its_median() {
        let mut rng = Rng::new(1);
        let mut values: Vec<u64> = (0..20_001).map(|_| rng.log_normal_ns(5e6, 0.6)).collect();
        values.sort_unstable();
        let median = values[10_000] as f64;
        assert!((4.8e6..5.2e6).contains(&median), "{median}");
    }
}
