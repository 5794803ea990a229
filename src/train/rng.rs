//! The training run's generator (see [`crate::rng`]): xoshiro256++ with a serialisable state.
pub use crate::rng::Rng;
