//! The kernel before a GEMV folded into its prologue: every thread block computes the Q8_1
//! input itself, into shared memory, before its dot products, which then read their inputs
//! from there. One launch fewer (the kernel and its store and reload of the Q8_1 vector go
//! away), for the vector's work repeated in every block, vector after vector: on an H100
//! that cost more than the launch it saves (docs/performance.md, eighth session), so plans
//! fold only when asked (`PlanOptions::folds`). Two kinds:
//!
//! - [`GemvPrologue::Norm`]: `quantize_q8_1(rmsnorm(x))` from the f32 `x` and the norm
//!   weight `norm_w`, the `rmsnorm_q8_1` kernel's bits;
//! - [`GemvPrologue::Glu`]: `quantize_q8_1(act(gate) * up)` from the f32 `x` (gate) and
//!   `up`, the `glu` kernel's bits with Q8_1 output (its `emit_glu` per value).
//!
//! The norm's staged blocks are the `rmsnorm_q8_1` kernel's bits:
//! - the sum of squares runs in that kernel's row layout ([`RowLayout`] of `k` values):
//!   thread t < layout threads sums its chunks in order, the block's other threads add
//!   nothing, and the warps' partials meet in the same butterfly (a warp with no chunks
//!   contributes +0, which leaves every sum of squares unchanged);
//! - the scale, normalization and quantization are that kernel's own code
//!   ([`scale_of_sum`], [`normalize`], [`emit_block_in`]).
//!
//! Both quantize with `quantize_q8_1`'s `emit_block`, warp w taking Q8_1 blocks w,
//! w + warps, ..., lane j value j of the block.
//!
//! Batched (M vectors in every thread): each vector's partials and staged blocks have
//! their own shared variables (`gemv_rms`, `gemv_xq` and their copies `_v1`, ...; per-vector
//! shared variables of the batching claim), so the M vectors take the single kernel's
//! barriers.

use serde::{Deserialize, Serialize};

use crate::ast::{StateSpace, Type};
use crate::ir::{Addr, BinOp, Cmp, FMode, KernelBuilder, Param, Reg, SharedVar};
use crate::parity::per_vector_shared_name;

use super::glu::{emit_glu, GluAct};
use super::q8_1_layout::{q8_1_vector_bytes, Q8Ptr, Q8_1_BLOCK_VALUES};
use super::quantize_q8_1::emit_block_in;
use super::reduce::{stash_partial, total_of_partials, warp_reduce};
use super::rmsnorm::{add_squares, load_chunk, normalize, scale_of_sum, RowLayout};
use super::rmsnorm_q8_1::{validate_norm, woff_suffix, OutFormat, RmsNormQ8_1};
use super::spec::GenError;

/// Shared variables of the prologue: the warps' partial sums of squares and the staged
/// Q8_1 vector (per vector in a batched kernel).
pub const NORM_PARTIALS: &str = "gemv_rms";
pub const STAGED_X: &str = "gemv_xq";

/// The most shared memory a GEMV's staged inputs may take (of the 48 KiB a block may
/// declare statically; the rest is the epilogue's).
pub const MAX_STAGED_BYTES: u32 = 40 * 1024;

/// What a GEMV's prologue computes its Q8_1 input from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GemvPrologue {
    /// RMSNorm + quantize of the f32 `x` (`rmsnorm_q8_1`).
    Norm(GemvNorm),
    /// Gated activation + quantize of the f32 `x` (gate) and `up` (`glu`).
    Glu(GluAct),
}

impl GemvPrologue {
    /// The kernel name's part.
    pub fn suffix(&self) -> String {
        match self {
            GemvPrologue::Norm(n) => n.suffix(),
            GemvPrologue::Glu(a) => format!("_glu_{}", a.tag()),
        }
    }

    /// The second f32 input's parameter: the norm weight (shared by all vectors) or `up`
    /// (one per vector).
    pub fn second_input(&self) -> &'static str {
        match self {
            GemvPrologue::Norm(_) => "norm_w",
            GemvPrologue::Glu(_) => "up",
        }
    }

    /// Shared memory of the prologue for `m` vectors of `k` values in a block of `warps`.
    pub fn shared_bytes(&self, k: u32, m: u32, warps: u32) -> u32 {
        let partials = match self {
            GemvPrologue::Norm(_) => warps * 4,
            GemvPrologue::Glu(_) => 0,
        };
        m * (q8_1_vector_bytes(k) + partials)
    }

    /// The prologue's constraints for a GEMV of `k` columns and `m` vectors in blocks of
    /// `threads` threads.
    pub(crate) fn check(&self, k: u32, m: u32, threads: u32) -> Result<(), GenError> {
        match self {
            GemvPrologue::Norm(n) => n.check(k, threads)?,
            GemvPrologue::Glu(_) => {
                if k % Q8_1_BLOCK_VALUES != 0 {
                    return Err(super::spec::invalid("gemv", "k", "a multiple of 32", k));
                }
            }
        }
        let bytes = self.shared_bytes(k, m, threads / 32);
        if bytes > MAX_STAGED_BYTES {
            return Err(super::spec::invalid(
                "gemv",
                "prologue",
                &format!("staged inputs of at most {MAX_STAGED_BYTES} bytes of shared memory (m x (Q8_1 vector + partials))"),
                format!("{bytes} bytes for m = {m}, k = {k}"),
            ));
        }
        Ok(())
    }
}

