//! The trained SAE: inference weights (SAELens's `save_inference_model` processing, folded
//! activation scaling), the SAELens folder, the final save and plots.
use super::*;
use crate::sae::Architecture;

/// The SAELens version whose `cfg.json` layout saescope writes (and is tested against).
pub const SAELENS_FORMAT_VERSION: &str = "6.54.12";

impl Trainer {
    /// The inference SAE of the current state (SAELens's `save_inference_model`): the
    /// activation scaling factor folded in, topk norms folded, batchtopk → jumprelu, metadata
    /// with `l0` and `num_dead_features`, and the sparsity as `log10(sparsity + 1e-10)`.
    pub fn inference_sae(&self) -> Result<Sae> {
        let mut w = self.sae.params.snapshot();
        let mut arch_buf = self.sae.arch.buffers();
        let mut s_arch = crate::train::arch::make_arch(&self.cfg.sae)?;
        let bufs: HashMap<String, f64> = arch_buf.drain(..).collect();
        s_arch.load_buffers(&bufs)?;
        // Input scaling folds into W_enc, output scaling (the input's, for an SAE) into
        // W_dec, b_dec and the architecture's buffers.
        let s_out = match self.cfg.sae.is_transcoder() {
            true => self.target_scaling_factor,
            false => self.scaling_factor,
        };
        if let Some(s) = self.scaling_factor {
            w.insert("W_enc".into(), w["W_enc"].affine(s, 0.0)?);
        }
        if let Some(s) = s_out {
            w.insert("W_dec".into(), w["W_dec"].affine(1.0 / s, 0.0)?);
            w.insert("b_dec".into(), w["b_dec"].affine(1.0 / s, 0.0)?);
            s_arch.fold_activation_scale(s);
        }
        let (arch, w) = s_arch.inference_tensors(w)?;
        let arch = if self.cfg.sae.is_transcoder() {
            transcoder_architecture(arch)?
        } else {
            arch
        };
        let c = &self.cfg;
        let sc = &c.sae;
        let mut meta = Map::new();
        meta.insert("model_name".into(), c.model_name.clone().into());
        let st = &c.store;
        meta.insert("hook_name".into(), st.hook_name.clone().into());
        if let Some(out) = &st.hook_name_out {
            meta.insert("hook_name_out".into(), out.clone().into());
        }
        meta.insert("hook_head_index".into(), json!(st.hook_head_index));
        meta.insert("context_size".into(), st.context_size.into());
        meta.insert("prepend_bos".into(), st.prepend_bos.into());
        meta.insert("seqpos_slice".into(), json!(st.seqpos_slice));
        meta.insert(
            "model_from_pretrained_kwargs".into(),
            Value::Object(c.model_from_pretrained_kwargs_value()),
        );
        meta.insert("dataset_path".into(), st.dataset_path.clone().into());
        meta.insert("model_class_name".into(), c.model_class_name.clone().into());
        let sv = json!(st);
        for k in [
            "exclude_special_tokens",
            "sequence_separator_token",
            "disable_concat_sequences",
        ] {
            meta.insert(k.into(), sv[k].clone());
        }
        // The SAELens release whose folder format this is: without it SAELens treats the
        // config as pre-6.0 and drops `metadata.hook_name`.
        meta.insert("sae_lens_version".into(), SAELENS_FORMAT_VERSION.into());
        meta.insert(
            "sae_lens_training_version".into(),
            format!("saescope {}", env!("CARGO_PKG_VERSION")).into(),
        );
        meta.insert(
            "training_architecture".into(),
            sc.architecture.as_str().into(),
        );
        meta.insert(
            "training_architecture_details".into(),
            sc.training_details(),
        );
        if self.n_frac_active_samples > 0 {
            let l0: f64 = self.feature_sparsity().iter().map(|v| *v as f64).sum();
            meta.insert("l0".into(), l0.into());
            meta.insert(
                "num_dead_features".into(),
                self.dead_mask().iter().filter(|d| **d).count().into(),
            );
        }
        let mut cfg = json!({
            "architecture": arch.as_str(),
            "d_in": sc.d_in,
            "d_sae": sc.d_sae,
            "dtype": "float32",
            "device": "cpu",
            "apply_b_dec_to_input": sc.apply_b_dec_to_input,
            "normalize_activations": if self.scaling_factor.is_some() { "none" } else { sc.normalize_activations.as_str() },
            "reshape_activations": sc.reshape_activations,
            "metadata": Value::Object(meta),
        });
        if let Some(d_out) = sc.d_out {
            cfg["d_out"] = json!(d_out);
        }
        if arch == crate::sae::Architecture::TopK {
            cfg["k"] = json!(sc.k as u64);
            cfg["rescale_acts_by_decoder_norm"] = json!(sc.rescale_acts_by_decoder_norm);
        }
        let cfg = SaeConfig::from_json_value(cfg)?;
        Sae::from_config_and_tensors(cfg, w, &self.device)
    }

