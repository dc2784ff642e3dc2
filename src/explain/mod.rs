//! Explain: show how the model turns a prompt into text, one token at a time.
//!
//! [`explain`] tokenizes a prompt, evaluates it, and generates up to `n_steps` tokens; for every
//! step it records the chosen token and the `top_k` most likely alternatives (probability =
//! softmax of the raw logits, before any sampler stage), and for the whole run the attention
//! weights of one layer (one head, or the mean over heads) of every evaluated token over the
//! tokens before it. The result, an [`Explanation`], is plain data (serde-serializable) and can
//! draw itself as a heatmap PNG ([`Explanation::heatmap_png`]) or a self-contained HTML page
//! ([`Explanation::to_html`]).
//!
//! Nothing here runs unless called: the attention probe is set on the session only for the
//! duration of [`explain`] and removed afterwards, so ordinary generation pays nothing.

use serde::Serialize;

use crate::sample::{Sampler, SamplerParams};
use crate::session::{AttentionProbe, Session};
use crate::tokenizer::{StreamDecoder, Tokenizer};
use crate::{Error, Result};

#[cfg(feature = "heatmap-png")]
mod figure;
#[cfg(feature = "heatmap-png")]
pub use figure::{Grid, GRID_KEYWORD};

/// What to explain.
#[derive(Debug, Clone, PartialEq)]
pub struct ExplainParams {
    /// Most tokens to generate (fewer if the model ends the text).
    pub n_steps: usize,
    /// Alternatives listed per step.
    pub top_k: usize,
    /// The layer whose attention is recorded (`None` = the last one).
    pub layer: Option<usize>,
    /// The query head whose attention is recorded (`None` = the mean over all heads).
    pub head: Option<usize>,
    /// How the next token is chosen (default: greedy).
    pub sampler: SamplerParams,
}

impl Default for ExplainParams {
    fn default() -> Self {
        ExplainParams {
            n_steps: 8,
            top_k: 5,
            layer: None,
            head: None,
            sampler: SamplerParams::greedy(),
        }
    }
}

/// A token and the text it stands for (bytes that are not UTF-8 on their own, such as part of a
/// multi-byte character, are shown as U+FFFD).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExplainToken {
    pub id: u32,
    pub piece: String,
}

/// One of the most likely next tokens at a step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExplainCandidate {
    pub id: u32,
    pub piece: String,
    /// Softmax of the raw logits over the whole vocabulary.
    pub prob: f32,
    /// The raw logit.
    pub logit: f32,
}

/// One generated token and what it was chosen from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExplainStep {
    /// The token the sampler chose.
    pub chosen: ExplainToken,
    /// The chosen token's probability (softmax of the raw logits) and raw logit; it need not be
    /// among `candidates` when sampling at a temperature.
    pub prob: f32,
    pub logit: f32,
    /// The `top_k` most likely tokens, most likely first.
    pub candidates: Vec<ExplainCandidate>,
    /// The chosen token ends the text (EOS, EOT, …); it is the last step.
    pub end_of_generation: bool,
}

/// Everything [`explain`] recorded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    /// The prompt's tokens, special tokens (BOS) included.
    pub prompt: Vec<ExplainToken>,
    /// One entry per generated token.
    pub steps: Vec<ExplainStep>,
    /// The generated text (without an end-of-generation token).
    pub text: String,
    /// The layer whose attention is in `attention`.
    pub layer: usize,
    /// The head whose attention is in `attention`, or `None` for the mean over heads.
    pub head: Option<usize>,
    /// The model's name (`general.name`, else its architecture).
    pub model: String,
    /// The model's layer and query-head counts.
    pub n_layer: usize,
    pub n_head: usize,
    /// The attention weights, one row per evaluated token: `attention[i][j]` is how much token
    /// `i` attends to token `j` (`j <= i`, so row `i` has `i + 1` entries, each row sums to 1).
    /// The tokens are the prompt followed by the chosen tokens, except the last chosen token:
    /// it is never evaluated (generation stops once it is sampled), so it attends to nothing.
    /// See [`Explanation::attention_tokens`].
    pub attention: Vec<Vec<f32>>,
}

