//! Loading, building and saving `Sae`s: SAELens folders and the other formats (through
//! `loaders`), the pretrained directory, tensors, dtype and device changes.
use super::arch::ArchImpl;
use super::*;

/// The SAE shipped with saescope: a TopK (k = 48) SAE, 576 → 4608, on SmolLM2-135M-Instruct's
/// `blocks.15.hook_resid_post`, trained by `scripts/train_default_sae.sh` (evals in its
/// `eval.json` and the README).
pub const SHIPPED_SAE: &str = "data/saes/smollm2-l15-resid-post-topk48";

/// [`SHIPPED_SAE`] inside this crate's source tree (where `cargo` and evcxr's `:dep` find it).
pub fn shipped_sae_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(SHIPPED_SAE)
}

impl Sae {
    /// The shipped SmolLM2 SAE ([`SHIPPED_SAE`]).
    pub fn shipped() -> Result<Self> {
        Self::load(&shipped_sae_dir())
    }

    // ---------------------------------------------------------------------------------------
    // Loading

    /// SAELens folder: `cfg.json` + `sae_weights.safetensors` (+ optional
    /// `sparsity.safetensors`, see [`Sae::sparsity`]); dtype from the config.
    pub fn load_from_disk(dir: &Path) -> Result<Self> {
        Self::load_from_disk_with(dir, &SaeLoadOptions::default())
    }

    /// [`Sae::load_from_disk`] with options (dtype, device, `fold_w_dec_norm`, overrides).
    pub fn load_from_disk_with(dir: &Path, opts: &SaeLoadOptions) -> Result<Self> {
        let mut o = opts.clone();
        o.format = Some(SaeFormat::SaeLens);
        Self::load_with(dir, &o)
    }

    /// Load an SAE folder (or a file in it) of any supported format, detected from its files:
    /// SAELens, Gemma Scope (`params.npz`), Gemma Scope 2 (`params.safetensors`), sparsify
    /// (`sae.safetensors` + `cfg.json`), dictionary_learning (`ae.pt` + `config.json`), Llama
    /// Scope (`hyperparams.json`).
    pub fn load(path: &Path) -> Result<Self> {
        Self::load_with(path, &SaeLoadOptions::default())
    }

    /// [`Sae::load`] with options.
    pub fn load_with(path: &Path, opts: &SaeLoadOptions) -> Result<Self> {
        let dir = if path.is_file() {
            path.parent().unwrap_or(Path::new(".")).to_path_buf()
        } else if path.is_dir() {
            path.to_path_buf()
        } else {
            return Err(Error::sae_file(path, "no such file or folder"));
        };
        let format = match opts.format {
            Some(f) => f,
            None => loaders::detect_format(&dir)?,
        };
        let abs = std::path::absolute(&dir).unwrap_or(dir.clone());
        let repo_id = opts
            .repo_id
            .clone()
            .or_else(|| loaders::repo_id_from_path(&abs))
            .or_else(|| {
                // A folder named like the repo (e.g. `.../gemma-scope-2b-pt-res/layer_3/...`).
                abs.components().find_map(|c| {
                    let s = c.as_os_str().to_string_lossy();
                    s.starts_with("gemma-scope").then(|| s.into_owned())
                })
            })
            .unwrap_or_default();
        // The SAELens loaders parse the folder name (layer, width, ...): give them the last
        // few path components, not the whole absolute path.
        let comps: Vec<String> = abs
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .filter(|c| c != "/")
            .collect();
        let hint = comps[comps.len().saturating_sub(4)..].join("/");
        let mut overrides = opts.cfg_overrides.clone();
        let dtype = match (opts.dtype, format) {
            (Some(d), _) => Some(d),
            (None, SaeFormat::SaeLens) => None,
            (None, _) => Some(DType::F32),
        };
        if let Some(d) = dtype {
            overrides.insert("dtype".into(), config::dtype_name(d).into());
        }
        let src = loaders::LocalDir(dir.clone());
        let ctx = loaders::LoadCtx {
            src: &src,
            repo_id: &repo_id,
            folder: "",
            hint: &hint,
            overrides: &overrides,
        };
        let raw = (loaders::loader_for(format.conversion_func())?)(&ctx)?;
        let mut sae = Self::from_raw(raw, &opts.device)?;
        if opts.fold_w_dec_norm {
            sae.fold_w_dec_norm()?;
        }
        Ok(sae)
    }

