//! Streaming correlations between the dashboard's latents and other activations (sae_vis's
//! `RollingCorrCoef`): running `n, Σx, Σx², Σy, Σy², Σxy` over all scanned tokens.
use super::types::Correlated;
use crate::error::Result;
use candle_core::{DType, Tensor};

pub(crate) struct CorrAcc {
    k: usize,
    m: usize,
    n: u64,
    sx: Vec<f64>,
    sx2: Vec<f64>,
    sy: Vec<f64>,
    sy2: Vec<f64>,
    /// `[k, m]` row-major.
    sxy: Vec<f64>,
    /// Column of each row's own latent in `y` (self-correlation is zeroed), if any.
    self_col: Vec<Option<usize>>,
}

fn add(acc: &mut [f64], t: &Tensor) -> Result<()> {
    let v: Vec<f32> = t.flatten_all()?.to_vec1()?;
    for (a, b) in acc.iter_mut().zip(v) {
        *a += b as f64;
    }
    Ok(())
}

impl CorrAcc {
    pub fn new(k: usize, m: usize, self_col: Vec<Option<usize>>) -> Self {
        CorrAcc {
            k,
            m,
            n: 0,
            sx: vec![0.0; k],
            sx2: vec![0.0; k],
            sy: vec![0.0; m],
            sy2: vec![0.0; m],
            sxy: vec![0.0; k * m],
            self_col,
        }
    }

    /// Add `T` tokens: `x [T, k]` (the dashboard latents), `y [T, m]`.
    pub fn update(&mut self, x: &Tensor, y: &Tensor) -> Result<()> {
        let x = x.to_dtype(DType::F32)?;
        let y = y.to_dtype(DType::F32)?;
        add(&mut self.sxy, &x.t()?.contiguous()?.matmul(&y)?)?;
        add(&mut self.sx, &x.sum(0)?)?;
        add(&mut self.sx2, &x.sqr()?.sum(0)?)?;
        add(&mut self.sy, &y.sum(0)?)?;
        add(&mut self.sy2, &y.sqr()?.sum(0)?)?;
        self.n += x.dim(0)? as u64;
        Ok(())
    }

    /// `(pearson, cosine)` of row `i` with column `j` (0 where undefined).
    pub fn pair(&self, i: usize, j: usize) -> (f32, f32) {
        if self.self_col[i] == Some(j) {
            return (0.0, 0.0);
        }
        let n = self.n as f64;
        let (sx, sx2, sy, sy2) = (self.sx[i], self.sx2[i], self.sy[j], self.sy2[j]);
        let sxy = self.sxy[i * self.m + j];
        let den = ((n * sx2 - sx * sx) * (n * sy2 - sy * sy)).sqrt();
        let pearson = if den > 0.0 && den.is_finite() {
            (n * sxy - sx * sy) / den
        } else {
            0.0
        };
        let cosine = sxy / ((sx2 * sy2).sqrt() + 1e-6);
        (pearson as f32, cosine as f32)
    }

    /// The `n_rows` columns most correlated (Pearson) with row `i`; `col_index` maps a column
    /// to the index shown (latent or neuron id).
    pub fn top(
        &self,
        i: usize,
        n_rows: usize,
        col_index: &dyn Fn(usize) -> usize,
    ) -> Vec<Correlated> {
        if i >= self.k {
            return Vec::new();
        }
        let mut all: Vec<(usize, f32, f32)> = (0..self.m)
            .map(|j| {
                let (p, c) = self.pair(i, j);
                (j, p, c)
            })
            .collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        all.into_iter()
            .take(n_rows)
            .map(|(j, pearson, cosine)| Correlated {
                index: col_index(j),
                pearson,
                cosine,
            })
            .collect()
    }
}