impl Explanation {
    /// The tokens that `attention`'s rows and columns stand for, in order: the prompt, then the
    /// chosen tokens that were evaluated.
    pub fn attention_tokens(&self) -> Vec<&ExplainToken> {
        self.prompt
            .iter()
            .chain(self.steps.iter().map(|s| &s.chosen))
            .take(self.attention.len())
            .collect()
    }

    /// The figure's title: which attention it shows, and of which model.
    pub fn heatmap_title(&self) -> String {
        format!(
            "Attention, layer {} of {}, {} — {}",
            self.layer,
            self.n_layer,
            self.head_label(),
            self.model
        )
    }

    /// Which head the attention is: "head 3 of 9" or "mean of 9 heads".
    fn head_label(&self) -> String {
        match self.head {
            Some(h) => format!("head {h} of {}", self.n_head),
            None => format!("mean of {} heads", self.n_head),
        }
    }

    /// Without the figure's drawing and image crates (the `heatmap-png` feature) there is no
    /// PNG to return.
    #[cfg(not(feature = "heatmap-png"))]
    pub fn heatmap_png(&self, _cell_px: usize) -> Result<Vec<u8>> {
        Err(Error::InvalidArgument(
            "llmrt was built without the `heatmap-png` feature: no PNG encoder".into(),
        ))
    }

