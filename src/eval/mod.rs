//! SAE evaluation with SAELens's definitions (being written).
