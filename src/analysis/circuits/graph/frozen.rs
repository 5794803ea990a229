//! circuit-tracer's local replacement model, batched for attribution: attention patterns and
//! every norm scale frozen (detached), each MLP's output frozen to its clean value, so that
//! the residual stream is linear in the MLP outputs and the token embeddings. One forward pass
//! runs `batch` copies of the prompt; each backward pass then seeds a different target in each
//! copy (at its layer's transcoder input, or at the unembedding input for a logit) and reads
//! the gradient at every MLP output and at the embeddings: the direct effects of every source
//! on that target.
use super::setup::Setup;
use crate::error::{Error, Result};
use crate::hooks::{HookName, Hooks};
use crate::model::HookedModel;
use crate::ops::to_vec_f32;
use crate::sae::TranscoderSet;
use crate::tensor_ids;
use candle_core::{DType, Tensor, Var};
use rayon::prelude::*;
use std::cell::RefCell;

/// A target row to compute: a vector injected at one layer's input (or the final norm's
/// output, `layer == n_layers`) at one position.
pub(crate) struct Target<'a> {
    pub layer: usize,
    pub pos: usize,
    pub vector: &'a [f32],
}

/// The batched forward pass with its differentiable inputs and outputs.
pub(crate) struct Frozen {
    batch: usize,
    n_layers: usize,
    n_pos: usize,
    d: usize,
    /// Transcoder inputs per layer `[batch, pos, d]`, and the final norm's output last.
    reads: Vec<Tensor>,
    /// Zero variables added to each MLP output, then to the embeddings (last).
    writes: Vec<Var>,
}

impl Frozen {
    /// Run `batch` copies of `tokens` (`[1, pos]`) through the local replacement model.
    pub fn new(
        model: &HookedModel,
        tokens: &Tensor,
        tcs: &TranscoderSet,
        batch: usize,
    ) -> Result<Self> {
        let cfg = model.cfg();
        let (n_layers, d, n_pos) = (cfg.n_layers, cfg.d_model, tokens.dim(1)?);
        let dev = model.device();
        let mut held: Vec<&Tensor> = model.tensors();
        for t in &tcs.transcoders {
            held.extend(t.tensors().into_iter().map(|(_, t)| t));
        }
        held.push(tokens);
        tensor_ids::advance_past(held);
        let writes = (0..=n_layers)
            .map(|_| Var::zeros((batch, n_pos, d), DType::F32, dev))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let reads: RefCell<Vec<Option<Tensor>>> = RefCell::new(vec![None; n_layers]);
        let mut hooks = Hooks::new();
        hooks.add_filter(
            |n: &str| n.ends_with(".hook_scale") || n.ends_with("attn.hook_pattern"),
            |x: &Tensor, _: &str| Ok(Some(x.detach())),
        );
        let embed_var = &writes[n_layers];
        hooks.add("hook_embed", move |x: &Tensor, _: &str| {
            Ok(Some((x.detach() + embed_var.as_tensor())?))
        });
        hooks.add_filter(
            |n: &str| n.ends_with(".ln2.hook_normalized"),
            |x: &Tensor, n: &str| {
                reads.borrow_mut()[layer_of(n)] = Some(x.clone());
                Ok(None)
            },
        );
        let (reads_ref, writes_ref) = (&reads, &writes);
        hooks.add_filter(
            |n: &str| n.ends_with(".hook_mlp_out") && n.starts_with("blocks."),
            move |x: &Tensor, n: &str| {
                let l = layer_of(n);
                let frozen = match reads_ref.borrow()[l].as_ref() {
                    Some(x_in) => match tcs.layer(l).skip_connection(x_in)? {
                        // Gradients flow through the affine skip only.
                        Some(skip) => {
                            let skip = skip.to_dtype(x.dtype())?;
                            (&skip + (x - &skip)?.detach())?
                        }
                        None => x.detach(),
                    },
                    None => x.detach(),
                };
                Ok(Some((frozen + writes_ref[l].as_tensor())?))
            },
        );
        let toks = tokens.repeat((batch, 1))?;
        let resid = model
            .run(&toks)
            .hooks(hooks)
            .stop_at_layer(n_layers)
            .logits()?;
        let fin = model.apply_ln_final_frozen(&resid)?;
        let mut reads: Vec<Tensor> = reads
            .into_inner()
            .into_iter()
            .enumerate()
            .map(|(l, r)| {
                r.ok_or_else(|| {
                    Error::Invalid(format!("internal: layer {l}'s MLP input was not seen"))
                })
            })
            .collect::<Result<_>>()?;
        reads.push(fin);
        Ok(Frozen {
            batch,
            n_layers,
            n_pos,
            d,
            reads,
            writes,
        })
    }

