//! Samplers and the sampler chain: choosing the next token id from a row of logits.
//!
//! A [`Sampler`] runs a chain of [`Stage`]s over a reusable candidate buffer and then picks one
//! candidate, either the most likely one ([`Pick::Greedy`]) or a random draw from the softmax of
//! what survived ([`Pick::Draw`]). [`Sampler::new`] builds llama.cpp's default chain from
//! [`SamplerParams`]:
//!
//! ```text
//! logit bias → penalties → top-k → top-p → min-p → temperature → softmax → draw
//! ```
//!
//! and with `temperature <= 0` only `logit bias → penalties → argmax`.
//!
//! # Reproducibility
//! The random draw uses xoshiro256** (Blackman and Vigna, 2018), its 256-bit state seeded from
//! the 64-bit seed by splitmix64, as its authors recommend. Both are integer-only, so a seed gives
//! the same stream of random numbers on every platform; given the same logits, a seed reproduces a
//! generation exactly.
//!
//! # Allocation
//! The candidate buffer and the penalty scratch buffers live in the sampler and only grow, so after
//! the first token [`Sampler::sample`] allocates nothing.

use std::cmp::Ordering;

/// The seed [`SamplerParams::default`] uses. It is a fixed value, not a request for randomness:
/// a default-configured sampler is reproducible. (llama.cpp uses the same number to mean "pick a
/// random seed"; callers who want that pass their own seed.)
pub const DEFAULT_SEED: u64 = 0xFFFF_FFFF;

/// What the sampler chain does; every field has an "off" value.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplerParams {
    /// Softmax temperature. `<= 0` means greedy: the argmax after bias and penalties.
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens. `0` = off.
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability sums to at least `top_p`.
    /// `1.0` = off.
    pub top_p: f32,
    /// Keep the tokens whose probability is at least `min_p` times the top token's. `0.0` = off.
    pub min_p: f32,
    /// Repetition penalty for tokens seen in the window: positive logits are divided by it,
    /// negative ones multiplied (as llama.cpp). `1.0` = off.
    pub repeat_penalty: f32,
    /// Subtracted from a logit once per occurrence of the token in the window. `0.0` = off.
    pub frequency_penalty: f32,
    /// Subtracted from a logit once if the token occurs in the window at all. `0.0` = off.
    pub presence_penalty: f32,
    /// How many of the most recent tokens (prompt and generated) the penalties look at.
    /// `0` turns the penalties off.
    pub penalty_last_n: usize,
    /// Added to the logits of the given token ids before anything else (`-inf` bans a token).
    /// Entries for the same id add up; ids outside the vocabulary are ignored.
    pub logit_bias: Vec<(u32, f32)>,
    /// Seed of the random draw.
    pub seed: u64,
}

impl Default for SamplerParams {
    /// llama.cpp's defaults (`common_params_sampling`): temperature 0.8, top-k 40, top-p 0.95,
    /// min-p 0.05, no penalties (window 64), no bias, and the fixed [`DEFAULT_SEED`].
    fn default() -> Self {
        SamplerParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            penalty_last_n: 64,
            logit_bias: Vec::new(),
            seed: DEFAULT_SEED,
        }
    }
}

impl SamplerParams {
    /// Greedy decoding: the argmax of the raw logits.
    pub fn greedy() -> Self {
        SamplerParams {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            ..SamplerParams::default()
        }
    }
}

/// One token still in the running: its id, its (adjusted) logit, and after a stage that needs
/// them, its probability among the current candidates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub id: u32,
    pub logit: f32,
    pub prob: f32,
}

