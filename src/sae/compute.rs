//! Encode / decode / forward with SAELens's hook points and normalisation, and folding.
use super::io::cast_weights;
use super::*;

fn noop() -> impl FnMut(&str, Tensor) -> Result<Tensor> {
    |_: &str, t: Tensor| Ok(t)
}

impl Sae {
    // ---------------------------------------------------------------------------------------
    // Encode / decode

    /// Cast, hook_z flatten, check width. Returns `(x [..., d_in], d_head)`.
    fn reshape_in(&self, x: &Tensor) -> Result<(Tensor, Option<usize>)> {
        let x = x.to_device(&self.device)?.to_dtype(self.dtype)?;
        let dims = x.dims().to_vec();
        if dims.is_empty() {
            return Err(Error::Invalid(format!(
                "SAE input must have at least one dim (`[..., {}]`), got a scalar",
                self.d_in()
            )));
        }
        let last = dims[dims.len() - 1];
        let hook_z =
            self.cfg.reshape_activations == ReshapeActivations::HookZ && !self.is_transcoder();
        if hook_z
            && dims.len() >= 2
            && dims[dims.len() - 2] * last == self.d_in()
            && last != self.d_in()
        {
            let mut nd = dims[..dims.len() - 2].to_vec();
            nd.push(self.d_in());
            return Ok((x.reshape(nd)?, Some(last)));
        }
        if last != self.d_in() {
            let hint = if hook_z {
                format!(
                    " (a hook_z SAE takes `[..., n_heads, d_head]` with n_heads·d_head = {} or `[..., {}]`)",
                    self.d_in(),
                    self.d_in()
                )
            } else {
                String::new()
            };
            return Err(Error::Invalid(format!(
                "SAE d_in mismatch: the SAE (hook `{}`) expects inputs of width d_in = {}, got \
                 width {last} (input shape {dims:?}){hint}",
                self.hook_name(),
                self.d_in()
            )));
        }
        Ok((x, None))
    }

    fn norm_in(&self, x: &Tensor, st: &mut NormState) -> Result<Tensor> {
        match self.cfg.normalize_activations {
            NormalizeActivations::ConstantNormRescale => {
                let norm = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?;
                let c = norm.recip()?.affine((self.d_in() as f64).sqrt(), 0.0)?;
                let y = x.broadcast_mul(&c)?;
                st.scale = Some(c);
                Ok(y)
            }
            NormalizeActivations::LayerNorm => {
                let d = x.dim(D::Minus1)?;
                let mu = x.mean_keepdim(D::Minus1)?;
                let xc = x.broadcast_sub(&mu)?;
                let var = xc
                    .sqr()?
                    .sum_keepdim(D::Minus1)?
                    .affine(1.0 / (d.max(2) - 1) as f64, 0.0)?;
                let std = var.sqrt()?;
                let y = xc.broadcast_div(&(std.clone() + 1e-5)?)?;
                st.mu = Some(mu);
                st.std = Some(std);
                Ok(y)
            }
            NormalizeActivations::None | NormalizeActivations::ExpectedAverageOnlyIn => {
                Ok(x.clone())
            }
        }
    }

    fn norm_out(&self, y: &Tensor, st: &NormState) -> Result<Tensor> {
        let n = y.dim(0)?;
        let check = |t: &Tensor, what: &str| -> Result<()> {
            if t.dim(0)? != n {
                return Err(Error::Invalid(format!(
                    "decode: the NormState ({what}) was computed for {} tokens but the features \
                     have {n}; decode with the state returned by encoding this input",
                    t.dim(0)?
                )));
            }
            Ok(())
        };
        match self.cfg.normalize_activations {
            NormalizeActivations::ConstantNormRescale => match &st.scale {
                Some(c) => {
                    check(c, "scale")?;
                    Ok(y.broadcast_div(c)?)
                }
                None => Ok(y.clone()),
            },
            NormalizeActivations::LayerNorm => match (&st.mu, &st.std) {
                (Some(mu), Some(std)) => {
                    check(mu, "mu")?;
                    Ok(y.broadcast_mul(std)?.broadcast_add(mu)?)
                }
                _ => Ok(y.clone()),
            },
            _ => Ok(y.clone()),
        }
    }

