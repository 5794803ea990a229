//! Resumable checkpoints: everything a run needs to continue bit for bit (parameters, Adam
//! moments, counters, scaling factor, architecture buffers, RNG, the source's position),
//! written atomically.
use super::*;

impl Trainer {
    pub(super) fn checkpoint_if_needed(&mut self) -> Result<()> {
        if let Some(&t) = self.checkpoint_thresholds.first() {
            if self.n_training_samples > t {
                self.checkpoint_thresholds.remove(0);
                let base = match (&self.cfg.checkpoint_path, &self.out_dir) {
                    (Some(p), _) => PathBuf::from(p),
                    (None, Some(d)) => d.join("checkpoints"),
                    (None, None) => return Ok(()),
                };
                let dir = base.join(self.n_training_samples.to_string());
                self.save_inference_folder(&dir)?;
            }
        }
        Ok(())
    }

    /// Everything needed to continue exactly: one safetensors file, written atomically.
    pub fn save_checkpoint(&self, source: &dyn ActivationSource) -> Result<()> {
        let Some(dir) = &self.out_dir else {
            return Ok(());
        };
        self.save_checkpoint_to(&dir.join(CHECKPOINT), source.state()?)
    }

    /// [`Trainer::save_checkpoint`] to `path`, with the activation source's state given
    /// (stored under `source/`; [`Trainer::load_checkpoint_from`] hands it back).
    pub fn save_checkpoint_to(
        &self,
        path: &Path,
        source_state: HashMap<String, Tensor>,
    ) -> Result<()> {
        let mut t: HashMap<String, Tensor> = HashMap::new();
        for (i, (name, var)) in self.sae.params.iter().enumerate() {
            t.insert(format!("param/{name}"), var.as_detached_tensor());
            let shape = var.shape().clone();
            t.insert(
                format!("adam_m/{name}"),
                Tensor::from_slice(&self.adam.exp_avg[i], shape.clone(), &self.device)?,
            );
            t.insert(
                format!("adam_v/{name}"),
                Tensor::from_slice(&self.adam.exp_avg_sq[i], shape, &self.device)?,
            );
        }
        for (k, v) in source_state {
            t.insert(format!("source/{k}"), v);
        }
        let d = self.cfg.sae.d_sae;
        t.insert(
            "state/act_freq_scores".into(),
            Tensor::from_slice(&self.act_freq_scores, d, &self.device)?,
        );
        t.insert(
            "state/n_forward_passes_since_fired".into(),
            Tensor::from_slice(&self.n_forward_passes_since_fired, d, &self.device)?,
        );
        let st = self.rng.state();
        let buffers: Map<String, Value> = self
            .sae
            .arch
            .buffers()
            .into_iter()
            // f64 values as their bits: serde_json's float parsing is not always exact
            .map(|(k, v)| (k, json!(v.to_bits())))
            .collect();
        let meta = json!({
            "n_training_steps": self.n_training_steps,
            "n_training_samples": self.n_training_samples,
            "n_frac_active_samples": self.n_frac_active_samples,
            "adam_step": self.adam.step,
            "scaling_factor": self.scaling_factor,
            "scaling_factor_bits": self.scaling_factor.map(f64::to_bits),
            "target_scaling_factor_bits": self.target_scaling_factor.map(f64::to_bits),
            "setup_done": self.setup_done,
            "rng": [st[0], st[1], st[2], st[3]],
            "buffers": buffers,
            "checkpoint_thresholds": self.checkpoint_thresholds,
            "architecture": self.cfg.sae.architecture.as_str(),
        });
        let bytes = meta.to_string().into_bytes();
        let n = bytes.len();
        t.insert(
            "state/json".into(),
            Tensor::from_vec(bytes, n, &self.device)?,
        );
        let tmp = tmp_path(path);
        candle_core::safetensors::save(&t, &tmp)?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
        Ok(())
    }

    /// Load `checkpoint.safetensors` from the run folder into this trainer and `source`.
    /// Returns false (and changes nothing) when there is no checkpoint. A checkpoint that does
    /// not fit this run (corrupt, truncated, from another config) is an error naming the file,
    /// found before the trainer is changed.
    pub fn load_checkpoint(&mut self, source: &mut dyn ActivationSource) -> Result<bool> {
        let Some(dir) = &self.out_dir else {
            return Ok(false);
        };
        let p = dir.join(CHECKPOINT);
        if !p.exists() {
            return Ok(false);
        }
        self.load_checkpoint_from(&p, &mut |state| source.restore(state))?;
        Ok(true)
    }

    /// Load the checkpoint file `path` (written by [`Trainer::save_checkpoint_to`]) into this
    /// trainer; `restore` gets the saved source state. Errors name the file and are found
    /// before the trainer is changed.
    pub fn load_checkpoint_from(
        &mut self,
        path: &Path,
        restore: &mut dyn FnMut(&HashMap<String, Tensor>) -> Result<()>,
    ) -> Result<()> {
        self.load_checkpoint_file(path, restore)
            .map_err(|e| match e {
                e @ Error::SaeFile { .. } => e,
                e => Error::SaeFile {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                },
            })
    }

