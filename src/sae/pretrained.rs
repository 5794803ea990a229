//! The pretrained SAE directory (SAELens's `pretrained_saes.yaml`, embedded as
//! `pretrained_saes.json`) and [`crate::sae::Sae::from_pretrained`].
//!
//! Layout: `{release: {repo_id, model, conversion_func, config_overrides, saes: [{id, path,
//! neuronpedia, l0, variance_explained, norm_scaling_factor}]}}`.
//!
//! Resolution, as SAELens: a known release gives `repo_id` and `folder = saes[id].path`; a
//! release that is not in the directory but contains `/` is a hub repo id with `sae_id` as the
//! folder (SAELens format). The release's `config_overrides` are merged into the config, and
//! `neuronpedia` becomes `metadata.neuronpedia_id`. For `expected_average_only_in` SAEs the
//! entry's `norm_scaling_factor` is folded into the weights
//! ([`crate::sae::Sae::fold_activation_norm_scaling_factor`]); without one the SAE is left
//! as is (SAELens only warns).
use super::loaders::{self, HubRepo, LoadCtx};
use super::{NormalizeActivations, Sae, SaeLoadOptions};
use crate::error::{Error, Result};
use crate::model::hub::RepoFetcher;
use crate::model::LoadOptions;
use candle_core::DType;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::OnceLock;

const DIRECTORY_JSON: &str = include_str!("pretrained_saes.json");

/// One SAE of a release.
#[derive(Clone, Debug, Deserialize)]
pub struct PretrainedSaeInfo {
    /// The SAE id within the release (SAELens `sae_id`, e.g. `blocks.8.hook_resid_pre`).
    pub id: String,
    /// The folder (or file) inside the release's repo.
    pub path: String,
    /// Neuronpedia id (e.g. `gpt2-small/8-res-jb`); becomes `metadata.neuronpedia_id` on load.
    #[serde(default)]
    pub neuronpedia: Option<String>,
    /// L0 reported in the directory (informational, not recomputed).
    #[serde(default)]
    pub l0: Option<f64>,
    /// Variance explained reported in the directory (informational, not recomputed).
    #[serde(default)]
    pub variance_explained: Option<f64>,
    /// Activation norm scaling factor folded into the weights on load for
    /// `expected_average_only_in` SAEs.
    #[serde(default)]
    pub norm_scaling_factor: Option<f64>,
}

/// A release: one hub repo, one conversion, many SAEs.
#[derive(Clone, Debug, Deserialize)]
pub struct PretrainedSaeRelease {
    /// The release name (the directory key).
    #[serde(skip)]
    pub name: String,
    /// Hugging Face hub repo that holds the release's SAEs.
    pub repo_id: String,
    /// The TransformerLens model name.
    #[serde(default)]
    pub model: String,
    /// SAELens loader name (`None` = `sae_lens`).
    #[serde(default)]
    pub conversion_func: Option<String>,
    /// Keys merged into every SAE config of the release before conversion.
    #[serde(default)]
    pub config_overrides: Option<Map<String, Value>>,
    /// The release's SAEs, in directory order.
    #[serde(default)]
    pub saes: Vec<PretrainedSaeInfo>,
}

impl PretrainedSaeRelease {
    /// The SAE ids of this release, in directory order.
    pub fn sae_ids(&self) -> Vec<&str> {
        self.saes.iter().map(|s| s.id.as_str()).collect()
    }
    /// One SAE by id (an error listing the nearest ids if unknown).
    pub fn sae(&self, sae_id: &str) -> Result<&PretrainedSaeInfo> {
        self.saes.iter().find(|s| s.id == sae_id).ok_or_else(|| {
            let ids = self.sae_ids();
            let nearest = crate::hooks::nearest_names(sae_id, ids.iter().copied(), 5);
            let shown: Vec<&str> = ids.iter().copied().take(10).collect();
            Error::UnknownSae {
                what: format!("id `{sae_id}` in release `{}`", self.name),
                hint: format!(
                    "nearest ids: {}; the release has {} SAEs: {}{}",
                    nearest.join(", "),
                    ids.len(),
                    shown.join(", "),
                    if ids.len() > shown.len() { ", ..." } else { "" }
                ),
            }
        })
    }
    /// The loader name (`sae_lens` when unset).
    pub fn conversion(&self) -> &str {
        self.conversion_func.as_deref().unwrap_or("sae_lens")
    }
}

type Directory = BTreeMap<String, PretrainedSaeRelease>;

