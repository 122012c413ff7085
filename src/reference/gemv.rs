//! GEMV `y = W x` with `W` in GGML blocks and `x` in Q8_1: the reference every DP4A GEMV
//! kernel is checked against.
//!
//! It computes what GGML CUDA's `vec_dot_*_q8_1` functions (`ggml-cuda/vecdotq.cuh`, the MMVQ
//! path) compute: integer dot products of the weight quants with the Q8_1 quants over each 32-value
//! Q8_1 block (what `dp4a` accumulates), then the block scales. Per type, for one Q8_1 block
//! with scale `d8`, sum `s8` (the stored `s` field) and quants `u`:
//!
//! | type | weight quants `q` | contribution |
//! |------|-------------------|--------------|
//! | Q8_0 | `qs` (-128..=127) | `d * d8 * Σ q u` |
//! | Q4_1 | nibbles (0..=15) | `d * d8 * Σ q u + m * s8` |
//! | Q5_0 | 5 bits (0..=31), offset not applied | `d * (d8 * Σ q u - 16 * s8)` |
//! | Q4_K | nibbles (0..=15) of sub-block `j` | `d * d8 * sc_j * Σ q u - dmin * d8 * m_j * Σ u` |
//! | Q6_K | 6 bits - 32 (-32..=31), 16-value groups `g` | `d * d8 * Σ_g scales[g] * Σ_{i in g} q u` |
//!
//! The offsets of Q4_1 and Q5_0 use the Q8_1 sum `s8` (an f16, so not exactly `d8 * Σ u`), as
//! CUDA does; Q4_K's min term uses the exact integer `Σ u` (CUDA's `dp4a(0x01010101, u)`), and
//! Q6_K subtracts 32 from each quant before the dot (`__vsubss4`). A GPU kernel that takes the
//! other choice for any of these differs from this reference by more than rounding. (CUDA's
//! fast-fp16 path also forms Q4_1's `d * d8` and `m * s8` in half precision; this reference,
//! like our kernels, takes those products in full precision.)
//!
//! Integer sums are exact; scaling and summation are done in f64 so the reference adds no
//! rounding of its own: a GPU kernel doing the same math in f32 differs from it only by f32
//! rounding and summation order. The result is `dot + bias + residual`, rounded to f32 once.

use crate::quant::block::Block;
use crate::quant::q4_1::BlockQ4_1;
use crate::quant::q4_k::BlockQ4K;
use crate::quant::q5_0::BlockQ5_0;
use crate::quant::q6_k::BlockQ6K;
use crate::quant::q8_0::BlockQ8_0;
use crate::quant::q8_1::{BlockQ8_1, QK8_1};
use crate::quant::GgmlType;

/// The weight types the DP4A GEMV supports.
pub const GEMV_TYPES: [GgmlType; 5] = [
    GgmlType::Q4K,
    GgmlType::Q6K,
    GgmlType::Q5_0,
    GgmlType::Q8_0,
    GgmlType::Q4_1,
];

/// A weight matrix as GGUF stores it: `rows` rows of `cols` values, each row a run of `ty`
/// blocks, rows back to back.
#[derive(Clone, Copy, Debug)]
pub struct QuantMatrix<'a> {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    pub data: &'a [u8],
}

/// What the fused epilogue adds to output `i`: `bias[i]` and `residual[i]`, when present.
#[derive(Clone, Copy, Debug, Default)]
pub struct Epilogue<'a> {
    pub bias: Option<&'a [f32]>,
    pub residual: Option<&'a [f32]>,
}

/// A GEMV whose operands do not fit together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GemvError {
    #[error("GEMV weights of type {0} are not supported (Q4_K, Q6_K, Q5_0, Q8_0, Q4_1 are)")]
    UnsupportedType(GgmlType),
    #[error("{ty} rows need K % {block} == 0, got K = {cols}")]
    ColsNotWholeBlocks {
        ty: GgmlType,
        cols: usize,
        block: usize,
    },
    #[error("weights: {rows}x{cols} {ty} take {expected} bytes, got {found}")]
    WeightBytes {
        ty: GgmlType,
        rows: usize,
        cols: usize,
        expected: usize,
        found: usize,
    },
    #[error("x: K = {cols} takes {expected} Q8_1 blocks, got {found}")]
    XBlocks {
        cols: usize,
        expected: usize,
        found: usize,
    },
    #[error("{what}: expected one value per row ({expected}), got {found}")]
    EpilogueLength {
        what: &'static str,
        expected: usize,
        found: usize,
    },
}

