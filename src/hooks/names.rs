//! Hook names, exactly as TransformerLens spells them, and `get_act_name`.

/// TL's `utils.get_act_name(name, layer, layer_type)`.
///
/// Full names (containing a `.` or starting with `hook_`) pass through; aliases `attn → pattern`,
/// `attn_logits → attn_scores`, `key/query/value → k/q/v`, `mlp_pre/mlp_mid/mlp_post → pre/mid/post`;
/// `"resid_pre5"` is parsed as `("resid_pre", 5)`; `scale`/`normalized` without a layer refer to
/// `ln_final`; `layer_type` `a`/`m`/`b` means `attn`/`mlp`/none.
///
/// ```
/// use saescope::get_act_name;
/// assert_eq!(get_act_name("resid_pre", Some(5), None), "blocks.5.hook_resid_pre");
/// assert_eq!(get_act_name("attn", Some(0), None), "blocks.0.attn.hook_pattern");
/// assert_eq!(get_act_name("scale", Some(2), Some("ln1")), "blocks.2.ln1.hook_scale");
/// assert_eq!(get_act_name("resid_post11", None, None), "blocks.11.hook_resid_post");
/// assert_eq!(get_act_name("embed", None, None), "hook_embed");
/// ```
pub fn get_act_name(name: &str, layer: Option<usize>, layer_type: Option<&str>) -> String {
    if name.contains('.') || name.starts_with("hook_") {
        return name.to_string();
    }
    let (mut name, mut layer) = (name.to_string(), layer);
    // "resid_pre5" shorthand.
    if layer.is_none() {
        let digits: String = name
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        if !digits.is_empty() && digits.len() < name.len() {
            let n = name.len() - digits.len();
            layer = name[n..].parse().ok();
            name.truncate(n);
        }
    }
    let alias = match name.as_str() {
        "attn" => "pattern",
        "attn_logits" => "attn_scores",
        "key" => "k",
        "query" => "q",
        "value" => "v",
        "mlp_pre" => "pre",
        "mlp_mid" => "mid",
        "mlp_post" => "post",
        other => other,
    };
    let name = alias.to_string();
    let mut layer_type = layer_type.map(|t| match t {
        "a" => "attn".to_string(),
        "m" => "mlp".to_string(),
        "b" | "block" | "blocks" => String::new(),
        other => other.to_string(),
    });
    if layer_type.is_none() {
        layer_type = match name.as_str() {
            "q" | "k" | "v" | "z" | "rot_q" | "rot_k" | "result" | "pattern" | "attn_scores" => {
                Some("attn".into())
            }
            "pre" | "post" | "mid" | "pre_linear" => Some("mlp".into()),
            _ => None,
        };
    }
    let mut full = String::new();
    match layer {
        Some(l) => full.push_str(&format!("blocks.{l}.")),
        None if matches!(name.as_str(), "scale" | "normalized") => full.push_str("ln_final."),
        None => {}
    }
    if let Some(t) = layer_type.filter(|t| !t.is_empty()) {
        full.push_str(&t);
        full.push('.');
    }
    full.push_str("hook_");
    full.push_str(&name);
    full
}

/// A TransformerLens hook name taken apart: `blocks.{layer}.{site}` (`site` e.g.
/// `hook_resid_post`, `attn.hook_z`), or a site outside the blocks (`hook_embed`,
/// `ln_final.hook_scale`) with no layer. The one parser of hook names.
///
/// ```
/// use saescope::hooks::HookName;
/// let h = HookName::parse("blocks.3.attn.hook_z");
/// assert_eq!((h.layer, h.site), (Some(3), "attn.hook_z"));
/// assert_eq!(h.stop_at_layer(), Some(4));
/// assert!(h.is_head_hook());
/// assert_eq!(HookName::parse("blocks.5.hook_resid_post").resid_start_layer(), Some(6));
/// assert_eq!(HookName::parse("hook_embed").layer, None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HookName<'a> {
    /// The block, for `blocks.{layer}.…` names.
    pub layer: Option<usize>,
    /// The rest of the name (the whole name outside the blocks).
    pub site: &'a str,
}

