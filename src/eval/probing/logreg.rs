//! Binary logistic regression with scikit-learn's `LogisticRegression(penalty="l2", C, ...)`
//! objective, minimised by full-batch L-BFGS in f64 (deterministic: no randomness at all).
//!
//! sklearn (≥ 1.1, `solver="lbfgs"`) minimises
//! `Σ_i s_i·ℓ(y_i, x_i·w + b) / S + ‖w‖² / (2·C·S)` with `S = Σ_i s_i`, the sample weights
//! `s_i` being 1, or `n / (2·n_{y_i})` for `class_weight="balanced"`; the intercept is not
//! penalised. The objective is strictly convex in `w`, so any solver run to convergence lands on
//! the same coefficients; ours stops at a tighter gradient tolerance than sklearn's `tol=1e-4`.
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Options of [`fit_logistic_regression`] (sklearn's names and defaults).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LogRegOptions {
    /// Inverse L2 strength (sklearn `C`, default 1.0).
    pub c: f64,
    /// Iteration cap (sklearn `max_iter`; SAEBench's sparse probing passes 1000, its
    /// absorption k-sparse probes 500).
    pub max_iter: usize,
    /// sklearn `class_weight="balanced"` (SAEBench's absorption k-sparse probes use it).
    pub balanced: bool,
    /// Stop when the largest gradient entry of the normalised objective is below this.
    pub tol: f64,
}

impl Default for LogRegOptions {
    fn default() -> Self {
        LogRegOptions {
            c: 1.0,
            max_iter: 1000,
            balanced: false,
            tol: 1e-7,
        }
    }
}

/// A fitted binary logistic regression: `p(y=1|x) = σ(x·coef + intercept)`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LogisticRegression {
    /// Weights, one per input column (sklearn `coef_[0]`).
    pub coef: Vec<f64>,
    /// Bias (sklearn `intercept_[0]`).
    pub intercept: f64,
    /// L-BFGS iterations taken.
    pub n_iter: usize,
}

impl LogisticRegression {
    /// The logit `x·coef + intercept` of each row of the row-major `[n, d]` matrix `x`.
    pub fn decision_function(&self, x: &[f32]) -> Vec<f64> {
        let d = self.coef.len().max(1);
        x.chunks(d)
            .map(|r| dot(r, &self.coef) + self.intercept)
            .collect()
    }

    /// Predicted labels (`logit > 0`, sklearn's `predict`).
    pub fn predict(&self, x: &[f32]) -> Vec<bool> {
        self.decision_function(x).iter().map(|z| *z > 0.0).collect()
    }

    /// Fraction of rows whose prediction equals `y`.
    pub fn accuracy(&self, x: &[f32], y: &[bool]) -> f64 {
        accuracy(&self.predict(x), y)
    }
}

/// Fraction of equal entries.
pub(crate) fn accuracy(pred: &[bool], y: &[bool]) -> f64 {
    if y.is_empty() {
        return f64::NAN;
    }
    pred.iter().zip(y).filter(|(a, b)| a == b).count() as f64 / y.len() as f64
}

fn dot(x: &[f32], w: &[f64]) -> f64 {
    x.iter().zip(w).map(|(a, b)| *a as f64 * b).sum()
}

/// Fit on the row-major `[n, d]` matrix `x` (`x.len() == n·d`) and labels `y` (`n`).
pub fn fit_logistic_regression(
    x: &[f32],
    y: &[bool],
    opts: &LogRegOptions,
) -> Result<LogisticRegression> {
    let n = y.len();
    if n == 0 || !x.len().is_multiple_of(n) || x.is_empty() {
        return Err(Error::Invalid(format!(
            "fit_logistic_regression: need a non-empty [n, d] matrix with n = {n} labels, got {} values",
            x.len()
        )));
    }
    let n_pos = y.iter().filter(|v| **v).count();
    if n_pos == 0 || n_pos == n {
        return Err(Error::Invalid(
            "fit_logistic_regression: both classes must be present in y".into(),
        ));
    }
    if opts.c.is_nan() || opts.c <= 0.0 {
        return Err(Error::Invalid(format!(
            "fit_logistic_regression: C must be > 0, got {}",
            opts.c
        )));
    }
    let d = x.len() / n;
    let sw: Vec<f64> = if opts.balanced {
        let (wp, wn) = (
            n as f64 / (2.0 * n_pos as f64),
            n as f64 / (2.0 * (n - n_pos) as f64),
        );
        y.iter().map(|v| if *v { wp } else { wn }).collect()
    } else {
        vec![1.0; n]
    };
    let s: f64 = sw.iter().sum();
    let l2 = 1.0 / (opts.c * s);
    let obj = |p: &[f64], g: &mut [f64]| -> f64 {
        g.iter_mut().for_each(|v| *v = 0.0);
        let (w, b) = (&p[..d], p[d]);
        let mut f = 0.0;
        for (i, row) in x.chunks(d).enumerate() {
            let z = dot(row, w) + b;
            // ℓ = log(1 + e^{−z}) for y = 1, log(1 + e^{z}) for y = 0, stably.
            let m = if y[i] { -z } else { z };
            f += sw[i] * softplus(m);
            let r = sw[i] * (sigmoid(z) - if y[i] { 1.0 } else { 0.0 }) / s;
            for (gj, xj) in g[..d].iter_mut().zip(row) {
                *gj += r * *xj as f64;
            }
            g[d] += r;
        }
        let mut reg = 0.0;
        for j in 0..d {
            reg += w[j] * w[j];
            g[j] += l2 * w[j];
        }
        f / s + 0.5 * l2 * reg
    };
    let (p, n_iter) = lbfgs(obj, vec![0.0; d + 1], opts.max_iter, opts.tol);
    Ok(LogisticRegression {
        coef: p[..d].to_vec(),
        intercept: p[d],
        n_iter,
    })
}