    /// A pretrained SAE by release and id (SAELens's `SAE.from_pretrained`): looks the release
    /// up in the embedded pretrained directory (`pretrained_saes.json`; a release name that is
    /// not there but contains `/` is taken as a hub repo id with `sae_id` as the folder),
    /// downloads through the hub cache (`LoadOptions`' cache / endpoint / offline / revision,
    /// as for models), converts with the release's `conversion_func`, applies its
    /// `config_overrides`, sets `metadata.neuronpedia_id`, and folds the directory's
    /// `norm_scaling_factor` into the weights for `expected_average_only_in` SAEs. float32, on
    /// `opts.device`.
    ///
    /// ```no_run
    /// # use saescope::prelude::*;
    /// let sae = Sae::from_pretrained("gpt2-small-res-jb", "blocks.7.hook_resid_pre")?;
    /// # Ok::<(), saescope::Error>(())
    /// ```
    pub fn from_pretrained(release: &str, sae_id: &str) -> Result<Self> {
        Self::from_pretrained_hub(release, sae_id, &LoadOptions::default())
    }

    /// [`Sae::from_pretrained`] with hub settings (cache, endpoint, offline, revision, device).
    pub fn from_pretrained_hub(release: &str, sae_id: &str, opts: &LoadOptions) -> Result<Self> {
        let so = SaeLoadOptions {
            device: opts.device.clone(),
            ..Default::default()
        };
        Self::from_pretrained_with(release, sae_id, opts, &so)
    }

    /// [`Sae::from_pretrained`] with SAE options (dtype, device, `fold_w_dec_norm`, overrides;
    /// `format` and `repo_id` are ignored).
    pub fn from_pretrained_with(
        release: &str,
        sae_id: &str,
        hub: &LoadOptions,
        opts: &SaeLoadOptions,
    ) -> Result<Self> {
        pretrained::load(release, sae_id, hub, opts)
    }

    /// An SAE from a config and tensors under SAELens's names (`W_enc`, `W_dec`, `b_enc`,
    /// `b_dec`, `threshold`, `b_gate`, `b_mag`, `r_mag`, `W_skip`), checked against the
    /// config. The tensors are cast to the config's dtype.
    pub fn from_config_and_tensors(
        cfg: SaeConfig,
        tensors: HashMap<String, Tensor>,
        device: &Device,
    ) -> Result<Self> {
        let raw = loaders::RawSae {
            cfg: match cfg.to_json_value() {
                Value::Object(m) => m,
                _ => Map::new(),
            },
            tensors: tensors.into_iter().collect(),
            sparsity: None,
            weights_path: PathBuf::from("<tensors>"),
            cfg_path: None,
        };
        let mut sae = Self::from_raw(raw, device)?;
        sae.cfg.extra = cfg.extra;
        Ok(sae)
    }

    /// Convert a loader's output: config conversion, dtype cast, SAELens's state-dict fixes
    /// (`scaling_factor`, `log_threshold`, batchtopk → jumprelu), architecture and shape
    /// checks.
    pub(crate) fn from_raw(raw: loaders::RawSae, device: &Device) -> Result<Self> {
        // A tensor operation that fails on what a file holds (a shape or dtype the conversion
        // cannot use) is an error about that file.
        let path = raw.weights_path.clone();
        let from_file = raw.cfg_path.is_some();
        Self::convert_raw(raw, device).map_err(|e| match e {
            Error::Candle(e) if from_file => Error::sae_file(&path, e),
            e => e,
        })
    }