    fn encode_inner(&self, x: &Tensor, hp: &mut SaeHookFn) -> Result<(Tensor, Tensor, NormState)> {
        let (x, d_head) = self.reshape_in(x)?;
        let x = hp("hook_sae_input", x)?;
        let dims = x.dims().to_vec();
        if dims.last() != Some(&self.d_in()) {
            return Err(Error::Invalid(format!(
                "hook_sae_input returned shape {dims:?}; the SAE needs `[..., {}]`",
                self.d_in()
            )));
        }
        let lead = &dims[..dims.len() - 1];
        let n: usize = lead.iter().product();
        let x2 = x.reshape((n, self.d_in()))?;
        let mut st = NormState {
            d_head,
            ..Default::default()
        };
        let xn = self.norm_in(&x2, &mut st)?;
        let xt = if self.cfg.apply_b_dec_to_input && !self.is_transcoder() {
            xn.broadcast_sub(&self.w.b_dec)?
        } else {
            xn
        };
        let (h, aux) = self.arch().pre_act(&self.w, &xt)?;
        let shape_sae = with_last(lead, self.d_sae());
        let h = hp("hook_sae_acts_pre", h.reshape(shape_sae.clone())?)?;
        let h2 = self.flat(&h, n, self.d_sae(), "hook_sae_acts_pre")?;
        let h2 = self.arch().after_pre_hook(&self.w, h2)?;
        let f = self.arch().activate(&self.w, &h2, aux.as_ref())?;
        let f = hp("hook_sae_acts_post", f.reshape(shape_sae)?)?;
        Ok((f, h, st))
    }

    fn flat(&self, t: &Tensor, n: usize, d: usize, hook: &str) -> Result<Tensor> {
        if t.elem_count() != n * d || t.dims().last() != Some(&d) {
            return Err(Error::Invalid(format!(
                "{hook} returned shape {:?}; expected {n} rows of width {d}",
                t.dims()
            )));
        }
        Ok(t.reshape((n, d))?)
    }

    /// Encode with hook points (see the module docs): dtype cast, hook_z flattening,
    /// `hook_sae_input`, norm_in, `b_dec` subtraction, pre-activation → `hook_sae_acts_pre`,
    /// (topk rescaling), activation → `hook_sae_acts_post`. Returns the features
    /// `[..., d_sae]` and the [`NormState`] that [`Sae::decode_hooked`] needs.
    pub fn encode_hooked(&self, x: &Tensor, hp: &mut SaeHookFn) -> Result<(Tensor, NormState)> {
        let (f, _, st) = self.encode_inner(x, hp)?;
        Ok((f, st))
    }

    /// Decode with hook points: `f W_dec + b_dec` → `hook_sae_recons` → norm_out (with `st`;
    /// not for transcoders) → hook_z reshape (`st.d_head`). `f`: `[..., d_sae]`; returns
    /// `[..., d_out]` (or `[..., n_heads, d_head]`).
    pub fn decode_hooked(&self, f: &Tensor, st: &NormState, hp: &mut SaeHookFn) -> Result<Tensor> {
        let f = f.to_device(&self.device)?.to_dtype(self.dtype)?;
        let dims = f.dims().to_vec();
        if dims.last() != Some(&self.d_sae()) {
            return Err(Error::Invalid(format!(
                "decode: features must be `[..., d_sae = {}]`, got shape {dims:?}",
                self.d_sae()
            )));
        }
        let lead = &dims[..dims.len() - 1];
        let n: usize = lead.iter().product();
        let f2 = f.reshape((n, self.d_sae()))?;
        let y = self.arch().decode_linear(&self.w, &f2)?;
        let y = hp("hook_sae_recons", y.reshape(with_last(lead, self.d_out()))?)?;
        if self.is_transcoder() {
            return Ok(y);
        }
        let y2 = self.flat(&y, n, self.d_out(), "hook_sae_recons")?;
        let y2 = self.norm_out(&y2, st)?;
        match st.d_head {
            Some(dh)
                if self.cfg.reshape_activations == ReshapeActivations::HookZ
                    && dh > 0
                    && self.d_out().is_multiple_of(dh) =>
            {
                let mut shape = lead.to_vec();
                shape.push(self.d_out() / dh);
                shape.push(dh);
                Ok(y2.reshape(shape)?)
            }
            _ => Ok(y2.reshape(with_last(lead, self.d_out()))?),
        }
    }