impl<'a> HookName<'a> {
    /// Take `name` apart (any string: names that are not `blocks.{int}.…` have no layer).
    pub fn parse(name: &'a str) -> Self {
        let layered = name.strip_prefix("blocks.").and_then(|rest| {
            let (l, site) = rest.split_once('.')?;
            Some((l.parse().ok()?, site))
        });
        match layered {
            Some((layer, site)) => HookName {
                layer: Some(layer),
                site,
            },
            None => HookName {
                layer: None,
                site: name,
            },
        }
    }
    /// The `stop_at_layer` that a pass needs to reach this hook (SAELens's
    /// `extract_stop_at_layer_from_tlens_hook_name`: layer + 1; None outside the blocks).
    pub fn stop_at_layer(&self) -> Option<usize> {
        self.layer.map(|l| l + 1)
    }
    /// Whether the activation is `[.., n_heads, d_head]` (`attn.hook_{z,q,k,v,rot_q,rot_k}`),
    /// whose SAEs flatten the head dims.
    pub fn is_head_hook(&self) -> bool {
        const HEADS: [&str; 6] = [
            "attn.hook_z",
            "attn.hook_q",
            "attn.hook_k",
            "attn.hook_v",
            "attn.hook_rot_q",
            "attn.hook_rot_k",
        ];
        HEADS.iter().any(|s| self.site.ends_with(s))
    }
    /// The block a residual-stream hook feeds (`blocks.L.hook_resid_pre` → L,
    /// `blocks.L.hook_resid_post` → L + 1), or None for other hooks.
    pub fn resid_start_layer(&self) -> Option<usize> {
        match self.site {
            "hook_resid_pre" => self.layer,
            "hook_resid_post" => self.layer.map(|l| l + 1),
            _ => None,
        }
    }
}

/// Anything that names an activation: a full hook name, or a `get_act_name` tuple.
///
/// `"blocks.5.hook_resid_pre"`, `("resid_pre", 5)`, `("scale", 3, "ln2")` all work.
pub trait ActName {
    /// The full hook name (e.g. `blocks.5.hook_resid_pre`), resolved as TL's `get_act_name`.
    fn act_name(&self) -> String;
}
impl ActName for &str {
    fn act_name(&self) -> String {
        get_act_name(self, None, None)
    }
}
impl ActName for String {
    fn act_name(&self) -> String {
        get_act_name(self, None, None)
    }
}
impl ActName for &String {
    fn act_name(&self) -> String {
        get_act_name(self, None, None)
    }
}
impl ActName for (&str, usize) {
    fn act_name(&self) -> String {
        get_act_name(self.0, Some(self.1), None)
    }
}
impl ActName for (&str, usize, &str) {
    fn act_name(&self) -> String {
        get_act_name(self.0, Some(self.1), Some(self.2))
    }
}

/// Precomputed hook names of one transformer block (built once per model; no formatting on the
/// hot path).
#[derive(Clone, Debug)]
pub(crate) struct BlockHookNames {
    pub resid_pre: String,
    pub ln1_scale: String,
    pub ln1_normalized: String,
    pub q: String,
    pub k: String,
    pub v: String,
    pub rot_q: String,
    pub rot_k: String,
    pub attn_scores: String,
    pub pattern: String,
    pub z: String,
    pub attn_out: String,
    pub resid_mid: String,
    pub ln2_scale: String,
    pub ln2_normalized: String,
    pub mlp_pre: String,
    pub mlp_pre_linear: String,
    pub mlp_post: String,
    pub mlp_in: String,
    pub mlp_out: String,
    pub resid_post: String,
}

impl BlockHookNames {
    pub fn new(l: usize) -> Self {
        let b = |s: &str| format!("blocks.{l}.{s}");
        BlockHookNames {
            resid_pre: b("hook_resid_pre"),
            ln1_scale: b("ln1.hook_scale"),
            ln1_normalized: b("ln1.hook_normalized"),
            q: b("attn.hook_q"),
            k: b("attn.hook_k"),
            v: b("attn.hook_v"),
            rot_q: b("attn.hook_rot_q"),
            rot_k: b("attn.hook_rot_k"),
            attn_scores: b("attn.hook_attn_scores"),
            pattern: b("attn.hook_pattern"),
            z: b("attn.hook_z"),
            attn_out: b("hook_attn_out"),
            resid_mid: b("hook_resid_mid"),
            ln2_scale: b("ln2.hook_scale"),
            ln2_normalized: b("ln2.hook_normalized"),
            mlp_pre: b("mlp.hook_pre"),
            mlp_pre_linear: b("mlp.hook_pre_linear"),
            mlp_post: b("mlp.hook_post"),
            mlp_in: b("mlp.hook_in"),
            mlp_out: b("hook_mlp_out"),
            resid_post: b("hook_resid_post"),
        }
    }
}

/// Levenshtein distance (for "did you mean" suggestions).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The `n` valid names nearest to `name` by edit distance.
pub fn nearest_names<'a>(
    name: &str,
    valid: impl IntoIterator<Item = &'a str>,
    n: usize,
) -> Vec<String> {
    let mut scored: Vec<(usize, &str)> = valid
        .into_iter()
        .map(|v| (edit_distance(name, v), v))
        .collect();
    scored.sort();
    scored
        .into_iter()
        .take(n)
        .map(|(_, v)| v.to_string())
        .collect()
}
