//! Seeded shuffles for datasets (see [`crate::rng`]).
pub use crate::rng::{derive_seed, permutation, SplitMix64};
