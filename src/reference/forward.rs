//! `CpuForward`: a [`KernelPlan`]'s decode step executed on the CPU, launch by launch, each
//! launch computed by the CPU reference of its kernel family on the bound byte buffers: the
//! workspace buffers of one sequence (bytes, in the layouts the plan declares), its f16 KV
//! caches, the rope tables (built once) and the weights ([`ModelWeights`], with each
//! binding's byte offset). So it computes what the GPU kernels compute, up to their own
//! rounding, and is the oracle a whole GPU decode step is compared against.
//!
//! Every launch is resolved once in [`CpuForward::new`]: its spec found by name, each
//! parameter checked against what the family reads and writes (buffer regions inside their
//! buffers, weights of the right type and size, caches and tables that exist), so a step
//! cannot fail on a binding. Anything unexpected is a [`ForwardError`], never a panic.
//!
//! It runs the single-sequence step ([`KernelPlan::step`]); sequences are independent and
//! the batched kernels are proven to compute exactly what their single twins compute, so
//! several sequences are run one after the other.
//!
//! Per family:
//! * GEMV: [`super::gemv`]'s definition (integer dot per Q8_1 block, scales and sums in f64,
//!   `dot + bias + residual` rounded once), computed straight on the weight blocks, rows
//!   spread over the available cores, with AVX2 integer dots when the CPU has them
//!   (bit-identical to [`super::gemv::gemv`], tested).
//! * attention split: for each chunk of `chunk()` positions, `{m, l, o}` in base 2 from the
//!   f64 logits of [`super::attention::logits`] (`m` rounded to f32 first, `l` and `o`
//!   against that `m`, stored as f32), chunks without an attended position `{-inf, 0}`;
//!   combine: the merge of the `attention_combine` kernel, in f64, rounded to f32.
//! * argmax: partial candidates `order_key(x) << 32 | !index` per 2048 logits, then their
//!   maximum, as the two argmax kernels.
//! * the rest: [`super::embed`], [`super::rmsnorm_q8_1`], [`super::rmsnorm`],
//!   [`super::residual_rmsnorm`], [`super::head_rmsnorm`], [`super::rope_kv`],
//!   [`super::glu`], [`super::residual_add`], Q8_1 quantization.
//!
//! That is [`Arithmetic::Reference`], the default. With [`Arithmetic::Mirror`]
//! ([`CpuForward::mirror`]) every launch is computed by its kernel's CPU mirror
//! ([`super::mirror`]) instead, the kernel's own f32 arithmetic to the bit, so the step equals
//! the GPU's (see `mirror_step.rs`).

use half::f16;
use ptx_gen::kernels::{
    part_param, ArgmaxStage, AttentionCombine, DecodeAttention, Embed, EmbedTable, Gemv,
    GemvPrologue, Glu, HeadRmsNorm, KernelSpec, OutFormat, QuantizeQ8_1, ResidualAdd,
    ResidualRmsNorm, RmsNorm, RmsNormQ8_1, RopeKv, RopeRole, WeightType, ARGMAX_BLOCK_VALUES,
};

use crate::model::ModelWeights;
use crate::plan::{tensor_name, Arg, Buffer, KernelPlan, RopeTable};
use crate::quant::GgmlType;

mod mirror_step;

/// How [`CpuForward`] computes each launch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Arithmetic {
    /// The f64 references of the kernel families: what each kernel should compute.
    #[default]
    Reference,
    /// The CPU mirrors of the kernels: what each kernel computes, bit for bit.
    Mirror,
}

/// Why a plan can't be executed, or a step can't run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ForwardError {
    #[error("launch {index}: kernel `{kernel}` is not among the plan's kernels")]
    UnknownKernel { index: usize, kernel: String },
    #[error(
        "{kernel}: batched kernels (m = {m}) are not executed; run the single step per sequence"
    )]
    Batched { kernel: String, m: u32 },
    #[error("{kernel}: invalid spec: {message}")]
    InvalidSpec { kernel: String, message: String },
    #[error("{kernel}: parameter `{param}` is not bound")]
    MissingArg { kernel: String, param: String },
    #[error("{kernel}: parameter `{param}` is not one the kernel takes")]
    UnexpectedArg { kernel: String, param: String },
    #[error("{kernel}: `{param}` is bound to {found}, expected {expected}")]
    Binding {
        kernel: String,
        param: String,
        expected: String,
        found: String,
    },
    #[error("{kernel}: `{param}`: buffer {buffer} is not in the plan's workspace")]
    NoBuffer {
        kernel: String,
        param: String,
        buffer: String,
    },
    #[error("{kernel}: `{param}`: {buffer} [{offset}, {end}) is outside its {size} bytes")]
    BufferRange {
        kernel: String,
        param: String,
        buffer: String,
        offset: u64,
        end: u64,
        size: u64,
    },
    #[error("{kernel}: `{param}`: weight {tensor} is not in the model")]
    MissingWeight {
        kernel: String,
        param: String,
        tensor: String,
    },
    #[error("{kernel}: `{param}`: weight {tensor} is {found}, the kernel reads {expected}")]
    WeightType {
        kernel: String,
        param: String,
        tensor: String,
        expected: String,
        found: String,
    },
    #[error("{kernel}: `{param}`: weight {tensor} [{offset}, {end}) is outside its {size} bytes")]
    WeightRange {
        kernel: String,
        param: String,
        tensor: String,
        offset: u64,
        end: u64,
        size: u64,
    },
    #[error("{kernel}: `{param}`: {what}")]
    Mismatch {
        kernel: String,
        param: String,
        what: String,
    },
    #[error("rope table {index}: {what}")]
    RopeTable { index: usize, what: String },
    #[error("the plan's workspace lacks buffer {0}, which the step protocol writes or reads")]
    ProtocolBuffer(&'static str),
    #[error("position {pos} is past the KV-cache capacity ({max_context})")]
    ContextFull { pos: u32, max_context: u32 },
    #[error("the sequence was made for another plan")]
    ForeignSequence,
    #[error("mirror: {0}")]
    Mirror(#[from] super::mirror::MirrorError),
}

/// A byte range of one workspace buffer.
#[derive(Debug, Clone, Copy)]
struct Region {
    buf: usize,
    offset: usize,
    len: usize,
}

/// A GEMV's prologue: the kernel before it, computed on its inputs.
enum Prologue {
    /// `rmsnorm_q8_1` with its weight.
    Norm(RmsNormQ8_1, Vec<f32>),
    /// `glu` (Q8_1 output) with its `up` region (`x` is the gate).
    Glu(Glu, Region),
}

/// A resolved launch.
enum Op<'a> {
    /// One launch that computes several ops in order (a GEMV over several matrices).
    Parts(Vec<Op<'a>>),
    Embed {
        spec: Embed,
        table: &'a [u8],
        token: Region,
        y: Region,
    },
    RmsNormQ8_1 {
        spec: RmsNormQ8_1,
        x: Region,
        w: Vec<f32>,
        y: Region,
    },
    RmsNorm {
        spec: RmsNorm,
        x: Region,
        w: Vec<f32>,
        y: Region,
    },
    ResidualRmsNorm {
        spec: ResidualRmsNorm,
        x: Region,
        residual: Region,
        /// The post-norm's weight, where the spec has one.
        rw: Option<Vec<f32>>,
        w: Vec<f32>,
        y: Region,
    },
    HeadRmsNorm {
        spec: HeadRmsNorm,
        x: Region,
        w: Vec<f32>,
        /// The second set of heads (`x1`, `w1`), where the launch has one.
        second: Option<(Region, Vec<f32>)>,
    },
    QuantizeQ8_1 {
        x: Region,
        y: Region,
    },
    Gemv {
        spec: Gemv,
        ty: GgmlType,
        n: usize,
        k: usize,
        w: &'a [u8],
        /// Q8_1 blocks, or (with a prologue) the f32 vector it quantizes first.
        x: Region,
        prologue: Option<Prologue>,
        bias: Option<Vec<f32>>,
        residual: Option<Region>,
        y: Region,
    },
    /// `rope_kv`, or the part of it a GEMV's RoPE epilogue computes (the regions it has; the
    /// table where it rotates).
    RopeKv {
        spec: RopeKv,
        q: Option<Region>,
        k: Option<Region>,
        v: Option<Region>,
        layer: usize,
        table: Option<usize>,
        pos: Region,
    },
    Attention {
        spec: DecodeAttention,
        q: Region,
        layer: usize,
        seq_len: Region,
        part_o: Region,
        part_ml: Region,
    },
    Combine {
        spec: AttentionCombine,
        part_o: Region,
        part_ml: Region,
        seq_len: Region,
        out: Region,
    },
    Glu {
        spec: Glu,
        gate: Region,
        up: Region,
        y: Region,
    },
    ResidualAdd {
        spec: ResidualAdd,
        x: Region,
        y: Region,
    },
    ArgmaxPartial {
        vocab: usize,
        logits: Region,
        partials: Region,
    },
    ArgmaxFinal {
        partials: Region,
        index: Region,
    },
}

/// The state of one sequence: its workspace, KV caches and position.
#[derive(Debug, Clone)]
pub struct Sequence {
    bufs: Vec<Vec<u8>>,
    k_cache: Vec<Vec<f16>>,
    v_cache: Vec<Vec<f16>>,
    pos: u32,
}

impl Sequence {
    /// The position the next step writes (tokens fed so far).
    pub fn pos(&self) -> u32 {
        self.pos
    }

    /// The bytes of workspace buffer `buffer` (as the last step left them).
    pub fn buffer(&self, buffer: Buffer) -> Option<&[u8]> {
        self.bufs.get(buffer_index(buffer)).map(Vec::as_slice)
    }

    /// The K and V caches of `layer`: `f16[kv_heads][max_context][head_dim]`.
    pub fn kv_cache(&self, layer: u32) -> Option<(&[f16], &[f16])> {
        let l = layer as usize;
        Some((self.k_cache.get(l)?, self.v_cache.get(l)?))
    }
}

/// What a full step returns.
#[derive(Debug, Clone, PartialEq)]
pub struct StepOut {
    /// The argmax the step wrote to `token`.
    pub next_token: u32,
    /// The `logits` buffer.
    pub logits: Vec<f32>,
}

/// A plan bound to weights, executable on the CPU.
pub struct CpuForward<'a> {
    ops: Vec<Op<'a>>,
    /// `ops[head..]` are the LM head and argmax (skipped by [`CpuForward::advance`]).
    head: usize,
    buffer_sizes: Vec<usize>,
    rope: Vec<Vec<f32>>,
    layers: usize,
    cache_len: usize,
    max_context: u32,
    vocab: usize,
    threads: usize,
    arithmetic: Arithmetic,
}