    /// A self-contained HTML page (inline CSS, the heatmap embedded as a PNG data URI, no
    /// external resources) with the token strip, the per-step candidate tables and the
    /// attention heatmap; `title` heads the page (e.g. the model's file name).
    pub fn to_html(&self, title: &str) -> Result<String> {
        let n = self.attention.len();
        let mut h = String::with_capacity(64 * 1024);
        h.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n");
        h.push_str(&format!(
            "<title>llmrt explain: {}</title>\n<style>{HTML_STYLE}</style></head><body>\n",
            esc(title)
        ));
        h.push_str(&format!(
            "<h1>llmrt explain <small>{}</small></h1>\n",
            esc(title)
        ));

        // The token strip: prompt tokens, then generated ones.
        h.push_str("<h2>Tokens</h2>\n<p class=\"note\">The text as the model sees it: one box per token (id on hover), <span class=\"tok\">prompt</span> then <span class=\"tok gen\">generated</span>. · is a space, ↵ a newline.</p>\n<div class=\"strip\">");
        for t in &self.prompt {
            h.push_str(&token_span(t, "tok"));
        }
        for s in &self.steps {
            h.push_str(&token_span(&s.chosen, "tok gen"));
        }
        h.push_str("</div>\n");
        h.push_str(&format!(
            "<p><b>Generated text:</b> <span class=\"text\">{}</span></p>\n",
            esc(&self.text)
        ));

        // One table per step.
        h.push_str("<h2>Steps</h2>\n<p class=\"note\">At each step the model gives every token in its vocabulary a score (logit); softmax turns the scores into probabilities, and the sampler picks one.</p>\n<div class=\"steps\">");
        for (k, s) in self.steps.iter().enumerate() {
            h.push_str(&format!(
                "<table class=\"step\"><caption>step {}: <span class=\"tok gen\">{}</span>{}</caption>\n<tr><th>#</th><th>token</th><th>id</th><th>probability</th><th>logit</th></tr>\n",
                k + 1,
                esc(&visible_piece(&s.chosen.piece)),
                if s.end_of_generation { " (end)" } else { "" }
            ));
            let mut listed = false;
            for (rank, c) in s.candidates.iter().enumerate() {
                let chosen = c.id == s.chosen.id;
                listed |= chosen;
                h.push_str(&candidate_row(&(rank + 1).to_string(), c, chosen));
            }
            if !listed {
                let c = ExplainCandidate {
                    id: s.chosen.id,
                    piece: s.chosen.piece.clone(),
                    prob: s.prob,
                    logit: s.logit,
                };
                h.push_str(&candidate_row("…", &c, true));
            }
            h.push_str("</table>\n");
        }
        h.push_str("</div>\n");

        // The heatmap: a labelled table when small enough to read, and the image always.
        let head = self.head_label();
        h.push_str(&format!(
            "<h2>Attention</h2>\n<p class=\"figtitle\">{}</p>\n",
            esc(&self.heatmap_title())
        ));
        h.push_str(&format!(
            "<p class=\"note\">Layer {} of {}, {head}. Row = the token being processed, column = a token it looks at; brighter = more weight (colour ∝ √weight). Each row sums to 1, and nothing is looked at above the diagonal: a token sees only the tokens before it. The last generated token was never processed, so it has no row.</p>\n",
            self.layer, self.n_layer
        ));
        if n == 0 {
            h.push_str("<p>(no tokens evaluated)</p>\n");
        } else {
            let tokens = self.attention_tokens();
            if n <= MAX_HTML_TABLE_TOKENS {
                h.push_str("<table class=\"heat\"><tr><th></th>");
                for t in &tokens {
                    h.push_str(&format!(
                        "<th class=\"col\"><div>{}</div></th>",
                        esc(&visible_piece(&t.piece))
                    ));
                }
                h.push_str("</tr>\n");
                for (i, row) in self.attention.iter().enumerate() {
                    h.push_str(&format!(
                        "<tr><th class=\"row\">{}</th>",
                        esc(&visible_piece(&tokens[i].piece))
                    ));
                    for (j, t) in tokens.iter().enumerate() {
                        match row.get(j) {
                            Some(&w) => {
                                let [r, g, b] = weight_colour(w);
                                h.push_str(&format!(
                                    "<td style=\"background:#{r:02x}{g:02x}{b:02x}\" title=\"{} → {}: {w:.4}\"></td>",
                                    esc(&visible_piece(&tokens[i].piece)),
                                    esc(&visible_piece(&t.piece))
                                ));
                            }
                            None => h.push_str("<td class=\"future\"></td>"),
                        }
                    }
                    h.push_str("</tr>\n");
                }
                h.push_str("</table>\n");
            }
            if cfg!(feature = "heatmap-png") {
                let cell = (HTML_IMAGE_SIDE / n).clamp(1, 16);
                let png = self.heatmap_png(cell)?;
                h.push_str(&format!(
                    "<p><img class=\"heatimg\" alt=\"{}\" title=\"{0}\" src=\"data:image/png;base64,{1}\"></p>\n",
                    esc(&self.heatmap_title()),
                    base64(&png)
                ));
            }
        }
        h.push_str("</body></html>\n");
        Ok(h)
    }
}

/// Largest heatmap image side, in pixels (bounds the memory a huge context could ask for).
pub const MAX_PNG_SIDE: usize = 16384;
/// The HTML page draws the attention as a labelled table up to this many tokens.
const MAX_HTML_TABLE_TOKENS: usize = 64;
/// Aimed-at side of the heatmap image in the HTML page, in pixels.
const HTML_IMAGE_SIDE: usize = 512;
/// Colour of the cells above the diagonal (positions a token cannot see).
#[cfg_attr(not(feature = "heatmap-png"), allow(dead_code))]
const FUTURE_RGB: [u8; 3] = [0xee, 0xee, 0xee];

