//! `ModelWeights`: the weights a decode step executes, by contract role: the effective
//! [`ModelSpec`] (every weight type as the kernels will read it) and the bytes of each tensor.
//!
//! * [`ModelWeights::from_bound`]: a bound model file. GGUF tensors are borrowed from the
//!   memory map as stored (only F16/BF16 norm and bias vectors are widened to F32, which the
//!   norm kernels read); safetensors float matrices are quantized with the crate's CPU
//!   quantizer ([`WeightQuant`]) and vectors converted to F32.
//! * [`ModelWeights::random`]: random but realistic weights for every tensor of a spec's
//!   weight table, generated block by block (valid, finite f16 scales sized so activations
//!   stay O(1) through many layers), in parallel, deterministic for a seed whatever the thread
//!   count.
//! * [`tiny_spec`]: a small model of each builtin contract (built through the preset path),
//!   mixing every GEMV weight type, for tests.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use half::f16;

use super::bind::BoundModel;
use super::info::TensorDtype;
use crate::contract::{ContractError, Format, ModelSpec, Preset, Registry, Role, Scope, TensorKey};
use crate::quant::{quantize, GgmlType, QuantError};

/// The type float checkpoints' matrices are quantized to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WeightQuant {
    /// 8-bit, any row length that is a multiple of 32.
    #[default]
    Q8_0,
    /// 4-bit K-quant; rows must be a multiple of 256 values.
    Q4K,
}

impl WeightQuant {
    pub fn ggml_type(self) -> GgmlType {
        match self {
            WeightQuant::Q8_0 => GgmlType::Q8_0,
            WeightQuant::Q4K => GgmlType::Q4K,
        }
    }
}

/// Why a model's weights can't be prepared. Every variant names the tensor.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WeightsError {
    #[error("{tensor}: the model file has no data for it")]
    NoData { tensor: String },
    #[error("{tensor}: stored as {dtype}, expected F32, F16 or BF16 (or a GGML type in GGUF)")]
    UnsupportedDtype { tensor: String, dtype: String },
    #[error("{tensor}: shape {shape:?} as {ty} takes {expected} bytes, the file has {found}")]
    ByteLength {
        tensor: String,
        ty: GgmlType,
        shape: Vec<u64>,
        expected: u64,
        found: u64,
    },
    #[error("{tensor}: {ty} needs rows that are a multiple of {block} values, got {row}")]
    RowNotBlockAligned {
        tensor: String,
        ty: GgmlType,
        row: u64,
        block: u32,
    },
    #[error("{tensor}: the contract gives it no shape for these dims ({message})")]
    Shape { tensor: String, message: String },
    #[error("{tensor}: {source}")]
    Quant {
        tensor: String,
        #[source]
        source: QuantError,
    },
}

/// The weights of one model as a decode step reads them.
#[derive(Debug, Clone)]
pub struct ModelWeights<'a> {
    spec: ModelSpec,
    tensors: BTreeMap<TensorKey, Cow<'a, [u8]>>,
}

fn tensor_name(key: TensorKey) -> String {
    crate::plan::tensor_name(key.role, key.layer)
}

/// `(rows, cols)` of a row-major shape: the row is the last dimension.
fn rows_cols(shape: &[u64]) -> (u64, u64) {
    let cols = shape.last().copied().unwrap_or(1);
    let rows = shape
        .iter()
        .rev()
        .skip(1)
        .fold(1u64, |a, b| a.saturating_mul(*b));
    (rows, cols)
}

fn expected_bytes(key: TensorKey, ty: GgmlType, shape: &[u64]) -> Result<u64, WeightsError> {
    let (rows, cols) = rows_cols(shape);
    ty.row_bytes(cols)
        .and_then(|r| r.checked_mul(rows))
        .ok_or_else(|| WeightsError::RowNotBlockAligned {
            tensor: tensor_name(key),
            ty,
            row: cols,
            block: ty.block_size(),
        })
}

