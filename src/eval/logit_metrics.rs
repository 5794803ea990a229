//! The CE and KL metrics of an eval batch in one pass over the vocabulary per position.
//!
//! Same definitions as [`HookedModel::per_token_loss`](crate::HookedModel::per_token_loss) and
//! [`kl_div`](super::metrics::kl_div) (tested against both), without materialising a
//! `[batch, pos, vocab]` log-softmax per tensor: each position's log-sum-exp and sums are
//! accumulated in f64, positions in parallel.
use crate::error::{Error, Result};
use candle_core::{DType, Tensor};
use rayon::prelude::*;

/// Per-position metrics of a batch, `b × p` entries in row-major order.
pub(crate) struct LogitMetrics {
    /// Next-token CE of the clean, spliced and ablated logits (`b × (p − 1)`: the last
    /// position of each row predicts nothing).
    pub ce: [Vec<f32>; 3],
    /// `KL(p_clean ‖ p_spliced)` and `KL(p_clean ‖ p_ablated)` at every position (`b × p`).
    pub kl: [Vec<f32>; 2],
}

fn lse(row: &[f32]) -> f64 {
    let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    if !m.is_finite() {
        return m;
    }
    m + row.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln()
}

/// `Σ_v p_c(v) (log p_c(v) − log p_n(v))` for one position, given both log-sum-exps.
fn kl_row(clean: &[f32], new: &[f32], lse_c: f64, lse_n: f64) -> f64 {
    let mut acc = 0f64;
    for (&c, &n) in clean.iter().zip(new) {
        let lp = c as f64 - lse_c;
        let p = lp.exp();
        if p > 0.0 {
            acc += p * (lp - (n as f64 - lse_n));
        }
    }
    acc
}

/// CE of `[clean, spliced, ablated]` logits `[b, p, vocab]` against `tokens` `[b, p]`, and KL of
/// the last two from the first.
pub(crate) fn logit_metrics(tokens: &Tensor, logits: [&Tensor; 3]) -> Result<LogitMetrics> {
    let (b, p, v) = logits[0].dims3()?;
    if logits.iter().any(|l| l.dims() != [b, p, v]) || tokens.dims() != [b, p] {
        return Err(Error::Invalid(format!(
            "eval: logits {:?} / {:?} / {:?} do not match tokens {:?}",
            logits[0].dims(),
            logits[1].dims(),
            logits[2].dims(),
            tokens.dims()
        )));
    }
    let flat = |t: &Tensor| -> Result<Vec<f32>> {
        Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
    };
    let (c, s, a) = (flat(logits[0])?, flat(logits[1])?, flat(logits[2])?);
    let ids = tokens
        .to_dtype(DType::U32)?
        .flatten_all()?
        .to_vec1::<u32>()?;
    // Per position: (ce clean, ce spliced, ce ablated, kl spliced, kl ablated).
    let per: Vec<[f64; 5]> = (0..b * p)
        .into_par_iter()
        .map(|r| {
            let rows = [
                &c[r * v..(r + 1) * v],
                &s[r * v..(r + 1) * v],
                &a[r * v..(r + 1) * v],
            ];
            let l = [lse(rows[0]), lse(rows[1]), lse(rows[2])];
            let mut out = [0f64; 5];
            if (r % p) + 1 < p {
                let next = (ids[r + 1] as usize).min(v - 1);
                for k in 0..3 {
                    out[k] = l[k] - rows[k][next] as f64;
                }
            }
            out[3] = kl_row(rows[0], rows[1], l[0], l[1]);
            out[4] = kl_row(rows[0], rows[2], l[0], l[2]);
            out
        })
        .collect();
    let ce_at = |k: usize| -> Vec<f32> {
        (0..b * p)
            .filter(|r| (r % p) + 1 < p)
            .map(|r| per[r][k] as f32)
            .collect()
    };
    Ok(LogitMetrics {
        ce: [ce_at(0), ce_at(1), ce_at(2)],
        kl: [
            per.iter().map(|o| o[3] as f32).collect(),
            per.iter().map(|o| o[4] as f32).collect(),
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, D};

    #[test]
    fn matches_log_softmax_ce_and_kl_div() {
        let dev = Device::Cpu;
        let (b, p, v) = (2, 5, 37);
        let lg =
            |scale: f64| (Tensor::randn(0f32, 1f32, (b, p, v), &dev).unwrap() * scale).unwrap();
        let (c, s, a) = (lg(3.0), lg(1.0), lg(10.0));
        let tokens = Tensor::from_vec(
            (0..(b * p) as u32)
                .map(|i| (i * 7) % v as u32)
                .collect::<Vec<_>>(),
            (b, p),
            &dev,
        )
        .unwrap();
        let m = logit_metrics(&tokens, [&c, &s, &a]).unwrap();
        for (k, l) in [&c, &s, &a].into_iter().enumerate() {
            let lp =
                candle_nn::ops::log_softmax(&l.narrow(1, 0, p - 1).unwrap(), D::Minus1).unwrap();
            let next = tokens
                .narrow(1, 1, p - 1)
                .unwrap()
                .contiguous()
                .unwrap()
                .unsqueeze(2)
                .unwrap();
            let want = lp
                .gather(&next, 2)
                .unwrap()
                .neg()
                .unwrap()
                .flatten_all()
                .unwrap();
            let want = want.to_vec1::<f32>().unwrap();
            for (x, y) in m.ce[k].iter().zip(&want) {
                assert!((x - y).abs() < 1e-4, "ce {k}: {x} vs {y}");
            }
        }
        for (k, l) in [&s, &a].into_iter().enumerate() {
            let want = super::super::metrics::kl_div(&c, l).unwrap();
            let want = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert_eq!(want.len(), m.kl[k].len());
            for (x, y) in m.kl[k].iter().zip(&want) {
                assert!((x - y).abs() < 1e-4 * (1.0 + y.abs()), "kl {k}: {x} vs {y}");
            }
        }
    }
}
