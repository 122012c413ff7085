//! Kernel generators, one file per family. Each takes a spec holding the model's
//! dimensions (all baked into the PTX as immediates) and returns a [`GeneratedKernel`].

mod argmax;
mod attention;
mod attention_combine;
mod embed;
mod exp2;
mod gemv;
mod gemv_prologue;
mod gemv_q4_1;
mod gemv_q4_k;
mod gemv_q5_0;
mod gemv_q6_k;
mod gemv_q8_0;
mod gemv_rope;
mod glu;
mod head_rmsnorm;
mod loads;
mod q8_1_layout;
mod quantize_q8_1;
mod reduce;
mod residual_add;
mod residual_rmsnorm;
mod rmsnorm;
mod rmsnorm_q8_1;
mod rope_kv;
mod spec;

pub use rmsnorm::RowLayout;

pub use argmax::{Argmax, ArgmaxStage, ARGMAX_BLOCK_VALUES, ARGMAX_MAX_VOCAB};
pub use attention::{
    generate_tuned as generate_attention_tuned, AttentionTune, DecodeAttention,
    ATTENTION_HEAD_DIMS, ATTENTION_MAX_CTX, ATTENTION_MAX_GROUP, ATTENTION_THREADS,
};
pub use attention_combine::AttentionCombine;
pub use embed::{Embed, EmbedTable, EMBED_BAD_TOKEN_BITS, EMBED_MAX_HIDDEN};
pub use exp2::{exp2_f32, EXP2_COEFFS};
pub use gemv::{
    batch_rows, default_tile, generate_tiled, part_param, Gemv, GemvTile, WeightType, FILL_BLOCKS,
    GEMV_MAX_BATCH, GEMV_MAX_TILE,
};
pub use gemv_prologue::{GemvNorm, GemvPrologue};
pub use gemv_rope::{GemvRope, RopeOutputs, RopeRole};
pub use glu::{Glu, GluAct, GELU_COEF_A};
pub use head_rmsnorm::{HeadRmsNorm, HEAD_RMSNORM_MAX_HEAD_DIM};
pub use q8_1_layout::{
    q8_1_layout, q8_1_vector_bytes, Q8_1_BLOCK_BYTES, Q8_1_BLOCK_VALUES, Q8_1_LAYOUT_NAME,
};
pub use quantize_q8_1::QuantizeQ8_1;
pub use residual_add::{ResidualAdd, RESIDUAL_ADD_MAX_N};
pub use residual_rmsnorm::ResidualRmsNorm;
pub use rmsnorm::{RmsNorm, RMSNORM_MAX_HIDDEN};
pub use rmsnorm_q8_1::{OutFormat, RmsNormQ8_1};
pub use rope_kv::{RopeKv, RopeStyle, ROPE_MAX_HEAD_DIM};
pub use spec::{Access, BufferParam, FamilySpec, GenError, KernelSpec, ParamKind, ParamSpec};

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
    spec.generate_validated(target)
}

/// A catalogue of specs covering every family at the shapes of the reference models
/// (llama3-8b, qwen2.5-0.5b, gemma3-270m, smollm2-135m) and at edge sizes. Tests assemble
/// every entry with ptxas and check it statically.
pub fn sample_specs() -> Vec<KernelSpec> {
    KernelSpec::samples()
}

/// Every family: (name, CLI dimension list).
pub fn families() -> Vec<(&'static str, &'static str)> {
    KernelSpec::families()
}
