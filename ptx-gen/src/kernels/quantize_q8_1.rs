//! Q8_1 quantization of an f32 vector: GGML's `block_q8_1` values (per 32 values
//! `half2 {d, s}` and `int8 qs[32]`, with `d = amax / 127`, `q = roundf(x * (1/d))` (0 where
//! d == 0), `s = d * sum(q)`, `quantize_row_q8_1_ref`) in ptxforge's planar device layout
//! ([`super::q8_1_layout`]). One warp quantizes one block, lane j holding value j.
//! Every float step is IEEE-rounded (`div.rn`, `rcp.rn`, `mul.rn`) and the integer sum is
//! exact, so the result is bit-identical to the CPU reference.
//!
//! Batched (`m` > 1): M vectors `x[m][k]` -> `y[m][k / 32]`, one vector per `%ctaid.y`
//! (grid `G x M`); vector v's buffers start `v * (per-vector bytes)` after the pointers and
//! the rest is exactly the single kernel's code. This file also holds the small helpers
//! every grid-batched family (the norms, `glu`, `residual_add`) shares.

use crate::ast::{StateSpace, Type};
use crate::ir::{
    Addr, BinOp, CacheHint, Cmp, FMode, KernelBuilder, Module, Param, Reg, Round, Sreg, UnOp, Value,
};
use crate::launch::{Extent, LaunchSpec};
use crate::parity::{BatchDecl, GridAxis};
use crate::target::Target;

use super::q8_1_layout::{q8_1_layout, q8_1_meaning, q8_1_vector_bytes, Q8Ptr, Q8_1_BLOCK_VALUES};
use super::reduce::warp_reduce;
use super::spec::{cli_dim, cli_max, invalid, Access, FamilySpec, GenError, KernelSpec, ParamSpec};
use super::GeneratedKernel;

/// Warps (Q8_1 blocks) per thread block.
const WARPS: u32 = 8;

/// The largest batch of the grid-batched families (one vector per `%ctaid.y`).
pub const GRID_MAX_BATCH: u32 = 16;

/// Serde default of the `m` fields: a single vector.
pub(crate) fn one() -> u32 {
    1
}

/// Serde: a single vector's `m` is left out, so specs without `m` round-trip unchanged.
pub(crate) fn is_one(m: &u32) -> bool {
    *m == 1
}

/// `_m{m}` for a batched kernel's name, nothing for a single one.
pub(crate) fn batch_suffix(m: u32) -> String {
    if m > 1 {
        format!("_m{m}")
    } else {
        String::new()
    }
}

/// The tail of a batched kernel's description, nothing for a single one.
pub(crate) fn batch_describe(m: u32) -> String {
    if m > 1 {
        format!("; batch of {m} vectors, vector v = %ctaid.y")
    } else {
        String::new()
    }
}

/// `m` in `1..=GRID_MAX_BATCH`.
pub(crate) fn validate_batch(family: &'static str, m: u32) -> Result<(), GenError> {
    if m == 0 || m > GRID_MAX_BATCH {
        return Err(invalid(family, "m", &format!("in 1..={GRID_MAX_BATCH}"), m));
    }
    Ok(())
}

/// The optional trailing batch size `M` of a family's CLI dimensions (1 when absent).
pub(crate) fn cli_batch(dims: &[String], i: usize) -> Result<u32, String> {
    cli_dim(dims, i, "M", Some(1))
}

/// The vector index of a batched kernel, `%ctaid.y`; nothing at all is emitted for `m` = 1.
pub(crate) fn batch_vector(b: &mut KernelBuilder, m: u32) -> Option<Reg> {
    (m > 1).then(|| b.special(Sreg::CtaidY))
}

/// The global address of a per-vector buffer: `p + v * stride` in a batched kernel, just `p`
/// (exactly the single kernel's code) without a vector index.
pub(crate) fn vector_ptr(b: &mut KernelBuilder, p: &Param, v: Option<Reg>, stride: u64) -> Reg {
    let base = b.global_ptr(p);
    match v {
        Some(v) => {
            let stride = u32::try_from(stride).expect("per-vector stride fits in 32 bits");
            b.mad_wide(Type::U32, v, stride, base)
        }
        None => base,
    }
}

/// The batched launch: the single kernel's, with `m` blocks along y.
pub(crate) fn batch_launch(mut launch: LaunchSpec, m: u32) -> LaunchSpec {
    if m > 1 {
        launch.grid[1] = Extent::Const(m);
    }
    launch
}

/// Makes the per-vector buffers (every parameter not named in `shared`) of a batched kernel
/// `m` times their single size, layout `T[m][...]`; leaves everything alone for `m` = 1.
pub(crate) fn batch_params(params: &mut [ParamSpec], m: u32, shared: &[&str]) {
    if m < 2 {
        return;
    }
    for p in params.iter_mut() {
        if shared.contains(&p.name.as_str()) {
            continue;
        }
        if let super::spec::ParamKind::Buffer(buf) = &mut p.kind {
            buf.bytes *= m as u64;
            buf.layout = match buf.layout.find('[') {
                Some(i) => format!("{}[{m}]{}", &buf.layout[..i], &buf.layout[i..]),
                None => format!("{}[{m}]", buf.layout),
            };
        }
    }
}

