//! The generation loop: prompt → tokens → forward → sample → detokenize → callback, with stop
//! strings, end-of-generation tokens, prefix reuse and statistics. The CLI, the C ABI and Python
//! all generate through here.

use std::time::Instant;

use crate::chat::{ChatMessage, ChatTemplate};
use crate::constrain::{Constraint, Guide};
use crate::model::Model;
use crate::sample::{Sampler, SamplerParams};
use crate::session::Session;
use crate::tokenizer::{StreamDecoder, Tokenizer};
use crate::{Error, Result};

/// What to generate and when to stop.
#[derive(Debug, Clone)]
pub struct GenerateParams {
    /// Most tokens to generate (0 = until the context is full). Generation also ends, with
    /// [`StopReason::ContextFull`], when the context fills up first.
    pub max_tokens: usize,
    /// How the next token is chosen.
    pub sampler: SamplerParams,
    /// Generation ends when the text contains one of these; the stop string and what follows it
    /// are not returned.
    pub stop: Vec<String>,
    /// Add the model's BOS/EOS tokens to the prompt as its tokenizer metadata says.
    pub add_special: bool,
    /// Treat special-token text in the prompt (`<|im_start|>`) as those tokens.
    pub parse_special: bool,
    /// Record each generated token's log-probability and those of this many most likely
    /// alternatives ([`Generation::logprobs`]); `None` records nothing.
    pub top_logprobs: Option<usize>,
    /// What the text must match (a JSON schema, a regex, a grammar): tokens it does not allow
    /// are never sampled, and generation can end only where it accepts.
    pub constraint: Option<Constraint>,
    /// Control tokens written into the text as their own text rather than dropped: the markers
    /// a tool-call parser looks for (`[TOOL_CALLS]`, `<|python_tag|>`).
    pub preserved_tokens: Vec<u32>,
    /// The LoRA adapters of this generation on a batcher (`None`: the batcher's). A session's
    /// adapters are its own ([`Session::set_loras`]); a generation there must leave this `None`
    /// or give the same.
    pub loras: Option<Vec<crate::lora::ActiveLora>>,
}

impl Default for GenerateParams {
    fn default() -> Self {
        GenerateParams {
            max_tokens: 128,
            sampler: SamplerParams::default(),
            stop: Vec::new(),
            add_special: true,
            parse_special: false,
            top_logprobs: None,
            constraint: None,
            preserved_tokens: Vec::new(),
            loras: None,
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// `max_tokens` were generated.
    MaxTokens,
    /// The model produced an end-of-generation token (EOS, EOT, …).
    EndOfGeneration,
    /// The text reached one of the stop strings.
    StopString,
    /// The callback returned false.
    Cancelled,
    /// The context window filled up before `max_tokens` were generated.
    ContextFull,
}

impl StopReason {
    /// How llama.cpp's tools word the reason: "max tokens", "context full", ….
    pub fn describe(self) -> &'static str {
        match self {
            StopReason::MaxTokens => "max tokens",
            StopReason::EndOfGeneration => "end of generation",
            StopReason::StopString => "stop string",
            StopReason::Cancelled => "cancelled",
            StopReason::ContextFull => "context full",
        }
    }
}

/// Counts and timings of one generation.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GenerateStats {
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Prompt tokens whose keys and values were already in the session's cache (not recomputed).
    pub reused_tokens: usize,
    /// Tokens generated (including an end-of-generation token).
    pub generated_tokens: usize,
    /// Seconds spent evaluating the prompt.
    pub prompt_seconds: f64,
    /// Seconds spent generating.
    pub generate_seconds: f64,
}

impl GenerateStats {
    /// Prompt tokens evaluated per second.
    pub fn prompt_tokens_per_second(&self) -> f64 {
        rate(self.prompt_tokens - self.reused_tokens, self.prompt_seconds)
    }

    /// Tokens generated per second.
    pub fn generate_tokens_per_second(&self) -> f64 {
        rate(self.generated_tokens, self.generate_seconds)
    }
}

fn rate(n: usize, seconds: f64) -> f64 {
    if seconds > 0.0 {
        n as f64 / seconds
    } else {
        0.0
    }
}