/// One step of the chain. Stages that look tokens up by id (bias, penalties) work anywhere in
/// the chain, but are cheapest first, while the buffer is still the whole vocabulary in id order.
#[derive(Debug, Clone, PartialEq)]
pub enum Stage {
    /// Add a bias to the logits of some ids.
    LogitBias(Vec<(u32, f32)>),
    /// Repetition, frequency and presence penalties over the last `last_n` tokens of the history.
    Penalties {
        last_n: usize,
        repeat: f32,
        frequency: f32,
        presence: f32,
    },
    /// Keep the k most likely candidates (sorted, most likely first). `0` keeps all.
    TopK(usize),
    /// Nucleus sampling: keep the most likely candidates until their probability reaches p.
    TopP(f32),
    /// Keep candidates with probability at least p times the most likely one's.
    MinP(f32),
    /// Divide logits by the temperature; `<= 0` keeps only the most likely candidate.
    Temperature(f32),
}

/// How the sampler picks from what the chain leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// The candidate with the highest logit; ties go to the lowest id.
    Greedy,
    /// A random draw from the softmax of the candidates' logits.
    Draw,
}

/// A seeded sampler chain. One per generation stream; not shared between threads.
#[derive(Debug, Clone)]
pub struct Sampler {
    stages: Vec<Stage>,
    pick: Pick,
    rng: Xoshiro256StarStar,
    /// The working set, reused across calls.
    candidates: Vec<Candidate>,
    /// True while `candidates[i].id == i` for every i (the whole vocabulary, untouched order).
    id_ordered: bool,
    /// True while `candidates` is sorted by descending logit.
    sorted: bool,
    /// Penalty scratch: the window's tokens, sorted.
    window: Vec<u32>,
    /// Penalty scratch: (token, occurrences in the window), sorted by token.
    counts: Vec<(u32, u32)>,
}

impl Sampler {
    /// The llama.cpp default chain configured by `params` (see the module docs); stages that
    /// are off are left out.
    pub fn new(params: &SamplerParams) -> Sampler {
        let mut stages = Vec::new();
        if !params.logit_bias.is_empty() {
            stages.push(Stage::LogitBias(params.logit_bias.clone()));
        }
        let penalties_on = params.repeat_penalty != 1.0
            || params.frequency_penalty != 0.0
            || params.presence_penalty != 0.0;
        if penalties_on && params.penalty_last_n > 0 {
            stages.push(Stage::Penalties {
                last_n: params.penalty_last_n,
                repeat: params.repeat_penalty,
                frequency: params.frequency_penalty,
                presence: params.presence_penalty,
            });
        }
        // Greedy when the temperature is not positive (NaN included): truncation stages cannot
        // change the argmax, so they are skipped.
        if params.temperature.is_nan() || params.temperature <= 0.0 {
            return Sampler::from_stages(stages, Pick::Greedy, params.seed);
        }
        if params.top_k > 0 {
            stages.push(Stage::TopK(params.top_k));
        }
        if params.top_p < 1.0 {
            stages.push(Stage::TopP(params.top_p));
        }
        if params.min_p > 0.0 {
            stages.push(Stage::MinP(params.min_p));
        }
        if params.temperature != 1.0 {
            stages.push(Stage::Temperature(params.temperature));
        }
        Sampler::from_stages(stages, Pick::Draw, params.seed)
    }

    /// A custom chain: `stages` run in order, then `pick` chooses.
    pub fn from_stages(stages: Vec<Stage>, pick: Pick, seed: u64) -> Sampler {
        let stages = stages
            .into_iter()
            .map(|stage| match stage {
                Stage::LogitBias(bias) => Stage::LogitBias(merge_bias(bias)),
                other => other,
            })
            .collect();
        Sampler {
            stages,
            pick,
            rng: Xoshiro256StarStar::seed_from_u64(seed),
            candidates: Vec::new(),
            id_ordered: false,
            sorted: false,
            window: Vec::new(),
            counts: Vec::new(),
        }
    }

    /// The chain's stages, in order.
    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// How the sampler picks after the chain.
    pub fn pick(&self) -> Pick {
        self.pick
    }

    /// Restart the random stream from `seed`.
    pub fn reseed(&mut self, seed: u64) {
        self.rng = Xoshiro256StarStar::seed_from_u64(seed);
    }