/// The grid batching claim: every parameter of `params` per-vector at its single size,
/// except those named in `shared`.
pub(crate) fn grid_decl(m: u32, params: &[(&str, u64)], shared: &[&str]) -> Option<BatchDecl> {
    if m < 2 {
        return None;
    }
    let mut d = BatchDecl::grid(m, GridAxis::Y);
    for (name, bytes) in params {
        d = if shared.contains(name) {
            d.shared(name)
        } else {
            d.per_vector(name, *bytes)
        };
    }
    Some(d)
}

/// Q8_1 quantization of `m` f32 vectors of length `k`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QuantizeQ8_1 {
    pub k: u32,
    /// Vectors per launch (1: single; up to [`GRID_MAX_BATCH`], one per `%ctaid.y`).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub m: u32,
}

impl FamilySpec for QuantizeQ8_1 {
    const FAMILY: &'static str = "quantize_q8_1";
    const CLI_DIMS: &'static str =
        "K [M]: f32[M][K] -> Q8_1 blocks (K % 32 == 0), M 1..=16 vectors (default 1)";

    fn from_cli(dims: &[String]) -> Result<Self, String> {
        cli_max(dims, 2)?;
        Ok(QuantizeQ8_1 {
            k: cli_dim(dims, 0, "K", None)?,
            m: cli_batch(dims, 1)?,
        })
    }

    fn name(&self) -> String {
        format!("quantize_q8_1_k{}{}", self.k, batch_suffix(self.m))
    }

    fn describe(&self) -> String {
        format!(
            "quantize_q8_1: f32[{}] -> {} Q8_1 blocks{}",
            self.k,
            self.k / Q8_1_BLOCK_VALUES,
            batch_describe(self.m)
        )
    }

    fn validate(&self) -> Result<(), GenError> {
        if self.k == 0 || self.k % Q8_1_BLOCK_VALUES != 0 {
            return Err(invalid(
                Self::FAMILY,
                "k",
                "a positive multiple of 32 (the Q8_1 block)",
                self.k,
            ));
        }
        validate_batch(Self::FAMILY, self.m)
    }

    fn generate(&self, target: Target) -> Result<GeneratedKernel, GenError> {
        generate(self, target)
    }

    fn samples() -> Vec<Self> {
        let mut all: Vec<Self> = [32, 96, 576, 640, 896, 1536, 2048, 4096, 4864, 14336]
            .map(|k| QuantizeQ8_1 { k, m: 1 })
            .to_vec();
        all.extend([(4096, 2), (4096, 16), (896, 5)].map(|(k, m)| QuantizeQ8_1 { k, m }));
        all
    }

    fn batched(&self, m: u32) -> Option<Self> {
        let b = Self { m, ..*self };
        (self.m == 1 && b.validate().is_ok()).then_some(b)
    }

    /// Vector v reads `x + v * k * 4` and writes `y + v * q8_1_vector_bytes(k)`.
    fn batch_decl(&self) -> Option<BatchDecl> {
        let y_bytes = q8_1_vector_bytes(self.k) as u64;
        grid_decl(self.m, &[("x", self.k as u64 * 4), ("y", y_bytes)], &[])
    }
}

fn generate(s: &QuantizeQ8_1, target: Target) -> Result<GeneratedKernel, GenError> {
    let spec = KernelSpec::QuantizeQ8_1(*s);
    let name = spec.name();
    let nblocks = s.k / Q8_1_BLOCK_VALUES;
    let mut b = KernelBuilder::new(&name, target);
    b.header_comment(&spec.describe());
    b.header_comment(&format!(
        "launch: grid {} x {} x 1, block {} x 1 x 1",
        nblocks.div_ceil(WARPS),
        s.m,
        WARPS * 32
    ));
    b.max_threads(WARPS * 32);
    let x = b.param(Type::U64, "x");
    let y = b.param(Type::U64, "y");

    let tid = b.special(Sreg::TidX);
    let cta = b.special(Sreg::CtaidX);
    let lane = b.and(Type::B32, tid, 31u32);
    let warp = b.shr(Type::U32, tid, 5u32);
    let blk = b.mad(Type::U32, FMode::NONE, cta, WARPS, warp);
    // Whole warps past the last block leave together: the shuffles below see full warps.
    if nblocks % WARPS != 0 {
        let past = b.setp(Cmp::Ge, Type::U32, blk, nblocks);
        b.return_if(past);
    }
    let vi = batch_vector(&mut b, s.m);
    let xp = vector_ptr(&mut b, &x, vi, s.k as u64 * 4);
    let yp = vector_ptr(&mut b, &y, vi, q8_1_vector_bytes(s.k) as u64);
    let idx = b.mad(Type::U32, FMode::NONE, blk, Q8_1_BLOCK_VALUES, lane);
    let xoff = b.mul_wide(Type::U32, idx, 4u32);
    let xa = b.add(Type::U64, xp, xoff);
    let v = b.load(
        StateSpace::Global,
        Type::F32,
        1,
        Addr::reg(xa),
        &[CacheHint::NonCoherent],
        None,
    )[0];
    let ya = Q8Ptr::vector(&mut b, yp, s.k).at(&mut b, blk);
    emit_block(&mut b, v, lane, ya);
    let kernel = b.finish()?;
    let ptx = crate::emit::emit_module(&Module::single(kernel));
    let mut params = vec![
        ParamSpec::buffer(
            "x",
            format!("f32[{}]", s.k),
            s.k as u64 * 4,
            4,
            Access::Read,
            "input vector",
        ),
        ParamSpec::buffer(
            "y",
            q8_1_layout(nblocks),
            q8_1_vector_bytes(s.k) as u64,
            16,
            Access::Write,
            q8_1_meaning!("quantized vector, "),
        ),
    ];
    batch_params(&mut params, s.m, &[]);
    Ok(GeneratedKernel {
        name,
        ptx,
        launch: batch_launch(
            LaunchSpec::fixed(nblocks.div_ceil(WARPS), 1, WARPS * 32),
            s.m,
        ),
        params,
        spec,
        target,
    })
}