/// The result of a generation.
#[derive(Debug, Clone)]
pub struct Generation {
    /// The generated text (without the prompt, the stop string or an end-of-generation token).
    pub text: String,
    /// The generated token ids (an end-of-generation token is included).
    pub tokens: Vec<u32>,
    pub stop_reason: StopReason,
    pub stats: GenerateStats,
    /// One entry per generated token when [`GenerateParams::top_logprobs`] asked for them.
    pub logprobs: Vec<TokenLogprobs>,
}

/// A generated token's log-probability under the model (the log-softmax of its raw logits,
/// before any sampler stage), and the most likely tokens at that step.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprobs {
    pub token: u32,
    pub logprob: f32,
    /// The most likely tokens and their log-probabilities, most likely first.
    pub top: Vec<(u32, f32)>,
}

impl TokenLogprobs {
    /// `token`'s entry from the logits it was drawn from.
    fn of(logits: &[f32], token: u32, n_top: usize) -> TokenLogprobs {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let log_sum = logits
            .iter()
            .map(|&l| f64::from(l - max).exp())
            .sum::<f64>()
            .ln() as f32;
        let logprob = |id: u32| {
            logits
                .get(id as usize)
                .map_or(f32::NEG_INFINITY, |&l| l - max - log_sum)
        };
        let mut top: Vec<u32> = Vec::new();
        if n_top > 0 {
            let mut ids: Vec<u32> = (0..logits.len() as u32).collect();
            let n = n_top.min(ids.len());
            let by_logit = |a: &u32, b: &u32| {
                logits[*b as usize]
                    .total_cmp(&logits[*a as usize])
                    .then(a.cmp(b))
            };
            if n > 0 && n < ids.len() {
                ids.select_nth_unstable_by(n - 1, by_logit);
            }
            ids.truncate(n);
            ids.sort_by(by_logit);
            top = ids;
        }
        TokenLogprobs {
            token,
            logprob: logprob(token),
            top: top.into_iter().map(|id| (id, logprob(id))).collect(),
        }
    }
}

/// Tokenizes `prompt` and generates its continuation; see [`generate_tokens`].
pub fn generate(
    session: &mut Session,
    prompt: &str,
    params: &GenerateParams,
    on_piece: &mut dyn FnMut(&str) -> bool,
) -> Result<Generation> {
    let tokens =
        session
            .model()
            .tokenizer()
            .encode(prompt, params.add_special, params.parse_special)?;
    generate_tokens(session, &tokens, params, on_piece)
}

/// Renders `messages` with `template` (adding the assistant's turn prefix), and generates the
/// reply.
pub fn chat(
    session: &mut Session,
    template: &ChatTemplate,
    messages: &[ChatMessage],
    params: &GenerateParams,
    on_piece: &mut dyn FnMut(&str) -> bool,
) -> Result<Generation> {
    let tokens = chat_prompt(&session.model().clone(), template, messages)?;
    generate_tokens(session, &tokens, params, on_piece)
}

/// The prompt of the assistant's reply to `messages`: rendered by `template` with the
/// assistant's turn prefix, tokenized as a rendered chat.
pub fn chat_prompt(
    model: &Model,
    template: &ChatTemplate,
    messages: &[ChatMessage],
) -> Result<Vec<u32>> {
    chat_prompt_with(model, template, messages, &serde_json::Value::Null)
}

/// [`chat_prompt`] for any serializable messages (JSON messages with `tool_calls`), with extra
/// template variables (`extra`: `null` or a JSON object, e.g. `{"tools": […]}`).
pub fn chat_prompt_with<M: serde::Serialize + ?Sized>(
    model: &Model,
    template: &ChatTemplate,
    messages: &M,
    extra: &serde_json::Value,
) -> Result<Vec<u32>> {
    let rendered = render_chat_with(model, template, messages, true, extra)?;
    tokenize_rendered_chat(model, &rendered)
}

/// The conversation as the model's template renders it.
pub fn render_chat(
    model: &Model,
    template: &ChatTemplate,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
) -> Result<String> {
    render_chat_with(
        model,
        template,
        messages,
        add_generation_prompt,
        &serde_json::Value::Null,
    )
}

/// [`render_chat`] for any serializable messages, with extra template variables.
pub fn render_chat_with<M: serde::Serialize + ?Sized>(
    model: &Model,
    template: &ChatTemplate,
    messages: &M,
    add_generation_prompt: bool,
    extra: &serde_json::Value,
) -> Result<String> {
    let tok = model.tokenizer();
    let text_of = |id: Option<u32>| {
        id.and_then(|id| tok.token_text(id))
            .unwrap_or("")
            .to_string()
    };
    template.render_with(
        messages,
        add_generation_prompt,
        &text_of(tok.bos()),
        &text_of(tok.eos()),
        extra,
    )
}