    fn convert_raw(raw: loaders::RawSae, device: &Device) -> Result<Self> {
        let path = raw.weights_path.clone();
        // Config errors name the file the config came from.
        let cfg_file = raw.cfg_path.clone();
        let in_cfg_file = |e: Error| match (e, &cfg_file) {
            (Error::SaeConfig(reason), Some(p)) => Error::sae_file(p, reason),
            (e, _) => e,
        };
        let mut cfg = SaeConfig::from_json_value(Value::Object(raw.cfg)).map_err(in_cfg_file)?;
        let dtype = cfg.dtype().map_err(in_cfg_file)?;
        // In shape messages: "the config" or "the config in cfg.json".
        let cfg_name = match &cfg_file {
            Some(p) if *p != path => format!(
                "the config in {}",
                p.file_name().unwrap_or_default().to_string_lossy()
            ),
            _ => "the config".to_string(),
        };
        cfg.dtype = config::dtype_name(dtype).to_string();
        cfg.device = if device.is_cuda() {
            "cuda"
        } else if device.is_metal() {
            "mps"
        } else {
            "cpu"
        }
        .to_string();
        // Work in f32 (or f64) for the conversions, cast at the end.
        let work = if dtype == DType::F64 {
            DType::F64
        } else {
            DType::F32
        };
        let mut t = loaders::files::cast_all(raw.tensors, work, device)?;

        // `scaling_factor` (SAELens <= 5 finetuning scaling): all ones → dropped; otherwise
        // folded into W_dec's rows (decode computed `(f ⊙ s) W_dec`).
        if let Some(s) = t.remove("scaling_factor") {
            let ones = s.ones_like()?;
            let diff = (s.clone() - ones)?.abs()?.flatten_all()?.max(0)?;
            let diff = diff.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            if diff > 1e-5 {
                let w_dec = loaders::files::take(&mut t, "W_dec", &path)?;
                t.insert(
                    "W_dec".into(),
                    w_dec.broadcast_mul(&s.reshape((s.elem_count(), 1))?)?,
                );
            }
        }
        // Old jumprelu checkpoints: log_threshold → threshold.
        if let Some(lt) = t.remove("log_threshold") {
            t.insert("threshold".into(), lt.exp()?);
        }
        // batchtopk / matryoshka_batchtopk training checkpoints → jumprelu (save_inference_model).
        if matches!(
            cfg.architecture,
            Architecture::BatchTopK | Architecture::MatryoshkaBatchTopK
        ) {
            if cfg.rescale_acts_by_decoder_norm {
                let mut w = weights_from(&mut t, &path)?;
                arch::fold_base(&mut w)?;
                t.insert("W_enc".into(), w.w_enc);
                t.insert("W_dec".into(), w.w_dec);
                t.insert("b_dec".into(), w.b_dec);
                if let Some(b) = w.b_enc {
                    t.insert("b_enc".into(), b);
                }
            }
            if !t.contains_key("threshold") {
                // One threshold per latent: W_enc's width (the file's, not the config's claim;
                // a mismatch with the config is reported below).
                let width = t.get("W_enc").and_then(|w| w.dims().last().copied());
                let th = t.remove("topk_threshold").ok_or_else(|| {
                    Error::sae_file(
                        &path,
                        format!(
                            "architecture mismatch: {cfg_name} says `{}`, which needs `threshold` \
                             or `topk_threshold`; the file has: {}",
                            cfg.architecture,
                            t.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    )
                })?;
                let v = th
                    .flatten_all()?
                    .to_dtype(DType::F64)?
                    .to_vec1::<f64>()?
                    .first()
                    .copied()
                    .ok_or_else(|| Error::sae_file(&path, "topk_threshold is empty"))?;
                t.insert(
                    "threshold".into(),
                    Tensor::full(v, width.unwrap_or(0), device)?.to_dtype(work)?,
                );
            }
            t.remove("topk_threshold");
            cfg.architecture = Architecture::JumpRelu;
            cfg.k = None;
            cfg.rescale_acts_by_decoder_norm = false;
        }

        let arch = SaeArch::for_config(&cfg);
        // Transcoders without d_out: take it from W_dec (SAELens would default to 768).
        if cfg.architecture.is_transcoder() && cfg.d_out.is_none() {
            cfg.d_out = t.get("W_dec").and_then(|w| w.dims().get(1).copied());
        }
        check_tensor_set(&t, &*arch, &cfg, &cfg_name, &path)?;
        let mut w = weights_from(&mut t, &path)?;
        check_shapes(&w, &cfg, &cfg_name, &path)?;
        // Final dtype.
        if dtype != work {
            w = cast_weights(&w, dtype)?;
        }
        let sparsity = match raw.sparsity {
            Some((s, sparsity_path)) => {
                let s = s.to_device(device)?.to_dtype(DType::F32)?;
                if s.dims() != [cfg.d_sae] {
                    return Err(Error::sae_file(
                        &sparsity_path,
                        format!(
                            "sparsity should have shape [{}] (d_sae), has {:?}",
                            cfg.d_sae,
                            s.dims()
                        ),
                    ));
                }
                Some(s)
            }
            None => None,
        };
        Ok(Sae {
            cfg,
            w,
            sparsity,
            dtype,
            device: device.clone(),
        })
    }

    /// Write a SAELens folder (`cfg.json` + `sae_weights.safetensors`, and
    /// `sparsity.safetensors` if the SAE has one) readable by SAELens's `load_from_disk`.
    pub fn save_to_disk(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let cfg = serde_json::to_string(&self.cfg.to_json_value()).unwrap_or_default();
        let p = dir.join(loaders::saelens::CFG);
        std::fs::write(&p, cfg).map_err(|e| Error::io(&p, e))?;
        let map: HashMap<String, Tensor> = self
            .w
            .named()
            .into_iter()
            .map(|(n, t)| (n.to_string(), t.clone()))
            .collect();
        let p = dir.join(loaders::saelens::WEIGHTS);
        candle_core::safetensors::save(&map, &p)?;
        if let Some(s) = &self.sparsity {
            let p = dir.join(loaders::saelens::SPARSITY);
            let m: HashMap<String, Tensor> = [("sparsity".to_string(), s.clone())].into();
            candle_core::safetensors::save(&m, &p)?;
        }
        Ok(())
    }

    /// A copy with another dtype (weights cast; `cfg.dtype` updated).
    pub fn to_dtype(&self, dtype: DType) -> Result<Self> {
        let mut s = self.clone();
        s.w = cast_weights(&self.w, dtype)?;
        s.dtype = dtype;
        s.cfg.dtype = config::dtype_name(dtype).to_string();
        Ok(s)
    }

    /// A copy on another device.
    pub fn to_device(&self, device: &Device) -> Result<Self> {
        let mut s = self.clone();
        s.w = map_weights(&self.w, |t| Ok(t.to_device(device)?))?;
        s.sparsity = self
            .sparsity
            .as_ref()
            .map(|t| t.to_device(device))
            .transpose()?;
        s.device = device.clone();
        Ok(s)
    }
}

/// Which architectures own which tensor names (for "architecture mismatch" hints).
fn owner_hint(name: &str) -> &'static str {
    match name {
        "threshold" => " (a JumpReLU tensor)",
        "b_gate" | "b_mag" | "r_mag" => " (a gated-SAE tensor)",
        "W_skip" => " (a skip-transcoder tensor)",
        "b_enc" => " (gated SAEs have no b_enc)",
        _ => "",
    }
}