impl std::fmt::Debug for CpuForward<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuForward")
            .field("launches", &self.ops.len())
            .field("head", &self.head)
            .field("layers", &self.layers)
            .field("max_context", &self.max_context)
            .field("vocab", &self.vocab)
            .field("threads", &self.threads)
            .field("arithmetic", &self.arithmetic)
            .finish_non_exhaustive()
    }
}

fn buffer_index(b: Buffer) -> usize {
    Buffer::ALL
        .iter()
        .position(|x| *x == b)
        .unwrap_or(usize::MAX)
}

/// The `m` of any spec.
fn batch_of(spec: &KernelSpec) -> u32 {
    match spec {
        KernelSpec::QuantizeQ8_1(s) => s.m,
        KernelSpec::RmsNorm(s) => s.m,
        KernelSpec::RmsNormQ8_1(s) => s.m,
        KernelSpec::ResidualRmsNorm(s) => s.m,
        KernelSpec::HeadRmsNorm(s) => s.m,
        KernelSpec::RopeKv(s) => s.m,
        KernelSpec::Glu(s) => s.m,
        KernelSpec::Attention(s) => s.m,
        KernelSpec::AttentionCombine(s) => s.m,
        KernelSpec::Embed(s) => s.m,
        KernelSpec::ResidualAdd(s) => s.m,
        KernelSpec::Argmax(s) => s.m,
        KernelSpec::Gemv(s) => s.m,
    }
}

fn gemv_type(w: WeightType) -> GgmlType {
    match w {
        WeightType::Q4K => GgmlType::Q4K,
        WeightType::Q6K => GgmlType::Q6K,
        WeightType::Q5_0 => GgmlType::Q5_0,
        WeightType::Q8_0 => GgmlType::Q8_0,
        WeightType::Q4_1 => GgmlType::Q4_1,
    }
}

fn embed_type(t: EmbedTable) -> GgmlType {
    match t {
        EmbedTable::F32 => GgmlType::F32,
        EmbedTable::F16 => GgmlType::F16,
        EmbedTable::Q8_0 => GgmlType::Q8_0,
        EmbedTable::Q4K => GgmlType::Q4K,
        EmbedTable::Q6K => GgmlType::Q6K,
    }
}

/// A Q8_1 vector's bytes in the workspace: the kernels' planar layout.
fn q8_1_bytes(n: usize) -> usize {
    crate::quant::q8_1::device_bytes(n)
}

fn out_bytes(out: OutFormat, n: usize) -> usize {
    match out {
        OutFormat::F32 => n * 4,
        OutFormat::Q8_1 => q8_1_bytes(n),
    }
}

/// Resolves the parameters of one launch.
struct Binder<'p, 'a> {
    kernel: &'p str,
    args: Vec<(&'p str, &'p Arg, bool)>,
    weights: &'a ModelWeights<'a>,
    sizes: &'p [usize],
    layers: usize,
    rope: &'p [RopeTable],
}

impl<'a> Binder<'_, 'a> {
    fn err_binding(&self, param: &str, expected: &str, found: &Arg) -> ForwardError {
        ForwardError::Binding {
            kernel: self.kernel.to_string(),
            param: param.to_string(),
            expected: expected.to_string(),
            found: format!("{found:?}"),
        }
    }

    fn mismatch(&self, param: &str, what: String) -> ForwardError {
        ForwardError::Mismatch {
            kernel: self.kernel.to_string(),
            param: param.to_string(),
            what,
        }
    }

    fn take(&mut self, param: &str) -> Result<Arg, ForwardError> {
        match self.args.iter_mut().find(|(p, _, _)| *p == param) {
            Some((_, arg, used)) => {
                *used = true;
                Ok((*arg).clone())
            }
            None => Err(ForwardError::MissingArg {
                kernel: self.kernel.to_string(),
                param: param.to_string(),
            }),
        }
    }

    /// A buffer region of `len` bytes.
    fn buffer(&mut self, param: &str, len: usize) -> Result<Region, ForwardError> {
        let arg = self.take(param)?;
        let Arg::Buffer { buffer, offset } = arg else {
            return Err(self.err_binding(param, "a workspace buffer", &arg));
        };
        let buf = buffer_index(buffer);
        let size = match self.sizes.get(buf) {
            Some(&s) if s != usize::MAX => s,
            _ => {
                return Err(ForwardError::NoBuffer {
                    kernel: self.kernel.to_string(),
                    param: param.to_string(),
                    buffer: buffer.name().to_string(),
                })
            }
        };
        let end = offset.checked_add(len as u64);
        match end {
            Some(end) if end <= size as u64 => Ok(Region {
                buf,
                offset: offset as usize,
                len,
            }),
            _ => Err(ForwardError::BufferRange {
                kernel: self.kernel.to_string(),
                param: param.to_string(),
                buffer: buffer.name().to_string(),
                offset,
                end: end.unwrap_or(u64::MAX),
                size: size as u64,
            }),
        }
    }

    /// `len` bytes of a weight of a type `ok` accepts (`expected` names them).
    fn weight(
        &mut self,
        param: &str,
        ok: &dyn Fn(GgmlType) -> bool,
        expected: &str,
        len: usize,
    ) -> Result<(&'a [u8], GgmlType), ForwardError> {
        let arg = self.take(param)?;
        let Arg::Weight {
            role,
            layer,
            offset,
        } = arg
        else {
            return Err(self.err_binding(param, "a weight", &arg));
        };
        let tensor = tensor_name(role, layer);
        let weights: &'a ModelWeights<'a> = self.weights;
        let (Some(data), Some(ty)) = (
            weights.get(role, layer),
            weights.spec().weights.get(role, layer),
        ) else {
            return Err(ForwardError::MissingWeight {
                kernel: self.kernel.to_string(),
                param: param.to_string(),
                tensor,
            });
        };
        if !ok(ty) {
            return Err(ForwardError::WeightType {
                kernel: self.kernel.to_string(),
                param: param.to_string(),
                tensor,
                expected: expected.to_string(),
                found: ty.to_string(),
            });
        }
        let end = offset.checked_add(len as u64);
        match end {
            Some(end) if end <= data.len() as u64 => Ok((&data[offset as usize..end as usize], ty)),
            _ => Err(ForwardError::WeightRange {
                kernel: self.kernel.to_string(),
                param: param.to_string(),
                tensor,
                offset,
                end: end.unwrap_or(u64::MAX),
                size: data.len() as u64,
            }),
        }
    }

    /// `n` f32 values of an F32 weight (norm weights, biases).
    fn weight_f32(&mut self, param: &str, n: usize) -> Result<Vec<f32>, ForwardError> {
        let (data, _) = self.weight(param, &|t| t == GgmlType::F32, "F32", n * 4)?;
        Ok(f32s(data))
    }

    fn cache(&mut self, param: &str, want_k: bool) -> Result<usize, ForwardError> {
        let arg = self.take(param)?;
        let layer = match (&arg, want_k) {
            (Arg::KCache { layer }, true) | (Arg::VCache { layer }, false) => *layer as usize,
            _ => {
                let what = if want_k { "a K cache" } else { "a V cache" };
                return Err(self.err_binding(param, what, &arg));
            }
        };
        if layer >= self.layers {
            return Err(self.mismatch(
                param,
                format!("layer {layer} of a model with {} layers", self.layers),
            ));
        }
        Ok(layer)
    }

    fn rope_table(&mut self, param: &str) -> Result<usize, ForwardError> {
        let arg = self.take(param)?;
        match arg {
            Arg::RopeTable { index } if index < self.rope.len() => Ok(index),
            Arg::RopeTable { index } => {
                Err(self.mismatch(param, format!("rope table {index} of {}", self.rope.len())))
            }
            other => Err(self.err_binding(param, "a rope table", &other)),
        }
    }

    /// Every bound parameter was read.
    fn finish(self) -> Result<(), ForwardError> {
        match self.args.iter().find(|(_, _, used)| !used) {
            Some((p, _, _)) => Err(ForwardError::UnexpectedArg {
                kernel: self.kernel.to_string(),
                param: p.to_string(),
            }),
            None => Ok(()),
        }
    }
}

