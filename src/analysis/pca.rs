//! Principal component analysis in f64 without LAPACK: the covariance matrix, reduced to
//! tridiagonal form by Householder reflections and diagonalised by the implicit QL algorithm
//! (the `tred2` / `tql2` pair of EISPACK, as in JAMA), O(d³).
use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor};

/// Eigen-decomposition of the symmetric `n × n` matrix `a` (row-major, only symmetric input
/// is meaningful): `(eigenvalues, eigenvectors)` with the eigenvalues in descending order and
/// eigenvector `i` in row `i` of the returned row-major `n × n` matrix (unit norm).
pub fn symmetric_eigen(a: &[f64], n: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    if a.len() != n * n {
        return Err(Error::Invalid(format!(
            "symmetric_eigen: {} values for a {n} × {n} matrix",
            a.len()
        )));
    }
    if a.iter().any(|v| !v.is_finite()) {
        return Err(Error::Invalid(
            "symmetric_eigen: the matrix has NaN or infinite entries".into(),
        ));
    }
    if n == 0 {
        return Ok((Vec::new(), Vec::new()));
    }
    // v[i][j] column-major-free: v[i * n + j] = V[i][j].
    let mut v = a.to_vec();
    let mut d = vec![0.0; n];
    let mut e = vec![0.0; n];
    tred2(n, &mut v, &mut d, &mut e);
    tql2(n, &mut v, &mut d, &mut e)?;
    // Columns of V are the eigenvectors; sort descending.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&x, &y| d[y].total_cmp(&d[x]));
    let vals = order.iter().map(|&k| d[k]).collect();
    let mut vecs = vec![0.0; n * n];
    for (row, &k) in order.iter().enumerate() {
        for i in 0..n {
            vecs[row * n + i] = v[i * n + k];
        }
    }
    Ok((vals, vecs))
}

/// Householder reduction of the symmetric matrix in `v` to tridiagonal form (diagonal `d`,
/// sub-diagonal `e`), accumulating the transformation in `v`.
fn tred2(n: usize, v: &mut [f64], d: &mut [f64], e: &mut [f64]) {
    let at = |i: usize, j: usize| i * n + j;
    for j in 0..n {
        d[j] = v[at(n - 1, j)];
    }
    for i in (1..n).rev() {
        let scale: f64 = d[..i].iter().map(|x| x.abs()).sum();
        let mut h = 0.0;
        if scale == 0.0 {
            e[i] = d[i - 1];
            for j in 0..i {
                d[j] = v[at(i - 1, j)];
                v[at(i, j)] = 0.0;
                v[at(j, i)] = 0.0;
            }
        } else {
            for x in d[..i].iter_mut() {
                *x /= scale;
                h += *x * *x;
            }
            let mut f = d[i - 1];
            let mut g = h.sqrt();
            if f > 0.0 {
                g = -g;
            }
            e[i] = scale * g;
            h -= f * g;
            d[i - 1] = f - g;
            for x in e.iter_mut().take(i) {
                *x = 0.0;
            }
            for j in 0..i {
                f = d[j];
                v[at(j, i)] = f;
                g = e[j] + v[at(j, j)] * f;
                for k in j + 1..i {
                    g += v[at(k, j)] * d[k];
                    e[k] += v[at(k, j)] * f;
                }
                e[j] = g;
            }
            f = 0.0;
            for j in 0..i {
                e[j] /= h;
                f += e[j] * d[j];
            }
            let hh = f / (h + h);
            for j in 0..i {
                e[j] -= hh * d[j];
            }
            for j in 0..i {
                f = d[j];
                g = e[j];
                for k in j..i {
                    v[at(k, j)] -= f * e[k] + g * d[k];
                }
                d[j] = v[at(i - 1, j)];
                v[at(i, j)] = 0.0;
            }
        }
        d[i] = h;
    }
    for i in 0..n - 1 {
        v[at(n - 1, i)] = v[at(i, i)];
        v[at(i, i)] = 1.0;
        let h = d[i + 1];
        if h != 0.0 {
            for k in 0..=i {
                d[k] = v[at(k, i + 1)] / h;
            }
            for j in 0..=i {
                let mut g = 0.0;
                for k in 0..=i {
                    g += v[at(k, i + 1)] * v[at(k, j)];
                }
                for k in 0..=i {
                    v[at(k, j)] -= g * d[k];
                }
            }
        }
        for k in 0..=i {
            v[at(k, i + 1)] = 0.0;
        }
    }
    for j in 0..n {
        d[j] = v[at(n - 1, j)];
        v[at(n - 1, j)] = 0.0;
    }
    v[at(n - 1, n - 1)] = 1.0;
    e[0] = 0.0;
}