/// The norm a GEMV applies to its input: `x / rms(x) * (norm_w + weight_offset)`,
/// `rms(x) = sqrt(mean(x^2) + eps)`, quantized to Q8_1, as `rmsnorm_q8_1` computes it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GemvNorm {
    pub eps: f32,
    /// Added to every weight (1.0 for checkpoints that store `w - 1`).
    #[serde(default)]
    pub weight_offset: f32,
}

impl GemvNorm {
    /// The kernel name's part: `_rms<eps bits>` and the weight offset's.
    pub fn suffix(&self) -> String {
        format!(
            "_rms{:08x}{}",
            self.eps.to_bits(),
            woff_suffix(self.weight_offset)
        )
    }

    /// The `rmsnorm_q8_1` kernel whose output the prologue stages, for `k` values.
    pub fn rmsnorm(&self, k: u32) -> RmsNormQ8_1 {
        RmsNormQ8_1 {
            hidden: k,
            eps: self.eps,
            weight_offset: self.weight_offset,
            m: 1,
        }
    }

    /// The norm's constraints for a GEMV of `k` columns in blocks of `threads` threads.
    fn check(&self, k: u32, threads: u32) -> Result<(), GenError> {
        validate_norm("gemv", k, self.eps, self.weight_offset, OutFormat::Q8_1)?;
        let layout = RowLayout::new(k);
        if layout.threads > threads {
            return Err(super::spec::invalid(
                "gemv",
                "norm",
                &format!(
                    "a row the GEMV's {threads} threads can sum as `rmsnorm_q8_1` does ({} threads for k = {k})",
                    layout.threads
                ),
                k,
            ));
        }
        Ok(())
    }
}

/// The alignment the prologue's loads of `x` and `norm_w` need: `rmsnorm`'s vector width.
pub fn x_align(k: u32) -> u32 {
    RowLayout::new(k).vec * 4
}

/// The thread's place in the block.
pub(crate) struct Thread {
    pub tid: Reg,
    pub lane: Reg,
    pub warp: Reg,
    pub threads: u32,
}

/// Emits the prologue (after the grid-dependency wait: it reads `x`, the previous kernel's
/// output) and returns, per vector, the shared variable of its staged Q8_1 blocks (whose
/// address the dot products take again where they read it: a constant to the assembler,
/// not a register held across the loop).
/// `second` is `norm_w` or `up`. Ends with a `bar.sync`: call it from uniform control flow.
pub(crate) fn prologue(
    b: &mut KernelBuilder,
    p: &GemvPrologue,
    (k, m): (u32, u32),
    t: &Thread,
    x: &Param,
    second: &Param,
) -> Vec<SharedVar> {
    let x_base = b.global_ptr(x);
    let second_base = b.global_ptr(second);
    let row = k as u64 * 4;
    let per_vector = |b: &mut KernelBuilder, base: Reg| -> Vec<Reg> {
        (0..m)
            .map(|v| {
                if v == 0 {
                    base
                } else {
                    b.add(Type::U64, base, (v as u64 * row) as i64)
                }
            })
            .collect()
    };
    let xs = per_vector(b, x_base);
    match p {
        GemvPrologue::Norm(n) => {
            let scales = norm_scales(b, n, k, t, &xs);
            let wv = vec![second_base; m as usize];
            stage(b, k, t, &xs, &wv, |b, v, x, w| {
                normalize(b, x, scales[v], w, n.weight_offset)
            })
        }
        GemvPrologue::Glu(act) => {
            let ups = per_vector(b, second_base);
            stage(b, k, t, &xs, &ups, |b, _, g, u| emit_glu(b, *act, g, u))
        }
    }
}