const HTML_STYLE: &str = "
body{font-family:system-ui,sans-serif;margin:2em;color:#222;background:#fff}
h1 small{font-weight:normal;color:#666;font-size:60%}
.note{color:#555;max-width:60em}
.strip{display:flex;flex-wrap:wrap;gap:3px;margin:.5em 0}
.tok{font-family:ui-monospace,monospace;background:#e4ecf7;border:1px solid #9ab;border-radius:3px;padding:1px 4px;white-space:pre}
.tok.gen{background:#e6f4e0;border-color:#8b8}
.text{white-space:pre-wrap;font-family:ui-monospace,monospace}
.steps{display:flex;flex-wrap:wrap;gap:1.5em}
table.step{border-collapse:collapse;font-size:90%}
table.step caption{text-align:left;font-weight:bold;padding-bottom:.3em}
table.step td,table.step th{padding:2px 6px;border-bottom:1px solid #ddd;text-align:left}
table.step tr.chosen{background:#fff6d0;font-weight:bold}
td.tokcell{font-family:ui-monospace,monospace;white-space:pre}
.bar{display:inline-block;height:.8em;background:#3b528b;vertical-align:middle;margin-right:6px}
table.heat{border-collapse:collapse;font-family:ui-monospace,monospace;font-size:75%}
table.heat td{width:14px;height:14px;padding:0;border:1px solid #fff}
table.heat td.future{background:#eee}
table.heat th.row{text-align:right;padding-right:4px;white-space:pre}
table.heat th.col{vertical-align:bottom;height:8em;white-space:pre}
table.heat th.col div{writing-mode:vertical-rl;transform:rotate(180deg)}
img.heatimg{image-rendering:pixelated;border:1px solid #ccc}
";

fn token_span(t: &ExplainToken, class: &str) -> String {
    format!(
        "<span class=\"{class}\" title=\"id {}\">{}</span>",
        t.id,
        esc(&visible_piece(&t.piece))
    )
}

fn candidate_row(rank: &str, c: &ExplainCandidate, chosen: bool) -> String {
    format!(
        "<tr{}><td>{rank}</td><td class=\"tokcell\">{}</td><td>{}</td><td><span class=\"bar\" style=\"width:{:.1}px\"></span>{:.4}</td><td>{:.3}</td></tr>\n",
        if chosen { " class=\"chosen\"" } else { "" },
        esc(&visible_piece(&c.piece)),
        c.id,
        (c.prob * 120.0).max(1.0),
        c.prob,
        c.logit
    )
}

/// Tokenizes `prompt` (adding BOS/EOS as the model's vocab asks), and generates up to
/// `params.n_steps` tokens, recording the candidates at each step and the attention of one layer
/// over the whole text.
///
/// The session is reset first (no prefix reuse), so the attention covers the whole text; its
/// cache afterwards holds the prompt and every chosen token but the last. The attention probe is
/// removed before returning, on success or error.
pub fn explain(session: &mut Session, prompt: &str, params: &ExplainParams) -> Result<Explanation> {
    let model = session.model().clone();
    let c = model.config();
    let (n_layer, n_head) = (c.n_layer, c.n_head);
    let model_name = match model.gguf().get_str("general.name") {
        Ok(name) if !name.trim().is_empty() => name.trim().to_string(),
        _ => c.arch.name().to_string(),
    };
    let layer = params.layer.unwrap_or(n_layer.saturating_sub(1));
    let tokenizer = model.tokenizer();
    let prompt_ids = tokenizer.encode(prompt, true, false)?;
    if prompt_ids.is_empty() {
        return Err(Error::InvalidArgument("the prompt has no tokens".into()));
    }
    // Every token but the last chosen one is evaluated.
    let needed = prompt_ids.len() + params.n_steps.saturating_sub(1);
    if needed > session.n_ctx() {
        return Err(Error::ContextFull {
            needed,
            n_ctx: session.n_ctx(),
        });
    }

    session.reset();
    session.set_attention_probe(Some(AttentionProbe {
        layer,
        head: params.head,
        rows: Vec::new(),
    }))?;
    let steps = run_steps(session, tokenizer, &prompt_ids, params);
    let attention = session
        .attention_probe()
        .map(|p| p.rows.clone())
        .unwrap_or_default();
    session.set_attention_probe(None)?;
    let steps = steps?;

    let mut decoder = StreamDecoder::new();
    let mut text = String::new();
    for s in steps.iter().filter(|s| !s.end_of_generation) {
        text.push_str(&decoder.push(tokenizer, s.chosen.id));
    }
    text.push_str(&decoder.finish());

    Ok(Explanation {
        prompt: prompt_ids
            .iter()
            .map(|&id| token_info(tokenizer, id))
            .collect(),
        steps,
        text,
        layer,
        head: params.head,
        model: model_name,
        n_layer,
        n_head,
        attention,
    })
}

/// Evaluates the prompt and generates, recording each step.
fn run_steps(
    session: &mut Session,
    tokenizer: &Tokenizer,
    prompt_ids: &[u32],
    params: &ExplainParams,
) -> Result<Vec<ExplainStep>> {
    session.eval(prompt_ids)?;
    let mut sampler = Sampler::new(&params.sampler);
    let mut steps = Vec::with_capacity(params.n_steps);
    let mut order: Vec<u32> = Vec::new();
    for k in 0..params.n_steps {
        let logits = session.logits();
        let chosen = sampler.sample(logits, session.tokens());
        let probs = softmax(logits);
        top_k_ids(logits, params.top_k, &mut order);
        let candidates = order
            .iter()
            .map(|&id| {
                let ExplainToken { id, piece } = token_info(tokenizer, id);
                ExplainCandidate {
                    id,
                    piece,
                    prob: probs[id as usize],
                    logit: logits[id as usize],
                }
            })
            .collect();
        let end_of_generation = tokenizer.is_eog(chosen);
        steps.push(ExplainStep {
            chosen: token_info(tokenizer, chosen),
            prob: probs.get(chosen as usize).copied().unwrap_or(0.0),
            logit: logits.get(chosen as usize).copied().unwrap_or(f32::NAN),
            candidates,
            end_of_generation,
        });
        if end_of_generation || k + 1 == params.n_steps {
            break;
        }
        session.eval(&[chosen])?;
    }
    Ok(steps)
}

fn token_info(tokenizer: &Tokenizer, id: u32) -> ExplainToken {
    ExplainToken {
        id,
        piece: String::from_utf8_lossy(&tokenizer.token_to_piece(id)).into_owned(),
    }
}

/// Softmax of `logits` over the whole vocabulary, accumulated in f64 (NaN counts as -inf).
fn softmax(logits: &[f32]) -> Vec<f32> {
    let clean = |l: f32| if l.is_nan() { f32::NEG_INFINITY } else { l };
    let max = logits
        .iter()
        .map(|&l| clean(l))
        .fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return vec![0.0; logits.len()];
    }
    let exps: Vec<f64> = logits
        .iter()
        .map(|&l| (f64::from(clean(l)) - f64::from(max)).exp())
        .collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|&e| (e / sum) as f32).collect()
}

/// The ids of the `k` largest logits, largest first (ties by lower id), into `out`.
fn top_k_ids(logits: &[f32], k: usize, out: &mut Vec<u32>) {
    out.clear();
    out.extend(0..logits.len() as u32);
    let key = |&id: &u32| {
        let l = logits[id as usize];
        if l.is_nan() {
            f32::NEG_INFINITY
        } else {
            l
        }
    };
    let by_logit_desc = |a: &u32, b: &u32| key(b).total_cmp(&key(a)).then(a.cmp(b));
    let k = k.min(out.len());
    if k == 0 {
        out.clear();
        return;
    }
    if k < out.len() {
        out.select_nth_unstable_by(k - 1, by_logit_desc);
        out.truncate(k);
    }
    out.sort_unstable_by(by_logit_desc);
}

/// `piece` with its invisible characters made visible: space `·`, newline `↵`, tab `→`,
/// carriage return `␍`, other control characters as `\u{..}`.
pub fn visible_piece(piece: &str) -> String {
    let mut out = String::with_capacity(piece.len());
    for ch in piece.chars() {
        match ch {
            ' ' => out.push('·'),
            '\n' => out.push('↵'),
            '\t' => out.push('→'),
            '\r' => out.push('␍'),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// The colour of an attention weight in the heatmaps: viridis of √weight.
fn weight_colour(weight: f32) -> [u8; 3] {
    viridis(weight.clamp(0.0, 1.0).sqrt())
}

/// The viridis colour map (perceptually uniform, readable in grey and by colour-blind readers)
/// at `t` in [0, 1]: linear interpolation between nine evenly spaced samples of matplotlib's
/// viridis, which is close to the full map at this resolution.
pub fn viridis(t: f32) -> [u8; 3] {
    const STOPS: [[u8; 3]; 9] = [
        [0x44, 0x01, 0x54],
        [0x47, 0x2d, 0x7b],
        [0x3b, 0x52, 0x8b],
        [0x2c, 0x72, 0x8e],
        [0x21, 0x91, 0x8c],
        [0x28, 0xae, 0x80],
        [0x5e, 0xc9, 0x62],
        [0xad, 0xdc, 0x30],
        [0xfd, 0xe7, 0x25],
    ];
    let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
    let x = t * (STOPS.len() - 1) as f32;
    let i = (x.floor() as usize).min(STOPS.len() - 2);
    let f = x - i as f32;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    std::array::from_fn(|c| {
        (f32::from(a[c]) + (f32::from(b[c]) - f32::from(a[c])) * f).round() as u8
    })
}

/// HTML-escapes text for element content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Standard base64 (RFC 4648, with padding), for the data URI of the embedded image.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (input, expected) in cases {
            assert_eq!(base64(input.as_bytes()), expected, "{input:?}");
        }
    }

    #[test]
    fn viridis_hits_its_samples_and_is_monotonic_in_lightness() {
        assert_eq!(viridis(0.0), [0x44, 0x01, 0x54]);
        assert_eq!(viridis(0.5), [0x21, 0x91, 0x8c]);
        assert_eq!(viridis(1.0), [0xfd, 0xe7, 0x25]);
        // Perceived lightness (Rec. 709 luma) rises along the map: brighter = more weight.
        let luma = |[r, g, b]: [u8; 3]| {
            0.2126 * f32::from(r) + 0.7152 * f32::from(g) + 0.0722 * f32::from(b)
        };
        let mut last = -1.0;
        for i in 0..=100 {
            let l = luma(viridis(i as f32 / 100.0));
            assert!(l >= last, "luma falls at {i}%: {l} < {last}");
            last = l;
        }
    }

    #[test]
    fn top_k_orders_by_logit_then_id_and_skips_nan() {
        let logits = [0.5, f32::NAN, 2.0, 2.0, -1.0, 3.0];
        let mut out = Vec::new();
        top_k_ids(&logits, 3, &mut out);
        assert_eq!(out, [5, 2, 3]);
        top_k_ids(&logits, 10, &mut out);
        assert_eq!(out, [5, 2, 3, 0, 4, 1]);
        top_k_ids(&logits, 0, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn softmax_sums_to_one_and_keeps_order() {
        let p = softmax(&[1.0, 2.0, 3.0, f32::NAN]);
        let sum: f32 = p.iter().sum();
        assert!((sum - 1.0).abs() < 1e-6, "{sum}");
        assert!(p[0] < p[1] && p[1] < p[2]);
        assert_eq!(p[3], 0.0);
        // e^1 / e^2 ratio is preserved.
        assert!((p[1] / p[0] - std::f32::consts::E).abs() < 1e-4);
    }

    #[test]
    fn visible_piece_shows_whitespace() {
        assert_eq!(visible_piece(" the\n\tx\u{1}"), "·the↵→x\\u{1}");
    }
}
