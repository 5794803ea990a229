//! Direct feature attribution for attention SAEs (`blocks.L.attn.hook_z`): how much each source
//! position contributes, through its value vector and the attention pattern, to the latent's
//! encoder input at the destination (ARENA [1.3.3] §1.4, sae_vis's DFA view):
//! `dfa[s] = Σ_h pattern[h, dest, s] · (v[s, h] · W_enc[h·d_head .. (h+1)·d_head, i])`, summing to
//! `z[dest] · W_enc[:, i]` (the pre-activation without `b_enc` and the `b_dec` term).
use super::ctx::{tok_text, Ctx, Request};
use super::types::{Dfa, Example, ExampleToken};
use crate::error::Result;
use crate::model::ActivationCache;
use candle_core::{DType, Tensor};

/// Per source position `0..=dest`, the attribution to `w` (one encoder column, `[n_heads·d_head]`)
/// at `dest`. `v` is `[pos, n_kv_heads, d_head]`, `pattern` `[n_heads, pos, pos]`, row-major.
pub fn dfa_values(
    v: &[f32],
    pattern: &[f32],
    w: &[f32],
    dims: (usize, usize, usize, usize),
    dest: usize,
) -> Vec<f32> {
    let (pos, h, hkv, dh) = dims;
    let rep = (h / hkv.max(1)).max(1);
    (0..=dest.min(pos.saturating_sub(1)))
        .map(|s| {
            (0..h)
                .map(|hh| {
                    let kv = hh / rep;
                    let vs = &v[(s * hkv + kv) * dh..(s * hkv + kv + 1) * dh];
                    let ws = &w[hh * dh..(hh + 1) * dh];
                    let dot: f32 = vs.iter().zip(ws).map(|(a, b)| a * b).sum();
                    pattern[(hh * pos + dest) * pos + s] * dot
                })
                .sum()
        })
        .collect()
}

pub(crate) fn attach(
    c: &Ctx,
    cache: &ActivationCache,
    v_name: &str,
    pattern_name: &str,
    batch: &[(u32, usize)],
    built: &mut [(usize, Example)],
    requests: &[Request],
) -> Result<()> {
    let v = cache.get(v_name)?.to_dtype(DType::F32)?;
    let pat = cache.get(pattern_name)?.to_dtype(DType::F32)?;
    let (bsz, l, hkv, dh) = v.dims4()?;
    let h = pat.dim(1)?;
    let k = c.latents.len();
    let idx = Tensor::from_vec(
        c.latents.iter().map(|&i| i as u32).collect::<Vec<_>>(),
        k,
        c.sae.w_enc().device(),
    )?;
    // [k, d_in]: the chosen latents' encoder columns.
    let w: Vec<Vec<f32>> = c
        .sae
        .w_enc()
        .index_select(&idx, 1)?
        .t()?
        .to_dtype(DType::F32)?
        .contiguous()?
        .to_vec2()?;
    let (b0, b1) = c.cfg.dfa_buffer;
    for (b, &(r, _)) in batch.iter().enumerate().take(bsz) {
        let vb: Vec<f32> = v.get(b)?.flatten_all()?.to_vec1()?;
        let pb: Vec<f32> = pat.get(b)?.flatten_all()?.to_vec1()?;
        let row = &c.src.rows[r as usize];
        for (ri, e) in built.iter_mut() {
            if e.row != r as usize || e.pos >= l {
                continue;
            }
            let slot = requests[*ri].slot;
            let vals = dfa_values(&vb, &pb, &w[slot], (l, h, hkv, dh), e.pos);
            let (max_pos, _) =
                vals.iter()
                    .enumerate()
                    .fold(
                        (0, f32::NEG_INFINITY),
                        |m, (i, &x)| if x > m.1 { (i, x) } else { m },
                    );
            let lo = max_pos.saturating_sub(b0);
            let hi = (max_pos + b1).min(e.pos);
            e.dfa = Some(Dfa {
                target_pos: e.pos,
                max_pos,
                total: vals.iter().sum(),
                tokens: (lo..=hi)
                    .map(|p| ExampleToken {
                        id: row[p],
                        token: tok_text(c.vocab, row[p]),
                        pos: p,
                        act: vals[p],
                        next_logprob_delta: None,
                        next_logprob: None,
                        boosted: Vec::new(),
                        suppressed: Vec::new(),
                    })
                    .collect(),
            });
        }
    }
    Ok(())
}