/// `y = W x + bias + residual`, one f32 per row of `w`.
pub fn gemv(
    w: &QuantMatrix<'_>,
    x: &[BlockQ8_1],
    epilogue: &Epilogue<'_>,
) -> Result<Vec<f32>, GemvError> {
    let row_bytes = check(w, x)?;
    for (what, v) in [("bias", epilogue.bias), ("residual", epilogue.residual)] {
        if let Some(v) = v.filter(|v| v.len() != w.rows) {
            return Err(GemvError::EpilogueLength {
                what,
                expected: w.rows,
                found: v.len(),
            });
        }
    }
    let extra =
        |i: usize, v: Option<&[f32]>| v.and_then(|v| v.get(i)).map_or(0.0, |&b| f64::from(b));
    Ok(rows(w, row_bytes)
        .enumerate()
        .map(|(i, row)| {
            let dot = row_dot(w.ty, row, x);
            (dot + extra(i, epilogue.bias) + extra(i, epilogue.residual)) as f32
        })
        .collect())
}

/// `Σ_k |W_ik| |x_k|` per row over the dequantized operands: the scale of the rounding error a
/// GPU kernel may add, for relative tolerances.
pub fn row_magnitudes(w: &QuantMatrix<'_>, x: &[BlockQ8_1]) -> Result<Vec<f64>, GemvError> {
    let row_bytes = check(w, x)?;
    let mut xv = Vec::with_capacity(w.cols);
    for b in x {
        b.dequantize_into(&mut xv);
    }
    Ok(rows(w, row_bytes)
        .map(|row| {
            let wv = crate::quant::dequantize(w.ty, row, w.cols).unwrap_or_default();
            wv.iter()
                .zip(&xv)
                .map(|(a, b)| (f64::from(*a) * f64::from(*b)).abs())
                .sum()
        })
        .collect())
}

/// Checks the operands and returns the bytes of one row.
fn check(w: &QuantMatrix<'_>, x: &[BlockQ8_1]) -> Result<usize, GemvError> {
    if !GEMV_TYPES.contains(&w.ty) {
        return Err(GemvError::UnsupportedType(w.ty));
    }
    let block = w.ty.block_size() as usize;
    if w.cols % block != 0 {
        return Err(GemvError::ColsNotWholeBlocks {
            ty: w.ty,
            cols: w.cols,
            block,
        });
    }
    let row_bytes = w.cols / block * w.ty.block_bytes() as usize;
    let expected = row_bytes.checked_mul(w.rows);
    if expected != Some(w.data.len()) {
        return Err(GemvError::WeightBytes {
            ty: w.ty,
            rows: w.rows,
            cols: w.cols,
            expected: expected.unwrap_or(usize::MAX),
            found: w.data.len(),
        });
    }
    if x.len() != w.cols / QK8_1 {
        return Err(GemvError::XBlocks {
            cols: w.cols,
            expected: w.cols / QK8_1,
            found: x.len(),
        });
    }
    Ok(row_bytes)
}

fn rows<'a>(w: &QuantMatrix<'a>, row_bytes: usize) -> impl Iterator<Item = &'a [u8]> {
    // A 0-column matrix has empty rows; `chunks_exact(0)` would panic.
    let data = w.data;
    (0..w.rows).map(move |i| data.get(i * row_bytes..(i + 1) * row_bytes).unwrap_or(&[]))
}

/// The dot product of one row (checked: a whole number of `ty` blocks matching `x`).
fn row_dot(ty: GgmlType, row: &[u8], x: &[BlockQ8_1]) -> f64 {
    match ty {
        GgmlType::Q8_0 => blocks_dot(row, x, dot_q8_0),
        GgmlType::Q4_1 => blocks_dot(row, x, dot_q4_1),
        GgmlType::Q5_0 => blocks_dot(row, x, dot_q5_0),
        GgmlType::Q4K => blocks_dot(row, x, dot_q4_k),
        GgmlType::Q6K => blocks_dot(row, x, dot_q6_k),
        _ => 0.0,
    }
}

