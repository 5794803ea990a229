//! The local stand-in task's data: default-corpus documents by package, mean-pooled hook
//! activations and SAE latents (SAEBench's `get_llm_activations(mask_bos_pad_eos_tokens=True)`,
//! `create_meaned_model_activations`, `get_sae_meaned_activations`).
use super::sparse::Rows;
use super::{ProbingOptions, Split};
use crate::data::{CorpusSplit, TextDataset};
use crate::error::{Error, Result};
use crate::hooks::HookName;
use crate::model::HookedModel;
use crate::rng::{derive_seed, permutation};
use crate::sae::Sae;
use candle_core::{DType, Device, Tensor};

/// Pooled features of the corpus-package task (see [`crate::eval::probing`]).
#[derive(Clone, Debug)]
pub struct PooledActivations {
    /// Task name.
    pub task: String,
    /// Class names (packages), in label order.
    pub classes: Vec<String>,
    /// Class of each document.
    pub labels: Vec<usize>,
    /// The documents' token rows (BOS first, `context` tokens each).
    pub tokens: Vec<Vec<u32>>,
    /// Per-token hook activations `[docs, context, d_in]`, zero at BOS/EOS/PAD positions (the
    /// input of SAEBench's pooling functions).
    pub token_acts: Tensor,
    pub(crate) resid: Rows,
    pub(crate) sae: Rows,
}

impl PooledActivations {
    /// Mean-pooled activations `[docs, d_in]`.
    pub fn resid(&self) -> Result<Tensor> {
        self.resid.tensor()
    }
    /// Mean-pooled SAE latents `[docs, d_sae]`.
    pub fn latents(&self) -> Result<Tensor> {
        self.sae.tensor()
    }
    /// Rows per class split into train / test for one seed (`train_fraction` of each class,
    /// rounded down, to train).
    pub fn split_rows(&self, train_fraction: f64, seed: u64) -> Split {
        self.split(train_fraction, seed)
    }
    pub(crate) fn split(&self, train_fraction: f64, seed: u64) -> Split {
        let nc = self.classes.len();
        let (mut tr, mut te) = (vec![vec![]; nc], vec![vec![]; nc]);
        for c in 0..nc {
            let rows: Vec<usize> = (0..self.labels.len())
                .filter(|i| self.labels[*i] == c)
                .collect();
            let perm = permutation(rows.len(), derive_seed(seed, &[c as u64, 1]));
            let n_tr = (rows.len() as f64 * train_fraction) as usize;
            for (j, p) in perm.iter().enumerate() {
                let r = rows[*p as usize];
                if j < n_tr {
                    tr[c].push(r)
                } else {
                    te[c].push(r)
                }
            }
        }
        (tr, te)
    }
}

/// Read the first `docs_per_class` default-corpus documents of at least `context` tokens per package (corpus
/// order; packages with fewer such documents are left out), run the model to the SAE's hook, pool.
pub fn pooled_activations(
    model: &HookedModel,
    sae: &Sae,
    opts: &ProbingOptions,
) -> Result<PooledActivations> {
    if opts.context < 2 || opts.docs_per_class < 2 || opts.batch_size == 0 {
        return Err(Error::Invalid(format!(
            "sparse_probing: need context ≥ 2, docs_per_class ≥ 2, batch_size ≥ 1 (got {}, {}, {})",
            opts.context, opts.docs_per_class, opts.batch_size
        )));
    }
    let tok = model.tokenizer()?;
    let ds = TextDataset::default_corpus_split(CorpusSplit::All)?;
    let mut classes: Vec<String> = vec![];
    let mut per_class: Vec<usize> = vec![];
    let (mut labels, mut tokens) = (vec![], vec![]);
    for i in 0..ds.len() {
        let (Some(src), Some(crate::data::Document::Text(text))) = (ds.source(i), ds.get(i)) else {
            continue;
        };
        let pkg = src.split(':').next().unwrap_or(src).to_string();
        let c = match classes.iter().position(|c| *c == pkg) {
            Some(c) => c,
            None => {
                classes.push(pkg);
                per_class.push(0);
                classes.len() - 1
            }
        };
        if per_class[c] >= opts.docs_per_class {
            continue;
        }
        let ids = tok.encode(text, true)?;
        if ids.len() < opts.context {
            continue;
        }
        per_class[c] += 1;
        labels.push(c);
        tokens.push(ids[..opts.context].to_vec());
    }
    if let Some(c) = per_class.iter().position(|n| *n < 2) {
        return Err(Error::Invalid(format!(
            "sparse_probing: class {} has {} documents of ≥ {} tokens; lower `context`",
            classes[c], per_class[c], opts.context
        )));
    }
    // Only classes with `docs_per_class` documents (SAEBench's `prepare_probe_data` asserts as
    // many negatives as positives, which needs classes of equal size).
    let full: Vec<usize> = (0..classes.len())
        .filter(|c| per_class[*c] >= opts.docs_per_class)
        .collect();
    if full.len() < 2 {
        return Err(Error::Invalid(format!(
            "sparse_probing: fewer than 2 packages have {} documents of ≥ {} tokens (counts {:?} \
             for {:?}); lower docs_per_class or context",
            opts.docs_per_class, opts.context, per_class, classes
        )));
    }
    let classes: Vec<String> = full.iter().map(|c| classes[*c].clone()).collect();
    let (labels, tokens): (Vec<usize>, Vec<Vec<u32>>) = labels
        .into_iter()
        .zip(tokens)
        .filter_map(|(c, t)| full.iter().position(|f| *f == c).map(|c| (c, t)))
        .unzip();
    let special = tok.special_ids();
    let hook = sae.hook_name().to_string();
    let stop = HookName::parse(&hook).stop_at_layer();
    let (mut acts, mut resid, mut lat) = (vec![], vec![], vec![]);
    for chunk in tokens.chunks(opts.batch_size) {
        let flat: Vec<u32> = chunk.iter().flatten().copied().collect();
        let batch = Tensor::from_vec(flat.clone(), (chunk.len(), opts.context), &Device::Cpu)?;
        let (_, cache) = model
            .run(&batch)
            .names(hook.as_str())
            .stop_at_layer(stop)
            .cache()?;
        let x = cache.get(hook.as_str())?.to_dtype(DType::F32)?;
        let keep: Vec<f32> = flat
            .iter()
            .map(|t| !special.contains(t) as u8 as f32)
            .collect();
        let keep = Tensor::from_vec(keep, (chunk.len(), opts.context, 1), &Device::Cpu)?;
        let x = x.broadcast_mul(&keep)?;
        let n_keep = keep.sum(1)?; // [b, 1]
        resid.push(x.sum(1)?.broadcast_div(&n_keep)?);
        let f = sae.encode(&x)?.to_dtype(DType::F32)?.broadcast_mul(&keep)?;
        lat.push(f.sum(1)?.broadcast_div(&n_keep)?);
        acts.push(x);
    }
    let rows = |v: Vec<Tensor>| -> Result<Rows> {
        let t = Tensor::cat(&v, 0)?;
        Ok(Rows {
            d: t.dim(1)?,
            data: t.flatten_all()?.to_vec1::<f32>()?,
        })
    };
    let token_acts = Tensor::cat(&acts, 0)?;
    Ok(PooledActivations {
        task: "corpus-package".into(),
        classes,
        labels,
        tokens,
        token_acts,
        resid: rows(resid)?,
        sae: rows(lat)?,
    })
}
