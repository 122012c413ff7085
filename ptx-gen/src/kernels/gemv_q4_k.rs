//! Q4_K x Q8_1 dot product. `block_q4_K` = `{f16 d; f16 dmin; u8 scales[12]; u8 qs[128]}`
//! (144 bytes, 16-byte aligned), 256 values in 8 sub-blocks of 32 with 6-bit scales and
//! mins packed in `scales` (GGML's `get_scale_min_k4`); bytes 32c..32c+31 of `qs` hold
//! sub-block 2c (low nibbles) and 2c+1 (high nibbles); value = d*sc*q - dmin*m.
//!
//! Eight lanes per block; lane p reads qs bytes 16p..16p+15 with one 16-byte load: values
//! 16h..16h+15 (h = p % 2) of sub-blocks 2c and 2c+1 (c = p / 2). The block's first 16
//! bytes (d, dmin, scales) come with one more 16-byte load, the same for the eight lanes.
//! Its inputs, from the planar Q8_1 vector: the same 16 quants of Q8_1 blocks 2c and 2c+1
//! with one 16-byte load each, their two `{d, s}` with one 8-byte load.
//! As GGML's `vec_dot_q4_K_q8_1`:
//! `d * sum_s(d_x[s] * (sum(q*q_x) * sc[s])) - dmin * sum_s(d_x[s] * (sum(q_x) * m[s]))`,
//! every sum of products an exact integer from `dp4a`.

use crate::ast::{StateSpace, Type};
use crate::ir::{Addr, BinOp, CacheHint, Cmp, FMode, KernelBuilder, Reg, Value};
use crate::target::Feature;

use super::loads::{low_half_as_f32, words_in};
use super::q8_1_layout::Q8Ptr;

const NIBBLES: Value = Value::Hex(0x0F0F_0F0F);
const ONES: Value = Value::Hex(0x0101_0101);

/// Lanes sharing one block.
const LANES: u32 = 8;

/// What a lane takes of every block, fixed for the kernel.
pub(crate) struct Lane {
    /// Byte offset of the lane's 16 qs bytes in the block: 16 + 16p.
    w_off: i64,
    w_reg: Reg,
    /// Byte offset, from the weight block's first Q8_1 block's quants, of the lane's 16
    /// inputs in Q8_1 block 2c (the same 16 of block 2c + 1 are 32 bytes on): 64c + 16h.
    x_q: Reg,
    /// Byte offset of the `{d, s}` of Q8_1 blocks 2c and 2c + 1 (8-byte aligned): 8c.
    x_d: Reg,
    /// Scale unpacking: c < 2, the shifts 16(c%2), 16(c%2)+2 and (c < 2 ? 0 : 4) + 16(c%2),
    /// and the masks of the low and high scale bits.
    low: Reg,
    sh: Reg,
    sh2: Reg,
    sh_m: Reg,
    low_mask: Reg,
    high_mask: Reg,
}

pub(crate) fn lane(b: &mut KernelBuilder, part: Reg) -> Lane {
    let c = b.shr(Type::U32, part, 1u32);
    let h = b.and(Type::B32, part, 1u32);
    let w_reg = b.mul_wide(Type::U32, part, 16u32);
    let x_q = b.shl(Type::B32, c, 2u32);
    let x_q = b.add(Type::U32, x_q, h);
    let x_q = b.mul_wide(Type::U32, x_q, 16u32);
    let x_d = b.mul_wide(Type::U32, c, 8u32);
    let low = b.setp(Cmp::Lt, Type::U32, c, 2u32);
    let odd = b.and(Type::B32, c, 1u32);
    let sh = b.shl(Type::B32, odd, 4u32);
    let sh2 = b.add(Type::U32, sh, 2u32);
    let sh4 = b.add(Type::U32, sh, 4u32);
    let sh_m = b.selp(Type::U32, sh, sh4, low);
    let low_mask = b.selp(Type::B32, Value::Hex(0x3F3F), Value::Hex(0x0F0F), low);
    let high_mask = b.selp(Type::B32, Value::Hex(0), Value::Hex(0x3030), low);
    Lane {
        w_off: 16,
        w_reg,
        x_q,
        x_d,
        low,
        sh,
        sh2,
        sh_m,
        low_mask,
        high_mask,
    }
}

/// The lane's part of one weight block.
pub(crate) struct Part {
    /// Low and high nibbles of the lane's sixteen bytes: sub-blocks 2c and 2c + 1.
    lo: [Reg; 4],
    hi: [Reg; 4],
    sc: [Reg; 2],
    m: [Reg; 2],
    d: Reg,
    dmin: Reg,
}

