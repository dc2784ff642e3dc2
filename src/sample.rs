//! Samplers. (Placeholder until the samplers land: the signatures are the agreed API.)

/// Sampling parameters.
#[derive(Debug, Clone, Default)]
pub struct SamplerParams {
    pub temperature: f32,
    pub top_k: usize,
    pub top_p: f32,
    pub min_p: f32,
    pub repeat_penalty: f32,
    pub frequency_penalty: f32,
    pub presence_penalty: f32,
    pub penalty_last_n: usize,
    pub logit_bias: Vec<(u32, f32)>,
    pub seed: u64,
}

/// Placeholder.
#[derive(Debug)]
pub struct Sampler {}

impl Sampler {
    pub fn new(_params: &SamplerParams) -> Sampler {
        Sampler {}
    }
    pub fn sample(&mut self, _logits: &[f32], _history: &[u32]) -> u32 {
        todo!()
    }
}