/// Tokenizes a rendered chat prompt: special-token text is parsed, and BOS is added as the model
/// wants unless the template already wrote it.
pub fn tokenize_rendered_chat(model: &Model, rendered: &str) -> Result<Vec<u32>> {
    let tok = model.tokenizer();
    let starts_with_bos = tok
        .bos()
        .and_then(|id| tok.token_text(id))
        .is_some_and(|bos| !bos.is_empty() && rendered.starts_with(bos));
    tok.encode(rendered, !starts_with_bos, true)
}

/// Generates a continuation of `prompt` (token ids) in `session`, calling `on_piece` with each
/// complete UTF-8 piece of text as it is produced (returning false cancels).
///
/// The session's cache is reused: the longest common prefix of its tokens and `prompt` is not
/// evaluated again, so a multi-turn chat does not re-read its history.
pub fn generate_tokens(
    session: &mut Session,
    prompt: &[u32],
    params: &GenerateParams,
    on_piece: &mut dyn FnMut(&str) -> bool,
) -> Result<Generation> {
    if prompt.is_empty() {
        return Err(Error::InvalidArgument("the prompt has no tokens".into()));
    }
    if let Some(loras) = &params.loras {
        if !crate::lora::same_loras(loras, session.loras()) {
            return Err(Error::InvalidArgument(
                "a session generates with its own LoRA adapters (Session::set_loras)".into(),
            ));
        }
    }
    let n_ctx = session.n_ctx();
    // As llama.cpp: a prompt that leaves room generates until the context is full; one that
    // leaves no room for a single token is refused before any work.
    if prompt.len() >= n_ctx {
        return Err(Error::ContextFull {
            needed: prompt.len() + 1,
            n_ctx,
        });
    }
    let model = session.model().clone();
    let tokenizer = model.tokenizer();
    let mut stats = GenerateStats {
        prompt_tokens: prompt.len(),
        ..GenerateStats::default()
    };

    // Reuse the cached prefix and evaluate the rest of the prompt as one batch (in batches of
    // `n_batch`), as llama.cpp does: a fresh session's logits are then llama.cpp's to the bit.
    // A prompt evaluated before in this session gets its saved logits back instead of a second
    // evaluation of its last token (alone, that token would take the one-token arithmetic and
    // its logits would differ in the last bits), so a seed reproduces a generation exactly.
    let started = Instant::now();
    stats.reused_tokens = prefill(session, prompt)?;
    stats.prompt_seconds = started.elapsed().as_secs_f64();

    // Before the clock starts: the first constrained generation of a model builds its
    // vocabulary's token trie, a one-off cost that is not per-token generation.
    let mut continuation = Continuation::new(&model, params, n_ctx)?;
    let started = Instant::now();
    let stop_reason = loop {
        if let Some(reason) =
            continuation.next(tokenizer, session.logits(), session.tokens(), on_piece)?
        {
            break reason;
        }
        session.eval(&[continuation.last_token()])?;
    };
    stats.generate_seconds = started.elapsed().as_secs_f64();
    Ok(continuation.finish(stop_reason, stats, on_piece))
}

/// Brings `session` to exactly `prompt` with the logits of its last token, as a generation
/// from `prompt` starts: the cached prefix is reused and the rest evaluated; a prompt that
/// already is the session's tokens gets its saved logits back. Returns how many tokens were
/// reused. A generation from `prompt` right after this evaluates nothing more (so a session
/// saved in between restores to the same start).
pub fn prefill(session: &mut Session, prompt: &[u32]) -> Result<usize> {
    if prompt.is_empty() {
        return Err(Error::InvalidArgument("the prompt has no tokens".into()));
    }
    let common = session
        .tokens()
        .iter()
        .zip(prompt)
        .take_while(|(a, b)| a == b)
        .count();
    if common == prompt.len() && session.rewind_to_saved(prompt.len()) {
        return Ok(prompt.len());
    }
    let keep = common.min(prompt.len() - 1);
    session.truncate(keep);
    session.eval(&prompt[keep..])?;
    session.save_logits();
    Ok(keep)
}