/// Implicit QL on the tridiagonal `(d, e)`, rotating the eigenvectors in `v`.
fn tql2(n: usize, v: &mut [f64], d: &mut [f64], e: &mut [f64]) -> Result<()> {
    let at = |i: usize, j: usize| i * n + j;
    for i in 1..n {
        e[i - 1] = e[i];
    }
    e[n - 1] = 0.0;
    let mut f = 0.0;
    let mut tst1: f64 = 0.0;
    let eps = f64::EPSILON;
    for l in 0..n {
        tst1 = tst1.max(d[l].abs() + e[l].abs());
        let mut m = l;
        while m < n {
            if e[m].abs() <= eps * tst1 {
                break;
            }
            m += 1;
        }
        if m == n {
            m = n - 1;
        }
        if m > l {
            let mut iter = 0;
            loop {
                iter += 1;
                if iter > 60 {
                    return Err(Error::Invalid(
                        "symmetric_eigen: the QL iteration did not converge".into(),
                    ));
                }
                let mut g = d[l];
                let mut p = (d[l + 1] - g) / (2.0 * e[l]);
                let mut r = p.hypot(1.0);
                if p < 0.0 {
                    r = -r;
                }
                d[l] = e[l] / (p + r);
                d[l + 1] = e[l] * (p + r);
                let dl1 = d[l + 1];
                let mut h = g - d[l];
                for x in d.iter_mut().skip(l + 2) {
                    *x -= h;
                }
                f += h;
                p = d[m];
                let (mut c, mut c2, mut c3) = (1.0, 1.0, 1.0);
                let el1 = e[l + 1];
                let (mut s, mut s2) = (0.0, 0.0);
                for i in (l..m).rev() {
                    c3 = c2;
                    c2 = c;
                    s2 = s;
                    g = c * e[i];
                    h = c * p;
                    r = p.hypot(e[i]);
                    e[i + 1] = s * r;
                    s = e[i] / r;
                    c = p / r;
                    p = c * d[i] - s * g;
                    d[i + 1] = h + s * (c * g + s * d[i]);
                    for k in 0..n {
                        h = v[at(k, i + 1)];
                        v[at(k, i + 1)] = s * v[at(k, i)] + c * h;
                        v[at(k, i)] = c * v[at(k, i)] - s * h;
                    }
                }
                p = -s * s2 * c3 * el1 * e[l] / dl1;
                e[l] = s * p;
                d[l] = c * p;
                if e[l].abs() <= eps * tst1 {
                    break;
                }
            }
        }
        d[l] += f;
        e[l] = 0.0;
    }
    Ok(())
}

/// A fitted PCA (sklearn's `PCA(n_components).fit(X)`): the mean, the principal axes (unit
/// rows, sign fixed so that each axis' largest-magnitude entry is positive, as sklearn's
/// `svd_flip`), and the variance along each (with the `n − 1` denominator, as sklearn).
#[derive(Clone, Debug)]
pub struct Pca {
    d: usize,
    mean: Vec<f64>,
    /// Row-major `[k, d]`.
    components: Vec<f64>,
    explained_variance: Vec<f64>,
    total_variance: f64,
}

