//! A small deterministic RNG (SplitMix64) and seeded permutations, so shuffles are identical
//! across runs, platforms and crate versions and can be re-derived from a few integers when a
//! stream resumes.

/// SplitMix64: a 64-bit state, one multiply-xorshift per draw.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    pub state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift with rejection; `n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = (self.next_u64() as u128) * (n as u128);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }

    /// Uniform f64 in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Combine a seed with stream coordinates (epoch, refill index, ...) into a new seed.
pub fn derive_seed(seed: u64, parts: &[u64]) -> u64 {
    let mut r = SplitMix64::new(seed ^ 0x5AE5_C09E_0000_0001);
    let mut s = r.next_u64();
    for &p in parts {
        r = SplitMix64::new(s ^ p.wrapping_mul(0xD6E8_FEB8_6659_FD93));
        s = r.next_u64();
    }
    s
}

/// A seeded uniform permutation of `0..n` (Fisher–Yates).
pub fn permutation(n: usize, seed: u64) -> Vec<u32> {
    let mut p: Vec<u32> = (0..n as u32).collect();
    let mut r = SplitMix64::new(seed);
    for i in (1..n).rev() {
        let j = r.below(i as u64 + 1) as usize;
        p.swap(i, j);
    }
    p
}