/// One generation's state between forward passes: the sampler, the text decoded so far and
/// held back for stop strings, and the tokens chosen. Whoever runs the model (a session, or an
/// engine stepping many sequences) hands it the logits after each token; it chooses the next
/// token or says why the generation ends.
pub struct Continuation {
    sampler: Sampler,
    decoder: StreamDecoder,
    text: TextWithStops,
    tokens: Vec<u32>,
    /// Alternatives recorded per token, if log-probabilities are recorded.
    top_logprobs: Option<usize>,
    logprobs: Vec<TokenLogprobs>,
    /// Most tokens to generate.
    budget: usize,
    /// Most tokens the sequence may hold, prompt included.
    n_ctx: usize,
    /// The constraint's state, and the logits it masks (a copy: the caller's stay as the
    /// model computed them).
    guide: Option<Guide>,
    masked: Vec<f32>,
    preserved_tokens: Vec<u32>,
}

impl Continuation {
    /// A generation of `model` by `params` in a sequence that holds at most `n_ctx` tokens;
    /// fails when the constraint does not compile.
    pub fn new(model: &Model, params: &GenerateParams, n_ctx: usize) -> Result<Continuation> {
        let guide = match &params.constraint {
            Some(c) => Some(Guide::new(model.constraint_vocabulary()?, c)?),
            None => None,
        };
        Ok(Continuation {
            sampler: Sampler::new(&params.sampler),
            decoder: StreamDecoder::new(),
            text: TextWithStops::new(params.stop.clone()),
            tokens: Vec::new(),
            top_logprobs: params.top_logprobs,
            logprobs: Vec::new(),
            budget: match params.max_tokens {
                0 => n_ctx,
                n => n,
            },
            n_ctx,
            guide,
            masked: Vec::new(),
            preserved_tokens: params.preserved_tokens.clone(),
        })
    }

    /// Chooses the next token from `logits`, the model's output after the last of `history`
    /// (every token the sequence holds), and passes the text that is now certain to `on_piece`.
    /// `None` means: evaluate [`Continuation::last_token`] and call again with its logits.
    /// Fails only when the constraint does (its grammar grew too large, or it reached a state
    /// where nothing is allowed).
    pub fn next(
        &mut self,
        tokenizer: &Tokenizer,
        logits: &[f32],
        history: &[u32],
        on_piece: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Option<StopReason>> {
        if self.tokens.len() >= self.budget {
            return Ok(Some(StopReason::MaxTokens));
        }
        if history.len() >= self.n_ctx {
            return Ok(Some(StopReason::ContextFull));
        }
        let next = match &mut self.guide {
            Some(guide) => {
                self.masked.clear();
                self.masked.extend_from_slice(logits);
                guide.mask(&mut self.masked)?;
                self.sampler.sample(&self.masked, history)
            }
            None => self.sampler.sample(logits, history),
        };
        self.tokens.push(next);
        if let Some(n_top) = self.top_logprobs {
            self.logprobs.push(TokenLogprobs::of(logits, next, n_top));
        }
        if tokenizer.is_eog(next) {
            return Ok(Some(StopReason::EndOfGeneration));
        }
        if let Some(guide) = &mut self.guide {
            guide.accept(next)?;
        }
        let special = self.preserved_tokens.contains(&next);
        let piece = self.decoder.push_piece(tokenizer, next, special);
        let (ready, stopped) = self.text.push(&piece);
        if !ready.is_empty() && !on_piece(&ready) {
            return Ok(Some(StopReason::Cancelled));
        }
        if stopped {
            return Ok(Some(StopReason::StopString));
        }
        if self.tokens.len() >= self.budget {
            return Ok(Some(StopReason::MaxTokens));
        }
        Ok(None)
    }

    /// The token chosen last, to be evaluated next.
    pub fn last_token(&self) -> u32 {
        self.tokens.last().copied().unwrap_or(0)
    }

    /// The tokens chosen so far.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Ends the generation for `stop_reason`: text still held back (an incomplete character, a
    /// possible start of a stop string) goes to `on_piece` unless a stop string or the caller
    /// ended it. `stats` gets the count of generated tokens.
    pub fn finish(
        mut self,
        stop_reason: StopReason,
        mut stats: GenerateStats,
        on_piece: &mut dyn FnMut(&str) -> bool,
    ) -> Generation {
        if !matches!(stop_reason, StopReason::StopString | StopReason::Cancelled) {
            let rest = self.decoder.finish();
            let (mut ready, _) = self.text.push(&rest);
            ready.push_str(&self.text.flush());
            if !ready.is_empty() {
                // The generation is over either way; a false return changes nothing now.
                let _ = on_piece(&ready);
            }
        }
        stats.generated_tokens = self.tokens.len();
        Generation {
            text: self.text.into_text(),
            tokens: self.tokens,
            stop_reason,
            stats,
            logprobs: self.logprobs,
        }
    }
}

/// Generated text with stop strings: text is released only once no stop string can begin in it.
struct TextWithStops {
    stops: Vec<String>,
    text: String,
    /// Bytes of `text` already released.
    released: usize,
}

impl TextWithStops {
    fn new(stops: Vec<String>) -> Self {
        TextWithStops {
            stops,
            text: String::new(),
            released: 0,
        }
    }

