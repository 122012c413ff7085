//! RMSNorm of an f32 vector: `y = x * (1 / sqrt(sum(x^2) / n + eps)) * (w + offset)`.
//!
//! One thread block per vector. The vector is read once into registers (float4 where the
//! length allows), squared and summed per thread in a fixed order, reduced over the block
//! (butterfly, then the warps' partials), scaled with IEEE-rounded `sqrt.rn`/`rcp.rn`,
//! and written. Length, eps and the weight offset are immediates.
//!
//! Batched (`m` > 1): M vectors `x[m][n]` -> `y[m][n]`, one block per vector along
//! `%ctaid.y`; `x` and `y` of vector v start `v * n * 4` after the pointers, the weight is
//! shared, and the rest is exactly the single kernel's code.

use crate::ast::{StateSpace, Type};
use crate::ir::{
    Addr, BinOp, CacheHint, Cmp, FMode, KernelBuilder, Module, Reg, Sreg, UnOp, Value,
};
use crate::launch::LaunchSpec;
use crate::target::Target;

use super::quantize_q8_1::{
    batch_describe, batch_launch, batch_params, batch_suffix, batch_vector, cli_batch, grid_decl,
    is_one, one, validate_batch, vector_ptr,
};
use super::reduce::block_reduce;
use super::spec::{cli_dim, cli_max, invalid, Access, FamilySpec, GenError, KernelSpec, ParamSpec};
use super::GeneratedKernel;
use crate::ir::Param;

/// Largest row the kernel takes (16 float4 per thread at 1024 threads).
pub const RMSNORM_MAX_HIDDEN: u32 = 65536;

/// RMSNorm of an f32 vector: `y = x / sqrt(mean(x^2) + eps) * (w + weight_offset)`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RmsNorm {
    pub hidden: u32,
    pub eps: f32,
    /// Added to every weight (1.0 for checkpoints that store `w - 1`, as HF Gemma does).
    pub weight_offset: f32,
    /// Vectors per launch (1: single; up to 16, one per `%ctaid.y`).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub m: u32,
}

impl FamilySpec for RmsNorm {
    const FAMILY: &'static str = "rmsnorm";
    const CLI_DIMS: &'static str = "HIDDEN [EPS] [WEIGHT_OFFSET] [M]: y = x / rms(x) * (w + offset); EPS 1e-5, offset 0, M 1 (1..=16 vectors) by default";

    fn from_cli(dims: &[String]) -> Result<Self, String> {
        cli_max(dims, 4)?;
        Ok(RmsNorm {
            hidden: cli_dim(dims, 0, "HIDDEN", None)?,
            eps: cli_dim(dims, 1, "EPS", Some(1e-5))?,
            weight_offset: cli_dim(dims, 2, "WEIGHT_OFFSET", Some(0.0))?,
            m: cli_batch(dims, 3)?,
        })
    }

    fn name(&self) -> String {
        let mut n = format!("rmsnorm_f32_n{}_eps{:08x}", self.hidden, self.eps.to_bits());
        if self.weight_offset != 0.0 {
            n.push_str(&format!("_woff{:08x}", self.weight_offset.to_bits()));
        }
        n.push_str(&batch_suffix(self.m));
        n
    }

    fn describe(&self) -> String {
        format!(
            "rmsnorm: f32[{}], eps = {:e} (0x{:08x}), weight offset = {}{}",
            self.hidden,
            self.eps,
            self.eps.to_bits(),
            self.weight_offset,
            batch_describe(self.m)
        )
    }

    fn validate(&self) -> Result<(), GenError> {
        if self.hidden == 0 || self.hidden > RMSNORM_MAX_HIDDEN {
            return Err(invalid(
                Self::FAMILY,
                "hidden",
                &format!("in 1..={RMSNORM_MAX_HIDDEN}"),
                self.hidden,
            ));
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return Err(invalid(
                Self::FAMILY,
                "eps",
                "a positive finite number",
                self.eps,
            ));
        }
        if !self.weight_offset.is_finite() {
            return Err(invalid(
                Self::FAMILY,
                "weight_offset",
                "a finite number",
                self.weight_offset,
            ));
        }
        validate_batch(Self::FAMILY, self.m)
    }

    fn generate(&self, target: Target) -> Result<GeneratedKernel, GenError> {
        generate(self, target)
    }

    fn samples() -> Vec<Self> {
        [
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
        ]
        .map(|(hidden, eps, weight_offset)| RmsNorm {
            hidden,
            eps,
            weight_offset,
            m: 1,
        })
        .into_iter()
        .chain([(4096, 2), (4096, 16), (99, 3)].map(|(hidden, m)| RmsNorm {
            hidden,
            eps: 1e-5,
            weight_offset: 0.0,
            m,
        }))
        .collect()
    }

    fn batched(&self, m: u32) -> Option<Self> {
        let b = Self { m, ..*self };
        (self.m == 1 && b.validate().is_ok()).then_some(b)
    }

