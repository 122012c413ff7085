//! The kernel plan: contract + dims + per-tensor weight types -> the kernels of one model
//! and the ordered launches of its decode step, with every parameter bound to a weight, a
//! workspace buffer, a KV cache or a rope table.
//!
//! The plan knows no architecture: it reads the contract's behaviour flags and the weight
//! table, and refuses (typed error naming the tensor and the constraint) what no kernel does.

mod batched;
mod buffers;
mod step;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use ptx_gen::kernels::{GenError, KernelSpec};

use crate::contract::{ModelSpec, Role};
use crate::quant::GgmlType;

pub use buffers::{q8_1_bytes, workspace, Buffer, BufferDecl};

/// Options of planning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanOptions {
    /// KV-cache capacity in positions (baked into rope and attention kernels).
    pub max_context: u32,
    /// Kernels folded into the prologue of the GEMVs that read their output.
    pub folds: Folds,
}

impl PlanOptions {
    /// The default plan for a KV cache of `max_context` positions.
    pub fn new(max_context: u32) -> PlanOptions {
        PlanOptions {
            max_context,
            folds: Folds::default(),
        }
    }
}

/// Which kernels the plan folds into the next GEMVs' prologue (`GemvPrologue`), where it
/// can: short vectors (up to 2048 values) read by GEMVs of one wave of thread blocks. Off by
/// default: on an H100 (docs/performance.md, eighth session) SmolLM2's step went from 0.560
/// to 0.615 ms with both folded (275 -> 185 launches) and its batch of 8 from 0.85 to 2.1 ms:
/// every thread block recomputes the vector, vector after vector, which costs more than
/// the launch it saves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Folds {
    /// RMSNorm + quantize into the Q, K, V (or gate + up, or LM head) GEMVs.
    pub norm: bool,
    /// The gated activation + quantize into the down GEMV.
    pub glu: bool,
}

/// Why a model cannot be planned.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error("{tensor}: {constraint}")]
    Tensor { tensor: String, constraint: String },
    #[error("{model}: {what} is not supported by the decode kernels")]
    Unsupported { model: String, what: String },
    #[error("batched step (m = {m}): {kernel}: {what}")]
    Batch {
        kernel: String,
        m: u32,
        what: String,
    },
    #[error("{model}: {source}")]
    Kernel {
        model: String,
        #[source]
        source: Box<GenError>,
    },
}

/// What a kernel parameter is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arg {
    /// A weight tensor, uploaded as stored (GGUF bytes), `offset` bytes in (the first row of
    /// a fused tensor's part: Q/K/V of a fused QKV, gate/up of a fused gate-up).
    Weight {
        role: Role,
        layer: Option<u32>,
        #[serde(default, skip_serializing_if = "is_zero")]
        offset: u64,
    },
    /// A workspace buffer, `offset` bytes in.
    Buffer { buffer: Buffer, offset: u64 },
    /// The K cache of a layer: `f16[kv_heads][max_context][head_dim]`.
    KCache { layer: u32 },
    /// The V cache of a layer, same layout.
    VCache { layer: u32 },
    /// Rope table `index` of the plan: `f32[max_context][rope_dims / 2][2]` of (cos, sin).
    RopeTable { index: usize },
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// One kernel launch of the decode step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Launch {
    /// The kernel's entry name.
    pub kernel: String,
    /// The transformer block this launch belongs to (none for embedding and LM head).
    pub layer: Option<u32>,
    /// Every parameter of the kernel, in PTX order, with what it is bound to.
    pub args: Vec<(String, Arg)>,
}

/// A rope table the engine builds once: `(cos, sin)` of `pos * theta^(-2i / rope_dims)`
/// (times the per-dimension factors of `freq_factors` when present), in f64, rounded to f32.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RopeTable {
    pub theta: f32,
    pub rope_dims: u32,
    pub max_context: u32,
    /// Per-dimension frequency divisors stored in the model (GGUF `rope_freqs`).
    pub freq_factors: Option<Role>,
}

/// The kernels and decode schedule of one model.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelPlan {
    /// Unique kernel specs, in order of first use.
    pub kernels: Vec<KernelSpec>,
    /// The single-sequence decode step.
    pub step: Vec<Launch>,
    pub buffers: Vec<BufferDecl>,
    pub rope_tables: Vec<RopeTable>,
    pub max_context: u32,
    /// Bytes of one layer's K (or V) cache for one sequence: `f16[kv_heads][max_context][head_dim]`.
    pub kv_cache_bytes: u64,
}

impl KernelPlan {
    /// Plans `model`.
    pub fn build(model: &ModelSpec, options: PlanOptions) -> Result<KernelPlan, PlanError> {
        step::plan(model, options)
    }
}

/// Collects launches, keeping one spec per kernel name in order of first use.
pub(crate) struct Recorder {
    kernels: Vec<KernelSpec>,
    names: BTreeSet<String>,
    pub(crate) launches: Vec<Launch>,
}

impl Recorder {
    pub(crate) fn new() -> Recorder {
        Recorder {
            kernels: Vec::new(),
            names: BTreeSet::new(),
            launches: Vec::new(),
        }
    }

    /// Records a launch of `spec` with `args` (by parameter name, in PTX order).
    pub(crate) fn launch(
        &mut self,
        spec: KernelSpec,
        layer: Option<u32>,
        args: Vec<(&str, Arg)>,
    ) -> Result<(), GenError> {
        spec.validate()?;
        let name = spec.name();
        if self.names.insert(name.clone()) {
            self.kernels.push(spec);
        }
        self.launches.push(Launch {
            kernel: name,
            layer,
            args: args.into_iter().map(|(p, a)| (p.to_string(), a)).collect(),
        });
        Ok(())
    }

    pub(crate) fn finish(self) -> (Vec<KernelSpec>, Vec<Launch>) {
        (self.kernels, self.launches)
    }
}

/// `role` in `layer` as a tensor name for errors (`blk.3.attn_q`).
pub fn tensor_name(role: Role, layer: Option<u32>) -> String {
    match layer {
        Some(l) => format!("blk.{l}.{}", role.name()),
        None => role.name().to_string(),
    }
}

/// The GGML types the GEMV kernels read.
pub(crate) fn gemv_weight(ty: GgmlType) -> Option<ptx_gen::kernels::WeightType> {
    use ptx_gen::kernels::WeightType;
    Some(match ty {
        GgmlType::Q4K => WeightType::Q4K,
        GgmlType::Q6K => WeightType::Q6K,
        GgmlType::Q5_0 => WeightType::Q5_0,
        GgmlType::Q8_0 => WeightType::Q8_0,
        GgmlType::Q4_1 => WeightType::Q4_1,
        _ => return None,
    })
}