fn float_values(key: TensorKey, ty: GgmlType, data: &[u8]) -> Result<Vec<f32>, WeightsError> {
    use crate::quant::float;
    let r = match ty {
        GgmlType::F32 => float::f32_from_bytes(data),
        GgmlType::F16 => float::f16_to_f32(data),
        GgmlType::BF16 => float::bf16_to_f32(data),
        other => {
            return Err(WeightsError::UnsupportedDtype {
                tensor: tensor_name(key),
                dtype: other.to_string(),
            })
        }
    };
    r.map_err(|source| WeightsError::Quant {
        tensor: tensor_name(key),
        source,
    })
}

/// Quantizes `values` (`cols` per row) to `ty`, rows spread over the available cores.
fn quantize_rows(
    key: TensorKey,
    ty: GgmlType,
    values: &[f32],
    cols: usize,
) -> Result<Vec<u8>, WeightsError> {
    let block = ty.block_size() as usize;
    if cols == 0 || cols % block != 0 {
        return Err(WeightsError::RowNotBlockAligned {
            tensor: tensor_name(key),
            ty,
            row: cols as u64,
            block: ty.block_size(),
        });
    }
    let rows = values.len() / cols;
    let threads = threads().min(rows.max(1));
    let per = rows.div_ceil(threads).max(1);
    let parts: Vec<Result<Vec<u8>, QuantError>> = std::thread::scope(|s| {
        let handles: Vec<_> = values
            .chunks(per * cols)
            .map(|chunk| s.spawn(move || quantize(ty, chunk)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or(Err(QuantError::Unsupported {
                    ty,
                    op: "quantize (worker panicked)",
                }))
            })
            .collect()
    });
    let mut out = Vec::new();
    for p in parts {
        out.extend(p.map_err(|source| WeightsError::Quant {
            tensor: tensor_name(key),
            source,
        })?);
    }
    Ok(out)
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl<'a> ModelWeights<'a> {
    /// The weights of a bound model (see the module docs). The spec's weight table is
    /// rewritten to the types produced; tied embeddings need nothing (the plan reads
    /// `token_embd` as the LM head when there is no `output`).
    pub fn from_bound(bound: &'a BoundModel, quant: WeightQuant) -> Result<Self, WeightsError> {
        let mut spec = bound.spec.clone();
        let mut table = crate::contract::WeightTable::new();
        let mut tensors = BTreeMap::new();
        let format = bound.info.format();
        for (&key, &index) in &bound.tensors {
            let name = || tensor_name(key);
            let info = &bound.info.tensors()[index];
            let data = bound
                .info
                .tensor_data(index)
                .ok_or_else(|| WeightsError::NoData { tensor: name() })?;
            let ty = match &info.dtype {
                TensorDtype::Ggml(ty) => *ty,
                TensorDtype::Other(d) => {
                    return Err(WeightsError::UnsupportedDtype {
                        tensor: name(),
                        dtype: d.clone(),
                    })
                }
            };
            let expected = expected_bytes(key, ty, &info.shape)?;
            if expected != data.len() as u64 {
                return Err(WeightsError::ByteLength {
                    tensor: name(),
                    ty,
                    shape: info.shape.clone(),
                    expected,
                    found: data.len() as u64,
                });
            }
            let is_float = matches!(ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16);
            let (out_ty, bytes): (GgmlType, Cow<'a, [u8]>) = if !key.role.is_matrix() {
                if ty == GgmlType::F32 || !is_float {
                    (ty, Cow::Borrowed(data))
                } else {
                    let v = float_values(key, ty, data)?;
                    (
                        GgmlType::F32,
                        Cow::Owned(crate::quant::float::f32_to_bytes(&v)),
                    )
                }
            } else if format == Format::Gguf || !is_float {
                (ty, Cow::Borrowed(data))
            } else {
                let target = quant.ggml_type();
                let (_, cols) = rows_cols(&info.shape);
                if cols % u64::from(target.block_size()) != 0 {
                    return Err(WeightsError::RowNotBlockAligned {
                        tensor: name(),
                        ty: target,
                        row: cols,
                        block: target.block_size(),
                    });
                }
                let v = float_values(key, ty, data)?;
                let q = quantize_rows(key, target, &v, cols as usize)?;
                (target, Cow::Owned(q))
            };
            table.insert(key, out_ty);
            tensors.insert(key, bytes);
        }
        spec.weights = table;
        Ok(ModelWeights { spec, tensors })
    }
}

impl ModelWeights<'static> {
    /// Random weights for every tensor of `spec`'s weight table, with its types. Matrices
    /// have values of standard deviation about `1 / sqrt(K)` (so every projection of a
    /// normalized vector is O(1)), norm weights are near 1 after the behaviour's weight
    /// offset, biases small, rope frequency factors in 1..8. Quantized blocks are built
    /// field by field with finite f16 scales. Deterministic for `(spec, seed)`.
    pub fn random(spec: &ModelSpec, seed: u64) -> Result<ModelWeights<'static>, WeightsError> {
        struct Job<'b> {
            key: TensorKey,
            ty: GgmlType,
            kind: Kind,
            cols: usize,
            chunk: u64,
            data: &'b mut [u8],
        }
        let mut plan: Vec<(TensorKey, GgmlType, Kind, usize, Vec<u8>)> = Vec::new();
        for (key, ty) in spec.weights.iter() {
            let shape = match spec.shape(key.role) {
                Some(Ok(s)) => s,
                Some(Err(e)) => {
                    return Err(WeightsError::Shape {
                        tensor: tensor_name(key),
                        message: e.to_string(),
                    })
                }
                None => {
                    return Err(WeightsError::Shape {
                        tensor: tensor_name(key),
                        message: format!("not a tensor of contract `{}`", spec.contract.name()),
                    })
                }
            };
            let bytes = expected_bytes(key, ty, &shape)?;
            let (_, cols) = rows_cols(&shape);
            let kind = Kind::of(key.role, spec, cols);
            let len = usize::try_from(bytes).map_err(|_| WeightsError::ByteLength {
                tensor: tensor_name(key),
                ty,
                shape: shape.clone(),
                expected: bytes,
                found: 0,
            })?;
            if kind != Kind::Matrix {
                // Small vectors: values first, then encoded (any quantizable type).
                let n = (rows_cols(&shape).0 * cols) as usize;
                let mut rng = SplitMix::new(seed ^ key_hash(key));
                let values: Vec<f32> = (0..n).map(|i| kind.vector_value(&mut rng, i)).collect();
                let data = quantize(ty, &values).map_err(|source| WeightsError::Quant {
                    tensor: tensor_name(key),
                    source,
                })?;
                plan.push((key, ty, kind, cols as usize, data));
                continue;
            }
            plan.push((key, ty, kind, cols as usize, vec![0u8; len]));
        }

        // Matrices: fixed-size chunks of whole rows, each with its own generator, so the
        // result does not depend on which thread fills which chunk.
        const CHUNK_BYTES: usize = 1 << 20;
        let mut jobs: Vec<Job<'_>> = Vec::new();
        for (key, ty, kind, cols, data) in plan.iter_mut() {
            if *kind != Kind::Matrix {
                continue;
            }
            let row_bytes = ty.row_bytes(*cols as u64).unwrap_or(1).max(1) as usize;
            let rows_per = (CHUNK_BYTES / row_bytes).max(1);
            for (i, chunk) in data.chunks_mut(rows_per * row_bytes).enumerate() {
                jobs.push(Job {
                    key: *key,
                    ty: *ty,
                    kind: *kind,
                    cols: *cols,
                    chunk: i as u64,
                    data: chunk,
                });
            }
        }
        let queue = Mutex::new(jobs.into_iter());
        std::thread::scope(|s| {
            for _ in 0..threads() {
                s.spawn(|| loop {
                    let job = match queue.lock() {
                        Ok(mut q) => q.next(),
                        Err(_) => None,
                    };
                    let Some(job) = job else { break };
                    let mut rng = SplitMix::new(
                        seed ^ key_hash(job.key) ^ job.chunk.wrapping_mul(0x9E37_79B9_7F4A_7C15),
                    );
                    let sigma = 1.0 / (job.cols.max(1) as f32).sqrt();
                    fill_matrix(job.ty, job.kind, sigma, &mut rng, job.data);
                });
            }
        });
        let mut tensors = BTreeMap::new();
        for (key, _, _, _, data) in plan {
            tensors.insert(key, Cow::Owned(data));
        }
        Ok(ModelWeights {
            spec: spec.clone(),
            tensors,
        })
    }
}