impl<'a> CpuForward<'a> {
    /// Binds `plan`'s single step to `weights` (see the module docs for what is checked).
    pub fn new(weights: &'a ModelWeights<'a>, plan: &KernelPlan) -> Result<Self, ForwardError> {
        let mut sizes = vec![usize::MAX; Buffer::ALL.len()];
        for d in &plan.buffers {
            sizes[buffer_index(d.name)] = d.bytes as usize;
        }
        for b in [Buffer::Token, Buffer::Pos, Buffer::SeqLen, Buffer::Logits] {
            if sizes[buffer_index(b)] == usize::MAX || sizes[buffer_index(b)] < 4 {
                return Err(ForwardError::ProtocolBuffer(b.name()));
            }
        }
        let dims = &weights.spec().dims;
        let layers = dims.layers as usize;
        let cache_len = (plan.kv_cache_bytes / 2) as usize;
        let vocab = sizes[buffer_index(Buffer::Logits)] / 4;

        // Rope tables, built once.
        let mut rope = Vec::with_capacity(plan.rope_tables.len());
        for (index, t) in plan.rope_tables.iter().enumerate() {
            let err = |what: String| ForwardError::RopeTable { index, what };
            if t.rope_dims < 2 || t.rope_dims % 2 != 0 {
                return Err(err(format!("rope_dims {} is not even", t.rope_dims)));
            }
            let factors = match t.freq_factors {
                None => None,
                Some(role) => {
                    let half = (t.rope_dims / 2) as usize;
                    let data = weights.get(role, None).ok_or_else(|| {
                        err(format!("frequency factors {role} are not in the model"))
                    })?;
                    if weights.spec().weights.get(role, None) != Some(GgmlType::F32)
                        || data.len() != half * 4
                    {
                        return Err(err(format!(
                            "frequency factors {role} must be F32[{half}], got {} bytes",
                            data.len()
                        )));
                    }
                    Some(f32s(data))
                }
            };
            rope.push(super::rope::rope_table_with_factors(
                f64::from(t.theta),
                t.rope_dims,
                t.max_context,
                factors.as_deref(),
            ));
        }

        let mut ops = Vec::with_capacity(plan.step.len());
        let mut last_layered = None;
        for (index, launch) in plan.step.iter().enumerate() {
            if launch.layer.is_some() {
                last_layered = Some(index);
            }
            let spec = plan
                .kernels
                .iter()
                .find(|k| k.name() == launch.kernel)
                .ok_or_else(|| ForwardError::UnknownKernel {
                    index,
                    kernel: launch.kernel.clone(),
                })?;
            let kernel = launch.kernel.as_str();
            let m = batch_of(spec);
            if m != 1 {
                return Err(ForwardError::Batched {
                    kernel: kernel.to_string(),
                    m,
                });
            }
            spec.validate().map_err(|e| ForwardError::InvalidSpec {
                kernel: kernel.to_string(),
                message: e.to_string(),
            })?;
            let mut b = Binder {
                kernel,
                args: launch
                    .args
                    .iter()
                    .map(|(p, a)| (p.as_str(), a, false))
                    .collect(),
                weights,
                sizes: &sizes,
                layers,
                rope: &plan.rope_tables,
            };
            let op = resolve(&mut b, spec, cache_len, &plan.rope_tables)?;
            b.finish()?;
            ops.push(op);
        }
        let head = last_layered.map_or(0, |i| i + 1);
        Ok(CpuForward {
            ops,
            head,
            buffer_sizes: sizes,
            rope,
            layers,
            cache_len,
            max_context: plan.max_context,
            vocab,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            arithmetic: Arithmetic::Reference,
        })
    }

    /// [`CpuForward::new`] computing every launch with its kernel's CPU mirror
    /// ([`Arithmetic::Mirror`]).
    pub fn mirror(weights: &'a ModelWeights<'a>, plan: &KernelPlan) -> Result<Self, ForwardError> {
        Ok(Self::new(weights, plan)?.with_arithmetic(Arithmetic::Mirror))
    }

    /// Computes the launches with `arithmetic`.
    pub fn with_arithmetic(mut self, arithmetic: Arithmetic) -> Self {
        self.arithmetic = arithmetic;
        self
    }

    /// How the launches are computed.
    pub fn arithmetic(&self) -> Arithmetic {
        self.arithmetic
    }

    /// Uses at most `threads` threads for a GEMV (default: the available cores).
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// A fresh sequence: zeroed workspace and caches, position 0.
    pub fn sequence(&self) -> Sequence {
        Sequence {
            bufs: self
                .buffer_sizes
                .iter()
                .map(|&s| vec![0u8; if s == usize::MAX { 0 } else { s }])
                .collect(),
            k_cache: vec![vec![f16::ZERO; self.cache_len]; self.layers],
            v_cache: vec![vec![f16::ZERO; self.cache_len]; self.layers],
            pos: 0,
        }
    }

    /// The KV-cache capacity in positions.
    pub fn max_context(&self) -> u32 {
        self.max_context
    }

    /// Feeds `token` at the sequence's position: the whole step, LM head and argmax included.
    pub fn step(&self, seq: &mut Sequence, token: u32) -> Result<StepOut, ForwardError> {
        self.run(seq, token, self.ops.len())?;
        let next_token = u32_at(&seq.bufs[buffer_index(Buffer::Token)], 0);
        let logits = f32s(&seq.bufs[buffer_index(Buffer::Logits)][..self.vocab * 4]);
        Ok(StepOut { next_token, logits })
    }

    /// Feeds `token` without the LM head and argmax (prompt tokens whose logits nobody
    /// reads): the caches and position advance exactly as with [`CpuForward::step`].
    pub fn advance(&self, seq: &mut Sequence, token: u32) -> Result<(), ForwardError> {
        self.run(seq, token, self.head)
    }

    fn run(&self, seq: &mut Sequence, token: u32, until: usize) -> Result<(), ForwardError> {
        let foreign = seq.bufs.len() != self.buffer_sizes.len()
            || seq
                .bufs
                .iter()
                .zip(&self.buffer_sizes)
                .any(|(b, &s)| s != usize::MAX && b.len() != s)
            || seq.k_cache.len() != self.layers
            || seq
                .k_cache
                .iter()
                .chain(&seq.v_cache)
                .any(|c| c.len() != self.cache_len);
        if foreign {
            return Err(ForwardError::ForeignSequence);
        }
        let pos = seq.pos;
        if pos >= self.max_context {
            return Err(ForwardError::ContextFull {
                pos,
                max_context: self.max_context,
            });
        }
        put_u32(&mut seq.bufs[buffer_index(Buffer::Token)], 0, token);
        put_u32(&mut seq.bufs[buffer_index(Buffer::Pos)], 0, pos);
        put_u32(&mut seq.bufs[buffer_index(Buffer::SeqLen)], 0, pos + 1);
        for op in &self.ops[..until] {
            match self.arithmetic {
                Arithmetic::Reference => self.exec(op, seq),
                Arithmetic::Mirror => self.exec_mirror(op, seq)?,
            }
        }
        seq.pos += 1;
        Ok(())
    }

