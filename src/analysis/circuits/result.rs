//! What the latent-gradient functions return: a Jacobian with its units, labels and plots.
use super::sparse::SparseActs;
use crate::error::Result;
use crate::model::HookedModel;
use crate::viz::{heatmap_with, ColorScale, HeatmapOptions, Svg};
use candle_core::{DType, IndexOp, Tensor};

/// A Jacobian between two sets of units (latents at positions, token positions, logits), the
/// values it was taken at, and labels for plotting.
#[derive(Clone, Debug)]
pub struct LatentGradients {
    /// `[n_outputs, n_inputs]`: `gradients[o, i] = ∂ output o / ∂ input i` (the layout
    /// `torch.func.jacrev` returns).
    pub gradients: Tensor,
    /// The inputs: the earlier SAE's active latents (`[batch, pos, latent]` indices), or each
    /// token position's embedding scale (`[batch, pos]`, all 1).
    pub inputs: SparseActs,
    /// The outputs at the inputs' values: the later SAE's latents computed from the earlier
    /// SAE's reconstruction (ARENA's `latent_acts_next_recon`), or the logits (`[token id]`
    /// indices, `shape = [d_vocab]`).
    pub outputs: SparseActs,
    /// The outputs in the clean model (ARENA's `latent_acts_next`; the true logits).
    pub clean_outputs: SparseActs,
    /// One label per input, e.g. `F5.1234, ' Paris' (6)`.
    pub input_labels: Vec<String>,
    /// One label per output.
    pub output_labels: Vec<String>,
    /// Output rows differentiated per second (the batched backward passes, wall clock).
    pub outputs_per_sec: f64,
    pub(super) title: String,
    /// Plot inputs as rows (ARENA's latent→latent and token→latent plots) or as columns.
    pub(super) inputs_as_rows: bool,
}

impl LatentGradients {
    /// The gradient between input `i` and output `o`.
    pub fn get(&self, o: usize, i: usize) -> Result<f32> {
        Ok(self.gradients.i((o, i))?.to_scalar::<f32>()?)
    }

    /// The `n` largest gradients by magnitude, as `(input label, output label, gradient)`.
    pub fn top_edges(&self, n: usize) -> Result<Vec<(String, String, f32)>> {
        let v = self.gradients.to_vec2::<f32>()?;
        let mut all: Vec<(usize, usize, f32)> = v
            .iter()
            .enumerate()
            .flat_map(|(o, row)| row.iter().enumerate().map(move |(i, &g)| (o, i, g)))
            .collect();
        all.sort_by(|a, b| b.2.abs().total_cmp(&a.2.abs()));
        Ok(all
            .into_iter()
            .take(n)
            .map(|(o, i, g)| {
                (
                    self.input_labels[i].clone(),
                    self.output_labels[o].clone(),
                    g,
                )
            })
            .collect())
    }

    /// The sub-Jacobian of the `n_inputs` inputs and `n_outputs` outputs with the largest
    /// summed |gradient| (in their original order), for a readable heatmap.
    pub fn strongest(&self, n_inputs: usize, n_outputs: usize) -> Result<LatentGradients> {
        let a = self.gradients.abs()?;
        let keep = |sums: Vec<f32>, n: usize| -> Vec<usize> {
            let mut order: Vec<usize> = (0..sums.len()).collect();
            order.sort_by(|&x, &y| sums[y].total_cmp(&sums[x]));
            order.truncate(n);
            order.sort_unstable();
            order
        };
        let ins = keep(a.sum(0)?.to_vec1()?, n_inputs);
        let outs = keep(a.sum(1)?.to_vec1()?, n_outputs);
        self.select(&ins, &outs, format!("strongest {n_inputs} × {n_outputs}"))
    }