    /// `save_weights_dtype` as a dtype (`None`: float32, the weights as trained).
    fn save_weights_dtype(&self) -> Result<Option<DType>> {
        save_weights_dtype(self.cfg.save_weights_dtype.as_deref())
    }

    /// `log10(feature_sparsity + 1e-10)` (what SAELens saves as `sparsity.safetensors`).
    pub fn log_feature_sparsity(&self) -> Vec<f32> {
        self.feature_sparsity()
            .iter()
            .map(|s| (s + 1e-10).log10())
            .collect()
    }

    /// Write the inference SAE as a SAELens folder (+ `sparsity.safetensors`).
    pub fn save_inference_folder(&self, dir: &Path) -> Result<()> {
        let sae = self.inference_sae()?;
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        sae.save_to_disk(dir)?;
        if let Some(dtype) = self.save_weights_dtype()? {
            // The weights stored narrower; cfg.json keeps float32 (loaders cast back).
            let m: HashMap<String, Tensor> = sae
                .tensors()
                .into_iter()
                .map(|(n, t)| Ok((n.to_string(), t.to_dtype(dtype)?)))
                .collect::<Result<_>>()?;
            let p = dir.join("sae_weights.safetensors");
            let tmp = tmp_path(&p);
            candle_core::safetensors::save(&m, &tmp)?;
            std::fs::rename(&tmp, &p).map_err(|e| Error::io(&p, e))?;
        }
        if self.n_frac_active_samples > 0 {
            let sp = Tensor::from_vec(
                self.log_feature_sparsity(),
                self.cfg.sae.d_sae,
                &self.device,
            )?;
            let m: HashMap<String, Tensor> = [("sparsity".to_string(), sp)].into();
            let p = dir.join("sparsity.safetensors");
            let tmp = tmp_path(&p);
            candle_core::safetensors::save(&m, &tmp)?;
            std::fs::rename(&tmp, &p).map_err(|e| Error::io(&p, e))?;
        }
        let p = dir.join(RUNNER_CFG);
        let s = serde_json::to_string_pretty(&self.cfg.to_saelens_value())
            .map_err(|e| json_err(&p, e))?;
        write_atomic(&p, s.as_bytes())?;
        Ok(())
    }

    /// The final save: the SAE folder in `out_dir`, then plots.
    pub fn save_final(&self) -> Result<()> {
        let Some(dir) = self.out_dir.clone() else {
            return Ok(());
        };
        // Build in a temporary folder, then move each file into place.
        let tmp = dir.join(format!(".final.tmp{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        self.save_inference_folder(&tmp)?;
        for e in std::fs::read_dir(&tmp).map_err(|e| Error::io(&tmp, e))? {
            let e = e.map_err(|e| Error::io(&tmp, e))?;
            let to = dir.join(e.file_name());
            std::fs::rename(e.path(), &to).map_err(|er| Error::io(&to, er))?;
        }
        let _ = std::fs::remove_dir_all(&tmp);
        if self.cfg.plots {
            if let Err(e) = crate::train::plots::write_plots(&dir, &self.log_feature_sparsity()) {
                if self.cfg.verbose {
                    eprintln!("saescope train: plots skipped: {e}");
                }
            }
        }
        Ok(())
    }
}

/// A `save_weights_dtype` value as a dtype to cast to (`None` for float32 / unset).
pub(crate) fn save_weights_dtype(name: Option<&str>) -> Result<Option<DType>> {
    Ok(match name {
        None | Some("float32") => None,
        Some("float16") => Some(DType::F16),
        Some("bfloat16") => Some(DType::BF16),
        Some(d) => {
            return Err(Error::Config(format!(
                "save_weights_dtype `{d}` is not supported; use float32, float16 or bfloat16"
            )))
        }
    })
}

/// The transcoder form of a trained SAE's inference architecture: ReLU (`standard`) →
/// `transcoder`, `jumprelu` (also batchtopk's, with its threshold) → `jumprelu_transcoder`.
fn transcoder_architecture(arch: Architecture) -> Result<Architecture> {
    match arch {
        Architecture::Standard => Ok(Architecture::Transcoder),
        Architecture::JumpRelu => Ok(Architecture::JumpReluTranscoder),
        a => Err(Error::Config(format!(
            "a `{a}` SAE has no transcoder form (SAELens has ReLU and JumpReLU transcoders)"
        ))),
    }
}