    fn exec(&self, op: &Op<'a>, seq: &mut Sequence) {
        let read = |seq: &Sequence, r: Region| -> Vec<f32> { f32s(bytes(seq, r)) };
        match op {
            Op::Parts(ops) => {
                for op in ops {
                    self.exec(op, seq);
                }
            }
            Op::Embed {
                spec,
                table,
                token,
                y,
            } => {
                let t = u32_at(bytes(seq, *token), 0);
                let v = super::embed::embed(spec, table, t);
                put_f32s(bytes_mut(seq, *y), &v);
            }
            Op::RmsNormQ8_1 { spec, x, w, y } => {
                let xv = read(seq, *x);
                let q = super::rmsnorm_q8_1::rmsnorm_q8_1(&xv, w, spec.eps, spec.weight_offset)
                    .unwrap_or_default();
                bytes_mut(seq, *y).copy_from_slice(&crate::quant::q8_1::to_device(&q));
            }
            Op::RmsNorm { spec, x, w, y } => {
                let xv = read(seq, *x);
                let v = super::rmsnorm::rmsnorm(&xv, w, spec.eps, spec.weight_offset);
                put_f32s(bytes_mut(seq, *y), &v);
            }
            Op::ResidualRmsNorm {
                spec,
                x,
                residual,
                rw,
                w,
                y,
            } => {
                let xv = read(seq, *x);
                let rv = read(seq, *residual);
                let (eps, woff) = (spec.eps, spec.weight_offset);
                let (h, n) = match rw {
                    None => super::residual_rmsnorm::residual_rmsnorm(&xv, &rv, w, eps, woff),
                    Some(rw) => {
                        super::residual_rmsnorm::post_residual_rmsnorm(&xv, &rv, rw, w, eps, woff)
                    }
                };
                put_f32s(bytes_mut(seq, *x), &h);
                write_out(bytes_mut(seq, *y), spec.out, &n);
            }
            Op::HeadRmsNorm { spec, x, w, second } => {
                for (x, w) in std::iter::once((x, w)).chain(second.as_ref().map(|(x, w)| (x, w))) {
                    let xv = read(seq, *x);
                    let v = super::head_rmsnorm::head_rmsnorm(&xv, w, spec.eps, spec.weight_offset);
                    put_f32s(bytes_mut(seq, *x), &v);
                }
            }
            Op::QuantizeQ8_1 { x, y } => {
                let xv = read(seq, *x);
                write_out(bytes_mut(seq, *y), OutFormat::Q8_1, &xv);
            }
            Op::Gemv {
                ty,
                n,
                spec: _,
                k,
                w,
                x,
                prologue,
                bias,
                residual,
                y,
            } => {
                // The prologue stages what the kernel before would have written.
                let xb = match prologue {
                    Some(Prologue::Norm(nm, nw)) => {
                        let q = super::rmsnorm_q8_1::rmsnorm_q8_1(
                            &read(seq, *x),
                            nw,
                            nm.eps,
                            nm.weight_offset,
                        )
                        .unwrap_or_default();
                        fast::x_blocks(&q)
                    }
                    Some(Prologue::Glu(glu, up)) => {
                        let v = super::glu::glu(glu.act, &read(seq, *x), &read(seq, *up));
                        let q = crate::quant::q8_1::quantize_row_bytes(&v).unwrap_or_default();
                        fast::x_blocks(&q)
                    }
                    None => fast::x_blocks(&crate::quant::q8_1::from_device(bytes(seq, *x), *k)),
                };
                let res = residual.map(|r| read(seq, r));
                let out = fast::gemv(
                    *ty,
                    w,
                    *n,
                    *k,
                    &xb,
                    bias.as_deref(),
                    res.as_deref(),
                    self.threads,
                );
                put_f32s(bytes_mut(seq, *y), &out);
            }
            Op::RopeKv {
                spec,
                q,
                k,
                v,
                layer,
                table,
                pos,
            } => {
                let p = u32_at(bytes(seq, *pos), 0);
                let mut qv = q.map(|r| read(seq, r));
                let mut kv = k.map(|r| read(seq, r));
                let vv = v.map(|r| read(seq, r));
                let table = table.map_or(&[][..], |t| &self.rope[t][..]);
                let Sequence {
                    k_cache, v_cache, ..
                } = seq;
                super::rope_kv::rope_kv_parts(
                    spec,
                    table,
                    p,
                    qv.as_deref_mut(),
                    kv.as_deref_mut().map(|x| (x, &mut k_cache[*layer][..])),
                    vv.as_deref().map(|x| (x, &mut v_cache[*layer][..])),
                );
                for (region, values) in [(q, qv), (k, kv)] {
                    if let (Some(r), Some(v)) = (region, values) {
                        put_f32s(bytes_mut(seq, *r), &v);
                    }
                }
            }
            Op::Attention {
                spec,
                q,
                layer,
                seq_len,
                part_o,
                part_ml,
            } => {
                let n = u32_at(bytes(seq, *seq_len), 0).min(spec.max_ctx);
                let qv = read(seq, *q);
                let (o, ml) =
                    attention_split(spec, &qv, &seq.k_cache[*layer], &seq.v_cache[*layer], n);
                // Chunks without an attended position leave their `o` untouched.
                let po = bytes_mut(seq, *part_o);
                for (i, v) in o.iter().enumerate() {
                    if let Some(v) = v {
                        po[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
                    }
                }
                put_f32s(bytes_mut(seq, *part_ml), &ml);
            }
            Op::Combine {
                spec,
                part_o,
                part_ml,
                seq_len,
                out,
            } => {
                let n = u32_at(bytes(seq, *seq_len), 0).min(spec.max_ctx);
                let po = read(seq, *part_o);
                let ml = read(seq, *part_ml);
                let v = attention_combine(spec, &po, &ml, n);
                write_out(bytes_mut(seq, *out), spec.out, &v);
            }
            Op::Glu { spec, gate, up, y } => {
                let g = read(seq, *gate);
                let u = read(seq, *up);
                let v = super::glu::glu(spec.act, &g, &u);
                write_out(bytes_mut(seq, *y), spec.out, &v);
            }
            Op::ResidualAdd { spec, x, y } => {
                let xv = read(seq, *x);
                let yv = read(seq, *y);
                let v = super::residual_add::residual_add(&yv, &xv, spec.scale);
                put_f32s(bytes_mut(seq, *y), &v);
            }
            Op::ArgmaxPartial {
                vocab,
                logits,
                partials,
            } => {
                let l = read(seq, *logits);
                let p = bytes_mut(seq, *partials);
                for (i, block) in l[..*vocab].chunks(ARGMAX_BLOCK_VALUES as usize).enumerate() {
                    let base = i * ARGMAX_BLOCK_VALUES as usize;
                    let best = block
                        .iter()
                        .enumerate()
                        .map(|(j, x)| candidate(*x, (base + j) as u32))
                        .max()
                        .unwrap_or(0);
                    p[i * 8..i * 8 + 8].copy_from_slice(&best.to_le_bytes());
                }
            }
            Op::ArgmaxFinal { partials, index } => {
                let best = bytes(seq, *partials)
                    .chunks_exact(8)
                    .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                    .max()
                    .unwrap_or(0);
                put_u32(bytes_mut(seq, *index), 0, !(best as u32));
            }
        }
    }
}

/// Resolves one launch of `spec`.
fn resolve<'a>(
    b: &mut Binder<'_, 'a>,
    spec: &KernelSpec,
    cache_len: usize,
    tables: &[RopeTable],
) -> Result<Op<'a>, ForwardError> {
    Ok(match spec {
        KernelSpec::Embed(s) => {
            let ty = embed_type(s.table);
            let len = ty
                .row_bytes(u64::from(s.hidden))
                .map(|r| r as usize * s.vocab as usize)
                .unwrap_or(usize::MAX);
            let (table, _) = b.weight("table", &|t| t == ty, ty.name(), len)?;
            Op::Embed {
                spec: *s,
                table,
                token: b.buffer("token", 4)?,
                y: b.buffer("y", s.hidden as usize * 4)?,
            }
        }
        KernelSpec::RmsNormQ8_1(s) => {
            let h = s.hidden as usize;
            Op::RmsNormQ8_1 {
                spec: *s,
                x: b.buffer("x", h * 4)?,
                w: b.weight_f32("w", h)?,
                y: b.buffer("y", q8_1_bytes(h))?,
            }
        }
        KernelSpec::RmsNorm(s) => {
            let h = s.hidden as usize;
            Op::RmsNorm {
                spec: *s,
                x: b.buffer("x", h * 4)?,
                w: b.weight_f32("w", h)?,
                y: b.buffer("y", h * 4)?,
            }
        }
        KernelSpec::ResidualRmsNorm(s) => {
            let h = s.hidden as usize;
            Op::ResidualRmsNorm {
                spec: *s,
                x: b.buffer("x", h * 4)?,
                residual: b.buffer("residual", h * 4)?,
                rw: if s.post_norm {
                    Some(b.weight_f32("rw", h)?)
                } else {
                    None
                },
                w: b.weight_f32("w", h)?,
                y: b.buffer("y", out_bytes(s.out, h))?,
            }
        }
        KernelSpec::HeadRmsNorm(s) => {
            let (n, d) = (s.n_heads as usize, s.head_dim as usize);
            Op::HeadRmsNorm {
                spec: *s,
                x: b.buffer("x", n * d * 4)?,
                w: b.weight_f32("w", d)?,
                second: if s.k_heads > 0 {
                    let k = s.k_heads as usize;
                    Some((b.buffer("x1", k * d * 4)?, b.weight_f32("w1", d)?))
                } else {
                    None
                },
            }
        }
        KernelSpec::QuantizeQ8_1(QuantizeQ8_1 { k, .. }) => {
            let k = *k as usize;
            Op::QuantizeQ8_1 {
                x: b.buffer("x", k * 4)?,
                y: b.buffer("y", q8_1_bytes(k))?,
            }
        }
        KernelSpec::Gemv(g) => resolve_gemv(b, g, cache_len, tables)?,
        KernelSpec::RopeKv(s) => {
            let (h, kv, d) = (
                s.n_heads as usize,
                s.n_kv_heads as usize,
                s.head_dim as usize,
            );
            let q = b.buffer("q", h * d * 4)?;
            let k = b.buffer("k", kv * d * 4)?;
            let v = b.buffer("v", kv * d * 4)?;
            resolve_rope_kv(b, s, [Some(q), Some(k), Some(v)], cache_len, tables)?
        }
        KernelSpec::Attention(s) => {
            let (h, kv, d) = (
                s.n_heads as usize,
                s.n_kv_heads as usize,
                s.head_dim as usize,
            );
            if kv * s.max_ctx as usize * d != cache_len {
                return Err(b.mismatch(
                    "k_cache",
                    format!(
                        "caches hold {cache_len} values, the kernel reads {kv} x {} x {d}",
                        s.max_ctx
                    ),
                ));
            }
            let nc = s.n_chunks() as usize;
            let q = b.buffer("q", h * d * 4)?;
            let layer = b.cache("k_cache", true)?;
            if b.cache("v_cache", false)? != layer {
                return Err(b.mismatch("v_cache", "K and V caches of different layers".into()));
            }
            Op::Attention {
                spec: *s,
                q,
                layer,
                seq_len: b.buffer("seq_len", 4)?,
                part_o: b.buffer("part_o", h * nc * d * 4)?,
                part_ml: b.buffer("part_ml", h * nc * 2 * 4)?,
            }
        }
        KernelSpec::AttentionCombine(s) => {
            let (h, d, nc) = (
                s.n_heads as usize,
                s.head_dim as usize,
                s.n_chunks() as usize,
            );
            Op::Combine {
                spec: *s,
                part_o: b.buffer("part_o", h * nc * d * 4)?,
                part_ml: b.buffer("part_ml", h * nc * 2 * 4)?,
                seq_len: b.buffer("seq_len", 4)?,
                out: b.buffer("out", s.out_buffer().1 as usize)?,
            }
        }
        KernelSpec::Glu(s) => {
            let f = s.ffn as usize;
            if s.out == OutFormat::Q8_1 && f % 32 != 0 {
                return Err(b.mismatch("y", format!("Q8_1 output of {f} values")));
            }
            Op::Glu {
                spec: *s,
                gate: b.buffer("gate", f * 4)?,
                up: b.buffer("up", f * 4)?,
                y: b.buffer("y", out_bytes(s.out, f))?,
            }
        }
        KernelSpec::ResidualAdd(s) => {
            let n = s.n as usize;
            Op::ResidualAdd {
                spec: *s,
                x: b.buffer("x", n * 4)?,
                y: b.buffer("y", n * 4)?,
            }
        }
        KernelSpec::Argmax(s) => match s.stage {
            ArgmaxStage::Partial => Op::ArgmaxPartial {
                vocab: s.vocab as usize,
                logits: b.buffer("logits", s.vocab as usize * 4)?,
                partials: b.buffer("partials", s.partials() as usize * 8)?,
            },
            ArgmaxStage::Final => Op::ArgmaxFinal {
                partials: b.buffer("partials", s.partials() as usize * 8)?,
                index: b.buffer("index", 4)?,
            },
        },
    })
}

