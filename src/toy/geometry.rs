//! The shape a 2-D toy model gives its features: each feature's direction (angle) and norm, and
//! the angular gaps between neighbouring features (a regular pentagon has gaps of 72°).
use crate::error::{Error, Result};
use candle_core::{DType, IndexOp, Tensor};

/// Angles, norms and gaps of one instance's feature directions ([`feature_geometry`]).
#[derive(Clone, Debug, PartialEq)]
pub struct FeatureGeometry {
    /// Each feature's norm `‖W[:, i]‖`, in feature order.
    pub norms: Vec<f32>,
    /// The features' angles in degrees, sorted ascending.
    pub angles: Vec<f32>,
    /// The gap from each sorted angle to the next (the last wraps around), in degrees.
    pub gaps: Vec<f32>,
}

impl FeatureGeometry {
    /// Whether the features form a regular polygon: every gap within `tol_deg` of `360 / n`
    /// and every norm above `min_norm`.
    pub fn is_regular(&self, tol_deg: f32, min_norm: f32) -> bool {
        let ideal = 360.0 / self.gaps.len().max(1) as f32;
        self.gaps.iter().all(|g| (g - ideal).abs() < tol_deg)
            && self.norms.iter().all(|n| *n > min_norm)
    }
}

/// The geometry of instance `inst` of `w [n_inst, 2, n_features]` (a toy model's `W`).
pub fn feature_geometry(w: &Tensor, inst: usize) -> Result<FeatureGeometry> {
    let (_, d_hidden, _) = w.dims3()?;
    if d_hidden != 2 {
        return Err(Error::Invalid(format!(
            "feature_geometry needs a 2-D hidden space, got d_hidden = {d_hidden}"
        )));
    }
    let w = w.i(inst)?.to_dtype(DType::F32)?;
    let (xs, ys): (Vec<f32>, Vec<f32>) = (w.i(0)?.to_vec1()?, w.i(1)?.to_vec1()?);
    let norms = xs.iter().zip(&ys).map(|(x, y)| x.hypot(*y)).collect();
    let mut angles: Vec<f32> = xs
        .iter()
        .zip(&ys)
        .map(|(x, y)| y.atan2(*x).to_degrees())
        .collect();
    angles.sort_by(f32::total_cmp);
    let n = angles.len();
    let gaps = (0..n)
        .map(|i| {
            if i + 1 < n {
                angles[i + 1] - angles[i]
            } else {
                angles[0] + 360.0 - angles[i]
            }
        })
        .collect();
    Ok(FeatureGeometry {
        norms,
        angles,
        gaps,
    })
}
