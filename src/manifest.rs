//! `manifest.json`: everything an engine in any language needs to run a generated kernel
//! set: the model identity, every kernel (file, sha256, spec, parameters, launch geometry),
//! the workspace buffers, KV-cache and rope-table layouts, and the decode schedule.
//! Documented in docs/manifest.md, with a JSON Schema in docs/manifest.schema.json.

use serde::{Deserialize, Serialize};

use ptx_gen::kernels::{KernelSpec, ParamSpec};
use ptx_gen::launch::LaunchSpec;

use crate::plan::{BufferDecl, Launch, RopeTable};

/// Version of the manifest layout; bumped on any incompatible change.
pub const MANIFEST_SCHEMA_VERSION: u32 = 2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema_version: u32,
    /// `ptxforge <version>`.
    pub generator: String,
    pub model: ModelIdentity,
    /// `sm_XX` the PTX is written for, and its `.version`.
    pub target: String,
    pub ptx_version: String,
    /// Every kernel waits for its predecessor in the stream (`griddepcontrol.wait`, sm_90+)
    /// before touching anything it writes, so each may be launched with programmatic stream
    /// serialization allowed and overlap the previous kernel's tail. Plain launches are
    /// correct either way.
    #[serde(default)]
    pub programmatic_dependent_launch: bool,
    /// KV-cache capacity in positions.
    pub max_context: u32,
    /// Largest batch the batched kernels take (1: single only).
    pub batch_max: u32,
    pub kernels: Vec<KernelEntry>,
    pub buffers: Vec<BufferDecl>,
    pub kv_cache: KvCacheLayout,
    pub rope_tables: Vec<RopeTable>,
    pub weights: Vec<WeightEntry>,
    /// The decode step of one sequence (`m` = 1) and of every batch size 2..=batch_max, in
    /// launch order.
    pub decode_steps: Vec<DecodeStep>,
    /// How the engine drives the step.
    pub step_protocol: Vec<String>,
}

/// The ordered launches of one decode step of `m` sequences. Every workspace buffer is
/// `m` times its `bytes` (sequence `s` of a buffer region of R bytes at `offset * m + s * R`),
/// every KV cache `m` times `bytes_per_layer_each` (sequence `s` at `s * bytes_per_layer_each`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecodeStep {
    pub m: u32,
    pub launches: Vec<Launch>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelIdentity {
    pub name: String,
    pub contract: String,
    pub format: String,
    pub dims: serde_json::Value,
    pub behaviour: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelEntry {
    /// The `.entry` name.
    pub name: String,
    /// The PTX module, relative to the manifest.
    pub file: String,
    pub sha256: String,
    pub spec: KernelSpec,
    pub params: Vec<ParamSpec>,
    pub launch: LaunchSpec,
    /// For a batched kernel: the single-vector kernel it was proven equal to.
    pub single: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KvCacheLayout {
    pub layers: u32,
    /// Per layer, one K and one V buffer of this layout per sequence.
    pub layout: String,
    pub bytes_per_layer_each: u64,
    pub element: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeightEntry {
    pub role: String,
    pub layer: Option<u32>,
    /// GGML type name (`Q4_K`, `F32`, ...): the tensor is uploaded as stored.
    pub ty: String,
    pub shape: Vec<u64>,
    pub bytes: u64,
}