    fn load_checkpoint_file(
        &mut self,
        p: &Path,
        restore: &mut dyn FnMut(&HashMap<String, Tensor>) -> Result<()>,
    ) -> Result<()> {
        let bad = |m: String| Error::SaeFile {
            path: p.to_path_buf(),
            reason: m,
        };
        let t = candle_core::safetensors::load(p, &self.device).map_err(|e| {
            bad(format!(
                "not a valid safetensors file (truncated or corrupt?): {e}"
            ))
        })?;
        let get = |k: &str| {
            t.get(k)
                .ok_or_else(|| bad(format!("checkpoint has no `{k}`")))
        };
        // Every value as this run needs it (shape, dtype), before anything is changed.
        let f32s = |k: &str, n: usize| -> Result<Vec<f32>> {
            let v = get(k)?;
            if v.elem_count() != n {
                return Err(bad(format!(
                    "`{k}` has shape {:?}, this run needs {n} values",
                    v.dims()
                )));
            }
            Ok(v.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?)
        };
        let json = get("state/json")?;
        if json.dtype() != DType::U8 || json.rank() != 1 {
            return Err(bad(format!(
                "`state/json` should be U8 bytes, is {:?} {:?}",
                json.dtype(),
                json.dims()
            )));
        }
        let meta: Value = serde_json::from_slice(&json.to_vec1::<u8>()?)
            .map_err(|e| bad(format!("bad state/json: {e}")))?;
        let names = self.sae.params.names.clone();
        let mut params = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let var = &self.sae.params.vars[i];
            let v = get(&format!("param/{name}"))?;
            if v.dims() != var.dims() {
                return Err(bad(format!(
                    "`param/{name}` has shape {:?}, this run's SAE needs {:?}",
                    v.dims(),
                    var.dims()
                )));
            }
            let n = var.elem_count();
            params.push((
                v.to_dtype(DType::F32)?,
                f32s(&format!("adam_m/{name}"), n)?,
                f32s(&format!("adam_v/{name}"), n)?,
            ));
        }
        let d = self.cfg.sae.d_sae;
        let act_freq_scores = f32s("state/act_freq_scores", d)?;
        let n_forward_passes_since_fired = f32s("state/n_forward_passes_since_fired", d)?;
        let u = |k: &str| meta.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
        let total = self.cfg.total_training_steps();
        let steps = u("n_training_steps");
        if steps > total as u64 {
            return Err(bad(format!(
                "n_training_steps = {steps} is past the end of this run ({total} steps)"
            )));
        }
        let src: HashMap<String, Tensor> = t
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix("source/")
                    .map(|k| (k.to_string(), v.clone()))
            })
            .collect();
        restore(&src)?;

        for (i, (v, m, s)) in params.into_iter().enumerate() {
            self.sae.params.vars[i].set(&v)?;
            self.adam.exp_avg[i] = m;
            self.adam.exp_avg_sq[i] = s;
        }
        self.act_freq_scores = act_freq_scores;
        self.n_forward_passes_since_fired = n_forward_passes_since_fired;
        self.n_training_steps = steps as usize;
        self.n_training_samples = u("n_training_samples");
        self.n_frac_active_samples = u("n_frac_active_samples");
        self.adam.step = u("adam_step");
        self.scaling_factor = meta
            .get("scaling_factor_bits")
            .and_then(|v| v.as_u64())
            .map(f64::from_bits);
        self.target_scaling_factor = meta
            .get("target_scaling_factor_bits")
            .and_then(|v| v.as_u64())
            .map(f64::from_bits);
        self.setup_done = meta
            .get("setup_done")
            .and_then(|v| v.as_bool())
            .unwrap_or(true);
        if let Some(r) = meta.get("rng").and_then(|v| v.as_array()) {
            let s: Vec<u64> = r.iter().filter_map(|x| x.as_u64()).collect();
            if s.len() == 4 {
                self.rng = Rng::from_state([s[0], s[1], s[2], s[3]]);
            }
        }
        if let Some(b) = meta.get("buffers").and_then(|v| v.as_object()) {
            let b: HashMap<String, f64> = b
                .iter()
                .filter_map(|(k, v)| v.as_u64().map(|b| (k.clone(), f64::from_bits(b))))
                .collect();
            self.sae.arch.load_buffers(&b)?;
        }
        if let Some(c) = meta.get("checkpoint_thresholds").and_then(|v| v.as_array()) {
            self.checkpoint_thresholds = c.iter().filter_map(|x| x.as_u64()).collect();
        }
        // Schedulers: replay to the step (at most the run's length, checked above).
        for _ in 0..self.n_training_steps {
            self.lr_scheduler.step();
        }
        for (_, s) in self.coefficients.iter_mut() {
            s.set_step(self.n_training_steps);
        }
        Ok(())
    }
}