pub(crate) fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

fn softplus(m: f64) -> f64 {
    if m > 0.0 {
        m + (-m).exp().ln_1p()
    } else {
        m.exp().ln_1p()
    }
}

/// L-BFGS (memory 10, as scipy's default `maxcor`) with a backtracking Armijo line search;
/// returns the point and the iterations taken.
fn lbfgs(
    mut f: impl FnMut(&[f64], &mut [f64]) -> f64,
    mut x: Vec<f64>,
    max_iter: usize,
    tol: f64,
) -> (Vec<f64>, usize) {
    const M: usize = 10;
    let n = x.len();
    let mut g = vec![0.0; n];
    let mut fx = f(&x, &mut g);
    let (mut ss, mut ys, mut rhos): (Vec<Vec<f64>>, Vec<Vec<f64>>, Vec<f64>) =
        (vec![], vec![], vec![]);
    let mut g_new = vec![0.0; n];
    for it in 0..max_iter {
        if g.iter().fold(0.0f64, |a, v| a.max(v.abs())) <= tol {
            return (x, it);
        }
        // Two-loop recursion: direction = −H·g.
        let mut q = g.clone();
        let mut alphas = vec![0.0; ss.len()];
        for k in (0..ss.len()).rev() {
            alphas[k] = rhos[k] * vdot(&ss[k], &q);
            axpy(-alphas[k], &ys[k], &mut q);
        }
        let gamma = match ss.last() {
            Some(s) => {
                vdot(s, ys.last().unwrap_or(s))
                    / vdot(ys.last().unwrap_or(s), ys.last().unwrap_or(s))
            }
            None => 1.0 / vdot(&g, &g).sqrt().max(1e-12),
        };
        q.iter_mut().for_each(|v| *v *= gamma);
        for k in 0..ss.len() {
            let beta = rhos[k] * vdot(&ys[k], &q);
            axpy(alphas[k] - beta, &ss[k], &mut q);
        }
        let dir: Vec<f64> = q.iter().map(|v| -v).collect();
        let mut slope = vdot(&g, &dir);
        let dir = if slope >= 0.0 {
            // Not a descent direction (numerical trouble): restart from steepest descent.
            ss.clear();
            ys.clear();
            rhos.clear();
            slope = -vdot(&g, &g);
            g.iter().map(|v| -v).collect()
        } else {
            dir
        };
        let mut step = 1.0;
        let mut x_new = vec![0.0; n];
        let mut f_new;
        loop {
            for i in 0..n {
                x_new[i] = x[i] + step * dir[i];
            }
            f_new = f(&x_new, &mut g_new);
            if f_new <= fx + 1e-4 * step * slope || step < 1e-20 {
                break;
            }
            step *= 0.5;
        }
        let s: Vec<f64> = (0..n).map(|i| x_new[i] - x[i]).collect();
        let yv: Vec<f64> = (0..n).map(|i| g_new[i] - g[i]).collect();
        let sy = vdot(&s, &yv);
        if sy > 1e-300 {
            if ss.len() == M {
                ss.remove(0);
                ys.remove(0);
                rhos.remove(0);
            }
            ss.push(s);
            ys.push(yv);
            rhos.push(1.0 / sy);
        }
        let done = (fx - f_new).abs() <= 1e-16 * fx.abs().max(1.0);
        x.copy_from_slice(&x_new);
        g.copy_from_slice(&g_new);
        fx = f_new;
        if done {
            return (x, it + 1);
        }
    }
    (x, max_iter)
}

fn vdot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn axpy(a: f64, x: &[f64], y: &mut [f64]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}
