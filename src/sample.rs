//! Samplers and the sampler chain. (Placeholder.)
