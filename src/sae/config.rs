//! SAE config (STUB).
/// SAELens `cfg.json` (6.x or pre-6.0 keys).
#[derive(Clone, Debug)]
pub struct SaeConfig {
    pub d_in: usize,
    pub d_sae: usize,
}
