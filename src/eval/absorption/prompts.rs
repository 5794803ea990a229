//! The first-letter task of SAEBench's absorption eval: the alphabetic vocabulary
//! (`vocab.get_alpha_tokens`), the ICL prompts (`prompting.create_icl_prompt` with
//! `first_letter_formatter()`), and the activations at the word's position.
use super::AbsorptionOptions;
use crate::error::{Error, Result};
use crate::eval::probing::shuffle;
use crate::hooks::HookName;
use crate::model::HookedModel;
use crate::rng::{derive_seed, Rng};
use crate::sae::Sae;
use candle_core::{DType, Device, IndexOp, Tensor};

/// Words of each letter always kept in the subsample (see [`first_letter_data`]).
pub const MIN_PER_LETTER: usize = 8;

/// `vocab.LETTERS`.
pub const LETTERS: &str = "abcdefghijklmnopqrstuvwxyz";

/// `get_alpha_tokens(tokenizer)`: decoded vocabulary entries made of ASCII letters only, one
/// leading space allowed; here also only those that encode back to exactly one token (so that
/// every prompt has the same length, which SAEBench's `_validate_prompts_are_same_length`
/// requires). Sorted by token id.
pub fn alpha_vocab(model: &HookedModel) -> Result<Vec<String>> {
    let tok = model.tokenizer()?;
    let mut out = vec![];
    let mut seen = std::collections::HashSet::new();
    for id in 0..tok.vocab_size() as u32 {
        let Ok(w) = tok.decode(&[id]) else { continue };
        let core = w.strip_prefix(' ').unwrap_or(&w);
        if core.is_empty() || !core.chars().all(|c| c.is_ascii_alphabetic()) {
            continue;
        }
        if tok.encode(&w, false)?.len() == 1 && seen.insert(w.clone()) {
            out.push(w);
        }
    }
    Ok(out)
}

/// `first_letter(word)`: `" "` + the first letter, upper-cased.
pub fn first_letter_answer(word: &str) -> String {
    let c = word
        .trim()
        .chars()
        .find(|c| c.is_alphabetic())
        .unwrap_or(' ');
    format!(" {}", c.to_ascii_uppercase())
}

/// The class (0–25) of a word's first letter.
pub(crate) fn letter_class(word: &str) -> Option<usize> {
    let c = word.trim().chars().next()?.to_ascii_lowercase();
    LETTERS.find(c)
}

/// `create_icl_prompt(word, examples, base_template, max_icl_examples,
/// prepend_separator_to_first_example=True)`: `"\n"` + the examples (`template + answer`) joined
/// by `"\n"`, then `"\n"` + the word's template (no answer). Examples are drawn without
/// replacement from `pool`, redrawn while they contain the word.
pub fn icl_prompt(
    word: &str,
    pool: &[String],
    template: &str,
    n_icl: usize,
    rng: &mut Rng,
) -> String {
    let mut idx: Vec<usize> = (0..pool.len()).collect();
    loop {
        shuffle(&mut idx, rng);
        let ex: Vec<&String> = idx.iter().take(n_icl).map(|i| &pool[*i]).collect();
        if ex.iter().any(|e| *e == word) && pool.len() > n_icl {
            continue;
        }
        let lines: Vec<String> = ex
            .iter()
            .map(|e| template.replace("{word}", e) + &first_letter_answer(e))
            .collect();
        return format!(
            "\n{}\n{}",
            lines.join("\n"),
            template.replace("{word}", word)
        );
    }
}

/// The words, their prompts, and the hook activations at `prompt_token_pos`.
#[derive(Clone, Debug)]
pub struct FirstLetterData {
    /// The words (subsampled vocabulary), in order.
    pub words: Vec<String>,
    /// First-letter class of each word (0 = `a`).
    pub labels: Vec<usize>,
    /// The prompt of each word.
    pub prompts: Vec<String>,
    /// Hook activations `[words, d_in]` at the word's position.
    pub acts: Tensor,
    /// SAE latents `[words, d_sae]` of `acts`.
    pub latents: Tensor,
}