    /// Choose the next token from `logits` (one per vocabulary id). `history` is every token so
    /// far, prompt and generated; the penalties look at its tail. Returns 0 for empty `logits`.
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        self.run_chain(logits, history);
        match self.pick {
            Pick::Greedy => self.argmax(),
            Pick::Draw => self.draw(),
        }
    }

    /// The candidates the chain leaves for `logits` and `history`, with their probabilities
    /// (softmax of the adjusted logits over the survivors); what [`Sampler::sample`] draws from.
    /// Does not advance the random stream.
    pub fn distribution(&mut self, logits: &[f32], history: &[u32]) -> &[Candidate] {
        self.run_chain(logits, history);
        self.softmax();
        &self.candidates
    }

    fn run_chain(&mut self, logits: &[f32], history: &[u32]) {
        self.candidates.clear();
        // NaN would poison every comparison below; a NaN logit can never be chosen.
        self.candidates
            .extend(logits.iter().enumerate().map(|(id, &logit)| Candidate {
                id: id as u32,
                logit: if logit.is_nan() {
                    f32::NEG_INFINITY
                } else {
                    logit
                },
                prob: 0.0,
            }));
        self.id_ordered = true;
        self.sorted = false;
        // Stages are taken out for the loop so they can be borrowed while `self` is mutated.
        let stages = std::mem::take(&mut self.stages);
        for stage in &stages {
            match stage {
                Stage::LogitBias(bias) => self.apply_bias(bias),
                Stage::Penalties {
                    last_n,
                    repeat,
                    frequency,
                    presence,
                } => self.apply_penalties(history, *last_n, *repeat, *frequency, *presence),
                Stage::TopK(k) => self.top_k(*k),
                Stage::TopP(p) => self.top_p(*p),
                Stage::MinP(p) => self.min_p(*p),
                Stage::Temperature(t) => self.temperature(*t),
            }
        }
        self.stages = stages;
    }

    /// Add `delta(logit)` to the candidate with id `id`, if it is still a candidate.
    fn adjust(&mut self, adjustments: &[(u32, f32)]) {
        if self.id_ordered {
            for &(id, delta) in adjustments {
                if let Some(c) = self.candidates.get_mut(id as usize) {
                    c.logit += delta;
                }
            }
        } else {
            for c in &mut self.candidates {
                if let Ok(i) = adjustments.binary_search_by_key(&c.id, |&(id, _)| id) {
                    c.logit += adjustments[i].1;
                }
            }
            // Adjusted logits may be out of order now.
            self.sorted = false;
        }
    }

    fn apply_bias(&mut self, bias: &[(u32, f32)]) {
        self.adjust(bias);
    }

    /// llama.cpp's penalties: for a token seen `count > 0` times in the window, a non-positive
    /// logit is multiplied by `repeat` and a positive one divided by it, then
    /// `count * frequency + presence` is subtracted.
    fn apply_penalties(
        &mut self,
        history: &[u32],
        last_n: usize,
        repeat: f32,
        frequency: f32,
        presence: f32,
    ) {
        let start = history.len().saturating_sub(last_n);
        self.window.clear();
        self.window.extend_from_slice(&history[start..]);
        self.window.sort_unstable();
        self.counts.clear();
        for &token in &self.window {
            match self.counts.last_mut() {
                Some((last, count)) if *last == token => *count += 1,
                _ => self.counts.push((token, 1)),
            }
        }
        let penalize = |c: &mut Candidate, count: u32| {
            if c.logit <= 0.0 {
                c.logit *= repeat;
            } else {
                c.logit /= repeat;
            }
            c.logit -= count as f32 * frequency + presence;
        };
        if self.id_ordered {
            for &(id, count) in &self.counts {
                if let Some(c) = self.candidates.get_mut(id as usize) {
                    penalize(c, count);
                }
            }
        } else {
            for c in &mut self.candidates {
                if let Ok(i) = self.counts.binary_search_by_key(&c.id, |&(id, _)| id) {
                    penalize(c, self.counts[i].1);
                }
            }
            self.sorted = false;
        }
    }

    fn sort(&mut self) {
        if !self.sorted {
            self.candidates.sort_unstable_by(by_descending_logit);
            self.sorted = true;
            self.id_ordered = false;
        }
    }

    fn top_k(&mut self, k: usize) {
        if k == 0 {
            return;
        }
        if k < self.candidates.len() {
            // Partition so the k best come first, then sort only those.
            self.candidates
                .select_nth_unstable_by(k - 1, by_descending_logit);
            self.candidates.truncate(k);
            self.sorted = false;
        }
        self.sort();
    }

    /// Softmax of the candidates' logits into their `prob` fields, in f64 for the sum.
    fn softmax(&mut self) {
        let max = self
            .candidates
            .iter()
            .map(|c| c.logit)
            .fold(f32::NEG_INFINITY, f32::max);
        if max == f32::NEG_INFINITY {
            // Everything is banned: spread evenly rather than divide by zero.
            let uniform = 1.0 / self.candidates.len().max(1) as f32;
            self.candidates.iter_mut().for_each(|c| c.prob = uniform);
            return;
        }
        let mut sum = 0.0f64;
        for c in &mut self.candidates {
            c.prob = (c.logit - max).exp();
            sum += c.prob as f64;
        }
        // sum >= 1: the max itself contributes exp(0).
        for c in &mut self.candidates {
            c.prob = (c.prob as f64 / sum) as f32;
        }
    }

    fn top_p(&mut self, p: f32) {
        if p >= 1.0 || self.candidates.is_empty() {
            return;
        }
        self.sort();
        self.softmax();
        // Keep the shortest prefix whose mass reaches p (the token that crosses it included),
        // at least one token.
        let mut cumulative = 0.0f64;
        let mut keep = self.candidates.len();
        for (i, c) in self.candidates.iter().enumerate() {
            cumulative += c.prob as f64;
            if cumulative >= p as f64 {
                keep = i + 1;
                break;
            }
        }
        self.candidates.truncate(keep);
    }

    fn min_p(&mut self, p: f32) {
        if p <= 0.0 || self.candidates.is_empty() {
            return;
        }
        // prob_i >= p * prob_max  ⇔  logit_i >= logit_max + ln p (the softmax denominators cancel).
        let max = self
            .candidates
            .iter()
            .map(|c| c.logit)
            .fold(f32::NEG_INFINITY, f32::max);
        let threshold = max + p.ln();
        // `retain` keeps the order, so sortedness and id order survive (id order only if
        // nothing is removed).
        let before = self.candidates.len();
        self.candidates.retain(|c| c.logit >= threshold);
        if self.candidates.len() != before {
            self.id_ordered = false;
        }
    }

    fn temperature(&mut self, t: f32) {
        if t > 0.0 {
            for c in &mut self.candidates {
                c.logit /= t;
            }
        } else if let Some(best) = self.best_index() {
            let best = self.candidates[best];
            self.candidates.clear();
            self.candidates.push(best);
            self.id_ordered = false;
            self.sorted = true;
        }
    }

    /// Index of the candidate with the highest logit, ties to the lowest id.
    fn best_index(&self) -> Option<usize> {
        let mut best: Option<usize> = None;
        for (i, c) in self.candidates.iter().enumerate() {
            best = match best {
                Some(b) if by_descending_logit(&self.candidates[b], c) != Ordering::Greater => {
                    Some(b)
                }
                _ => Some(i),
            };
        }
        best
    }

    fn argmax(&self) -> u32 {
        self.best_index().map_or(0, |i| self.candidates[i].id)
    }

    fn draw(&mut self) -> u32 {
        if self.candidates.is_empty() {
            return 0;
        }
        self.softmax();
        let target = self.rng.next_f64();
        let mut cumulative = 0.0f64;
        for c in &self.candidates {
            cumulative += c.prob as f64;
            if target < cumulative {
                return c.id;
            }
        }
        // Rounding left the total just under `target`: the last candidate with any mass.
        self.candidates
            .iter()
            .rev()
            .find(|c| c.prob > 0.0)
            .map_or(self.candidates[0].id, |c| c.id)
    }
}