impl<'a> ModelWeights<'a> {
    /// Assembles weights from parts (each tensor's bytes must match its type and shape, which
    /// the consumers check when they bind them).
    pub fn from_parts(spec: ModelSpec, tensors: BTreeMap<TensorKey, Cow<'a, [u8]>>) -> Self {
        ModelWeights { spec, tensors }
    }

    /// The effective spec: the types of the bytes held here.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// The bytes of `role` (in `layer` for per-layer roles; ignored for global ones).
    pub fn get(&self, role: Role, layer: Option<u32>) -> Option<&[u8]> {
        let layer = match role.scope() {
            Scope::Global => None,
            Scope::PerLayer => layer,
        };
        self.tensors.get(&TensorKey { role, layer }).map(|c| &**c)
    }

    /// True when the bytes of `key` are borrowed (from a memory map), not owned.
    pub fn is_borrowed(&self, key: TensorKey) -> bool {
        matches!(self.tensors.get(&key), Some(Cow::Borrowed(_)))
    }

    /// Every tensor, in role then layer order.
    pub fn iter(&self) -> impl Iterator<Item = (TensorKey, &[u8])> + '_ {
        self.tensors.iter().map(|(k, v)| (*k, &**v))
    }

    /// Bytes of every tensor together.
    pub fn total_bytes(&self) -> u64 {
        self.tensors.values().map(|v| v.len() as u64).sum()
    }
}