    /// Appends `piece`; returns the text now safe to release, and whether a stop string was hit
    /// (the text is then cut before it).
    fn push(&mut self, piece: &str) -> (String, bool) {
        // A stop string may straddle the previous release point: search from far enough back.
        let longest_stop = self.stops.iter().map(String::len).max().unwrap_or(0);
        let mut search_from = self.text.len().saturating_sub(longest_stop);
        while !self.text.is_char_boundary(search_from) {
            search_from -= 1;
        }
        self.text.push_str(piece);
        let hit = self
            .stops
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| {
                self.text[search_from..]
                    .find(s.as_str())
                    .map(|i| search_from + i)
            })
            .min();
        if let Some(at) = hit {
            self.text.truncate(at.max(self.released));
            return (self.flush(), true);
        }
        // Hold back the longest tail that could still grow into a stop string.
        let hold = self
            .stops
            .iter()
            .map(|s| longest_suffix_prefix(&self.text[self.released..], s))
            .max()
            .unwrap_or(0);
        let end = self.text.len() - hold;
        let ready = self.text[self.released..end].to_string();
        self.released = end;
        (ready, false)
    }

    /// Releases everything held back.
    fn flush(&mut self) -> String {
        let ready = self.text[self.released..].to_string();
        self.released = self.text.len();
        ready
    }

    fn into_text(self) -> String {
        self.text
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of `stop` (at a char boundary).
fn longest_suffix_prefix(text: &str, stop: &str) -> usize {
    let max = text.len().min(stop.len().saturating_sub(1));
    (1..=max)
        .rev()
        .find(|&n| {
            text.is_char_boundary(text.len() - n)
                && stop
                    .as_bytes()
                    .starts_with(&text.as_bytes()[text.len() - n..])
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (Vec<String>, String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut t = TextWithStops::new(stops);
        let mut out = Vec::new();
        let mut stopped = false;
        for p in pieces {
            let (ready, hit) = t.push(p);
            if !ready.is_empty() {
                out.push(ready);
            }
            if hit {
                stopped = true;
                break;
            }
        }
        if !stopped {
            let rest = t.flush();
            if !rest.is_empty() {
                out.push(rest);
            }
        }
        (out, t.into_text(), stopped)
    }

    #[test]
    fn stop_string_is_excluded_even_when_split_across_pieces() {
        let (out, text, stopped) = run(&["\nUser:"], &["Hello", " there\nUs", "er: hi"]);
        assert!(stopped);
        assert_eq!(text, "Hello there");
        assert_eq!(out.concat(), "Hello there");
    }

    #[test]
    fn text_without_stops_passes_through_in_order() {
        let (out, text, stopped) = run(&["###"], &["a#", "b", "##", "c"]);
        assert!(!stopped);
        assert_eq!(text, "a#b##c");
        assert_eq!(out.concat(), text);
    }

    #[test]
    fn earliest_stop_wins() {
        let (_, text, stopped) = run(&["cd", "b"], &["abcd"]);
        assert!(stopped);
        assert_eq!(text, "a");
    }

    #[test]
    fn multibyte_text_is_held_on_char_boundaries() {
        let (out, text, _) = run(&["é!"], &["caf", "é", "?"]);
        assert_eq!(text, "café?");
        assert_eq!(out.concat(), "café?");
    }
}