pub(crate) fn load(b: &mut KernelBuilder, l: &Lane, wblk: Reg) -> Part {
    let wq = b.add(Type::U64, wblk, l.w_reg);
    // Streamed once: kept out of L1 where the target has the hint.
    let hints: &[CacheHint] = if b.target().allows(Feature::L1EvictionPriority) {
        &[CacheHint::NonCoherent, CacheHint::L1NoAllocate]
    } else {
        &[CacheHint::NonCoherent]
    };
    let q = b.load(
        StateSpace::Global,
        Type::B32,
        4,
        Addr::reg_off(wq, l.w_off),
        hints,
        None,
    );
    let hd = b.load(
        StateSpace::Global,
        Type::B32,
        4,
        Addr::reg(wblk),
        &[CacheHint::NonCoherent],
        None,
    );
    // GGML's get_scale_min_k4 for sub-blocks 2c and 2c + 1, both in one 16-bit half:
    // c < 2:  sc = scales[j] & 63, m = scales[j + 4] & 63;
    // c >= 2: sc = scales[j + 4] & 15 | (scales[j - 4] >> 6) << 4,
    //         m  = scales[j + 4] >> 4 | (scales[j] >> 6) << 4.
    let (h1, h2, h3) = (hd[1], hd[2], hd[3]);
    let a = b.selp(Type::B32, h1, h3, l.low);
    let t = b.shr(Type::U32, a, l.sh);
    let t = b.and(Type::B32, t, l.low_mask);
    let u = b.shr(Type::U32, h1, l.sh2);
    let u = b.and(Type::B32, u, l.high_mask);
    let scw = b.or(Type::B32, t, u);
    let a = b.selp(Type::B32, h2, h3, l.low);
    let t = b.shr(Type::U32, a, l.sh_m);
    let t = b.and(Type::B32, t, l.low_mask);
    let u = b.shr(Type::U32, h2, l.sh2);
    let u = b.and(Type::B32, u, l.high_mask);
    let mw = b.or(Type::B32, t, u);
    let sc = [
        b.and(Type::B32, scw, 0xFFu32),
        b.bfe(Type::U32, scw, 8u32, 8u32),
    ];
    let m = [
        b.and(Type::B32, mw, 0xFFu32),
        b.bfe(Type::U32, mw, 8u32, 8u32),
    ];
    let halves = b.unpack(Type::B32, hd[0], Type::B16);
    let d = b.cvt(Type::F32, Type::F16, FMode::NONE, halves[0]);
    let dmin = b.cvt(Type::F32, Type::F16, FMode::NONE, halves[1]);
    let lo = [0, 1, 2, 3].map(|i| b.and(Type::B32, q[i], NIBBLES));
    let hi = [0, 1, 2, 3].map(|i| {
        let s = b.shr(Type::U32, q[i], 4u32);
        b.and(Type::B32, s, NIBBLES)
    });
    Part {
        lo,
        hi,
        sc,
        m,
        d,
        dmin,
    }
}

/// The lane's inputs of one vector for one weight block: the sixteen quants of Q8_1 blocks
/// 2c and 2c + 1 it multiplies, their sums and their scales.
pub(crate) struct Inputs {
    q: [[Reg; 4]; 2],
    sum: [Reg; 2],
    d: [Reg; 2],
}

/// Each Q8_1 block's sixteen quants come with one 16-byte load, the two blocks' scales with
/// one 8-byte load.
pub(crate) fn load_x(b: &mut KernelBuilder, l: &Lane, x: &Q8Ptr, space: StateSpace) -> Inputs {
    let xl = x.lane(b, Some(l.x_q), Some(l.x_d));
    let q = [0, 1].map(|s| {
        let w = words_in(b, space, 4, xl.qs_addr(32 * s));
        [w[0], w[1], w[2], w[3]]
    });
    let sum = q.map(|qs| {
        let mut acc = b.dp4a(Type::U32, Type::S32, ONES, qs[0], 0i32);
        for w in &qs[1..] {
            acc = b.dp4a(Type::U32, Type::S32, ONES, *w, acc);
        }
        acc
    });
    let ds = words_in(b, space, 2, xl.ds_addr(0));
    let d = [ds[0], ds[1]].map(|w| low_half_as_f32(b, w));
    Inputs { q, sum, d }
}

pub(crate) fn dot(b: &mut KernelBuilder, w: &Part, x: &Inputs) -> Reg {
    let mut terms = Vec::new();
    for s in 0..2 {
        let v = if s == 0 { &w.lo } else { &w.hi };
        let mut dot = b.dp4a(Type::S32, Type::S32, v[0], x.q[s][0], 0i32);
        for (vi, xi) in v.iter().zip(&x.q[s]).skip(1) {
            dot = b.dp4a(Type::S32, Type::S32, *vi, *xi, dot);
        }
        let ds = b.mul(Type::S32, dot, w.sc[s]);
        let ms = b.mul(Type::S32, x.sum[s], w.m[s]);
        let dsf = b.cvt(Type::F32, Type::S32, FMode::rn(), ds);
        let msf = b.cvt(Type::F32, Type::S32, FMode::rn(), ms);
        let fd = b.bin(BinOp::Mul, Type::F32, FMode::rn(), x.d[s], dsf);
        let fm = b.bin(BinOp::Mul, Type::F32, FMode::rn(), x.d[s], msf);
        terms.push((fd, fm));
    }
    let sum_d = b.bin(BinOp::Add, Type::F32, FMode::rn(), terms[0].0, terms[1].0);
    let sum_m = b.bin(BinOp::Add, Type::F32, FMode::rn(), terms[0].1, terms[1].1);
    let a = b.bin(BinOp::Mul, Type::F32, FMode::rn(), w.d, sum_d);
    let m = b.bin(BinOp::Mul, Type::F32, FMode::rn(), w.dmin, sum_m);
    b.bin(BinOp::Sub, Type::F32, FMode::rn(), a, m)
}

/// The format as the GEMV generator schedules it.
pub(crate) struct Format;

super::gemv::block_format!(Format, LANES, no_lane);
