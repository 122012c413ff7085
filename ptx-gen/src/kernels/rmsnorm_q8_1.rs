//! RMSNorm fused with Q8_1 quantization of the result: `x -> quantize_q8_1(rmsnorm(x))`, the
//! input of every projection GEMV.
//!
//! Pass 1 is the `rmsnorm` kernel's own code (same row layout, same per-thread order of the sum
//! of squares, same block reduction, same `sqrt.rn`/`rcp.rn`), so the scale has the same bits.
//! Pass 2 gives each warp whole Q8_1 blocks (lane j holds value j of the block), normalizes each
//! value with the same IEEE-rounded operations as `rmsnorm`, and quantizes the block with
//! `quantize_q8_1`'s own `emit_block`. The output is therefore bit-identical to the
//! `rmsnorm` kernel followed by the `quantize_q8_1` kernel.
//!
//! Batched (`m` > 1): M vectors, one block per vector along `%ctaid.y`; `x` of vector v
//! starts `v * hidden * 4` and `y` `v * (hidden / 32) * 36` after the pointers, the weight
//! is shared, and the rest is exactly the single kernel's code.

use crate::ast::{StateSpace, Type};
use crate::ir::{Addr, CacheHint, Cmp, KernelBuilder, Module, Reg, Sreg};
use crate::launch::LaunchSpec;
use crate::target::Target;

use super::q8_1_layout::{q8_1_layout, q8_1_vector_bytes, Q8Ptr, Q8_1_BLOCK_VALUES};
use super::quantize_q8_1::{
    batch_describe, batch_launch, batch_params, batch_suffix, batch_vector, cli_batch, emit_block,
    grid_decl, is_one, one, validate_batch, vector_ptr,
};
use super::rmsnorm::{
    add_squares, chunk_guards, load_chunk, normalize, row_scale, RowLayout, RMSNORM_MAX_HIDDEN,
};
use super::rmsnorm::{row_kernel_start, RowStart};
use super::spec::{cli_dim, cli_max, invalid, Access, FamilySpec, GenError, KernelSpec, ParamSpec};
use super::GeneratedKernel;

/// The format a fused kernel writes its f32 result in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutFormat {
    /// Plain f32 values.
    F32,
    /// Q8_1 in the planar device layout (`quantize_q8_1`'s), quantized as it does.
    Q8_1,
}

impl OutFormat {
    /// The name used in kernel names and on the command line.
    pub fn tag(self) -> &'static str {
        match self {
            OutFormat::F32 => "f32",
            OutFormat::Q8_1 => "q8_1",
        }
    }

    /// Parses `f32` or `q8_1`.
    pub fn parse(s: &str) -> Result<OutFormat, String> {
        match s {
            "f32" => Ok(OutFormat::F32),
            "q8_1" => Ok(OutFormat::Q8_1),
            _ => Err(format!("output format must be `f32` or `q8_1`, got `{s}`")),
        }
    }

    /// The output buffer of `n` values: its layout string and byte size.
    pub fn buffer(self, n: u32) -> (String, u64) {
        match self {
            OutFormat::F32 => (format!("f32[{n}]"), n as u64 * 4),
            OutFormat::Q8_1 => (
                q8_1_layout(n / Q8_1_BLOCK_VALUES),
                q8_1_vector_bytes(n) as u64,
            ),
        }
    }
}

/// What a norm's Q8_1 output parameter says of itself.
pub(crate) const Q8_1_NORMALIZED: &str =
    super::q8_1_layout::q8_1_meaning!("normalized vector, quantized: ");

/// RMSNorm of an f32 vector of `hidden` values, written as Q8_1 blocks.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RmsNormQ8_1 {
    pub hidden: u32,
    pub eps: f32,
    /// Added to every weight (1.0 for checkpoints that store `w - 1`).
    pub weight_offset: f32,
    /// Vectors per launch (1: single; up to 16, one per `%ctaid.y`).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub m: u32,
}

impl FamilySpec for RmsNormQ8_1 {
    const FAMILY: &'static str = "rmsnorm_q8_1";
    const CLI_DIMS: &'static str =
        "HIDDEN [EPS] [WEIGHT_OFFSET] [M]: Q8_1 of x / rms(x) * (w + offset); HIDDEN % 32 == 0, M 1..=16 vectors (default 1)";

