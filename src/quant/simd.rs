//! Which SIMD instruction set the kernels use, chosen once at run time.

use std::sync::OnceLock;

/// A kernel implementation level. Chosen once per runtime with [`Simd::detect`] and passed down to
/// every kernel call, never looked up in a hot loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Simd {
    /// Plain Rust, the reference twin of every kernel. Runs everywhere.
    Scalar,
    /// x86-64 AVX2 + FMA + F16C (Haswell and later, Zen).
    Avx2,
    /// x86-64 AVX-512 F/BW/VL with VNNI (`vpdpbusd`): Ice Lake, Cascade Lake, Zen 4 and later.
    /// CPUs with AVX-512 but without VNNI use [`Simd::Avx2`].
    Avx512,
    /// aarch64 NEON with the dot-product extension.
    Neon,
}

impl Simd {
    /// The best level this CPU supports, unless the `LLMRT_SIMD` environment variable
    /// (`scalar`, `avx2`, `avx512`, `neon`) forces one. A forced level the CPU lacks falls back to
    /// the best supported one below it, so forcing can never produce an illegal instruction.
    pub fn detect() -> Simd {
        static DETECTED: OnceLock<Simd> = OnceLock::new();
        *DETECTED.get_or_init(|| {
            let best = Simd::best_supported();
            match std::env::var("LLMRT_SIMD")
                .ok()
                .as_deref()
                .and_then(Simd::from_name)
            {
                Some(forced) if forced.is_supported() => forced,
                Some(_) | None => best,
            }
        })
    }

    /// The best level the CPU supports, ignoring `LLMRT_SIMD`.
    pub fn best_supported() -> Simd {
        [Simd::Avx512, Simd::Avx2, Simd::Neon]
            .into_iter()
            .find(|s| s.is_supported())
            .unwrap_or(Simd::Scalar)
    }

    /// `self` if this CPU supports it, otherwise the best supported level below it. Public kernels
    /// pass their `simd` argument through this before running target-feature code, so a level
    /// constructed by hand can never execute an instruction the CPU lacks.
    #[inline]
    pub fn or_supported(self) -> Simd {
        if self.is_supported() {
            return self;
        }
        match self {
            Simd::Avx512 if Simd::Avx2.is_supported() => Simd::Avx2,
            _ => Simd::Scalar,
        }
    }

    /// Every level this CPU can run, scalar first (tests check each against scalar).
    pub fn all_supported() -> Vec<Simd> {
        [Simd::Scalar, Simd::Avx2, Simd::Avx512, Simd::Neon]
            .into_iter()
            .filter(|s| s.is_supported())
            .collect()
    }

    /// Whether this CPU can execute kernels of this level. Kernels ask this once per row call
    /// (through `or_supported`), so the answer of the feature checks is computed once per level
    /// and cached: a load and an index instead of a chain of `is_x86_feature_detected!`s.
    #[inline]
    pub fn is_supported(self) -> bool {
        static SUPPORTED: OnceLock<[bool; Simd::COUNT]> = OnceLock::new();
        SUPPORTED.get_or_init(|| {
            [Simd::Scalar, Simd::Avx2, Simd::Avx512, Simd::Neon].map(Simd::detect_support)
        })[self.index()]
    }

    /// The number of levels.
    const COUNT: usize = 4;

    /// The position of this level in the cache of [`Simd::is_supported`].
    #[inline]
    fn index(self) -> usize {
        match self {
            Simd::Scalar => 0,
            Simd::Avx2 => 1,
            Simd::Avx512 => 2,
            Simd::Neon => 3,
        }
    }

    /// The feature checks behind [`Simd::is_supported`].
    fn detect_support(self) -> bool {
        match self {
            Simd::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2 => {
                is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("fma")
                    && is_x86_feature_detected!("f16c")
            }
            #[cfg(target_arch = "x86_64")]
            Simd::Avx512 => {
                Simd::Avx2.detect_support()
                    && is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vl")
                    && is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(target_arch = "aarch64")]
            Simd::Neon => std::arch::is_aarch64_feature_detected!("dotprod"),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// Parses `scalar`, `avx2`, `avx512` or `neon` (case-insensitive).
    pub fn from_name(name: &str) -> Option<Simd> {
        match name.to_ascii_lowercase().as_str() {
            "scalar" => Some(Simd::Scalar),
            "avx2" => Some(Simd::Avx2),
            "avx512" => Some(Simd::Avx512),
            "neon" => Some(Simd::Neon),
            _ => None,
        }
    }

    /// The name `from_name` accepts.
    pub fn name(self) -> &'static str {
        match self {
            Simd::Scalar => "scalar",
            Simd::Avx2 => "avx2",
            Simd::Avx512 => "avx512",
            Simd::Neon => "neon",
        }
    }
}