    /// Without the inputs and outputs at position 0 (BOS, whose gradients dwarf the rest);
    /// entries without a position (logits) stay.
    pub fn without_bos(&self) -> Result<LatentGradients> {
        let not_bos = |s: &SparseActs| -> Vec<usize> {
            (0..s.values.len())
                .filter(|&i| s.shape.len() < 2 || s.indices[i][1] != 0)
                .collect()
        };
        self.select(
            &not_bos(&self.inputs),
            &not_bos(&self.outputs),
            "no BOS".into(),
        )
    }

    /// The sub-Jacobian of inputs `ins` and outputs `outs` (ascending indices).
    fn select(&self, ins: &[usize], outs: &[usize], what: String) -> Result<LatentGradients> {
        let ix = |v: &[usize]| {
            Tensor::new(
                v.iter().map(|&i| i as u32).collect::<Vec<_>>(),
                self.gradients.device(),
            )
        };
        let g = self
            .gradients
            .index_select(&ix(outs)?, 0)?
            .index_select(&ix(ins)?, 1)?;
        let pick = |s: &SparseActs, v: &[usize]| SparseActs {
            values: v.iter().map(|&i| s.values[i]).collect(),
            indices: v.iter().map(|&i| s.indices[i].clone()).collect(),
            shape: s.shape.clone(),
        };
        let labels = |l: &[String], v: &[usize]| v.iter().map(|&i| l[i].clone()).collect();
        Ok(LatentGradients {
            gradients: g,
            inputs: pick(&self.inputs, ins),
            outputs: pick(&self.outputs, outs),
            clean_outputs: self.clean_outputs.clone(),
            input_labels: labels(&self.input_labels, ins),
            output_labels: labels(&self.output_labels, outs),
            outputs_per_sec: self.outputs_per_sec,
            title: format!("{} ({what})", self.title),
            inputs_as_rows: self.inputs_as_rows,
        })
    }

    /// A labelled heatmap (blue negative, red positive), oriented as ARENA plots it.
    pub fn heatmap(&self) -> Result<Svg> {
        let opts = HeatmapOptions {
            scale: ColorScale::Diverging,
            ..Default::default()
        };
        if self.inputs_as_rows {
            let t = self.gradients.t()?.contiguous()?;
            heatmap_with(
                &self.title,
                &t,
                &self.input_labels,
                &self.output_labels,
                &opts,
            )
        } else {
            heatmap_with(
                &self.title,
                &self.gradients,
                &self.output_labels,
                &self.input_labels,
                &opts,
            )
        }
    }
}

/// String tokens per row (the ids, for a model without a tokenizer).
pub(super) fn str_tokens(model: &HookedModel, tokens: &Tensor) -> Result<Vec<Vec<String>>> {
    let rows = tokens.to_dtype(DType::U32)?.to_vec2::<u32>()?;
    rows.iter().map(|r| id_strings(model, r)).collect()
}

pub(super) fn id_strings(model: &HookedModel, ids: &[u32]) -> Result<Vec<String>> {
    match model.tokenizer() {
        Ok(_) => model.ids_to_str_tokens(ids),
        Err(_) => Ok(ids.iter().map(|i| format!("#{i}")).collect()),
    }
}

pub(super) fn pos_label(b: usize, pos: usize, str_toks: &[Vec<String>]) -> String {
    let tok = str_toks
        .get(b)
        .and_then(|r| r.get(pos))
        .map_or("?", |s| s.as_str());
    if str_toks.len() > 1 {
        format!("[{b}] '{tok}' ({pos})")
    } else {
        format!("'{tok}' ({pos})")
    }
}

/// ARENA's labels: `F{layer}.{latent}, '{token}' ({pos})`.
pub(super) fn latent_labels(
    acts: &SparseActs,
    layer: usize,
    str_toks: &[Vec<String>],
) -> Vec<String> {
    acts.indices
        .iter()
        .map(|ix| {
            let (b, pos, latent) = (ix[0], ix[1], ix[ix.len() - 1]);
            format!("F{layer}.{latent}, {}", pos_label(b, pos, str_toks))
        })
        .collect()
}