/// Sums `dot(block, its Q8_1 blocks)` over the row, in order.
fn blocks_dot<B: Block>(row: &[u8], x: &[BlockQ8_1], dot: fn(&B, &[BlockQ8_1]) -> f64) -> f64 {
    row.chunks_exact(B::BYTES)
        .zip(x.chunks_exact(B::VALUES / QK8_1))
        .filter_map(|(bytes, xs)| B::read(bytes).map(|b| dot(&b, xs)))
        .sum()
}

/// `Σ q u` over one Q8_1 block: what a chain of `dp4a` accumulates.
fn idot<Q: Copy + Into<i32>>(q: &[Q], u: &[i8; QK8_1]) -> i32 {
    q.iter()
        .zip(u)
        .map(|(&a, &b)| a.into() * i32::from(b))
        .sum()
}

fn half(v: half::f16) -> f64 {
    f64::from(v.to_f32())
}

/// Q8_0 block · Q8_1 block: `d * d8 * Σ q u`.
pub fn dot_q8_0(w: &BlockQ8_0, x: &[BlockQ8_1]) -> f64 {
    x.first().map_or(0.0, |u| {
        half(w.d) * half(u.d) * f64::from(idot(&w.qs, &u.qs))
    })
}

/// Q4_1 block · Q8_1 block: `d * d8 * Σ q u + m * s8`.
pub fn dot_q4_1(w: &BlockQ4_1, x: &[BlockQ8_1]) -> f64 {
    x.first().map_or(0.0, |u| {
        let sumi = f64::from(idot(&w.quants(), &u.qs));
        half(w.d) * half(u.d) * sumi + half(w.m) * half(u.s)
    })
}

/// Q5_0 block · Q8_1 block: `d * (d8 * Σ q u - 16 * s8)`, the -16 folded into the Q8_1 sum.
pub fn dot_q5_0(w: &BlockQ5_0, x: &[BlockQ8_1]) -> f64 {
    x.first().map_or(0.0, |u| {
        let sumi = f64::from(idot(&w.quants(), &u.qs));
        half(w.d) * (sumi * half(u.d) - 16.0 * half(u.s))
    })
}

/// Q4_K block · its 8 Q8_1 blocks: per sub-block `j`,
/// `d * d8_j * sc_j * Σ q u - dmin * d8_j * m_j * Σ u`.
pub fn dot_q4_k(w: &BlockQ4K, x: &[BlockQ8_1]) -> f64 {
    let q = w.quants();
    let (mut sum_d, mut sum_m) = (0.0f64, 0.0f64);
    for (j, (qj, u)) in q.chunks_exact(QK8_1).zip(x).enumerate() {
        let (sc, m) = w.scale_min(j);
        let d8 = half(u.d);
        let dot = idot(qj, &u.qs);
        let sum_u: i32 = u.qs.iter().map(|&v| i32::from(v)).sum();
        sum_d += d8 * f64::from(dot * i32::from(sc));
        sum_m += d8 * f64::from(sum_u * i32::from(m));
    }
    half(w.d) * sum_d - half(w.dmin) * sum_m
}

/// Q6_K block · its 8 Q8_1 blocks: per Q8_1 block `j` (16-groups `2j`, `2j + 1`),
/// `d * d8_j * (scales[2j] * Σ q u + scales[2j+1] * Σ q u)`.
pub fn dot_q6_k(w: &BlockQ6K, x: &[BlockQ8_1]) -> f64 {
    let q = w.quants();
    let mut sum = 0.0f64;
    for (j, (qj, u)) in q.chunks_exact(QK8_1).zip(x).enumerate() {
        let (lo, hi) = qj.split_at(16);
        let (ulo, uhi) = u.qs.split_at(16);
        let dot = |q: &[i8], u: &[i8]| -> i32 {
            q.iter()
                .zip(u)
                .map(|(&a, &b)| i32::from(a) * i32::from(b))
                .sum()
        };
        let sc = |g: usize| i32::from(w.scales.get(g).copied().unwrap_or(0));
        let sumi = sc(2 * j) * dot(lo, ulo) + sc(2 * j + 1) * dot(hi, uhi);
        sum += half(u.d) * f64::from(sumi);
    }
    half(w.d) * sum
}