    fn from_cli(dims: &[String]) -> Result<Self, String> {
        cli_max(dims, 4)?;
        Ok(RmsNormQ8_1 {
            hidden: cli_dim(dims, 0, "HIDDEN", None)?,
            eps: cli_dim(dims, 1, "EPS", Some(1e-5))?,
            weight_offset: cli_dim(dims, 2, "WEIGHT_OFFSET", Some(0.0))?,
            m: cli_batch(dims, 3)?,
        })
    }

    fn name(&self) -> String {
        format!(
            "rmsnorm_q8_1_n{}_eps{:08x}{}{}",
            self.hidden,
            self.eps.to_bits(),
            woff_suffix(self.weight_offset),
            batch_suffix(self.m)
        )
    }

    fn describe(&self) -> String {
        format!(
            "rmsnorm_q8_1: f32[{}] -> {} Q8_1 blocks of x / rms(x) * (w + {}), eps = {:e} (0x{:08x}){}",
            self.hidden,
            self.hidden / Q8_1_BLOCK_VALUES,
            self.weight_offset,
            self.eps,
            self.eps.to_bits(),
            batch_describe(self.m)
        )
    }

    fn validate(&self) -> Result<(), GenError> {
        validate_norm(
            Self::FAMILY,
            self.hidden,
            self.eps,
            self.weight_offset,
            OutFormat::Q8_1,
        )?;
        validate_batch(Self::FAMILY, self.m)
    }

    fn generate(&self, target: Target) -> Result<GeneratedKernel, GenError> {
        generate(self, target)
    }

    fn samples() -> Vec<Self> {
        [
            (32, 1e-5, 0.0),
            (96, 1e-6, 1.0),
            (576, 1e-5, 0.0),
            (640, 1e-6, 0.0),
            (640, 1e-6, 1.0),
            (896, 1e-6, 0.0),
            (2048, 1e-5, 0.0),
            (4096, 1e-5, 0.0),
            (8192, 1e-5, 0.0),
            (16384, 1e-6, 0.0),
            (65536, 1e-5, 0.0),
        ]
        .map(|(hidden, eps, weight_offset)| RmsNormQ8_1 {
            hidden,
            eps,
            weight_offset,
            m: 1,
        })
        .into_iter()
        .chain(
            [(4096, 2), (4096, 16), (96, 3)].map(|(hidden, m)| RmsNormQ8_1 {
                hidden,
                eps: 1e-5,
                weight_offset: 0.0,
                m,
            }),
        )
        .collect()
    }

    fn batched(&self, m: u32) -> Option<Self> {
        let b = Self { m, ..*self };
        (self.m == 1 && b.validate().is_ok()).then_some(b)
    }

    /// Vector v reads `x + v * hidden * 4`, writes `y + v * (hidden / 32) * 36`; the weight
    /// is shared.
    fn batch_decl(&self) -> Option<crate::parity::BatchDecl> {
        let row = self.hidden as u64 * 4;
        let q8 = OutFormat::Q8_1.buffer(self.hidden).1;
        grid_decl(self.m, &[("x", row), ("w", row), ("y", q8)], &["w"])
    }
}

/// `_woffXXXXXXXX` when the weight offset is not zero (kernel names of the norm families).
pub(crate) fn woff_suffix(weight_offset: f32) -> String {
    if weight_offset != 0.0 {
        format!("_woff{:08x}", weight_offset.to_bits())
    } else {
        String::new()
    }
}

/// The checks shared by the row-norm families: hidden in range (a multiple of 32 for Q8_1
/// output), eps positive and finite, weight offset finite.
pub(crate) fn validate_norm(
    family: &'static str,
    hidden: u32,
    eps: f32,
    weight_offset: f32,
    out: OutFormat,
) -> Result<(), GenError> {
    if hidden == 0 || hidden > RMSNORM_MAX_HIDDEN {
        return Err(invalid(
            family,
            "hidden",
            &format!("in 1..={RMSNORM_MAX_HIDDEN}"),
            hidden,
        ));
    }
    if out == OutFormat::Q8_1 && hidden % Q8_1_BLOCK_VALUES != 0 {
        return Err(invalid(
            family,
            "hidden",
            "a multiple of 32 (the Q8_1 block) for Q8_1 output",
            hidden,
        ));
    }
    if !(eps.is_finite() && eps > 0.0) {
        return Err(invalid(family, "eps", "a positive finite number", eps));
    }
    if !weight_offset.is_finite() {
        return Err(invalid(
            family,
            "weight_offset",
            "a finite number",
            weight_offset,
        ));
    }
    Ok(())
}