    /// One backward pass for up to `batch` targets: for each, its row of direct effects over
    /// the sources `[features | errors (layer-major) | tokens]`.
    pub fn rows(&self, setup: &Setup, targets: &[Target]) -> Result<Vec<Vec<f32>>> {
        let (b, p, d) = (self.batch, self.n_pos, self.d);
        if targets.len() > b {
            return Err(Error::Invalid(format!(
                "internal: {} targets for a batch of {b}",
                targets.len()
            )));
        }
        let top = targets.iter().map(|t| t.layer).max().unwrap_or(0);
        let mut y: Option<Tensor> = None;
        for layer in 0..=self.n_layers {
            let mine: Vec<(usize, &Target)> = targets
                .iter()
                .enumerate()
                .filter(|(_, t)| t.layer == layer)
                .collect();
            if mine.is_empty() {
                continue;
            }
            let mut seed = vec![0f32; b * p * d];
            for (row, t) in mine {
                let at = (row * p + t.pos) * d;
                seed[at..at + d].copy_from_slice(t.vector);
            }
            let seed = Tensor::from_vec(seed, (b, p, d), self.reads[layer].device())?;
            let term = (&self.reads[layer] * seed)?.sum_all()?;
            y = Some(match y {
                Some(acc) => (acc + term)?,
                None => term,
            });
        }
        let Some(y) = y else {
            return Ok(vec![]);
        };
        let grads = y.backward()?;
        // Gradients at each MLP output below the top target layer, and at the embeddings.
        let grad_of = |v: &Var| -> Result<Option<Vec<f32>>> {
            grads.get(v.as_tensor()).map(to_vec_f32).transpose()
        };
        let mut g_mlp: Vec<Option<Vec<f32>>> = Vec::with_capacity(self.n_layers);
        for (l, v) in self.writes[..self.n_layers].iter().enumerate() {
            g_mlp.push(if l < top { grad_of(v)? } else { None });
        }
        let g_embed = grad_of(&self.writes[self.n_layers])?;
        Ok((0..targets.len())
            .map(|row| assemble_row(setup, &g_mlp, g_embed.as_deref(), row))
            .collect())
    }
}

/// Row `row` of the batch: each source's gradient at its write site dotted with what it
/// writes.
fn assemble_row(
    s: &Setup,
    g_mlp: &[Option<Vec<f32>>],
    g_embed: Option<&[f32]>,
    row: usize,
) -> Vec<f32> {
    let (p, d, nl) = (s.n_pos, s.d_model, s.n_layers);
    fn slot(g: &[f32], row: usize, pos: usize, p: usize, d: usize) -> &[f32] {
        let o = (row * p + pos) * d;
        &g[o..o + d]
    }
    let n_f = s.features.len();
    let mut out = vec![0f32; n_f + (nl + 1) * p];
    out[..n_f].par_iter_mut().enumerate().for_each(|(i, o)| {
        let f = &s.features[i];
        if let Some(g) = &g_mlp[f.layer] {
            *o = dot(
                slot(g, row, f.pos, p, d),
                &s.decoder_vecs[i * d..(i + 1) * d],
            );
        }
    });
    for l in 0..nl {
        if let Some(g) = &g_mlp[l] {
            for pos in 0..p {
                let e = &s.error_vecs[(l * p + pos) * d..(l * p + pos + 1) * d];
                out[n_f + l * p + pos] = dot(slot(g, row, pos, p, d), e);
            }
        }
    }
    if let Some(g) = g_embed {
        for pos in 0..p {
            out[n_f + nl * p + pos] = dot(
                slot(g, row, pos, p, d),
                &s.token_vecs[pos * d..(pos + 1) * d],
            );
        }
    }
    out
}

/// The block of a `blocks.L.…` hook name.
fn layer_of(n: &str) -> usize {
    HookName::parse(n).layer.unwrap_or(0)
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
