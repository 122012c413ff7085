//! Q4_K x Q8_1 dot product. `block_q4_K` = `{f16 d; f16 dmin; u8 scales[12]; u8 qs[128]}`
//! (144 bytes, 16-byte aligned), 256 values in 8 sub-blocks of 32 with 6-bit scales and
//! mins packed in `scales` (GGML's `get_scale_min_k4`); bytes 32c..32c+31 of `qs` hold
//! sub-block 2c (low nibbles) and 2c+1 (high nibbles); value = d*sc*q - dmin*m.
//!
//! Sixteen lanes per block; lane p takes qs bytes 8p..8p+7, i.e. values 8(p%4)..+7 of
//! sub-blocks 2c and 2c+1 with c = p/4. As GGML's `vec_dot_q4_K_q8_1`:
//! `d * sum_s(d_x[s] * (sum(q*q_x) * sc[s])) - dmin * sum_s(d_x[s] * (sum(q_x) * m[s]))`,
//! every sum of products an exact integer from `dp4a`.

use crate::ast::{StateSpace, Type};
use crate::ir::{Addr, BinOp, CacheHint, Cmp, FMode, KernelBuilder, Reg, Value};

use super::gemv::q8_1_addr;
use super::loads::{half2_as_f32, half_as_f32, word4};

const NIBBLES: Value = Value::Hex(0x0F0F_0F0F);
const ONES: Value = Value::Hex(0x0101_0101);

/// The 6-bit scale and min of sub-blocks 2c and 2c+1: ((sc_lo, m_lo), (sc_hi, m_hi)).
fn scales_mins(b: &mut KernelBuilder, wblk: Reg, c: Reg) -> [(Reg, Reg); 2] {
    let s0 = word4(b, Addr::reg_off(wblk, 4));
    let s1 = word4(b, Addr::reg_off(wblk, 8));
    let s2 = word4(b, Addr::reg_off(wblk, 12));
    // Byte 2c (mod 4) of a word starts at bit 16 * (c & 1).
    let odd = b.and(Type::B32, c, 1u32);
    let pos = b.shl(Type::B32, odd, 4u32);
    let low_half = b.setp(Cmp::Lt, Type::U32, c, 2u32);
    let mut out = Vec::new();
    for k in 0..2u32 {
        let p = b.add(Type::U32, pos, 8 * k);
        // Sub-blocks 0..3: sc = scales[j] & 63, m = scales[j + 4] & 63.
        let sc_a = b.bfe(Type::U32, s0, p, 6u32);
        let m_a = b.bfe(Type::U32, s1, p, 6u32);
        // Sub-blocks 4..7: low four bits from scales[j + 4], high two from the top of
        // scales[j - 4] (scale) and scales[j] (min).
        let p6 = b.add(Type::U32, p, 6u32);
        let p4 = b.add(Type::U32, p, 4u32);
        let sc_lo4 = b.bfe(Type::U32, s2, p, 4u32);
        let sc_hi2 = b.bfe(Type::U32, s0, p6, 2u32);
        let sc_b = b.mad(Type::U32, FMode::NONE, sc_hi2, 16u32, sc_lo4);
        let m_lo4 = b.bfe(Type::U32, s2, p4, 4u32);
        let m_hi2 = b.bfe(Type::U32, s1, p6, 2u32);
        let m_b = b.mad(Type::U32, FMode::NONE, m_hi2, 16u32, m_lo4);
        let sc = b.selp(Type::U32, sc_a, sc_b, low_half);
        let m = b.selp(Type::U32, m_a, m_b, low_half);
        out.push((sc, m));
    }
    [out[0], out[1]]
}

/// The lane's part of a weight block, loaded once for all vectors.
pub(crate) struct Part {
    /// Low and high nibbles of the lane's eight bytes: sub-blocks 2c and 2c + 1.
    v: [[Reg; 2]; 2],
    scales: [(Reg, Reg); 2],
    d: Reg,
    dmin: Reg,
    c: Reg,
    /// Byte offset of the lane's inputs inside a Q8_1 block's `qs`: 8 * (part % 4).
    x_in: Reg,
}

pub(crate) fn load(b: &mut KernelBuilder, wblk: Reg, part: Reg) -> Part {
    let off = b.mul_wide(Type::U32, part, 8u32);
    let wq = b.add(Type::U64, wblk, off);
    let w = b.load(
        StateSpace::Global,
        Type::B32,
        2,
        Addr::reg_off(wq, 16),
        &[CacheHint::NonCoherent],
        None,
    );
    let c = b.shr(Type::U32, part, 2u32);
    let quarter = b.and(Type::B32, part, 3u32);
    let x_in = b.shl(Type::B32, quarter, 3u32);
    let x_in = b.cvt(Type::U64, Type::U32, FMode::NONE, x_in);
    let scales = scales_mins(b, wblk, c);
    let lo = [
        b.and(Type::B32, w[0], NIBBLES),
        b.and(Type::B32, w[1], NIBBLES),
    ];
    let h0 = b.shr(Type::U32, w[0], 4u32);
    let h1 = b.shr(Type::U32, w[1], 4u32);
    let hi = [b.and(Type::B32, h0, NIBBLES), b.and(Type::B32, h1, NIBBLES)];
    let (d, dmin) = half2_as_f32(b, Addr::reg(wblk));
    Part {
        v: [lo, hi],
        scales,
        d,
        dmin,
        c,
        x_in,
    }
}

pub(crate) fn dot(b: &mut KernelBuilder, w: &Part, xblk: Reg) -> Reg {
    let mut terms = Vec::new();
    for (half, (sc, m)) in w.scales.into_iter().enumerate() {
        // Sub-block 2c + half: its Q8_1 block and the lane's eight inputs in it.
        let sub = b.mad(Type::U32, FMode::NONE, w.c, 2u32, half as u32);
        let xb = q8_1_addr(b, xblk, sub);
        let xq = b.add(Type::U64, xb, w.x_in);
        let x0 = word4(b, Addr::reg_off(xq, 4));
        let x1 = word4(b, Addr::reg_off(xq, 8));
        let [v0, v1] = w.v[half];
        let dot = b.dp4a(Type::S32, Type::S32, v0, x0, 0i32);
        let dot = b.dp4a(Type::S32, Type::S32, v1, x1, dot);
        let xs = b.dp4a(Type::U32, Type::S32, ONES, x0, 0i32);
        let xs = b.dp4a(Type::U32, Type::S32, ONES, x1, xs);
        let dx = half_as_f32(b, Addr::reg(xb));
        let ds = b.mul(Type::S32, dot, sc);
        let ms = b.mul(Type::S32, xs, m);
        let dsf = b.cvt(Type::F32, Type::S32, FMode::rn(), ds);
        let msf = b.cvt(Type::F32, Type::S32, FMode::rn(), ms);
        let fd = b.bin(BinOp::Mul, Type::F32, FMode::rn(), dx, dsf);
        let fm = b.bin(BinOp::Mul, Type::F32, FMode::rn(), dx, msf);
        terms.push((fd, fm));
    }
    let sum_d = b.bin(BinOp::Add, Type::F32, FMode::rn(), terms[0].0, terms[1].0);
    let sum_m = b.bin(BinOp::Add, Type::F32, FMode::rn(), terms[0].1, terms[1].1);
    let a = b.bin(BinOp::Mul, Type::F32, FMode::rn(), w.d, sum_d);
    let m = b.bin(BinOp::Mul, Type::F32, FMode::rn(), w.dmin, sum_m);
    b.bin(BinOp::Sub, Type::F32, FMode::rn(), a, m)
}
