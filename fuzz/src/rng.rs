//! The fuzzer's pseudo-random numbers: SplitMix64, small, fast and the same on every platform,
//! so an input is reproducible from its seed and iteration number. Not for anything secret.

/// A SplitMix64 generator.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for input number `iteration` of a run seeded with `seed`: the two are mixed so
    /// that neighbouring iterations get unrelated streams.
    pub fn for_iteration(seed: u64, iteration: u64) -> Rng {
        let mut r = Rng(seed ^ 0x6d61_696c_6665_7272);
        let a = r.next_u64();
        Rng(a ^ iteration.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        // The modulo bias is irrelevant for fuzzing.
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability 1/n.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    /// A random byte.
    pub fn byte(&mut self) -> u8 {
        self.next_u64().to_le_bytes()[0]
    }

    /// One element of a non-empty slice (`None` when empty).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        items.get(self.below(items.len()))
    }

    /// A length skewed towards small values: mostly 1..=8, sometimes up to `max`.
    pub fn small_len(&mut self, max: usize) -> usize {
        let cap = match self.below(8) {
            0 => max,
            1 | 2 => 64,
            _ => 8,
        };
        1 + self.below(cap.min(max).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: Vec<u64> = (0..4)
            .map(|_| Rng::for_iteration(1, 7).next_u64())
            .collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(
            Rng::for_iteration(1, 7).next_u64(),
            Rng::for_iteration(1, 8).next_u64()
        );
        assert_ne!(
            Rng::for_iteration(1, 7).next_u64(),
            Rng::for_iteration(2, 7).next_u64()
        );
    }
}
