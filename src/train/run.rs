//! SAELens's `LanguageModelSAETrainingRunner(cfg).run()` as a library call: [`run`] builds the
//! activation source a [`RunnerConfig`] asks for ([`source_for`]) and trains, writing the run
//! folder. `saescope train` is this function behind a command line.
use super::act_cache::CachedActivations;
use super::activations::ActivationStore;
use super::config::RunnerConfig;
use super::synthetic::SyntheticSource;
use super::trainer::Trainer;
use super::ActivationSource;
use crate::error::{Error, Result};
use crate::model::{HookedModel, LoadOptions};
use crate::sae::Sae;
use std::path::PathBuf;
use std::sync::Arc;

impl RunnerConfig {
    /// The model SAELens trains on: `from_pretrained_no_processing(model_name,
    /// **model_from_pretrained_kwargs)` (the processing flags among the kwargs are honoured).
    pub fn load_model(&self) -> Result<HookedModel> {
        let mut opts = LoadOptions::no_processing();
        if let Some(kw) = &self.model_from_pretrained_kwargs {
            let flag = |k: &str| kw.get(k).and_then(|v| v.as_bool());
            let p = &mut opts.processing;
            p.fold_ln = flag("fold_ln").unwrap_or(p.fold_ln);
            p.center_writing_weights =
                flag("center_writing_weights").unwrap_or(p.center_writing_weights);
            p.center_unembed = flag("center_unembed").unwrap_or(p.center_unembed);
            p.fold_value_biases = flag("fold_value_biases").unwrap_or(p.fold_value_biases);
        }
        HookedModel::from_pretrained_with(&self.model_name, &opts)
    }
}

/// The activation source `cfg` asks for: synthetic activations (`synthetic`), an on-disk
/// activation cache (`use_cached_activations` + `cached_activations_path`, written by
/// `saescope cache-activations`), or a live activation store running the model over the
/// dataset (`dataset_path`; empty = the default corpus) through SAELens's mixing buffer.
pub fn source_for(cfg: &RunnerConfig) -> Result<Box<dyn ActivationSource>> {
    if cfg.sae.is_transcoder() {
        return Err(Error::Config(
            "a transcoder config (sae.d_out, hook_name_out) trains with train::run_transcoders / `saescope train-transcoders`, which feeds (input, target) pairs from one model pass".into(),
        ));
    }
    if let Some(s) = &cfg.synthetic {
        return Ok(Box::new(SyntheticSource::new(s, cfg.sae.d_in)?));
    }
    let d_in_mismatch = |what: String, d: usize| {
        Error::Config(format!(
            "{what} has width {d} but the SAE config has d_in {}",
            cfg.sae.d_in
        ))
    };
    if cfg.use_cached_activations {
        let path = cfg.cached_activations_path.as_deref().ok_or_else(|| {
            Error::Config("use_cached_activations is set but cached_activations_path is not".into())
        })?;
        let src = CachedActivations::open(path, Some(cfg.store.seed))?;
        if src.d_in() != cfg.sae.d_in {
            return Err(d_in_mismatch(
                format!("the activation cache {path}"),
                src.d_in(),
            ));
        }
        return Ok(Box::new(src));
    }
    let store = ActivationStore::new(Arc::new(cfg.load_model()?), cfg.store.clone())?;
    if store.d_in() != cfg.sae.d_in {
        return Err(d_in_mismatch(
            format!("hook `{}`", cfg.store.hook_name),
            store.d_in(),
        ));
    }
    Ok(Box::new(store))
}

/// Train the SAE `cfg` describes (SAELens's `LanguageModelSAETrainingRunner(cfg).run()`): the
/// run folder `output_path` (if set) gets the config, checkpoints, `metrics.jsonl`, and at the
/// end the SAE in SAELens's folder format (as SAELens, an earlier run there is overwritten;
/// `saescope train` refuses and points to `saescope resume`).
pub fn run(cfg: &RunnerConfig) -> Result<Sae> {
    cfg.validate()?;
    let mut source = source_for(cfg)?;
    Trainer::new(cfg, cfg.output_path.clone().map(PathBuf::from))?.fit(source.as_mut())
}