fn resolve_gemv<'a>(
    b: &mut Binder<'_, 'a>,
    g: &Gemv,
    cache_len: usize,
    tables: &[RopeTable],
) -> Result<Op<'a>, ForwardError> {
    if g.parts().len() == 1 && g.rope.is_none() {
        return resolve_gemv_part(b, g, 0);
    }
    // One launch over several matrices: each computes its rows exactly as its own GEMV.
    let mut ops = (0..g.parts().len())
        .map(|i| resolve_gemv_part(b, &g.part(i), i))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(r) = &g.rope {
        // The epilogue computes what `rope_kv` computes on its matrices' outputs.
        let mut regions = [None; 3];
        for (role, op) in r.outputs.roles().iter().zip(&ops) {
            if let Op::Gemv { y, .. } = op {
                let slot = match role {
                    RopeRole::Q => 0,
                    RopeRole::K => 1,
                    RopeRole::V => 2,
                };
                regions[slot] = Some(*y);
            }
        }
        let (q_rows, kv_rows) = r.rows(&g.parts());
        let spec = r.rope_kv(q_rows, kv_rows, 1);
        ops.push(resolve_rope_kv(b, &spec, regions, cache_len, tables)?);
    }
    Ok(Op::Parts(ops))
}

/// The caches, angle table and position of a `rope_kv` launch, or of a GEMV's RoPE epilogue,
/// on the regions `q`, `k` and `v`.
fn resolve_rope_kv<'a>(
    b: &mut Binder<'_, 'a>,
    s: &RopeKv,
    [q, k, v]: [Option<Region>; 3],
    cache_len: usize,
    tables: &[RopeTable],
) -> Result<Op<'a>, ForwardError> {
    let (kv, d) = (s.n_kv_heads as usize, s.head_dim as usize);
    if kv * s.max_ctx as usize * d != cache_len {
        return Err(b.mismatch(
            "k_cache",
            format!(
                "caches hold {cache_len} values, the kernel reads {kv} x {} x {d}",
                s.max_ctx
            ),
        ));
    }
    let k_layer = k.map(|_| b.cache("k_cache", true)).transpose()?;
    let v_layer = v.map(|_| b.cache("v_cache", false)).transpose()?;
    let layer = match (k_layer, v_layer) {
        (Some(kl), Some(vl)) if kl != vl => {
            return Err(b.mismatch("v_cache", "K and V caches of different layers".into()))
        }
        (Some(l), _) | (None, Some(l)) => l,
        (None, None) => return Err(b.mismatch("k_cache", "neither K nor V to cache".into())),
    };
    let table = if q.is_some() || k.is_some() {
        let table = b.rope_table("rope_table")?;
        let t = &tables[table];
        if t.rope_dims != s.rope_dims || t.max_context != s.max_ctx {
            return Err(b.mismatch(
                "rope_table",
                format!(
                    "table of {} dims x {} positions for a kernel of {} x {}",
                    t.rope_dims, t.max_context, s.rope_dims, s.max_ctx
                ),
            ));
        }
        Some(table)
    } else {
        None
    };
    Ok(Op::RopeKv {
        spec: *s,
        q,
        k,
        v,
        layer,
        table,
        pos: b.buffer("pos", 4)?,
    })
}

/// The GEMV of matrix `i` of a launch (`w{i}`, `bias{i}`, `y{i}`; no suffix for 0).
fn resolve_gemv_part<'a>(
    b: &mut Binder<'_, 'a>,
    g: &Gemv,
    i: usize,
) -> Result<Op<'a>, ForwardError> {
    let ty = gemv_type(g.weight);
    let (n, k) = (g.n as usize, g.k as usize);
    let row = ty.row_bytes(k as u64).unwrap_or(u64::MAX) as usize;
    let (w, _) = b.weight(
        &part_param("w", i),
        &|t| t == ty,
        ty.name(),
        n.saturating_mul(row),
    )?;
    let (x, prologue) = match &g.prologue {
        Some(GemvPrologue::Norm(nm)) => (
            b.buffer("x", k * 4)?,
            Some(Prologue::Norm(nm.rmsnorm(g.k), b.weight_f32("norm_w", k)?)),
        ),
        Some(GemvPrologue::Glu(act)) => {
            let glu = Glu {
                act: *act,
                ffn: g.k,
                out: OutFormat::Q8_1,
                m: 1,
            };
            (
                b.buffer("x", k * 4)?,
                Some(Prologue::Glu(glu, b.buffer("up", k * 4)?)),
            )
        }
        None => (b.buffer("x", q8_1_bytes(k))?, None),
    };
    let bias = if g.bias {
        Some(b.weight_f32(&part_param("bias", i), n)?)
    } else {
        None
    };
    let residual = if g.residual {
        Some(b.buffer("residual", n * 4)?)
    } else {
        None
    };
    Ok(Op::Gemv {
        spec: *g,
        ty,
        n,
        k,
        w,
        x,
        prologue,
        bias,
        residual,
        y: b.buffer(&part_param("y", i), n * 4)?,
    })
}