fn check_tensor_set(
    t: &loaders::TensorMap,
    arch: &dyn ArchImpl,
    cfg: &SaeConfig,
    cfg_name: &str,
    path: &Path,
) -> Result<()> {
    let mut expected: Vec<&str> = vec!["W_enc", "W_dec", "b_dec"];
    expected.extend(arch.extra_tensors());
    let missing: Vec<&str> = expected
        .iter()
        .copied()
        .filter(|n| !t.contains_key(*n))
        .collect();
    let unexpected: Vec<String> = t
        .keys()
        .filter(|k| !expected.contains(&k.as_str()))
        .map(|k| format!("{k}{}", owner_hint(k)))
        .collect();
    if missing.is_empty() && unexpected.is_empty() {
        return Ok(());
    }
    let mut msg = format!(
        "architecture mismatch: {cfg_name} says `{}`, which has tensors {}",
        cfg.architecture,
        expected.join(", ")
    );
    if !missing.is_empty() {
        msg.push_str(&format!("; missing: {}", missing.join(", ")));
    }
    if !unexpected.is_empty() {
        msg.push_str(&format!("; unexpected: {}", unexpected.join(", ")));
    }
    msg.push_str(&format!(
        "; the file has: {}",
        t.keys().cloned().collect::<Vec<_>>().join(", ")
    ));
    Err(Error::sae_file(path, msg))
}