fn generate(s: &RmsNormQ8_1, target: Target) -> Result<GeneratedKernel, GenError> {
    let spec = KernelSpec::RmsNormQ8_1(*s);
    let name = spec.name();
    let layout = RowLayout::new(s.hidden);
    let per_cta = slice_blocks(s.hidden, layout.threads / 32);
    let ctas = s.hidden / Q8_1_BLOCK_VALUES / per_cta;
    let RowStart {
        mut b,
        params,
        tid,
        lane,
        warp,
    } = row_kernel_start(&spec, &layout, (ctas, s.m), target, &["x", "w", "y"]);
    let [x, w, y] = params.try_into().expect("one param per name");
    let vi = batch_vector(&mut b, s.m);
    let xp = vector_ptr(&mut b, &x, vi, s.hidden as u64 * 4);
    let wp = b.global_ptr(&w);
    let yp = vector_ptr(&mut b, &y, vi, OutFormat::Q8_1.buffer(s.hidden).1);

    // Pass 1: exactly the rmsnorm kernel's sum of squares and scale.
    let stride = layout.vec * 4;
    let toff = b.mul_wide(Type::U32, tid, stride);
    let xa = b.add(Type::U64, xp, toff);
    let guards = chunk_guards(&mut b, &layout, tid);
    let acc = b.mov(Type::F32, 0.0f32);
    let warps = layout.threads / 32;
    let slice = (ctas > 1).then(|| BlockSlice {
        index: b.special(Sreg::CtaidX),
        blocks: per_cta,
    });
    // Pass 2's loads (the same row, in the quantization's layout) go with pass 1's where each
    // warp's blocks fit one group: one round trip to memory before the reduction, not two.
    // Elsewhere each chunk is added as it comes (holding a long row's chunks at once spills).
    let early = preloads(per_cta, warps);
    let mut pass1 = Vec::new();
    for (j, guard) in guards.iter().enumerate() {
        let off = (j as u32 * layout.threads * stride) as i64;
        let v = load_chunk(&mut b, &layout, xa, off, *guard);
        if early {
            pass1.push(v);
        } else {
            add_squares(&mut b, acc, &v);
        }
    }
    let x_hints = &[CacheHint::NonCoherent];
    let early = early.then(|| {
        preload_normalize_quantize(
            &mut b,
            s.hidden,
            (xp, x_hints, wp),
            yp,
            warps,
            lane,
            warp,
            slice,
        )
    });
    for v in &pass1 {
        add_squares(&mut b, acc, v);
    }
    let scale = row_scale(&mut b, acc, s.hidden, s.eps, layout.threads, lane, warp);

    // Pass 2: normalize and quantize, one Q8_1 block per warp at a time.
    match early {
        Some(loads) => finish_normalize_quantize(&mut b, loads, scale, s.weight_offset, lane),
        None => {
            let rows = NormRows {
                hidden: s.hidden,
                x: xp,
                x_hints,
                w: wp,
                weight_offset: s.weight_offset,
                scale,
            };
            emit_normalize_quantize(&mut b, &rows, yp, warps, lane, warp, slice);
        }
    }

    let kernel = b.finish()?;
    let ptx = crate::emit::emit_module(&Module::single(kernel));
    let (y_layout, y_bytes) = OutFormat::Q8_1.buffer(s.hidden);
    let row = format!("f32[{}]", s.hidden);
    let bytes = s.hidden as u64 * 4;
    let mut params = vec![
        ParamSpec::buffer(
            "x",
            row.clone(),
            bytes,
            stride,
            Access::Read,
            "input vector",
        ),
        ParamSpec::buffer("w", row, bytes, 4, Access::Read, "norm weight (gamma)"),
        ParamSpec::buffer("y", y_layout, y_bytes, 16, Access::Write, Q8_1_NORMALIZED),
    ];
    batch_params(&mut params, s.m, &["w"]);
    Ok(GeneratedKernel {
        name,
        ptx,
        launch: batch_launch(LaunchSpec::fixed(ctas, 1, layout.threads), s.m),
        params,
        spec,
        target,
    })
}

/// What pass 2 of a fused norm reads: the row (global base address `x`, loaded with
/// `x_hints`), the weight, and the scale computed by pass 1.
pub(crate) struct NormRows<'a> {
    pub hidden: u32,
    pub x: Reg,
    pub x_hints: &'a [CacheHint],
    pub w: Reg,
    pub weight_offset: f32,
    pub scale: Reg,
}