impl crate::runtime::WeightSource for ModelWeights<'_> {
    fn spec(&self) -> &ModelSpec {
        &self.spec
    }
    fn tensor(&self, role: Role, layer: Option<u32>) -> Option<&[u8]> {
        self.get(role, layer)
    }
}

/// What a random tensor holds.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// A GEMV matrix or embedding table.
    Matrix,
    /// A vector of `center + noise * u`, `u` uniform in [-1, 1).
    Vector { center: f32, noise: f32 },
    /// Rope frequency factors: 1 for the first pairs, rising to 8.
    RopeFreqs { pairs: u64 },
}

impl Kind {
    fn of(role: Role, spec: &ModelSpec, cols: u64) -> Kind {
        let offset = spec.behaviour.norm_weight_offset;
        match role {
            r if r.is_matrix() => Kind::Matrix,
            Role::RopeFreqs => Kind::RopeFreqs { pairs: cols },
            Role::AttnQBias | Role::AttnKBias | Role::AttnVBias => Kind::Vector {
                center: 0.0,
                noise: 0.1,
            },
            // Norm weights: effective weight (w + offset) near 1.
            _ => Kind::Vector {
                center: 1.0 - offset,
                noise: 0.1,
            },
        }
    }

    fn vector_value(self, rng: &mut SplitMix, i: usize) -> f32 {
        match self {
            Kind::Vector { center, noise } => center + noise * rng.signed(),
            Kind::RopeFreqs { pairs } => {
                let t = i as f32 / (pairs.max(2) - 1) as f32;
                1.0 + 7.0 * t * t
            }
            Kind::Matrix => rng.signed(),
        }
    }
}