/// Descending by logit, ties ascending by id, so every sort and selection is deterministic.
fn by_descending_logit(a: &Candidate, b: &Candidate) -> Ordering {
    b.logit.total_cmp(&a.logit).then(a.id.cmp(&b.id))
}

/// Sort bias entries by id and sum duplicates, so lookups can binary-search.
fn merge_bias(mut bias: Vec<(u32, f32)>) -> Vec<(u32, f32)> {
    bias.sort_by_key(|&(id, _)| id);
    let mut merged: Vec<(u32, f32)> = Vec::with_capacity(bias.len());
    for (id, delta) in bias {
        match merged.last_mut() {
            Some((last, sum)) if *last == id => *sum += delta,
            _ => merged.push((id, delta)),
        }
    }
    merged
}

/// xoshiro256** 1.0 (Blackman and Vigna): a small, fast, well-tested 64-bit generator.
#[derive(Debug, Clone)]
struct Xoshiro256StarStar {
    s: [u64; 4],
}

impl Xoshiro256StarStar {
    /// Expand a 64-bit seed into the 256-bit state with splitmix64, which never yields the
    /// all-zero state xoshiro cannot leave.
    fn seed_from_u64(seed: u64) -> Self {
        let mut x = seed;
        let mut splitmix64 = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Xoshiro256StarStar {
            s: [splitmix64(), splitmix64(), splitmix64(), splitmix64()],
        }
    }

    fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1): the top 53 bits as the mantissa.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Probabilities computed by hand are compared to this precision.
    const PROB_TOLERANCE: f32 = 1e-6;

    fn chain(stages: Vec<Stage>) -> Sampler {
        Sampler::from_stages(stages, Pick::Draw, 1)
    }

    fn ids(candidates: &[Candidate]) -> Vec<u32> {
        candidates.iter().map(|c| c.id).collect()
    }

    #[test]
    fn xoshiro_matches_reference_stream() {
        // First outputs of xoshiro256** from the state {1, 2, 3, 4}, as the reference C code
        // (xoshiro256starstar.c) computes them; the first three can be checked by hand.
        let mut rng = Xoshiro256StarStar { s: [1, 2, 3, 4] };
        assert_eq!(rng.next_u64(), 11520);
        assert_eq!(rng.next_u64(), 0);
        assert_eq!(rng.next_u64(), 1509978240);
        assert_eq!(rng.next_u64(), 1215971899390074240);
    }

    #[test]
    fn splitmix64_seeding_matches_reference() {
        // splitmix64 from seed 0: the first output is the well-known 0xE220A8397B1DCDAF.
        let rng = Xoshiro256StarStar::seed_from_u64(0);
        assert_eq!(rng.s[0], 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn softmax_of_hand_computed_logits() {
        // ln 1, ln 2, ln 3, ln 4 → probabilities 0.1, 0.2, 0.3, 0.4.
        let logits: Vec<f32> = [1.0f32, 2.0, 3.0, 4.0].iter().map(|x| x.ln()).collect();
        let mut s = chain(vec![]);
        let d = s.distribution(&logits, &[]);
        for (c, want) in d.iter().zip([0.1, 0.2, 0.3, 0.4]) {
            assert!((c.prob - want).abs() < PROB_TOLERANCE, "{c:?} vs {want}");
        }
    }

    #[test]
    fn top_k_keeps_the_k_best_sorted() {
        let logits = [0.5, 3.0, -1.0, 2.0, 3.0, 0.0];
        let mut s = chain(vec![Stage::TopK(3)]);
        // Ties (ids 1 and 4 at 3.0) go to the lower id first.
        assert_eq!(ids(s.distribution(&logits, &[])), vec![1, 4, 3]);
        let mut all = chain(vec![Stage::TopK(0)]);
        assert_eq!(all.distribution(&logits, &[]).len(), logits.len());
        let mut more = chain(vec![Stage::TopK(100)]);
        assert_eq!(ids(more.distribution(&logits, &[])), vec![1, 4, 3, 0, 5, 2]);
    }

    #[test]
    fn top_p_keeps_the_token_that_crosses_the_threshold() {
        // Probabilities 0.4, 0.3, 0.2, 0.1 (ids 3, 2, 1, 0).
        let logits: Vec<f32> = [1.0f32, 2.0, 3.0, 4.0].iter().map(|x| x.ln()).collect();
        let cases = [(0.35, vec![3]), (0.5, vec![3, 2]), (0.75, vec![3, 2, 1])];
        for (p, want) in cases {
            let mut s = chain(vec![Stage::TopP(p)]);
            let d = s.distribution(&logits, &[]);
            assert_eq!(ids(d), want, "top_p {p}");
            // Renormalized over the survivors.
            let total: f32 = d.iter().map(|c| c.prob).sum();
            assert!((total - 1.0).abs() < PROB_TOLERANCE);
        }
        let mut s = chain(vec![Stage::TopP(1.0)]);
        assert_eq!(s.distribution(&logits, &[]).len(), 4);
    }

    #[test]
    fn min_p_threshold_is_relative_to_the_top_token() {
        // Probabilities 0.1, 0.2, 0.3, 0.4: min_p 0.45 keeps p >= 0.18, 0.55 keeps p >= 0.22,
        // 0.76 keeps p >= 0.304.
        let logits: Vec<f32> = [1.0f32, 2.0, 3.0, 4.0].iter().map(|x| x.ln()).collect();
        let mut s = chain(vec![Stage::MinP(0.45)]);
        assert_eq!(ids(s.distribution(&logits, &[])), vec![1, 2, 3]);
        let mut s = chain(vec![Stage::MinP(0.55)]);
        assert_eq!(ids(s.distribution(&logits, &[])), vec![2, 3]);
        let mut s = chain(vec![Stage::MinP(0.76)]);
        assert_eq!(ids(s.distribution(&logits, &[])), vec![3]);
        let d = s.distribution(&logits, &[]);
        assert!((d[0].prob - 1.0).abs() < PROB_TOLERANCE);
    }

    #[test]
    fn temperature_scales_logits() {
        let logits = [0.0f32, 2.0];
        let mut s = chain(vec![Stage::Temperature(2.0)]);
        let d = s.distribution(&logits, &[]);
        // softmax([0, 1]) = [1/(1+e), e/(1+e)].
        let e = std::f32::consts::E;
        assert!((d[0].prob - 1.0 / (1.0 + e)).abs() < PROB_TOLERANCE);
        assert!((d[1].prob - e / (1.0 + e)).abs() < PROB_TOLERANCE);
        let mut zero = chain(vec![Stage::Temperature(0.0)]);
        assert_eq!(ids(zero.distribution(&[1.0, 5.0, 5.0, 2.0], &[])), vec![1]);
    }

    #[test]
    fn logit_bias_adds_and_bans() {
        let logits = [1.0f32, 1.0, 1.0];
        let mut s = chain(vec![Stage::LogitBias(vec![
            (2, 0.5),
            (0, f32::NEG_INFINITY),
            (2, 0.25),
            (99, 1.0), // outside the vocabulary: ignored
        ])]);
        let d = s.distribution(&logits, &[]).to_vec();
        assert_eq!(d[0].prob, 0.0);
        assert_eq!(d[2].logit, 1.75);
        let mut greedy = Sampler::new(&SamplerParams {
            logit_bias: vec![(0, 10.0)],
            ..SamplerParams::greedy()
        });
        assert_eq!(greedy.sample(&[1.0, 5.0, 2.0], &[]), 0);
    }

    #[test]
    fn repeat_penalty_divides_positive_and_multiplies_negative_logits() {
        let logits = [2.0f32, -2.0, 2.0, -2.0];
        let mut s = chain(vec![Stage::Penalties {
            last_n: 64,
            repeat: 2.0,
            frequency: 0.0,
            presence: 0.0,
        }]);
        let d = s.distribution(&logits, &[0, 1, 0]).to_vec();
        let adjusted: Vec<f32> = d.iter().map(|c| c.logit).collect();
        assert_eq!(adjusted, vec![1.0, -4.0, 2.0, -2.0]);
    }

    #[test]
    fn frequency_and_presence_penalties_count_the_window_only() {
        let logits = [1.0f32, 1.0, 1.0];
        let mut s = chain(vec![Stage::Penalties {
            last_n: 4,
            repeat: 1.0,
            frequency: 0.5,
            presence: 0.25,
        }]);
        // The window is the last 4 tokens [1, 1, 1, 2]; the leading 0 is outside it.
        let d = s.distribution(&logits, &[0, 1, 1, 1, 2]).to_vec();
        let adjusted: Vec<f32> = d.iter().map(|c| c.logit).collect();
        assert_eq!(adjusted, vec![1.0, 1.0 - 1.5 - 0.25, 1.0 - 0.5 - 0.25]);
    }

    #[test]
    fn id_stages_after_truncation_still_find_their_tokens() {
        // Bias after top-k has to look ids up in a sorted buffer.
        let logits = [0.0f32, 3.0, 2.0, 1.0];
        let mut s = chain(vec![
            Stage::TopK(2),
            Stage::LogitBias(vec![(2, 5.0), (0, 9.0)]),
        ]);
        let d = s.distribution(&logits, &[]).to_vec();
        assert_eq!(ids(&d), vec![1, 2]);
        assert_eq!(d[1].logit, 7.0);
        let mut g = Sampler::from_stages(
            vec![Stage::TopK(2), Stage::LogitBias(vec![(2, 5.0)])],
            Pick::Greedy,
            0,
        );
        assert_eq!(g.sample(&logits, &[]), 2);
    }

    #[test]
    fn greedy_ties_go_to_the_lowest_id_and_nan_is_never_chosen() {
        let mut s = Sampler::new(&SamplerParams::greedy());
        assert_eq!(s.sample(&[1.0, 4.0, 4.0, f32::NAN], &[]), 1);
        assert_eq!(s.sample(&[], &[]), 0);
    }

    #[test]
    fn default_params_build_the_llama_cpp_chain() {
        let s = Sampler::new(&SamplerParams::default());
        assert_eq!(
            s.stages(),
            &[
                Stage::TopK(40),
                Stage::TopP(0.95),
                Stage::MinP(0.05),
                Stage::Temperature(0.8)
            ]
        );
        assert_eq!(s.pick(), Pick::Draw);
        let g = Sampler::new(&SamplerParams {
            repeat_penalty: 1.1,
            temperature: 0.0,
            ..SamplerParams::default()
        });
        assert_eq!(g.pick(), Pick::Greedy);
        assert!(matches!(g.stages(), [Stage::Penalties { last_n: 64, .. }]));
    }

    #[test]
    fn draws_follow_the_distribution() {
        // Probabilities 0.1, 0.2, 0.3, 0.4; 40000 draws put each frequency within 0.01.
        const DRAWS: usize = 40_000;
        const FREQUENCY_TOLERANCE: f64 = 0.01;
        let logits: Vec<f32> = [1.0f32, 2.0, 3.0, 4.0].iter().map(|x| x.ln()).collect();
        let mut s = chain(vec![]);
        let mut counts = [0usize; 4];
        for _ in 0..DRAWS {
            counts[s.sample(&logits, &[]) as usize] += 1;
        }
        for (i, &n) in counts.iter().enumerate() {
            let freq = n as f64 / DRAWS as f64;
            let want = (i + 1) as f64 / 10.0;
            assert!((freq - want).abs() < FREQUENCY_TOLERANCE, "id {i}: {freq}");
        }
    }
}