/// The split kernel's partials for `seq_len` positions: `o` (`None`: chunk not written) and
/// `{m, l}` per head and chunk.
fn attention_split(
    spec: &DecodeAttention,
    q: &[f32],
    k_cache: &[f16],
    v_cache: &[f16],
    seq_len: u32,
) -> (Vec<Option<f32>>, Vec<f32>) {
    let (h_n, d) = (spec.n_heads as usize, spec.head_dim as usize);
    let nc = spec.n_chunks() as usize;
    let chunk = spec.chunk();
    let group = (spec.n_heads / spec.n_kv_heads.max(1)).max(1) as usize;
    let mut o = vec![None; h_n * nc * d];
    let mut ml = vec![0f32; h_n * nc * 2];
    let range = super::attention::attended(seq_len, spec.window);
    for h in 0..h_n {
        let kv = h / group;
        let logits = if seq_len == 0 {
            Vec::new()
        } else {
            super::attention::logits(spec, q, k_cache, h, seq_len)
        };
        for c in 0..nc {
            let lo = (c as u32 * chunk).max(range.start);
            let hi = ((c as u32 + 1) * chunk).min(range.end);
            let at = (h * nc + c) * 2;
            if lo >= hi {
                ml[at] = f32::NEG_INFINITY;
                ml[at + 1] = 0.0;
                continue;
            }
            let s: Vec<f64> = logits[(lo - range.start) as usize..(hi - range.start) as usize]
                .iter()
                .map(|x| x * std::f64::consts::LOG2_E)
                .collect();
            let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max) as f32;
            let mut l = 0f64;
            let mut acc = vec![0f64; d];
            for (p, sp) in (lo..hi).zip(&s) {
                let w = (sp - f64::from(m)).exp2();
                l += w;
                let row = (kv * spec.max_ctx as usize + p as usize) * d;
                for (a, v) in acc.iter_mut().zip(&v_cache[row..row + d]) {
                    *a += w * v.to_f64();
                }
            }
            ml[at] = m;
            ml[at + 1] = l as f32;
            for (i, a) in acc.iter().enumerate() {
                o[(h * nc + c) * d + i] = Some(*a as f32);
            }
        }
    }
    (o, ml)
}

/// The combine kernel's merge of the partials of `seq_len` positions, in f64.
fn attention_combine(
    spec: &AttentionCombine,
    part_o: &[f32],
    part_ml: &[f32],
    seq_len: u32,
) -> Vec<f32> {
    let (h_n, d) = (spec.n_heads as usize, spec.head_dim as usize);
    let nc = spec.n_chunks() as usize;
    let chunk = spec.chunk.max(1);
    let range = super::attention::attended(seq_len, spec.window);
    let first = (range.start / chunk) as usize;
    let end = (range.end.div_ceil(chunk) as usize).min(nc);
    let mut out = vec![0f32; h_n * d];
    for h in 0..h_n {
        if seq_len == 0 || first >= end {
            continue;
        }
        let m = (first..end)
            .map(|c| f64::from(part_ml[(h * nc + c) * 2]))
            .fold(f64::NEG_INFINITY, f64::max);
        let mut l = 0f64;
        let mut o = vec![0f64; d];
        for c in first..end {
            let (mc, lc) = (
                f64::from(part_ml[(h * nc + c) * 2]),
                f64::from(part_ml[(h * nc + c) * 2 + 1]),
            );
            if lc == 0.0 {
                continue;
            }
            let w = (mc - m).exp2();
            l += w * lc;
            for (i, oi) in o.iter_mut().enumerate() {
                *oi += w * f64::from(part_o[(h * nc + c) * d + i]);
            }
        }
        for (i, oi) in o.iter().enumerate() {
            out[h * d + i] = (oi / l) as f32;
        }
    }
    out
}

/// The argmax candidate of value `x` at `index`: `order_key(x) << 32 | !index`.
fn candidate(x: f32, index: u32) -> u64 {
    let bits = x.to_bits();
    let key = if x.is_nan() {
        u32::MAX
    } else if x == 0.0 {
        0x8000_0000
    } else if bits & 0x8000_0000 != 0 {
        !bits
    } else {
        bits | 0x8000_0000
    };
    (u64::from(key) << 32) | u64::from(!index)
}

fn bytes(seq: &Sequence, r: Region) -> &[u8] {
    &seq.bufs[r.buf][r.offset..r.offset + r.len]
}