/// Pass 2 of the fused norm + quantize kernels: warp `warp` of `warps` takes Q8_1 blocks
/// `warp, warp + warps, ...`; lane j normalizes value j of the block exactly as `rmsnorm` does
/// and the warp quantizes the block into `y` with `quantize_q8_1`'s `emit_block`. Blocks go in
/// groups of up to [`PASS2_GROUP`] per warp, every load of a group issued before its
/// arithmetic (one latency per group, not per block). A group's blocks past the row are
/// skipped; that test and the loop's trip count depend only on the warp index, so every
/// shuffle sees a full warp.
pub(crate) fn emit_normalize_quantize(
    b: &mut KernelBuilder,
    rows: &NormRows<'_>,
    y: Reg,
    warps: u32,
    lane: Reg,
    warp: Reg,
    slice: Option<BlockSlice>,
) {
    let (bases, nblocks) = pass2_bases(b, rows.x, rows.w, y, lane, slice, rows.hidden);
    // 1024-thread rows have 64 registers per thread: half the group keeps them unspilled.
    let most = if warps > 16 {
        PASS2_GROUP / 2
    } else {
        PASS2_GROUP
    };
    let group = nblocks.div_ceil(warps).clamp(1, most);
    let ragged = nblocks % (warps * group) != 0;
    b.for_range(
        Type::U32,
        warp,
        nblocks,
        (warps * group) as i64,
        |b, first| {
            // The loop's bound covers each group's first block.
            let g = Group {
                warps,
                size: group,
                nblocks,
                guard_first: false,
                ragged,
            };
            let loads = load_group(b, &bases, first, &g, rows.x_hints);
            quantize_group(b, loads, rows.scale, rows.weight_offset, lane);
        },
    );
}

/// Pass 2 when each warp's blocks fit one group: its loads issued at once, before pass 1's
/// reduction (they do not depend on the scale), so the row is read from memory once per
/// round trip instead of twice in a row; [`finish_normalize_quantize`] does the arithmetic
/// (the same as [`emit_normalize_quantize`]'s: only the loads move). Only where
/// [`preloads`] says the blocks are one group per warp.
#[allow(clippy::too_many_arguments)]
pub(crate) fn preload_normalize_quantize(
    b: &mut KernelBuilder,
    hidden: u32,
    (x, x_hints, w): (Reg, &[CacheHint], Reg),
    y: Reg,
    warps: u32,
    lane: Reg,
    warp: Reg,
    slice: Option<BlockSlice>,
) -> Pass2Loads {
    let nblocks = slice.map_or(hidden / Q8_1_BLOCK_VALUES, |s| s.blocks);
    assert!(
        preloads(nblocks, warps),
        "{nblocks} blocks over {warps} warps need several groups"
    );
    let size = nblocks.div_ceil(warps);
    let (bases, nblocks) = pass2_bases(b, x, w, y, lane, slice, hidden);
    let g = Group {
        warps,
        size,
        nblocks,
        guard_first: warps > nblocks,
        ragged: nblocks % (warps * size) != 0,
    };
    load_group(b, &bases, warp, &g, x_hints)
}

/// Whether pass 2 of `nblocks` Q8_1 blocks over `warps` warps is one group per warp, so
/// [`preload_normalize_quantize`] can load it before pass 1's reduction.
pub(crate) fn preloads(nblocks: u32, warps: u32) -> bool {
    warps <= 16 && nblocks.div_ceil(warps) <= 2 * PASS2_GROUP
}

/// The arithmetic of pass 2 over the values [`preload_normalize_quantize`] loaded.
pub(crate) fn finish_normalize_quantize(
    b: &mut KernelBuilder,
    loads: Pass2Loads,
    scale: Reg,
    weight_offset: f32,
    lane: Reg,
) {
    quantize_group(b, loads, scale, weight_offset, lane);
}

/// Per-lane base addresses of pass 2 (x, w, y at the thread block's first Q8_1 block) and
/// the number of Q8_1 blocks the thread block quantizes.
fn pass2_bases(
    b: &mut KernelBuilder,
    x: Reg,
    w: Reg,
    y: Reg,
    lane: Reg,
    slice: Option<BlockSlice>,
    hidden: u32,
) -> (Pass2Bases, u32) {
    let all = hidden / Q8_1_BLOCK_VALUES;
    // The blocks this thread block quantizes: [first, first + nblocks) of the row.
    let (first_block, nblocks) = match slice {
        Some(sl) => (Some(b.mul(Type::U32, sl.index, sl.blocks)), sl.blocks),
        None => (None, all),
    };
    let y = Q8Ptr::vector(b, y, hidden);
    let (x, w, y) = match first_block {
        Some(f) => {
            let xo = b.mul_wide(Type::U32, f, Q8_1_BLOCK_VALUES * 4);
            (b.add(Type::U64, x, xo), b.add(Type::U64, w, xo), y.at(b, f))
        }
        None => (x, w, y),
    };
    let lane_off = b.mul_wide(Type::U32, lane, 4u32);
    let xl = b.add(Type::U64, x, lane_off);
    let wl = b.add(Type::U64, w, lane_off);
    (Pass2Bases { xl, wl, y }, nblocks)
}