fn key_hash(key: TensorKey) -> u64 {
    let role = Role::ALL.iter().position(|r| *r == key.role).unwrap_or(0) as u64;
    let layer = key.layer.map_or(0xffff_ffff, u64::from);
    let mut s = SplitMix::new(role.wrapping_mul(0x1_0000_0001) ^ (layer << 8));
    s.next()
}

/// splitmix64: fast, and good enough for test weights.
struct SplitMix(u64);

impl SplitMix {
    fn new(seed: u64) -> SplitMix {
        SplitMix(seed ^ 0x5851_F42D_4C95_7F2D)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in [-1, 1).
    fn signed(&mut self) -> f32 {
        2.0 * self.unit() - 1.0
    }

    /// `base` times a factor in [0.5, 1.5).
    fn jitter(&mut self, base: f32) -> f32 {
        base * (0.5 + self.unit())
    }

    fn fill(&mut self, out: &mut [u8]) {
        let mut chunks = out.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let v = self.next().to_le_bytes();
        let n = rest.len();
        rest.copy_from_slice(&v[..n]);
    }
}

fn put_f16(out: &mut [u8], at: usize, v: f32) {
    out[at..at + 2].copy_from_slice(&f16::from_f32(v).to_le_bytes());
}

/// Fills whole rows of a matrix of `ty` with values of standard deviation about `sigma`.
/// Each block type's scale is `sigma / (typical |scale factor| * std of its quants)`.
fn fill_matrix(ty: GgmlType, kind: Kind, sigma: f32, rng: &mut SplitMix, out: &mut [u8]) {
    let bytes = ty.block_bytes() as usize;
    match ty {
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => {
            // Uniform in [-a, a) has std a / sqrt(3).
            let a = sigma * 3f32.sqrt();
            for c in out.chunks_exact_mut(bytes) {
                let v = a * rng.signed();
                match ty {
                    GgmlType::F32 => c.copy_from_slice(&v.to_le_bytes()),
                    GgmlType::F16 => c.copy_from_slice(&f16::from_f32(v).to_le_bytes()),
                    _ => c.copy_from_slice(&half::bf16::from_f32(v).to_le_bytes()),
                }
            }
            return;
        }
        _ => {}
    }
    debug_assert_eq!(kind, Kind::Matrix);
    for b in out.chunks_exact_mut(bytes) {
        match ty {
            // {d; qs[32]}: d * q, q uniform in -128..=127 (std 73.9).
            GgmlType::Q8_0 => {
                rng.fill(&mut b[2..]);
                put_f16(b, 0, rng.jitter(sigma / 73.9));
            }
            // {d, s; qs[32]}: s = d * sum(q).
            GgmlType::Q8_1 => {
                rng.fill(&mut b[4..]);
                let d = f16::from_f32(rng.jitter(sigma / 73.9)).to_f32();
                let sum: i32 = b[4..].iter().map(|&q| i32::from(q as i8)).sum();
                put_f16(b, 0, d);
                put_f16(b, 2, d * sum as f32);
            }
            // {d; qs[16]}: d * (q - 8), q in 0..16 (std 4.6).
            GgmlType::Q4_0 => {
                rng.fill(&mut b[2..]);
                put_f16(b, 0, rng.jitter(sigma / 4.6));
            }
            // {d, m; qs[16]}: d * q + m, m = -7.5 d centres the block.
            GgmlType::Q4_1 => {
                rng.fill(&mut b[4..]);
                let d = rng.jitter(sigma / 4.6);
                put_f16(b, 0, d);
                put_f16(b, 2, -7.5 * d);
            }
            // {d; qh[4]; qs[16]}: d * (q - 16), q in 0..32 (std 9.2).
            GgmlType::Q5_0 => {
                rng.fill(&mut b[2..]);
                put_f16(b, 0, rng.jitter(sigma / 9.2));
            }
            // {d, m; qh[4]; qs[16]}: d * q + m.
            GgmlType::Q5_1 => {
                rng.fill(&mut b[4..]);
                let d = rng.jitter(sigma / 9.2);
                put_f16(b, 0, d);
                put_f16(b, 2, -15.5 * d);
            }
            // {scales[16]; qs[64]; d, dmin}: d * (sc & 15) * q - dmin * (sc >> 4), q in 0..4.
            GgmlType::Q2K => {
                rng.fill(&mut b[..80]);
                let d = rng.jitter(sigma / (8.0 * 1.1));
                put_f16(b, 80, d);
                put_f16(b, 82, d * 1.5);
            }
            // {hmask[32]; qs[64]; scales[12]; d}: d * (sc - 32) * q, q in -4..4 (std 2.3).
            GgmlType::Q3K => {
                rng.fill(&mut b[..108]);
                put_f16(b, 108, rng.jitter(sigma / (16.0 * 2.3)));
            }
            // {d, dmin; scales[12]; qs[128]}: d * sc * q - dmin * m per 32 values, with
            // sc in 32..64 and m = sc so that dmin = 7.5 d centres every sub-block.
            GgmlType::Q4K | GgmlType::Q5K => {
                let mut ls = [0u8; 8];
                for s in &mut ls {
                    *s = 32 + (rng.next() % 32) as u8;
                }
                b[4..16].copy_from_slice(&crate::quant::q4_k::pack_scale_min(&ls, &ls));
                rng.fill(&mut b[16..]);
                let (std, mid) = if ty == GgmlType::Q4K {
                    (4.6, 7.5)
                } else {
                    (9.2, 15.5)
                };
                let d = rng.jitter(sigma / (47.5 * std));
                put_f16(b, 0, d);
                put_f16(b, 2, d * mid);
            }
            // {ql[128]; qh[64]; scales[16] (i8); d}: d * scale * (q - 32), q in 0..64
            // (std 18.5), scales in 16..128.
            GgmlType::Q6K => {
                rng.fill(&mut b[..192]);
                for s in &mut b[192..208] {
                    *s = 16 + (rng.next() % 112) as u8;
                }
                put_f16(b, 208, rng.jitter(sigma / (72.0 * 18.5)));
            }
            // {f32 d; qs[256]; i16 bsums[16]}: bsums are the sums of each 16 quants.
            GgmlType::Q8K => {
                rng.fill(&mut b[4..260]);
                let d = rng.jitter(sigma / 73.9);
                b[0..4].copy_from_slice(&d.to_le_bytes());
                for g in 0..16 {
                    let s: i16 = b[4 + 16 * g..4 + 16 * (g + 1)]
                        .iter()
                        .map(|&q| i16::from(q as i8))
                        .sum();
                    b[260 + 2 * g..262 + 2 * g].copy_from_slice(&s.to_le_bytes());
                }
            }
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => {}
        }
    }
}

/// Error of [`tiny_spec`].
#[derive(Debug, thiserror::Error)]
pub enum TinySpecError {
    #[error("no tiny spec for contract `{name}` (known: {known})")]
    UnknownContract { name: String, known: String },
    #[error(transparent)]
    Contract(#[from] ContractError),
}

/// The builtin contracts [`tiny_spec`] covers.
pub const TINY_CONTRACTS: [&str; 6] = ["llama", "mistral", "qwen2", "qwen3", "gemma3", "phi3"];

/// A small model of contract `contract_name` (GGUF format): hidden 256, 2 layers, 4 heads,
/// 2 kv heads, head_dim 64, ffn 512, vocab 1024, context 256, with Q4_K, Q6_K, Q8_0, Q5_0
/// and Q4_1 spread over the matrices so that every GEMV type appears, and the contract's
/// behaviour (llama: rope_freqs; qwen2: biases; qwen3 and gemma3: QK norm; gemma3: a
/// sliding layer of window 5 and a global layer; phi3: fused QKV and gate-up). Built through
/// the preset path, so it is validated like any preset.
pub fn tiny_spec(contract_name: &str) -> Result<ModelSpec, TinySpecError> {
    const DIMS: &str = "  hidden: 256\n  layers: 2\n  heads: 4\n  kv_heads: 2\n  head_dim: 64\n  ffn: 512\n  vocab: 1024\n  context: 256\n  rms_eps: 1.0e-5\n";
    let (extra_dims, tied, extra, weights) = match contract_name {
        "llama" => (
            "  rope_theta: 10000\n",
            false,
            "rope_scaling: { type: llama3, factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_context: 64 }\n",
            "  token_embd: Q4_K\n  output: Q8_0\n  rope_freqs: F32\n  attn_norm: F32\n  attn_q: Q4_K\n  attn_k: Q5_0\n  attn_v: { default: Q8_0, Q6_K: [1] }\n  attn_output: Q4_1\n  ffn_norm: F32\n  ffn_gate: Q4_K\n  ffn_up: Q5_0\n  ffn_down: { default: Q6_K, Q4_K: [1] }\n  output_norm: F32\n",
        ),
        "mistral" => (
            "  rope_theta: 1000000\n",
            false,
            "",
            "  token_embd: F16\n  output: Q6_K\n  attn_norm: F32\n  attn_q: Q8_0\n  attn_k: Q4_1\n  attn_v: Q6_K\n  attn_output: Q5_0\n  ffn_norm: F32\n  ffn_gate: Q4_1\n  ffn_up: Q4_K\n  ffn_down: { default: Q4_K, Q8_0: [0] }\n  output_norm: F32\n",
        ),
        "qwen2" => (
            "  rope_theta: 1000000\n",
            true,
            "",
            "  token_embd: Q8_0\n  attn_norm: F32\n  attn_q: Q5_0\n  attn_k: Q6_K\n  attn_v: { default: Q5_0, Q8_0: [0] }\n  attn_q_bias: F32\n  attn_k_bias: F32\n  attn_v_bias: F32\n  attn_output: Q4_K\n  ffn_norm: F32\n  ffn_gate: Q4_1\n  ffn_up: Q5_0\n  ffn_down: { default: Q4_K, Q6_K: [1] }\n  output_norm: F32\n",
        ),
        "qwen3" => (
            "  rope_theta: 1000000\n",
            true,
            "",
            "  token_embd: Q6_K\n  attn_norm: F32\n  attn_q: Q4_K\n  attn_k: Q4_1\n  attn_v: { default: Q4_K, Q6_K: [0] }\n  attn_q_norm: F32\n  attn_k_norm: F32\n  attn_output: Q8_0\n  ffn_norm: F32\n  ffn_gate: Q5_0\n  ffn_up: Q4_K\n  ffn_down: { default: Q4_K, Q6_K: [0] }\n  output_norm: F32\n",
        ),
        "gemma3" => (
            "  rope_theta: 1000000\n  rope_theta_local: 10000\n  sliding_window: 5\n  sliding_period: 2\n",
            true,
            "",
            "  token_embd: Q8_0\n  attn_norm: F32\n  attn_q: Q5_0\n  attn_k: Q5_0\n  attn_v: { default: Q5_0, Q8_0: [1] }\n  attn_q_norm: F32\n  attn_k_norm: F32\n  attn_output: Q4_K\n  attn_post_norm: F32\n  ffn_norm: F32\n  ffn_gate: Q4_1\n  ffn_up: Q5_0\n  ffn_down: { default: Q4_K, Q6_K: [0] }\n  ffn_post_norm: F32\n  output_norm: F32\n",
        ),
        "phi3" => (
            "  rope_theta: 10000\n",
            false,
            "",
            "  token_embd: F32\n  output: Q4_1\n  attn_norm: F32\n  attn_qkv: { default: Q4_K, Q6_K: [1] }\n  attn_output: Q5_0\n  ffn_norm: F32\n  ffn_gate_up: Q8_0\n  ffn_down: { default: Q4_K, Q6_K: [0] }\n  output_norm: F32\n",
        ),
        other => {
            return Err(TinySpecError::UnknownContract {
                name: other.to_string(),
                known: TINY_CONTRACTS.join(", "),
            })
        }
    };
    let yaml = format!(
        "preset: tiny-{contract_name}\narchitecture: {contract_name}\ndescription: \"tiny {contract_name} for tests\"\nsource: \"ptxforge::model::tiny_spec\"\nformat: gguf\ndims:\n{DIMS}{extra_dims}tied_embeddings: {tied}\n{extra}weights:\n{weights}"
    );
    let registry = Registry::builtin()?;
    let file = format!("<tiny_spec {contract_name}>");
    let preset = Preset::from_yaml(Path::new(&file), &yaml, registry.contracts())?;
    Ok(preset.spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::dequantize;

    #[test]
    fn every_tiny_spec_builds_and_has_every_gemv_type() {
        for name in TINY_CONTRACTS {
            let spec = tiny_spec(name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(spec.contract.name(), name);
            assert_eq!(spec.dims.hidden, 256);
            let counts = spec.weights.type_counts();
            for ty in crate::reference::gemv::GEMV_TYPES {
                assert!(counts.contains_key(&ty), "{name}: no {ty} weight");
            }
        }
        assert!(matches!(
            tiny_spec("gpt2"),
            Err(TinySpecError::UnknownContract { .. })
        ));
    }

    #[test]
    fn random_weights_are_finite_deterministic_and_sized() {
        let spec = tiny_spec("gemma3").unwrap();
        let a = ModelWeights::random(&spec, 7).unwrap();
        let b = ModelWeights::random(&spec, 7).unwrap();
        let c = ModelWeights::random(&spec, 8).unwrap();
        assert_eq!(a.tensors, b.tensors);
        assert_ne!(a.tensors, c.tensors);
        for (key, ty) in spec.weights.iter() {
            let data = a.get(key.role, key.layer).unwrap();
            let shape = spec.shape(key.role).unwrap().unwrap();
            let n: u64 = shape.iter().product();
            assert_eq!(
                data.len() as u64,
                ty.tensor_bytes(&shape).unwrap(),
                "{key:?}"
            );
            let v = dequantize(ty, data, n as usize).unwrap();
            assert!(v.iter().all(|x| x.is_finite()), "{key:?}");
            if key.role.is_matrix() {
                let mean = v.iter().map(|x| *x as f64).sum::<f64>() / n as f64;
                let var = v.iter().map(|x| (*x as f64 - mean).powi(2)).sum::<f64>() / n as f64;
                let want = 1.0 / shape[1] as f64;
                assert!(
                    var > want * 0.2 && var < want * 5.0 && mean.abs() < 0.2 * want.sqrt(),
                    "{key:?} {ty}: mean {mean}, variance {var}, wanted about {want}"
                );
            } else if key.role == Role::AttnNorm {
                // Gemma GGUF: offset 0, weights near 1.
                assert!(v.iter().all(|x| (0.85..1.15).contains(x)), "{v:?}");
            }
        }
        assert_eq!(
            a.total_bytes(),
            a.iter().map(|(_, d)| d.len() as u64).sum::<u64>()
        );
    }

    #[test]
    fn every_block_type_generates_finite_values() {
        for ty in GgmlType::ALL {
            let bytes = ty.row_bytes(512).unwrap() as usize * 3;
            let mut data = vec![0u8; bytes];
            let mut rng = SplitMix::new(3);
            fill_matrix(ty, Kind::Matrix, 1.0 / 512f32.sqrt(), &mut rng, &mut data);
            if let Ok(v) = dequantize(ty, &data, 512 * 3) {
                assert!(v.iter().all(|x| x.is_finite()), "{ty}");
                let ms = v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / v.len() as f64;
                assert!(ms > 0.0 && ms < 20.0 / 512.0, "{ty}: mean square {ms}");
            }
        }
    }
}