fn bytes_mut(seq: &mut Sequence, r: Region) -> &mut [u8] {
    &mut seq.bufs[r.buf][r.offset..r.offset + r.len]
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn put_f32s(dst: &mut [u8], v: &[f32]) {
    for (d, x) in dst.chunks_exact_mut(4).zip(v) {
        d.copy_from_slice(&x.to_le_bytes());
    }
}

fn write_out(dst: &mut [u8], out: OutFormat, v: &[f32]) {
    match out {
        OutFormat::F32 => put_f32s(dst, v),
        OutFormat::Q8_1 => {
            if let Some(q) = crate::quant::q8_1::quantize_row_bytes(v) {
                dst.copy_from_slice(&crate::quant::q8_1::to_device(&q));
            }
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// The GEMV of [`super::gemv`], fast: the same integer dots and the same f64 operations in
/// the same order, on the raw blocks.
pub mod fast {
    use crate::quant::GgmlType;

    /// One Q8_1 block of `x`, decoded once per GEMV.
    #[derive(Debug, Clone, Copy)]
    #[repr(C, align(32))]
    pub struct XBlock {
        pub qs: [i8; 32],
        /// `half(d)`, `half(s)` of the reference.
        pub d: f64,
        pub s: f64,
        /// `Σ qs`, `Σ qs[..16]`, `Σ qs[16..]`.
        pub sum: i32,
        pub sum_lo: i32,
        pub sum_hi: i32,
        /// Some quant is -128 (our quantizer never writes one).
        pub has_min: bool,
    }

    /// Exact f16 -> f32 (as `half`'s conversion), for the little-endian bytes `lo, hi`.
    #[inline]
    pub fn h2f(lo: u8, hi: u8) -> f32 {
        let h = u16::from_le_bytes([lo, hi]) as u32;
        let sign = (h & 0x8000) << 16;
        let exp = (h >> 10) & 0x1f;
        let man = h & 0x3ff;
        let mag = if exp == 0 {
            // Zero or subnormal: man * 2^-24, exact in f32.
            (man as f32 * (1.0 / 16_777_216.0)).to_bits()
        } else if exp == 31 {
            0x7f80_0000 | (man << 13)
        } else {
            ((exp + 112) << 23) | (man << 13)
        };
        f32::from_bits(sign | mag)
    }

    #[inline]
    fn h2d(lo: u8, hi: u8) -> f64 {
        f64::from(h2f(lo, hi))
    }

    /// Decodes Q8_1 bytes (36 per block).
    pub fn x_blocks(bytes: &[u8]) -> Vec<XBlock> {
        bytes
            .chunks_exact(36)
            .map(|b| {
                let mut qs = [0i8; 32];
                for (q, &v) in qs.iter_mut().zip(&b[4..36]) {
                    *q = v as i8;
                }
                let sum_lo: i32 = qs[..16].iter().map(|&v| i32::from(v)).sum();
                let sum_hi: i32 = qs[16..].iter().map(|&v| i32::from(v)).sum();
                XBlock {
                    qs,
                    d: h2d(b[0], b[1]),
                    s: h2d(b[2], b[3]),
                    sum: sum_lo + sum_hi,
                    sum_lo,
                    sum_hi,
                    has_min: qs.contains(&i8::MIN),
                }
            })
            .collect()
    }

    fn avx2() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("avx2")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// The f64 dot of one row with `x` (the row a whole number of `ty` blocks matching `x`),
    /// with AVX2 when `simd` is asked for and the CPU has it (the Q8_0 sign trick also needs
    /// activations above -128, else the portable code runs).
    pub fn row_dot(ty: GgmlType, row: &[u8], x: &[XBlock], simd: bool) -> f64 {
        #[cfg(target_arch = "x86_64")]
        if simd && avx2() && !(ty == GgmlType::Q8_0 && x.iter().any(|b| b.has_min)) {
            // SAFETY: the CPU has AVX2 (checked just above); the functions read only inside
            // `row` and `x` (whole blocks, zipped).
            unsafe {
                return match ty {
                    GgmlType::Q8_0 => avx2::q8_0(row, x),
                    GgmlType::Q4_1 => avx2::q4_1(row, x),
                    GgmlType::Q5_0 => avx2::q5_0(row, x),
                    GgmlType::Q4K => avx2::q4_k(row, x),
                    GgmlType::Q6K => avx2::q6_k(row, x),
                    _ => 0.0,
                };
            }
        }
        let _ = simd;
        match ty {
            GgmlType::Q8_0 => scalar::q8_0(row, x),
            GgmlType::Q4_1 => scalar::q4_1(row, x),
            GgmlType::Q5_0 => scalar::q5_0(row, x),
            GgmlType::Q4K => scalar::q4_k(row, x),
            GgmlType::Q6K => scalar::q6_k(row, x),
            _ => 0.0,
        }
    }

    /// `y = W x + bias + residual` for `n` rows of `k` values, exactly as
    /// [`crate::reference::gemv::gemv`], rows spread over `threads` threads. The caller
    /// guarantees the sizes (`w` holds `n` rows, `x` has `k / 32` blocks, the epilogue
    /// vectors `n` values).
    #[allow(clippy::too_many_arguments)]
    pub fn gemv(
        ty: GgmlType,
        w: &[u8],
        n: usize,
        k: usize,
        x: &[XBlock],
        bias: Option<&[f32]>,
        residual: Option<&[f32]>,
        threads: usize,
    ) -> Vec<f32> {
        let row_bytes = ty.row_bytes(k as u64).unwrap_or(0) as usize;
        let simd = avx2();
        let mut out = vec![0f32; n];
        let extra =
            |v: Option<&[f32]>, i: usize| v.and_then(|v| v.get(i)).map_or(0.0, |b| f64::from(*b));
        let rows = |first: usize, out: &mut [f32]| {
            for (j, o) in out.iter_mut().enumerate() {
                let i = first + j;
                let row = &w[i * row_bytes..(i + 1) * row_bytes];
                let dot = row_dot(ty, row, x, simd);
                *o = (dot + extra(bias, i) + extra(residual, i)) as f32;
            }
        };
        let work = n.saturating_mul(k);
        let threads = if work < (1 << 18) {
            1
        } else {
            threads.clamp(1, n.max(1))
        };
        if threads <= 1 {
            rows(0, &mut out);
            return out;
        }
        let per = n.div_ceil(threads);
        std::thread::scope(|s| {
            for (t, chunk) in out.chunks_mut(per).enumerate() {
                let rows = &rows;
                s.spawn(move || rows(t * per, chunk));
            }
        });
        out
    }

    /// Portable versions.
    mod scalar {
        use super::{h2d, XBlock};
        use crate::quant::q4_k::scale_min;

        fn idot_i8(w: &[u8], x: &[i8; 32]) -> i32 {
            w.iter()
                .zip(x)
                .map(|(&a, &b)| i32::from(a as i8) * i32::from(b))
                .sum()
        }

        /// `Σ q x` with `q` the 32 nibbles of `qs` (low nibbles first), plus `high[j] << 4`.
        fn idot_nibbles(qs: &[u8], high: u32, x: &[i8; 32]) -> i32 {
            let mut s = 0i32;
            for j in 0..16 {
                let lo = i32::from(qs[j] & 15) | ((((high >> j) & 1) as i32) << 4);
                let hi = i32::from(qs[j] >> 4) | ((((high >> (j + 16)) & 1) as i32) << 4);
                s += lo * i32::from(x[j]) + hi * i32::from(x[j + 16]);
            }
            s
        }

        pub fn q8_0(row: &[u8], x: &[XBlock]) -> f64 {
            let mut acc = 0.0f64;
            for (b, u) in row.chunks_exact(34).zip(x) {
                acc += h2d(b[0], b[1]) * u.d * f64::from(idot_i8(&b[2..34], &u.qs));
            }
            acc
        }

        pub fn q4_1(row: &[u8], x: &[XBlock]) -> f64 {
            let mut acc = 0.0f64;
            for (b, u) in row.chunks_exact(20).zip(x) {
                let sumi = f64::from(idot_nibbles(&b[4..20], 0, &u.qs));
                acc += h2d(b[0], b[1]) * u.d * sumi + h2d(b[2], b[3]) * u.s;
            }
            acc
        }

        pub fn q5_0(row: &[u8], x: &[XBlock]) -> f64 {
            let mut acc = 0.0f64;
            for (b, u) in row.chunks_exact(22).zip(x) {
                let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
                let sumi = f64::from(idot_nibbles(&b[6..22], qh, &u.qs));
                acc += h2d(b[0], b[1]) * (sumi * u.d - 16.0 * u.s);
            }
            acc
        }

        pub fn q4_k(row: &[u8], x: &[XBlock]) -> f64 {
            let mut acc = 0.0f64;
            for (b, xs) in row.chunks_exact(144).zip(x.chunks_exact(8)) {
                let scales: &[u8; 12] = b[4..16].try_into().unwrap_or(&[0; 12]);
                let (mut sum_d, mut sum_m) = (0.0f64, 0.0f64);
                for (j, u) in xs.iter().enumerate() {
                    let qs = &b[16 + 32 * (j / 2)..16 + 32 * (j / 2) + 32];
                    let shift = 4 * (j % 2);
                    let dot: i32 = qs
                        .iter()
                        .zip(&u.qs)
                        .map(|(&q, &v)| i32::from((q >> shift) & 15) * i32::from(v))
                        .sum();
                    let (sc, m) = scale_min(scales, j);
                    sum_d += u.d * f64::from(dot * i32::from(sc));
                    sum_m += u.d * f64::from(u.sum * i32::from(m));
                }
                acc += h2d(b[0], b[1]) * sum_d - h2d(b[2], b[3]) * sum_m;
            }
            acc
        }

        pub fn q6_k(row: &[u8], x: &[XBlock]) -> f64 {
            let mut acc = 0.0f64;
            for (b, xs) in row.chunks_exact(210).zip(x.chunks_exact(8)) {
                let (ql, qh, sc) = (&b[0..128], &b[128..192], &b[192..208]);
                let mut sum = 0.0f64;
                for (j, u) in xs.iter().enumerate() {
                    let (h, t) = (j / 4, j % 4);
                    let mut dots = [0i32; 2];
                    for l in 0..32 {
                        let low = (ql[64 * h + 32 * (t % 2) + l] >> (4 * (t / 2))) & 15;
                        let high = (qh[32 * h + l] >> (2 * t)) & 3;
                        let q = i32::from(low | (high << 4)) - 32;
                        dots[l / 16] += q * i32::from(u.qs[l]);
                    }
                    let sumi = i32::from(sc[2 * j] as i8) * dots[0]
                        + i32::from(sc[2 * j + 1] as i8) * dots[1];
                    sum += u.d * f64::from(sumi);
                }
                acc += h2d(b[208], b[209]) * sum;
            }
            acc
        }
    }

    /// AVX2 versions: the integer dots with `maddubs` (unsigned weight quants times signed
    /// activations; Q8_0 through the sign trick), the rest as the scalar code. Written with
    /// raw pointers and macros only, so that everything inlines even at low optimization
    /// levels; each loops over the whole blocks both `row` and `x` have.
    #[cfg(target_arch = "x86_64")]
    mod avx2 {
        use std::arch::x86_64::*;

        use super::XBlock;

        /// 8 i32 lanes: lane i = Σ of w*x over bytes 4i..4i+4.
        macro_rules! lanes {
            ($w:expr, $x:expr) => {
                _mm256_madd_epi16(_mm256_maddubs_epi16($w, $x), _mm256_set1_epi16(1))
            };
        }

        macro_rules! hsum128 {
            ($v:expr) => {{
                let s = $v;
                let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
                let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
                _mm_cvtsi128_si32(s)
            }};
        }

        macro_rules! hsum256 {
            ($v:expr) => {{
                let v = $v;
                hsum128!(_mm_add_epi32(
                    _mm256_castsi256_si128(v),
                    _mm256_extracti128_si256(v, 1)
                ))
            }};
        }

        /// 32 bytes at `p`.
        macro_rules! load256 {
            ($p:expr) => {
                _mm256_loadu_si256($p as *const __m256i)
            };
        }

        /// 32 nibbles of the 16 bytes at `p`: low nibbles (values 0..16), then high ones.
        macro_rules! nibbles {
            ($p:expr) => {{
                let q = _mm_loadu_si128($p as *const __m128i);
                let m4 = _mm_set1_epi8(15);
                let lo = _mm_and_si128(q, m4);
                let hi = _mm_and_si128(_mm_srli_epi16(q, 4), m4);
                _mm256_set_m128i(hi, lo)
            }};
        }

        /// The f16 at `p` (2 bytes, little endian) as f64, exactly (as `super::h2f`).
        macro_rules! h2d {
            ($p:expr) => {{
                let p: *const u8 = $p;
                let h = u32::from(u16::from_le_bytes([*p, *p.add(1)]));
                let (exp, man) = ((h >> 10) & 0x1f, h & 0x3ff);
                let mag = if exp == 0 {
                    (man as f32 * (1.0 / 16_777_216.0)).to_bits()
                } else if exp == 31 {
                    0x7f80_0000 | (man << 13)
                } else {
                    ((exp + 112) << 23) | (man << 13)
                };
                f64::from(f32::from_bits(((h & 0x8000) << 16) | mag))
            }};
        }

        /// `get_scale_min_k4(j)` of the 12 scale bytes at `q`.
        macro_rules! scale_min {
            ($q:expr, $j:expr) => {{
                let (q, j): (*const u8, usize) = ($q, $j);
                if j < 4 {
                    (*q.add(j) & 63, *q.add(j + 4) & 63)
                } else {
                    (
                        (*q.add(j + 4) & 0x0F) | ((*q.add(j - 4) >> 6) << 4),
                        (*q.add(j + 4) >> 4) | ((*q.add(j) >> 6) << 4),
                    )
                }
            }};
        }

        #[target_feature(enable = "avx2")]
        pub unsafe fn q8_0(row: &[u8], x: &[XBlock]) -> f64 {
            let n = (row.len() / 34).min(x.len());
            let (w0, x0) = (row.as_ptr(), x.as_ptr());
            let mut acc = 0.0f64;
            for i in 0..n {
                let (b, u) = (w0.add(34 * i), &*x0.add(i));
                let w = load256!(b.add(2));
                let xv = load256!(u.qs.as_ptr());
                let sumi = hsum256!(lanes!(_mm256_sign_epi8(w, w), _mm256_sign_epi8(xv, w)));
                acc += h2d!(b) * u.d * f64::from(sumi);
            }
            acc
        }

        #[target_feature(enable = "avx2")]
        pub unsafe fn q4_1(row: &[u8], x: &[XBlock]) -> f64 {
            let n = (row.len() / 20).min(x.len());
            let (w0, x0) = (row.as_ptr(), x.as_ptr());
            let mut acc = 0.0f64;
            for i in 0..n {
                let (b, u) = (w0.add(20 * i), &*x0.add(i));
                let w = nibbles!(b.add(4));
                let sumi = f64::from(hsum256!(lanes!(w, load256!(u.qs.as_ptr()))));
                acc += h2d!(b) * u.d * sumi + h2d!(b.add(2)) * u.s;
            }
            acc
        }

        #[target_feature(enable = "avx2")]
        pub unsafe fn q5_0(row: &[u8], x: &[XBlock]) -> f64 {
            let shuffle = _mm256_set_epi64x(
                0x0303_0303_0303_0303,
                0x0202_0202_0202_0202,
                0x0101_0101_0101_0101,
                0,
            );
            let bit_mask = _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe_u64 as i64);
            let ones = _mm256_set1_epi64x(-1);
            let sixteen = _mm256_set1_epi8(16);
            let n = (row.len() / 22).min(x.len());
            let (w0, x0) = (row.as_ptr(), x.as_ptr());
            let mut acc = 0.0f64;
            for i in 0..n {
                let (b, u) = (w0.add(22 * i), &*x0.add(i));
                let qh = u32::from_le_bytes([*b.add(2), *b.add(3), *b.add(4), *b.add(5)]);
                // Byte j = 0xff where bit j of qh is set (ggml's bytes_from_bits_32).
                let bits = _mm256_shuffle_epi8(_mm256_set1_epi32(qh as i32), shuffle);
                let bits = _mm256_cmpeq_epi8(_mm256_or_si256(bits, bit_mask), ones);
                let w = _mm256_or_si256(nibbles!(b.add(6)), _mm256_and_si256(bits, sixteen));
                let sumi = f64::from(hsum256!(lanes!(w, load256!(u.qs.as_ptr()))));
                acc += h2d!(b) * (sumi * u.d - 16.0 * u.s);
            }
            acc
        }

        #[target_feature(enable = "avx2")]
        pub unsafe fn q4_k(row: &[u8], x: &[XBlock]) -> f64 {
            let m4 = _mm256_set1_epi8(15);
            let n = (row.len() / 144).min(x.len() / 8);
            let (w0, x0) = (row.as_ptr(), x.as_ptr());
            let mut acc = 0.0f64;
            for i in 0..n {
                let (b, xs) = (w0.add(144 * i), x0.add(8 * i));
                let scales = b.add(4);
                let (mut sum_d, mut sum_m) = (0.0f64, 0.0f64);
                for p in 0..4 {
                    let q = load256!(b.add(16 + 32 * p));
                    let lo = _mm256_and_si256(q, m4);
                    let hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
                    for (j, w) in [(2 * p, lo), (2 * p + 1, hi)] {
                        let u = &*xs.add(j);
                        let dot = hsum256!(lanes!(w, load256!(u.qs.as_ptr())));
                        let (sc, m) = scale_min!(scales, j);
                        sum_d += u.d * f64::from(dot * i32::from(sc));
                        sum_m += u.d * f64::from(u.sum * i32::from(m));
                    }
                }
                acc += h2d!(b) * sum_d - h2d!(b.add(2)) * sum_m;
            }
            acc
        }

        #[target_feature(enable = "avx2")]
        pub unsafe fn q6_k(row: &[u8], x: &[XBlock]) -> f64 {
            let m4 = _mm256_set1_epi8(15);
            let m3 = _mm256_set1_epi8(3);
            let n = (row.len() / 210).min(x.len() / 8);
            let (w0, x0) = (row.as_ptr(), x.as_ptr());
            let mut acc = 0.0f64;
            for i in 0..n {
                let (b, xs) = (w0.add(210 * i), x0.add(8 * i));
                let sc = b.add(192) as *const i8;
                let mut sum = 0.0f64;
                for h in 0..2 {
                    let ql0 = load256!(b.add(64 * h));
                    let ql1 = load256!(b.add(64 * h + 32));
                    let qh = load256!(b.add(128 + 32 * h));
                    for t in 0..4 {
                        let j = 4 * h + t;
                        let (low, high) = match t {
                            0 => (_mm256_and_si256(ql0, m4), _mm256_and_si256(qh, m3)),
                            1 => (
                                _mm256_and_si256(ql1, m4),
                                _mm256_and_si256(_mm256_srli_epi16(qh, 2), m3),
                            ),
                            2 => (
                                _mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                                _mm256_and_si256(_mm256_srli_epi16(qh, 4), m3),
                            ),
                            _ => (
                                _mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                _mm256_and_si256(_mm256_srli_epi16(qh, 6), m3),
                            ),
                        };
                        let q = _mm256_or_si256(low, _mm256_slli_epi16(high, 4));
                        let u = &*xs.add(j);
                        let l = lanes!(q, load256!(u.qs.as_ptr()));
                        // Σ (q - 32) x = Σ q x - 32 Σ x, per 16-value half.
                        let dot_lo = hsum128!(_mm256_castsi256_si128(l)) - 32 * u.sum_lo;
                        let dot_hi = hsum128!(_mm256_extracti128_si256(l, 1)) - 32 * u.sum_hi;
                        let sumi = i32::from(*sc.add(2 * j)) * dot_lo
                            + i32::from(*sc.add(2 * j + 1)) * dot_hi;
                        sum += u.d * f64::from(sumi);
                    }
                }
                acc += h2d!(b.add(208)) * sum;
            }
            acc
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fast;
    use crate::quant::q8_1::{quantize_row, BlockQ8_1};
    use crate::quant::GgmlType;
    use crate::reference::gemv::{gemv, Epilogue, QuantMatrix, GEMV_TYPES};

    fn rng(seed: u64) -> impl FnMut() -> u64 {
        let mut s = seed | 1;
        move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        }
    }

    #[test]
    fn f16_conversion_is_exact() {
        for bits in 0..=u16::MAX {
            let [lo, hi] = bits.to_le_bytes();
            let ours = fast::h2f(lo, hi);
            let theirs = half::f16::from_bits(bits).to_f32();
            assert!(
                ours.to_bits() == theirs.to_bits() || (ours.is_nan() && theirs.is_nan()),
                "{bits:#06x}: {ours} vs {theirs}"
            );
        }
    }

    /// The fast GEMV (SIMD and scalar) is bit-identical to the reference on random blocks
    /// with finite scales, with and without bias and residual.
    #[test]
    fn fast_gemv_equals_the_reference() {
        let mut next = rng(0x1234_5678);
        for ty in GEMV_TYPES {
            // n * k above the threading threshold, so 3 threads really split the rows.
            let (n, k) = (521, 512);
            let mut w: Vec<u8> = (0..ty.row_bytes(k as u64).unwrap() as usize * n)
                .map(|_| next() as u8)
                .collect();
            // Finite scales: overwrite the f16 fields with small values.
            let bb = ty.block_bytes() as usize;
            let d_at: &[usize] = match ty {
                GgmlType::Q8_0 | GgmlType::Q5_0 => &[0],
                GgmlType::Q4_1 | GgmlType::Q4K => &[0, 2],
                _ => &[208],
            };
            for blk in w.chunks_exact_mut(bb) {
                for &o in d_at {
                    let v = half::f16::from_f32((next() % 2000) as f32 / 1e5 - 0.01);
                    blk[o..o + 2].copy_from_slice(&v.to_le_bytes());
                }
            }
            let xv: Vec<f32> = (0..k)
                .map(|_| (next() % 2001) as f32 / 500.0 - 2.0)
                .collect();
            let xq: Vec<BlockQ8_1> = quantize_row(&xv).unwrap();
            let xbytes: Vec<u8> = xq.iter().flat_map(|b| b.to_bytes()).collect();
            let xb = fast::x_blocks(&xbytes);
            let bias: Vec<f32> = (0..n).map(|i| i as f32 * 0.25 - 3.0).collect();
            let res: Vec<f32> = (0..n).map(|i| 1.0 - i as f32 * 0.125).collect();
            let m = QuantMatrix {
                ty,
                rows: n,
                cols: k,
                data: &w,
            };
            for (b, r) in [
                (None, None),
                (Some(&bias[..]), None),
                (Some(&bias[..]), Some(&res[..])),
            ] {
                let want = gemv(
                    &m,
                    &xq,
                    &Epilogue {
                        bias: b,
                        residual: r,
                    },
                )
                .unwrap();
                for threads in [1, 3] {
                    let got = fast::gemv(ty, &w, n, k, &xb, b, r, threads);
                    assert_eq!(
                        got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                        want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                        "{ty}"
                    );
                }
                let row_bytes = ty.row_bytes(k as u64).unwrap() as usize;
                for i in 0..n {
                    let row = &w[i * row_bytes..(i + 1) * row_bytes];
                    let s = fast::row_dot(ty, row, &xb, false);
                    let v = fast::row_dot(ty, row, &xb, true);
                    assert_eq!(s.to_bits(), v.to_bits(), "{ty} row {i}");
                }
            }
        }
    }
}
