//! Toy models of superposition and toy SAEs (being written).