/// Subsample `opts.n_words` words of [`alpha_vocab`] (seeded by `opts.seed`; at least
/// [`MIN_PER_LETTER`] of each letter), build one ICL
/// prompt per word with examples from the subsample, run the model to the SAE's hook.
pub fn first_letter_data(
    model: &HookedModel,
    sae: &Sae,
    opts: &AbsorptionOptions,
) -> Result<FirstLetterData> {
    let vocab = alpha_vocab(model)?;
    if vocab.len() < opts.n_words.min(52) || opts.n_words < 52 {
        return Err(Error::Invalid(format!(
            "absorption: need n_words ≥ 52 (two per letter at least), got {} (vocabulary {})",
            opts.n_words,
            vocab.len()
        )));
    }
    let mut rng = Rng::new(derive_seed(opts.seed, &[0xab5]));
    let mut idx: Vec<usize> = (0..vocab.len()).collect();
    shuffle(&mut idx, &mut rng);
    // Every letter must reach the train split (SAEBench's k-sparse step trains one probe per
    // letter present and indexes all 26; its pos_weight is infinite for an absent one): first
    // MIN_PER_LETTER words of each letter, then the rest in shuffled order.
    let mut taken = vec![false; vocab.len()];
    let mut per_letter = [0usize; 26];
    for &i in &idx {
        if let Some(c) = letter_class(&vocab[i]) {
            if per_letter[c] < MIN_PER_LETTER {
                per_letter[c] += 1;
                taken[i] = true;
            }
        }
    }
    let mut picked: Vec<usize> = idx.iter().copied().filter(|i| taken[*i]).collect();
    picked.extend(idx.iter().copied().filter(|i| !taken[*i]));
    picked.truncate(opts.n_words.max(26 * MIN_PER_LETTER));
    shuffle(&mut picked, &mut rng);
    let words: Vec<String> = picked.iter().map(|i| vocab[*i].clone()).collect();
    let labels = words
        .iter()
        .map(|w| {
            letter_class(w).ok_or_else(|| Error::Invalid(format!("absorption: no letter in {w:?}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let prompts: Vec<String> = words
        .iter()
        .map(|w| {
            icl_prompt(
                w,
                &words,
                &opts.prompt_template,
                opts.max_icl_examples,
                &mut rng,
            )
        })
        .collect();
    let acts = gather(model, sae.hook_name(), &prompts, opts)?;
    let latents = sae.encode(&acts)?.to_dtype(DType::F32)?;
    Ok(FirstLetterData {
        words,
        labels,
        prompts,
        acts,
        latents,
    })
}

/// Hook activations at `prompt_token_pos` of each prompt (BOS prepended, as TransformerLens
/// does); every prompt must tokenise to the same length.
fn gather(
    model: &HookedModel,
    hook: &str,
    prompts: &[String],
    o: &AbsorptionOptions,
) -> Result<Tensor> {
    let tok = model.tokenizer()?;
    let rows = prompts
        .iter()
        .map(|p| tok.encode(p, true))
        .collect::<Result<Vec<_>>>()?;
    let len = rows[0].len();
    if let Some(i) = rows.iter().position(|r| r.len() != len) {
        return Err(Error::Invalid(format!(
            "absorption: prompt {i} has {} tokens, prompt 0 has {len}; all must match",
            rows[i].len()
        )));
    }
    let pos = len as i64 + o.prompt_token_pos;
    if pos < 0 || pos >= len as i64 {
        return Err(Error::Invalid(format!(
            "absorption: prompt_token_pos {} outside prompts of {len} tokens",
            o.prompt_token_pos
        )));
    }
    let stop = HookName::parse(hook).stop_at_layer();
    let mut out = vec![];
    for chunk in rows.chunks(o.batch_size.max(1)) {
        let flat: Vec<u32> = chunk.iter().flatten().copied().collect();
        let t = Tensor::from_vec(flat, (chunk.len(), len), &Device::Cpu)?;
        let (_, cache) = model.run(&t).names(hook).stop_at_layer(stop).cache()?;
        out.push(
            cache
                .get(hook)?
                .i((.., pos as usize))?
                .to_dtype(DType::F32)?,
        );
    }
    Ok(Tensor::cat(&out, 0)?)
}