/// Pass 2's per-lane addresses of x and w, and the Q8_1 output, at the thread block's first
/// Q8_1 block.
struct Pass2Bases {
    xl: Reg,
    wl: Reg,
    y: Q8Ptr,
}

/// A warp's group of Q8_1 blocks: `size` blocks `warps` apart, of `nblocks`.
struct Group {
    warps: u32,
    size: u32,
    nblocks: u32,
    /// Whether the group's first block can be past the row (no loop bound guards it).
    guard_first: bool,
    /// Whether any later block can be.
    ragged: bool,
}

/// The values of one group, loaded; zeros where a block is past the row.
pub(crate) struct Pass2Loads {
    ya: Q8Ptr,
    warps: u32,
    loaded: Vec<(Reg, Reg, Option<Reg>)>,
}

fn load_group(
    b: &mut KernelBuilder,
    Pass2Bases { xl, wl, y }: &Pass2Bases,
    first: Reg,
    g: &Group,
    x_hints: &[CacheHint],
) -> Pass2Loads {
    let block_stride = (g.warps * Q8_1_BLOCK_VALUES * 4) as i64;
    let boff = b.mul_wide(Type::U32, first, Q8_1_BLOCK_VALUES * 4);
    let xa = b.add(Type::U64, *xl, boff);
    let wa = b.add(Type::U64, *wl, boff);
    let ya = y.at(b, first);
    let loaded = (0..g.size)
        .map(|j| {
            let guard = (if j == 0 { g.guard_first } else { g.ragged }).then(|| {
                let blk = b.add(Type::U32, first, j * g.warps);
                b.setp(Cmp::Lt, Type::U32, blk, g.nblocks)
            });
            let off = j as i64 * block_stride;
            let xv = b.mov(Type::F32, 0.0f32);
            let wv = b.mov(Type::F32, 0.0f32);
            let load = |b: &mut KernelBuilder, dst: Reg, a: Reg, hints: &[CacheHint]| {
                let addr = Addr::reg_off(a, off);
                match guard {
                    Some(g) => b.when(g),
                    None => b,
                }
                .load_to(StateSpace::Global, Type::F32, &[dst], addr, hints, None);
            };
            load(b, xv, xa, x_hints);
            load(b, wv, wa, &[CacheHint::NonCoherent]);
            (xv, wv, guard)
        })
        .collect();
    Pass2Loads {
        ya,
        warps: g.warps,
        loaded,
    }
}

fn quantize_group(
    b: &mut KernelBuilder,
    loads: Pass2Loads,
    scale: Reg,
    weight_offset: f32,
    lane: Reg,
) {
    for (j, (xv, wv, guard)) in loads.loaded.into_iter().enumerate() {
        let yb = loads.ya.plus(j as u32 * loads.warps);
        let body = |b: &mut KernelBuilder| {
            let v = normalize(b, xv, scale, wv, weight_offset);
            emit_block(b, v, lane, yb);
        };
        match guard {
            Some(g) => b.if_then(g, body),
            None => body(b),
        }
    }
}

/// The most Q8_1 blocks a warp of pass 2 loads before quantizing them.
pub(crate) const PASS2_GROUP: u32 = 8;

/// Pass 2 spread over several thread blocks: block `index` (a `%ctaid.x`) quantizes Q8_1
/// blocks `index * blocks ..` of the row (each thread block computes pass 1 for itself).
#[derive(Clone, Copy)]
pub(crate) struct BlockSlice {
    pub index: Reg,
    pub blocks: u32,
}

/// Q8_1 blocks per thread block of pass 2: about two per warp, the row split into up to 16
/// equal slices (each thread block re-reads the row for pass 1, from L2).
fn slice_blocks(hidden: u32, warps: u32) -> u32 {
    let nblocks = hidden / Q8_1_BLOCK_VALUES;
    let most = nblocks.div_ceil(2 * warps).clamp(1, 16);
    let ctas = (1..=most).rev().find(|c| nblocks % c == 0).unwrap_or(1);
    nblocks / ctas
}