fn directory() -> Result<&'static Directory> {
    static DIR: OnceLock<std::result::Result<Directory, String>> = OnceLock::new();
    DIR.get_or_init(|| {
        let raw: Map<String, Value> = serde_json::from_str(DIRECTORY_JSON)
            .map_err(|e| format!("the embedded pretrained_saes.json is invalid: {e}"))?;
        let mut d = Directory::new();
        // Keys starting with `_` (e.g. `_source`) describe the file, they are no releases.
        for (k, v) in raw.into_iter().filter(|(k, _)| !k.starts_with('_')) {
            let mut r: PretrainedSaeRelease = serde_json::from_value(v).map_err(|e| {
                format!("the embedded pretrained_saes.json: release `{k}` is invalid: {e}")
            })?;
            r.name = k.clone();
            d.insert(k, r);
        }
        Ok(d)
    })
    .as_ref()
    .map_err(|e| Error::SaeConfig(e.clone()))
}

/// Every release in the directory, by name.
pub fn releases() -> Result<Vec<&'static PretrainedSaeRelease>> {
    Ok(directory()?.values().collect())
}

/// The names of every release.
pub fn release_names() -> Result<Vec<&'static str>> {
    Ok(directory()?.keys().map(String::as_str).collect())
}

/// A release by name (an error listing the nearest release names if unknown).
pub fn release(name: &str) -> Result<&'static PretrainedSaeRelease> {
    let d = directory()?;
    d.get(name).ok_or_else(|| {
        let nearest = crate::hooks::nearest_names(name, d.keys().map(String::as_str), 6);
        Error::UnknownSae {
            what: format!("release `{name}`"),
            hint: format!(
                "nearest releases: {} ({} releases in the directory; list them with \
                 saescope::sae::pretrained::release_names()); a hub repo id (`org/name`) is \
                 also accepted, with the SAE's folder as the id",
                nearest.join(", "),
                d.len()
            ),
        }
    })
}

/// The releases whose `repo_id` is `repo_id`.
pub fn releases_for_repo(repo_id: &str) -> Result<Vec<&'static str>> {
    Ok(directory()?
        .values()
        .filter(|r| r.repo_id == repo_id)
        .map(|r| r.name.as_str())
        .collect())
}

/// What `from_pretrained` resolves `(release, sae_id)` to.
pub(crate) struct Resolved {
    pub repo_id: String,
    pub folder: String,
    pub conversion: String,
    pub overrides: Map<String, Value>,
    pub norm_scaling_factor: Option<f64>,
}

pub(crate) fn resolve(release_name: &str, sae_id: &str) -> Result<Resolved> {
    let d = directory()?;
    match d.get(release_name) {
        Some(r) => {
            let info = r.sae(sae_id)?;
            let mut overrides = r.config_overrides.clone().unwrap_or_default();
            overrides.insert(
                "neuronpedia_id".into(),
                info.neuronpedia
                    .clone()
                    .map(Value::String)
                    .unwrap_or(Value::Null),
            );
            Ok(Resolved {
                repo_id: r.repo_id.clone(),
                folder: info.path.clone(),
                conversion: r.conversion().to_string(),
                overrides,
                norm_scaling_factor: info.norm_scaling_factor,
            })
        }
        None if release_name.contains('/') => Ok(Resolved {
            repo_id: release_name.to_string(),
            folder: sae_id.to_string(),
            conversion: "sae_lens".to_string(),
            overrides: Map::new(),
            norm_scaling_factor: None,
        }),
        None => Err(release(release_name)
            .err()
            .unwrap_or_else(|| Error::UnknownSae {
                what: format!("release `{release_name}`"),
                hint: String::new(),
            })),
    }
}

pub(crate) fn load(
    release_name: &str,
    sae_id: &str,
    hub: &LoadOptions,
    opts: &SaeLoadOptions,
) -> Result<Sae> {
    let Resolved {
        repo_id,
        folder,
        conversion,
        mut overrides,
        norm_scaling_factor,
    } = resolve(release_name, sae_id)?;
    let loader = loaders::loader_for(&conversion)?;
    for (k, v) in &opts.cfg_overrides {
        overrides.insert(k.clone(), v.clone());
    }
    overrides.insert(
        "dtype".into(),
        super::config::dtype_name(opts.dtype.unwrap_or(DType::F32)).into(),
    );
    let src = HubRepo(RepoFetcher::new(&repo_id, hub)?);
    let ctx = LoadCtx {
        src: &src,
        repo_id: &repo_id,
        folder: &folder,
        hint: &folder,
        overrides: &overrides,
    };
    let raw = loader(&ctx)?;
    let mut sae = Sae::from_raw(raw, &opts.device)?;
    if sae.cfg().normalize_activations == NormalizeActivations::ExpectedAverageOnlyIn {
        if let Some(s) = norm_scaling_factor {
            sae.fold_activation_norm_scaling_factor(s)?;
        }
    }
    if opts.fold_w_dec_norm {
        sae.fold_w_dec_norm()?;
    }
    Ok(sae)
}