    /// Vector v reads `x + v * n * 4`, writes `y + v * n * 4`; the weight is shared.
    fn batch_decl(&self) -> Option<crate::parity::BatchDecl> {
        let row = self.hidden as u64 * 4;
        grid_decl(self.m, &[("x", row), ("w", row), ("y", row)], &["w"])
    }
}

/// How a row of `hidden` floats is spread over a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowLayout {
    /// Floats per load (4, 2 or 1).
    pub vec: u32,
    /// Loads in the row: hidden / vec.
    pub chunks: u32,
    pub threads: u32,
    /// Loads per thread (the last may be partial).
    pub per_thread: u32,
    /// Whether the row stays in registers between the two passes (else it is read twice;
    /// the second read hits L1/L2).
    pub resident: bool,
}

impl RowLayout {
    pub fn new(hidden: u32) -> RowLayout {
        let vec = [4, 2, 1].into_iter().find(|v| hidden % v == 0).unwrap_or(1);
        let chunks = hidden / vec;
        let threads = (chunks.div_ceil(4).div_ceil(32) * 32).clamp(32, 1024);
        let per_thread = chunks.div_ceil(threads);
        RowLayout {
            vec,
            chunks,
            threads,
            per_thread,
            resident: per_thread * vec <= 16 && threads <= 512,
        }
    }

    /// Whether load `j` of a thread may fall past the row (so it needs a bounds check).
    pub fn partial(&self, j: u32) -> bool {
        (j + 1) * self.threads > self.chunks
    }
}

/// The start every row-norm kernel shares: builder, header, block size, the `.u64`
/// pointer params named `params` (in order), and the thread's index, lane and warp.
pub(crate) struct RowStart {
    pub b: KernelBuilder,
    pub params: Vec<Param>,
    pub tid: Reg,
    pub lane: Reg,
    pub warp: Reg,
}

/// `grid_x` thread blocks per row (each computes the row's scale itself), `m` rows.
pub(crate) fn row_kernel_start(
    spec: &KernelSpec,
    layout: &RowLayout,
    (grid_x, m): (u32, u32),
    target: Target,
    params: &[&str],
) -> RowStart {
    let mut b = KernelBuilder::new(&spec.name(), target);
    b.header_comment(&spec.describe());
    b.header_comment(&format!(
        "launch: grid {grid_x} x {m} x 1, block {} x 1 x 1",
        layout.threads
    ));
    b.max_threads(layout.threads);
    let params = params.iter().map(|p| b.param(Type::U64, p)).collect();
    let tid = b.special(Sreg::TidX);
    let lane = b.and(Type::B32, tid, 31u32);
    let warp = b.shr(Type::U32, tid, 5u32);
    RowStart {
        b,
        params,
        tid,
        lane,
        warp,
    }
}

fn generate(s: &RmsNorm, target: Target) -> Result<GeneratedKernel, GenError> {
    let spec = KernelSpec::RmsNorm(*s);
    let name = spec.name();
    let layout = RowLayout::new(s.hidden);
    let RowStart {
        mut b,
        params,
        tid,
        lane,
        warp,
    } = row_kernel_start(&spec, &layout, (1, s.m), target, &["x", "w", "y"]);
    let [x, w, y] = params.try_into().expect("one param per name");
    let row = s.hidden as u64 * 4;
    let vi = batch_vector(&mut b, s.m);
    let xp = vector_ptr(&mut b, &x, vi, row);
    let wp = b.global_ptr(&w);
    let yp = vector_ptr(&mut b, &y, vi, row);
    let stride = layout.vec * 4;
    let toff = b.mul_wide(Type::U32, tid, stride);
    let xa = b.add(Type::U64, xp, toff);
    let wa = b.add(Type::U64, wp, toff);
    let ya = b.add(Type::U64, yp, toff);

    let guards = chunk_guards(&mut b, &layout, tid);
    let offset = |j: u32| (j * layout.threads * stride) as i64;
    let acc = b.mov(Type::F32, 0.0f32);
    let mut resident: Vec<Vec<Reg>> = Vec::new();
    for (j, guard) in guards.iter().enumerate() {
        let v = load_chunk(&mut b, &layout, xa, offset(j as u32), *guard);
        add_squares(&mut b, acc, &v);
        if layout.resident {
            resident.push(v);
        }
    }
    let scale = row_scale(&mut b, acc, s.hidden, s.eps, layout.threads, lane, warp);

    for (j, guard) in guards.iter().enumerate() {
        let off = offset(j as u32);
        let xs = match resident.get(j) {
            Some(v) => v.clone(),
            None => load_chunk(&mut b, &layout, xa, off, *guard),
        };
        let ws = load_chunk(&mut b, &layout, wa, off, *guard);
        let out: Vec<Value> = xs
            .iter()
            .zip(&ws)
            .map(|(v, wv)| Value::Reg(normalize(&mut b, *v, scale, *wv, s.weight_offset)))
            .collect();
        if let Some(g) = guard {
            b.when(*g);
        }
        b.store(
            StateSpace::Global,
            Type::F32,
            Addr::reg_off(ya, off),
            &out,
            &[],
            None,
        );
    }
    let kernel = b.finish()?;
    let ptx = crate::emit::emit_module(&Module::single(kernel));
    let bytes = s.hidden as u64 * 4;
    let layout_s = format!("f32[{}]", s.hidden);
    let align = layout.vec * 4;
    let mut params = vec![
        ParamSpec::buffer(
            "x",
            layout_s.clone(),
            bytes,
            align,
            Access::Read,
            "input vector",
        ),
        ParamSpec::buffer(
            "w",
            layout_s.clone(),
            bytes,
            align,
            Access::Read,
            "norm weight (gamma)",
        ),
        ParamSpec::buffer(
            "y",
            layout_s,
            bytes,
            align,
            Access::Write,
            "normalized output",
        ),
    ];
    batch_params(&mut params, s.m, &["w"]);
    Ok(GeneratedKernel {
        name,
        ptx,
        launch: batch_launch(LaunchSpec::fixed(1, 1, layout.threads), s.m),
        params,
        spec,
        target,
    })
}