/// Each vector's norm scale, `rmsnorm_q8_1`'s bits (see the module's notes).
fn norm_scales(b: &mut KernelBuilder, s: &GemvNorm, k: u32, t: &Thread, xs: &[Reg]) -> Vec<Reg> {
    let layout = RowLayout::new(k);
    let warps = t.threads / 32;
    let stride = layout.vec * 4;
    let toff = b.mul_wide(Type::U32, t.tid, stride);
    // The layout's chunk j of thread t; threads past the layout's load nothing.
    let active =
        (layout.threads < t.threads).then(|| b.setp(Cmp::Lt, Type::U32, t.tid, layout.threads));
    let guards: Vec<Option<Reg>> = (0..layout.per_thread)
        .map(|j| {
            let in_row = layout.partial(j).then(|| {
                let c = b.add(Type::U32, t.tid, j * layout.threads);
                b.setp(Cmp::Lt, Type::U32, c, layout.chunks)
            });
            match (active, in_row) {
                (Some(a), Some(r)) => Some(b.and(Type::Pred, a, r)),
                (a, r) => a.or(r),
            }
        })
        .collect();
    let partials: Vec<Reg> = xs
        .iter()
        .map(|xv| {
            let xa = b.add(Type::U64, *xv, toff);
            let acc = b.mov(Type::F32, 0.0f32);
            for (j, guard) in guards.iter().enumerate() {
                let off = (j as u32 * layout.threads * stride) as i64;
                let vals = load_chunk(b, &layout, xa, off, *guard);
                add_squares(b, acc, &vals);
            }
            warp_reduce(b, BinOp::Add, Type::F32, acc)
        })
        .collect();
    let bases: Vec<Reg> = partials
        .iter()
        .enumerate()
        .map(|(v, p)| {
            let name = per_vector_shared_name(NORM_PARTIALS, v as u32);
            stash_partial(b, Type::F32, *p, &name, warps, (t.lane, t.warp))
        })
        .collect();
    b.bar_sync(0);
    bases
        .iter()
        .map(|base| {
            let total = total_of_partials(b, BinOp::Add, Type::F32, *base, warps, t.lane);
            scale_of_sum(b, total, k, s.eps)
        })
        .collect()
}

/// Quantizes `value(v, x, y)` of each vector v (`x`, `y`: the values of `xs[v]` and
/// `ys[v]` at that index) into its staged Q8_1 blocks: warp w takes blocks w, w + warps,
/// ..., value j of block q is index 32 q + j, the thread's `tid + i * threads` in round i.
/// Rounds go outside vectors, so a round's guard (the last round of a vector whose blocks
/// do not fill it) covers every vector at once, as the single kernel's covers its one.
/// Returns each vector's staged blocks' variable; ends with a `bar.sync`.
fn stage(
    b: &mut KernelBuilder,
    k: u32,
    t: &Thread,
    xs: &[Reg],
    ys: &[Reg],
    value: impl Fn(&mut KernelBuilder, usize, Reg, Reg) -> Reg,
) -> Vec<SharedVar> {
    let warps = t.threads / 32;
    let blocks = k / Q8_1_BLOCK_VALUES;
    let rounds = blocks.div_ceil(warps);
    let voff = b.mul_wide(Type::U32, t.tid, 4u32);
    let vars: Vec<SharedVar> = (0..xs.len() as u32)
        .map(|v| {
            b.shared(
                &per_vector_shared_name(STAGED_X, v),
                Type::B32,
                q8_1_vector_bytes(k) / 4,
                16,
            )
        })
        .collect();
    let lanes: Vec<(Reg, Reg, Q8Ptr)> = xs
        .iter()
        .zip(ys)
        .zip(&vars)
        .map(|((x, y), var)| {
            let base = staged_address(b, var);
            let staged = Q8Ptr::vector(b, base, k).at(b, t.warp);
            (
                b.add(Type::U64, *x, voff),
                b.add(Type::U64, *y, voff),
                staged,
            )
        })
        .collect();
    for i in 0..rounds {
        let body = |b: &mut KernelBuilder| {
            let off = (i * t.threads * 4) as i64;
            for (v, (xa, ya, sa)) in lanes.iter().enumerate() {
                let load = |b: &mut KernelBuilder, a: Reg| {
                    b.load(
                        StateSpace::Global,
                        Type::F32,
                        1,
                        Addr::reg_off(a, off),
                        &[crate::ir::CacheHint::NonCoherent],
                        None,
                    )[0]
                };
                let xv = load(b, *xa);
                let yv = load(b, *ya);
                let q = value(b, v, xv, yv);
                emit_block_in(b, q, t.lane, sa.plus(i * warps), StateSpace::Shared);
            }
        };
        if (i + 1) * warps > blocks {
            let q = b.add(Type::U32, t.warp, i * warps);
            let has = b.setp(Cmp::Lt, Type::U32, q, blocks);
            b.if_then(has, body);
        } else {
            body(b);
        }
    }
    b.bar_sync(0);
    vars
}

/// The 64-bit shared address of a staged vector (the GEMV's input addressing is 64-bit).
pub(crate) fn staged_address(b: &mut KernelBuilder, var: &SharedVar) -> Reg {
    let base = b.shared_base(var);
    b.cvt(Type::U64, Type::U32, FMode::NONE, base)
}