fn weights_from(t: &mut loaders::TensorMap, path: &Path) -> Result<SaeWeights> {
    let take = |t: &mut loaders::TensorMap, n: &str| loaders::files::take(t, n, path);
    let w = SaeWeights {
        w_enc: take(t, "W_enc")?,
        w_dec: take(t, "W_dec")?,
        b_dec: take(t, "b_dec")?,
        b_enc: t.remove("b_enc"),
        threshold: t.remove("threshold"),
        b_gate: t.remove("b_gate"),
        b_mag: t.remove("b_mag"),
        r_mag: t.remove("r_mag"),
        w_skip: t.remove("W_skip"),
    };
    Ok(w)
}

fn check_shapes(w: &SaeWeights, cfg: &SaeConfig, cfg_name: &str, path: &Path) -> Result<()> {
    let (d_in, d_sae, d_out) = (cfg.d_in, cfg.d_sae, cfg.d_out());
    let check = |name: &str, t: &Tensor, want: &[usize]| -> Result<()> {
        if t.dims() == want {
            return Ok(());
        }
        let mut hint = String::new();
        if t.rank() == 2 && want.len() == 2 && t.dims()[0] == want[1] && t.dims()[1] == want[0] {
            hint = " (it looks transposed)".into();
        }
        Err(Error::sae_file(
            path,
            format!(
                "tensor `{name}` has shape {:?}, but {cfg_name} (d_in = {d_in}, d_sae = {d_sae}{}) \
                 needs {want:?}{hint}",
                t.dims(),
                if cfg.architecture.is_transcoder() {
                    format!(", d_out = {d_out}")
                } else {
                    String::new()
                }
            ),
        ))
    };
    check("W_enc", &w.w_enc, &[d_in, d_sae])?;
    check("W_dec", &w.w_dec, &[d_sae, d_out])?;
    check("b_dec", &w.b_dec, &[d_out])?;
    for (n, t) in [
        ("b_enc", &w.b_enc),
        ("threshold", &w.threshold),
        ("b_gate", &w.b_gate),
        ("b_mag", &w.b_mag),
        ("r_mag", &w.r_mag),
    ] {
        if let Some(t) = t {
            check(n, t, &[d_sae])?;
        }
    }
    if let Some(t) = &w.w_skip {
        check("W_skip", t, &[d_out, d_in])?;
    }
    Ok(())
}

pub(super) fn map_weights(
    w: &SaeWeights,
    f: impl Fn(&Tensor) -> Result<Tensor>,
) -> Result<SaeWeights> {
    let o = |t: &Option<Tensor>| t.as_ref().map(&f).transpose();
    Ok(SaeWeights {
        w_enc: f(&w.w_enc)?,
        w_dec: f(&w.w_dec)?,
        b_dec: f(&w.b_dec)?,
        b_enc: o(&w.b_enc)?,
        threshold: o(&w.threshold)?,
        b_gate: o(&w.b_gate)?,
        b_mag: o(&w.b_mag)?,
        r_mag: o(&w.r_mag)?,
        w_skip: o(&w.w_skip)?,
    })
}

pub(super) fn cast_weights(w: &SaeWeights, dtype: DType) -> Result<SaeWeights> {
    map_weights(w, |t| Ok(t.to_dtype(dtype)?.contiguous()?))
}