/// Quantizes the warp's 32 values (`v` in lane j is value j) into the Q8_1 block at `ya`.
/// Shared with the fused norm + quantize kernels so both round identically.
pub(crate) fn emit_block(b: &mut KernelBuilder, v: Reg, lane: Reg, ya: Q8Ptr) {
    emit_block_in(b, v, lane, ya, StateSpace::Global);
}

/// [`emit_block`] into `space` (a GEMV's prologue stages its input in shared memory).
pub(crate) fn emit_block_in(
    b: &mut KernelBuilder,
    v: Reg,
    lane: Reg,
    ya: Q8Ptr,
    space: StateSpace,
) {
    let a = b.un(UnOp::Abs, Type::F32, FMode::NONE, v);
    let amax = warp_reduce(b, BinOp::Max, Type::F32, a);
    let d = b.bin(BinOp::Div, Type::F32, FMode::rn(), amax, 127.0f32);
    let rcp = b.un(UnOp::Rcp, Type::F32, FMode::rn(), d);
    let zero = b.setp(Cmp::Eq, Type::F32, d, 0.0f32);
    let id = b.selp(Type::F32, 0.0f32, rcp, zero);
    let m = b.bin(BinOp::Mul, Type::F32, FMode::rn(), v, id);
    // roundf: round half away from zero. m - trunc(m) is exact for |m| <= 128.
    let t = b.cvt(Type::F32, Type::F32, rzi(), m);
    let frac = b.bin(BinOp::Sub, Type::F32, FMode::rn(), m, t);
    let afrac = b.un(UnOp::Abs, Type::F32, FMode::NONE, frac);
    let up = b.setp(Cmp::Ge, Type::F32, afrac, 0.5f32);
    let mbits = b.mov(Type::B32, m);
    let sign = b.and(Type::B32, mbits, Value::Hex(0x8000_0000));
    let one_bits = b.or(Type::B32, sign, Value::Hex(0x3f80_0000));
    let one = b.mov(Type::F32, one_bits);
    let away = b.bin(BinOp::Add, Type::F32, FMode::rn(), t, one);
    let r = b.selp(Type::F32, away, t, up);
    let q = b.cvt(Type::S32, Type::F32, rzi(), r);
    let sum = warp_reduce(b, BinOp::Add, Type::S32, q);
    let sumf = b.cvt(Type::F32, Type::S32, FMode::rn(), sum);
    let s = b.bin(BinOp::Mul, Type::F32, FMode::rn(), sumf, d);
    let lane0 = b.setp(Cmp::Eq, Type::U32, lane, 0u32);
    b.if_then(lane0, |b| {
        let dh = b.cvt(Type::F16, Type::F32, FMode::rn(), d);
        let sh = b.cvt(Type::F16, Type::F32, FMode::rn(), s);
        b.store(
            space,
            Type::B16,
            ya.ds_addr(0),
            &[dh.into(), sh.into()],
            &[],
            None,
        );
    });
    // Lanes 4i gather the bytes of lanes 4i+1..4i+3 and store one 32-bit word each.
    let q1 = b.shfl_down(q, 1);
    let q2 = b.shfl_down(q, 2);
    let q3 = b.shfl_down(q, 3);
    let lo = b.prmt(None, q, q1, Value::Hex(0x0040));
    let hi = b.prmt(None, q2, q3, Value::Hex(0x0040));
    let word = b.prmt(None, lo, hi, Value::Hex(0x5410));
    let lane_off = b.cvt(Type::U64, Type::U32, FMode::NONE, lane);
    let qa = ya.lane(b, Some(lane_off), None);
    let quad = b.and(Type::B32, lane, 3u32);
    let first = b.setp(Cmp::Eq, Type::B32, quad, 0u32);
    b.when(first).store(
        space,
        Type::B32,
        qa.qs_addr(0),
        &[Value::Reg(word)],
        &[],
        None,
    );
}

fn rzi() -> FMode {
    FMode {
        round: Some(Round::Rzi),
        ..FMode::NONE
    }
}