impl Pca {
    /// Fit `n_components` principal components of the rows of `data` (`[n, d]`, any float
    /// dtype; n ≥ 2). Everything is computed in f64.
    pub fn fit(data: &Tensor, n_components: usize) -> Result<Pca> {
        let (n, d) = data.dims2().map_err(|_| {
            Error::Invalid(format!(
                "Pca::fit: data must be [n_samples, n_features], got shape {:?}",
                data.dims()
            ))
        })?;
        if n < 2 || d == 0 {
            return Err(Error::Invalid(format!(
                "Pca::fit: needs at least 2 samples of at least 1 feature, got [{n}, {d}]"
            )));
        }
        if n_components == 0 || n_components > d {
            return Err(Error::Invalid(format!(
                "Pca::fit: n_components = {n_components} must be in 1..={d} (the feature count)"
            )));
        }
        let x = data.to_device(&Device::Cpu)?.to_dtype(DType::F64)?;
        let mean_t = x.mean_keepdim(0)?;
        let xc = x.broadcast_sub(&mean_t)?;
        let cov = (xc.t()?.matmul(&xc)? / (n - 1) as f64)?;
        let cov: Vec<f64> = cov.flatten_all()?.to_vec1()?;
        let total_variance = (0..d).map(|i| cov[i * d + i]).sum();
        let (vals, vecs) = symmetric_eigen(&cov, d)?;
        let mut components = vecs[..n_components * d].to_vec();
        for row in components.chunks_mut(d) {
            let big = row
                .iter()
                .copied()
                .fold(0.0f64, |m, v| if v.abs() > m.abs() { v } else { m });
            if big < 0.0 {
                row.iter_mut().for_each(|v| *v = -*v);
            }
        }
        Ok(Pca {
            d,
            mean: mean_t.flatten_all()?.to_vec1()?,
            components,
            explained_variance: vals[..n_components].iter().map(|v| v.max(0.0)).collect(),
            total_variance,
        })
    }

    /// Project rows `[n, d]` onto the components: `(x − mean) @ componentsᵀ`, `[n, k]` f32.
    pub fn transform(&self, data: &Tensor) -> Result<Tensor> {
        let dims = data.dims();
        if dims.len() != 2 || dims[1] != self.d {
            return Err(Error::Invalid(format!(
                "Pca::transform: data must be [n, {}] (the width the PCA was fitted on), got {dims:?}",
                self.d
            )));
        }
        let x = data.to_device(&Device::Cpu)?.to_dtype(DType::F64)?;
        let mean = Tensor::from_vec(self.mean.clone(), (1, self.d), &Device::Cpu)?;
        let out = x
            .broadcast_sub(&mean)?
            .matmul(&self.components_f64()?.t()?)?;
        Ok(out.to_dtype(DType::F32)?.to_device(data.device())?)
    }

    fn components_f64(&self) -> Result<Tensor> {
        Ok(Tensor::from_vec(
            self.components.clone(),
            (self.n_components(), self.d),
            &Device::Cpu,
        )?)
    }

    /// The principal axes, `[k, d]` f64 (unit rows, mutually orthogonal).
    pub fn components(&self) -> Result<Tensor> {
        self.components_f64()
    }
    /// Number of components `k` kept by the fit.
    pub fn n_components(&self) -> usize {
        self.explained_variance.len()
    }
    /// The per-feature mean of the fitted data.
    pub fn mean(&self) -> &[f64] {
        &self.mean
    }
    /// The variance of the data along each component (eigenvalues of the covariance).
    pub fn explained_variance(&self) -> &[f64] {
        &self.explained_variance
    }
    /// Each component's share of the total variance.
    pub fn explained_variance_ratio(&self) -> Vec<f64> {
        self.explained_variance
            .iter()
            .map(|v| {
                if self.total_variance > 0.0 {
                    v / self.total_variance
                } else {
                    0.0
                }
            })
            .collect()
    }
}