    /// Feature activations `[..., d_sae]`.
    pub fn encode(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.encode_hooked(x, &mut noop())?.0)
    }

    /// `(feature activations, pre-activations)`, both `[..., d_sae]`. The pre-activation is
    /// the value at `hook_sae_acts_pre`: for gated SAEs the magnitude path; for topk with
    /// `rescale_acts_by_decoder_norm` *before* the rescaling by `‖W_dec‖` (SAELens's training
    /// classes return the rescaled value; multiply by the decoder norms to get it).
    pub fn encode_with_hidden_pre(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let (f, h, _) = self.encode_inner(x, &mut noop())?;
        Ok((f, h))
    }

    /// `(features, NormState)` without hooks.
    pub fn encode_with_state(&self, x: &Tensor) -> Result<(Tensor, NormState)> {
        self.encode_hooked(x, &mut noop())
    }

    /// `f W_dec + b_dec` (topk rescaling applied), `[..., d_out]`: the reconstruction in the
    /// SAE's *normalised* space, without `norm_out` (there is no per-input state here; use
    /// [`Sae::decode_with_state`] or [`Sae::forward`] for `constant_norm_rescale` /
    /// `layer_norm` SAEs) and without hook_z un-flattening. For `none` /
    /// `expected_average_only_in` SAEs this is the reconstruction.
    pub fn decode(&self, f: &Tensor) -> Result<Tensor> {
        let st = NormState::default();
        self.decode_hooked(f, &st, &mut noop())
    }

    /// Decode with the [`NormState`] of the encoded input (norm_out and hook_z reshape).
    pub fn decode_with_state(&self, f: &Tensor, st: &NormState) -> Result<Tensor> {
        self.decode_hooked(f, st, &mut noop())
    }

    /// Skip transcoders' `x W_skipᵀ` (`[..., d_out]`, `x` cast to the SAE dtype); `None` for
    /// other SAEs. Added by [`Sae::forward`], not by `encode`/`decode` (as in SAELens).
    pub fn skip_connection(&self, x: &Tensor) -> Result<Option<Tensor>> {
        let Some(ws) = &self.w.w_skip else {
            return Ok(None);
        };
        let x = x.to_device(&self.device)?.to_dtype(self.dtype)?;
        let dims = x.dims().to_vec();
        if dims.last() != Some(&self.d_in()) {
            return Err(Error::Invalid(format!(
                "skip connection: expected `[..., {}]`, got {dims:?}",
                self.d_in()
            )));
        }
        let lead = &dims[..dims.len() - 1];
        let n: usize = lead.iter().product();
        let y = x.reshape((n, self.d_in()))?.matmul(&ws.t()?)?;
        Ok(Some(y.reshape(with_last(lead, self.d_out()))?))
    }

    /// SAELens's standalone `SAE.forward` with hooks: `decode(encode(x))` (with the norm
    /// state); with `use_error_term`, `+ hook_sae_error(x − decode(encode(x)))` recomputed
    /// without hooks and detached; then `hook_sae_output`. Transcoders: `decode(encode(x))`
    /// (+ `x W_skipᵀ` for skip transcoders), no error term or output hook.
    pub fn forward_hooked(
        &self,
        x: &Tensor,
        use_error_term: bool,
        hp: &mut SaeHookFn,
    ) -> Result<Tensor> {
        if self.is_transcoder() {
            if use_error_term {
                return Err(Error::SaeConfig(format!(
                    "a transcoder ({}) has no standalone error term (its output lives at `{}`, \
                     not at its input); SAELens's Transcoder.forward ignores use_error_term",
                    self.architecture(),
                    self.hook_name_out()
                )));
            }
            let (f, st) = self.encode_hooked(x, hp)?;
            let y = self.decode_hooked(&f, &st, hp)?;
            return match self.skip_connection(x)? {
                Some(s) => Ok((y + s)?),
                None => Ok(y),
            };
        }
        let (f, st) = self.encode_hooked(x, hp)?;
        let mut y = self.decode_hooked(&f, &st, hp)?;
        if use_error_term {
            let xd = x.detach();
            let (f0, st0) = self.encode_hooked(&xd, &mut noop())?;
            let clean = self.decode_hooked(&f0, &st0, &mut noop())?;
            let xd = xd.to_device(&self.device)?.to_dtype(self.dtype)?;
            let xd = if xd.dims() != clean.dims() {
                xd.reshape(clean.dims())?
            } else {
                xd
            };
            let err = (xd - clean)?.detach();
            let err = hp("hook_sae_error", err)?;
            y = (y + err)?;
        }
        hp("hook_sae_output", y)
    }

    /// `decode(encode(x))`, with the normalisation undone (SAELens `SAE.forward`).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_hooked(x, false, &mut noop())
    }

    /// SAELens `SAE.forward` with `use_error_term = True`: equals `x` (cast to the SAE dtype)
    /// up to rounding.
    pub fn forward_with_error(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_hooked(x, true, &mut noop())
    }

    /// [`Sae::forward`] caching every hook: `hook_sae_input`, `hook_sae_acts_pre`,
    /// `hook_sae_acts_post`, `hook_sae_recons`, `hook_sae_output` (not for transcoders).
    pub fn run_with_cache(&self, x: &Tensor) -> Result<(Tensor, SaeCache)> {
        self.run_with_cache_opts(x, false)
    }

    /// [`Sae::run_with_cache`], optionally with the error term (adds `hook_sae_error`).
    pub fn run_with_cache_opts(
        &self,
        x: &Tensor,
        use_error_term: bool,
    ) -> Result<(Tensor, SaeCache)> {
        let mut cache = SaeCache::default();
        let out = {
            let mut hp = |name: &str, t: Tensor| {
                cache.entries.push((name.to_string(), t.clone()));
                Ok(t)
            };
            self.forward_hooked(x, use_error_term, &mut hp)?
        };
        Ok((out, cache))
    }

    // ---------------------------------------------------------------------------------------
    // Folding

    /// SAELens's `fold_W_dec_norm`: scale each decoder row to unit norm and move the norm into
    /// the encoder (`W_enc[:, i] *= n_i`, `b_enc *= n`; jumprelu `θ *= n`; gated `b_gate, b_mag
    /// *= n`), leaving `forward` unchanged and the features in "unit-decoder" units. Top-k SAEs
    /// only with `rescale_acts_by_decoder_norm` (an error otherwise, as in SAELens).
    pub fn fold_w_dec_norm(&mut self) -> Result<()> {
        let mut w = cast_weights(&self.w, self.work_dtype())?;
        self.arch().fold_w_dec_norm(&mut w)?;
        self.w = cast_weights(&w, self.dtype)?;
        Ok(())
    }

    /// SAELens's `fold_activation_norm_scaling_factor(s)`: `W_enc *= s`, `W_dec /= s`,
    /// `b_dec /= s`, then `normalize_activations = none`. For `expected_average_only_in` SAEs,
    /// with the training-time `s = √d_in / E‖x‖`, the SAE then takes raw activations.
    pub fn fold_activation_norm_scaling_factor(&mut self, s: f64) -> Result<()> {
        if !s.is_finite() || s == 0.0 {
            return Err(Error::Invalid(format!(
                "activation norm scaling factor must be finite and non-zero, got {s}"
            )));
        }
        let mut w = cast_weights(&self.w, self.work_dtype())?;
        w.w_enc = w.w_enc.affine(s, 0.0)?;
        w.w_dec = w.w_dec.affine(1.0 / s, 0.0)?;
        w.b_dec = w.b_dec.affine(1.0 / s, 0.0)?;
        self.w = cast_weights(&w, self.dtype)?;
        self.cfg.normalize_activations = NormalizeActivations::None;
        Ok(())
    }

    fn work_dtype(&self) -> DType {
        if self.dtype == DType::F64 {
            DType::F64
        } else {
            DType::F32
        }
    }
}

fn with_last(lead: &[usize], d: usize) -> Vec<usize> {
    let mut v = lead.to_vec();
    v.push(d);
    v
}