/// The bounds guard of each of a thread's loads: `Some(p)` only for the loads that can pass
/// the end of the row.
pub(crate) fn chunk_guards(
    b: &mut KernelBuilder,
    layout: &RowLayout,
    tid: Reg,
) -> Vec<Option<Reg>> {
    (0..layout.per_thread)
        .map(|j| {
            layout.partial(j).then(|| {
                let c = b.add(Type::U32, tid, j * layout.threads);
                b.setp(Cmp::Lt, Type::U32, c, layout.chunks)
            })
        })
        .collect()
}

/// `acc += v * v` for each value in order (the fixed per-thread order of the sum of squares).
pub(crate) fn add_squares(b: &mut KernelBuilder, acc: Reg, values: &[Reg]) {
    for r in values {
        b.to(acc).fma(*r, *r, acc);
    }
}

/// Reduces the threads' sums of squares over the block and returns
/// `1 / sqrt(sum / hidden + eps)` (IEEE-rounded), the same bits in every thread.
pub(crate) fn row_scale(
    b: &mut KernelBuilder,
    acc: Reg,
    hidden: u32,
    eps: f32,
    threads: u32,
    lane: Reg,
    warp: Reg,
) -> Reg {
    row_scale_in(b, "partials", acc, hidden, eps, (threads, lane, warp))
}

/// [`row_scale`] with its warps' partial sums in the shared array `smem` (a kernel with two
/// row reductions gives each its own, so the second never overwrites slots the first reads).
pub(crate) fn row_scale_in(
    b: &mut KernelBuilder,
    smem: &str,
    acc: Reg,
    hidden: u32,
    eps: f32,
    (threads, lane, warp): (u32, Reg, Reg),
) -> Reg {
    let total = block_reduce(b, BinOp::Add, Type::F32, acc, smem, threads, lane, warp);
    scale_of_sum(b, total, hidden, eps)
}

/// `1 / sqrt(total / hidden + eps)`, IEEE-rounded: the scale from the row's sum of squares.
pub(crate) fn scale_of_sum(b: &mut KernelBuilder, total: Reg, hidden: u32, eps: f32) -> Reg {
    let mean = b.bin(BinOp::Div, Type::F32, FMode::rn(), total, hidden as f32);
    let var = b.bin(BinOp::Add, Type::F32, FMode::rn(), mean, eps);
    let root = b.un(UnOp::Sqrt, Type::F32, FMode::rn(), var);
    b.un(UnOp::Rcp, Type::F32, FMode::rn(), root)
}

/// One normalized value: `(x * scale) * (w + weight_offset)`, IEEE-rounded.
pub(crate) fn normalize(
    b: &mut KernelBuilder,
    x: Reg,
    scale: Reg,
    w: Reg,
    weight_offset: f32,
) -> Reg {
    let n = b.bin(BinOp::Mul, Type::F32, FMode::rn(), x, scale);
    let g = if weight_offset != 0.0 {
        b.bin(BinOp::Add, Type::F32, FMode::rn(), w, weight_offset)
    } else {
        w
    };
    b.bin(BinOp::Mul, Type::F32, FMode::rn(), n, g)
}

/// Loads one chunk (`vec` floats) of a thread; past the end of the row (where `guard` is
/// false) the registers hold zeros, which add nothing to the sum of squares.
pub(crate) fn load_chunk(
    b: &mut KernelBuilder,
    layout: &RowLayout,
    base: Reg,
    offset: i64,
    guard: Option<Reg>,
) -> Vec<Reg> {
    let addr = Addr::reg_off(base, offset);
    match guard {
        None => b.load(
            StateSpace::Global,
            Type::F32,
            layout.vec as usize,
            addr,
            &[CacheHint::NonCoherent],
            None,
        ),
        Some(g) => {
            let regs: Vec<Reg> = (0..layout.vec).map(|_| b.mov(Type::F32, 0.0f32)).collect();
            b.when(g);
            b.load_to(
                StateSpace::Global,
                Type::F32,
                &regs,
                addr,
                &[CacheHint::NonCoherent],
                None,
            );
            regs
        }
    }
}
