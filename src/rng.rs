//! The crate's one source of randomness, deterministic so that shuffles, initialisations,
//! synthetic data and sampling are identical across runs, platforms and crate versions, and can
//! be saved and resumed. Two generators, [`SplitMix64`] (one multiply-xorshift per draw; also
//! seeds the other) and [`Rng`] (xoshiro256++, with a serialisable state for training
//! checkpoints), share every draw through the [`Draw`] trait; plus seed derivation and seeded
//! permutations.
use crate::error::Result;
use candle_core::{Device, Shape, Tensor};

/// One SplitMix64 step on `x`.
pub fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The draws, written once over a generator's `next_u64`.
pub trait Draw {
    /// 64 random bits.
    fn next_u64(&mut self) -> u64;

    /// Uniform in `[0, 1)` with 53 random bits.
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
    /// Uniform in `[lo, hi)`.
    fn uniform_range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }
    /// Standard normal (Box–Muller; one value per call).
    fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform(); // (0, 1]
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
    /// Uniform integer in `0..n` (0 when `n == 0`).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        ((self.uniform() * n as f64) as usize).min(n - 1)
    }
    /// An index drawn with probability proportional to `w` (non-negative); uniform when the
    /// weights sum to zero or are not finite.
    fn categorical(&mut self, w: &[f64]) -> usize {
        let total: f64 = w.iter().sum();
        if total <= 0.0 || !total.is_finite() {
            return self.below(w.len());
        }
        let mut u = self.uniform() * total;
        for (i, x) in w.iter().enumerate() {
            if u < *x {
                return i;
            }
            u -= x;
        }
        w.len() - 1
    }
    /// An f32 tensor of normals with standard deviation `std`.
    fn normal_tensor(&mut self, shape: impl Into<Shape>, std: f64, dev: &Device) -> Result<Tensor>
    where
        Self: Sized,
    {
        let shape = shape.into();
        let v: Vec<f32> = (0..shape.elem_count())
            .map(|_| (self.normal() * std) as f32)
            .collect();
        Ok(Tensor::from_vec(v, shape, dev)?)
    }
    /// An f32 tensor uniform in `[lo, hi)`.
    fn uniform_tensor(
        &mut self,
        shape: impl Into<Shape>,
        lo: f64,
        hi: f64,
        dev: &Device,
    ) -> Result<Tensor>
    where
        Self: Sized,
    {
        let shape = shape.into();
        let v: Vec<f32> = (0..shape.elem_count())
            .map(|_| self.uniform_range(lo, hi) as f32)
            .collect();
        Ok(Tensor::from_vec(v, shape, dev)?)
    }
}

/// SplitMix64: a 64-bit state, one multiply-xorshift per draw.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    /// The state (the seed at first).
    pub state: u64,
}

impl SplitMix64 {
    /// A generator started at `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }
}

impl Draw for SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        splitmix(&mut self.state)
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

/// A seeded uniform permutation of `0..n` (Fisher–Yates over SplitMix64, each index drawn
/// without bias by Lemire's multiply-shift with rejection: dataset orders depend on it).
pub fn permutation(n: usize, seed: u64) -> Vec<u32> {
    let mut p: Vec<u32> = (0..n as u32).collect();
    let mut r = SplitMix64::new(seed);
    for i in (1..n).rev() {
        let bound = i as u64 + 1;
        let threshold = bound.wrapping_neg() % bound;
        let j = loop {
            let m = (r.next_u64() as u128) * (bound as u128);
            if (m as u64) >= threshold {
                break (m >> 64) as usize;
            }
        };
        p.swap(i, j);
    }
    p
}

/// xoshiro256++; `state()` / `from_state()` round-trip exactly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator seeded through SplitMix64.
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let s = [
            splitmix(&mut x),
            splitmix(&mut x),
            splitmix(&mut x),
            splitmix(&mut x),
        ];
        Rng { s }
    }
    /// The state (for checkpoints).
    pub fn state(&self) -> [u64; 4] {
        self.s
    }
    /// The generator at a saved state.
    pub fn from_state(s: [u64; 4]) -> Self {
        Rng { s }
    }
    /// The state as 8 `u32`s (for safetensors).
    pub fn state_u32(&self) -> Vec<u32> {
        self.s
            .iter()
            .flat_map(|v| [(*v & 0xffff_ffff) as u32, (*v >> 32) as u32])
            .collect()
    }
    /// The generator at a state saved by [`Rng::state_u32`] (None unless 8 values).
    pub fn from_state_u32(v: &[u32]) -> Option<Self> {
        if v.len() != 8 {
            return None;
        }
        let mut s = [0u64; 4];
        for i in 0..4 {
            s[i] = v[2 * i] as u64 | ((v[2 * i + 1] as u64) << 32);
        }
        Some(Rng { s })
    }
    /// Split off an independent generator (for a sub-task with its own stream).
    pub fn fork(&mut self) -> Rng {
        Rng::new(self.next_u64())
    }
}

impl Draw for Rng {
    fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }
}
