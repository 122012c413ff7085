//! RMSNorm + Q8_1 quantization folded into a GEMV's prologue: the GEMV reads the f32
//! vector `x` and the norm weight `norm_w`, and every thread block computes
//! `quantize_q8_1(rmsnorm(x))` into shared memory itself before its dot products, which then
//! read their Q8_1 inputs from there. One launch fewer per norm (the `rmsnorm_q8_1` kernel
//! and its store and reload of the Q8_1 vector go away), for a few microseconds of L2 reads
//! per block: worth it where the launch is the cost (small models), not at llama3-8b's
//! sizes (see the plan's rule).
//!
//! The staged blocks are the `rmsnorm_q8_1` kernel's bits:
//! - the sum of squares runs in that kernel's row layout ([`RowLayout`] of `k` values):
//!   thread t < layout threads sums its chunks in order, the block's other threads add
//!   nothing, and the warps' partials meet in the same butterfly (a warp with no chunks
//!   contributes +0, which leaves every sum of squares unchanged);
//! - the scale, normalization and quantization are that kernel's own code
//!   ([`scale_of_sum`], [`normalize`], [`emit_block_in`]): warp w quantizes Q8_1 blocks
//!   w, w + warps, ..., lane j holding value j of the block.
//!
//! Batched (M vectors in every thread): each vector's partials and staged blocks have
//! their own shared variables (`gemv_rms`, `gemv_xq` and their copies `_v1`, ...; per-vector
//! shared variables of the batching claim), so the M vectors take the same two barriers as
//! the single kernel's one.

use serde::{Deserialize, Serialize};

use crate::ast::{StateSpace, Type};
use crate::ir::{Addr, BinOp, Cmp, FMode, KernelBuilder, Param, Reg};
use crate::parity::per_vector_shared_name;

use super::quantize_q8_1::{emit_block_in, Q8_1_BLOCK_BYTES, Q8_1_BLOCK_VALUES};
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

    /// Shared memory of the prologue for `m` vectors of `k` values in a block of `warps`.
    pub fn shared_bytes(k: u32, m: u32, warps: u32) -> u32 {
        m * (k / Q8_1_BLOCK_VALUES * Q8_1_BLOCK_BYTES + warps * 4)
    }

    /// The prologue's constraints for a GEMV of `k` columns and `m` vectors in blocks of
    /// `threads` threads.
    pub(crate) fn check(&self, k: u32, m: u32, threads: u32) -> Result<(), GenError> {
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
        let bytes = Self::shared_bytes(k, m, threads / 32);
        if bytes > MAX_STAGED_BYTES {
            return Err(super::spec::invalid(
                "gemv",
                "norm",
                &format!("staged inputs of at most {MAX_STAGED_BYTES} bytes of shared memory (m x k / 32 x 36)"),
                format!("{bytes} bytes for m = {m}, k = {k}"),
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
/// output) and returns, per vector, the 64-bit shared address of its staged Q8_1 blocks.
/// Ends with a `bar.sync`: call it from uniform control flow.
pub(crate) fn prologue(
    b: &mut KernelBuilder,
    s: &GemvNorm,
    (k, m): (u32, u32),
    t: &Thread,
    x: &Param,
    w: &Param,
) -> Vec<Reg> {
    let layout = RowLayout::new(k);
    let warps = t.threads / 32;
    let x_base = b.global_ptr(x);
    let w_base = b.global_ptr(w);
    let row = k as u64 * 4;
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
    let xs: Vec<Reg> = (0..m)
        .map(|v| {
            if v == 0 {
                x_base
            } else {
                b.add(Type::U64, x_base, (v as u64 * row) as i64)
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
    let scales: Vec<Reg> = bases
        .iter()
        .map(|base| {
            let total = total_of_partials(b, BinOp::Add, Type::F32, *base, warps, t.lane);
            scale_of_sum(b, total, k, s.eps)
        })
        .collect();

    // Warp w quantizes blocks w, w + warps, ...: value j of block q is x[32 q + j], the
    // thread's x[tid + i * threads] in round i.
    let blocks = k / Q8_1_BLOCK_VALUES;
    let rounds = blocks.div_ceil(warps);
    let voff = b.mul_wide(Type::U32, t.tid, 4u32);
    let wa = b.add(Type::U64, w_base, voff);
    let boff = b.mul_wide(Type::U32, t.warp, Q8_1_BLOCK_BYTES);
    let staged: Vec<Reg> = (0..m)
        .map(|v| {
            let var = b.shared(
                &per_vector_shared_name(STAGED_X, v),
                Type::B32,
                blocks * Q8_1_BLOCK_BYTES / 4,
                16,
            );
            let base = b.shared_base(&var);
            b.cvt(Type::U64, Type::U32, FMode::NONE, base)
        })
        .collect();
    for (v, (xv, scale)) in xs.iter().zip(&scales).enumerate() {
        let xa = b.add(Type::U64, *xv, voff);
        let ya = b.add(Type::U64, staged[v], boff);
        for i in 0..rounds {
            let body = |b: &mut KernelBuilder| {
                let off = (i * t.threads * 4) as i64;
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
                let xval = load(b, xa);
                let wval = load(b, wa);
                let y = normalize(b, xval, *scale, wval, s.weight_offset);
                let at = b.add(Type::U64, ya, (i * warps * Q8_1_BLOCK_BYTES) as i64);
                emit_block_in(b, y, t.lane, at, StateSpace::Shared);
            };
            if (i + 1) * warps > blocks {
                let q = b.add(Type::U32, t.warp, i * warps);
                let has = b.setp(Cmp::Lt, Type::U32, q, blocks);
                b.if_then(has, body);
            } else {
                body(b);
            }
        }
    }
    b.bar_sync(0);
    staged
}
