//! Kernel generators, one file per family. Each takes a spec holding the model's
//! dimensions (all baked into the PTX as immediates) and returns a [`GeneratedKernel`].

mod quantize_q8_1;
mod reduce;
mod rmsnorm;
mod spec;

pub use rmsnorm::RowLayout;

pub use quantize_q8_1::{Q8_1_BLOCK_BYTES, Q8_1_BLOCK_VALUES};
pub use spec::{
    Access, BufferParam, GenError, KernelSpec, ParamKind, ParamSpec, QuantizeQ8_1, RmsNorm,
};

use serde::{Deserialize, Serialize};

use crate::launch::LaunchSpec;
use crate::target::Target;

/// A kernel with everything an engine needs to run it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeneratedKernel {
    /// The entry name; it encodes the spec (`rmsnorm_f32_n4096_eps3727c5ac`).
    pub name: String,
    /// The PTX module text holding this one entry.
    pub ptx: String,
    pub launch: LaunchSpec,
    /// Parameters in PTX order.
    pub params: Vec<ParamSpec>,
    pub spec: KernelSpec,
    pub target: Target,
}

/// Generates the kernel for `spec` on `target`.
pub fn generate(spec: &KernelSpec, target: Target) -> Result<GeneratedKernel, GenError> {
    spec.validate()?;
    match spec {
        KernelSpec::QuantizeQ8_1(s) => quantize_q8_1::generate(s, target),
        KernelSpec::RmsNorm(s) => rmsnorm::generate(s, target),
    }
}

/// A catalogue of specs covering every family at the shapes of the reference models
/// (llama3-8b, qwen2.5-0.5b, gemma3-270m, smollm2-135m) and at edge sizes. Tests assemble
/// every entry with ptxas and check it statically; a new family adds its shapes here.
pub fn sample_specs() -> Vec<KernelSpec> {
    let mut specs = Vec::new();
    for k in [32, 96, 576, 640, 896, 1536, 2048, 4096, 4864, 14336] {
        specs.push(KernelSpec::QuantizeQ8_1(QuantizeQ8_1 { k }));
    }
    let norms: [(u32, f32, f32); 12] = [
        (64, 1e-5, 0.0),
        (99, 1e-6, 0.0),
        (130, 1e-5, 1.0),
        (576, 1e-5, 0.0),
        (640, 1e-6, 0.0),
        (896, 1e-6, 0.0),
        (2048, 1e-5, 0.0),
        (3072, 1e-5, 0.0),
        (4096, 1e-5, 0.0),
        (8192, 1e-5, 0.0),
        (16384, 1e-6, 0.0),
        (65536, 1e-5, 0.0),
    ];
    for (hidden, eps, weight_offset) in norms {
        specs.push(KernelSpec::RmsNorm(RmsNorm {
            hidden,
            eps,
            weight_offset,
        }));
    }
    specs
}

/// Every kernel spec the CLI can name, with a short description of its dimensions.
pub fn families() -> &'static [(&'static str, &'static str)] {
    &[
        ("quantize_q8_1", "K: f32[K] -> Q8_1 blocks (K % 32 == 0)"),
        (
            "rmsnorm",
            "HIDDEN [EPS] [WEIGHT_OFFSET]: y = x / rms(x) * (w + offset)",
        ),
    ]
}
