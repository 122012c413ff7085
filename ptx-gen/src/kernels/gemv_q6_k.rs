//! Q6_K x Q8_1 dot product. `block_q6_K` = `{u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}`
//! (210 bytes, 2-byte aligned), 256 values in 16 groups of 16 with signed 8-bit scales.
//! In half n (values 128n..128n+127), for l in 0..32, with ql, qh, sc offset by 64n, 32n, 8n:
//! value l      = (ql[l] & 15      | (qh[l] >> 0 & 3) << 4) - 32, scale sc[l/16]
//! value l + 32 = (ql[l + 32] & 15 | (qh[l] >> 2 & 3) << 4) - 32, scale sc[l/16 + 2]
//! value l + 64 = (ql[l] >> 4      | (qh[l] >> 4 & 3) << 4) - 32, scale sc[l/16 + 4]
//! value l + 96 = (ql[l + 32] >> 4 | (qh[l] >> 6 & 3) << 4) - 32, scale sc[l/16 + 6]
//! times d. A whole warp takes one block: lane t (n = t/16, j = t%16, k = j%8, h = j/8) takes
//! l = 4k..4k+3 of quarters h and h + 2 of half n. As GGML's `vec_dot_q6_K_q8_1`:
//! `d * sum_g(d_x[g] * (sum((q - 32) * q_x) * sc[g]))`, the integer sums exact.

use crate::ast::{StateSpace, Type};
use crate::ir::{Addr, BinOp, CacheHint, FMode, KernelBuilder, Reg, Value};

use super::loads::{half_as_f32, half_as_f32_in, word2, word4_in};
use super::q8_1_layout::Q8Ptr;

const ONES: Value = Value::Hex(0x0101_0101);

/// Lanes sharing one block.
const LANES: u32 = 32;

/// What a lane takes of every block, fixed for the kernel.
pub(crate) struct Lane {
    /// Byte offsets in the block of the lane's ql word (64n + 32h + 4k), its qh word
    /// (32n + 4k, before the 128 of ql) and its first scale (8n + k/4 + 2h).
    ql: Reg,
    qh: Reg,
    sc: Reg,
    /// Shift of quarter h's two high bits in the qh bytes: 2h.
    two_bits: Reg,
    /// Byte offset, from the weight block's first Q8_1 block's quants, of the lane's four
    /// inputs in quarter h's Q8_1 block 4n + h: 32 (4n + h) + 4k (quarter h + 2's, block
    /// 4n + h + 2, are 64 bytes on).
    x_q: Reg,
    /// Byte offset of that block's `{d, s}`: 4 (4n + h) (quarter h + 2's 8 bytes on).
    x_d: Reg,
}

pub(crate) fn lane(b: &mut KernelBuilder, part: Reg) -> Lane {
    let n = b.shr(Type::U32, part, 4u32);
    let j = b.and(Type::B32, part, 15u32);
    let k = b.and(Type::B32, j, 7u32);
    let h = b.shr(Type::U32, j, 3u32);
    let ql_off = b.shl(Type::B32, n, 6u32);
    let ql_off = b.mad(Type::U32, FMode::NONE, h, 32u32, ql_off);
    let k4 = b.shl(Type::B32, k, 2u32);
    let ql_off = b.add(Type::U32, ql_off, k4);
    let ql = b.cvt(Type::U64, Type::U32, FMode::NONE, ql_off);
    let qh_off = b.mad(Type::U32, FMode::NONE, n, 32u32, k4);
    let qh = b.cvt(Type::U64, Type::U32, FMode::NONE, qh_off);
    let sc_idx = b.shl(Type::B32, n, 3u32);
    let k_half = b.shr(Type::U32, k, 2u32);
    let sc_idx = b.add(Type::U32, sc_idx, k_half);
    let sc_idx = b.mad(Type::U32, FMode::NONE, h, 2u32, sc_idx);
    let sc = b.cvt(Type::U64, Type::U32, FMode::NONE, sc_idx);
    let two_bits = b.shl(Type::B32, h, 1u32);
    let x_idx = b.shl(Type::B32, n, 2u32);
    let x_idx = b.add(Type::U32, x_idx, h);
    let x_q = b.mad(Type::U32, FMode::NONE, x_idx, 32u32, k4);
    let x_q = b.cvt(Type::U64, Type::U32, FMode::NONE, x_q);
    let x_d = b.mul_wide(Type::U32, x_idx, 4u32);
    Lane {
        ql,
        qh,
        sc,
        two_bits,
        x_q,
        x_d,
    }
}

/// The lane's part of one weight block.
pub(crate) struct Part {
    /// The 6-bit values of quarters h and h + 2 (four bytes each, 0..63).
    q: [Reg; 2],
    sc: [Reg; 2],
    d: Reg,
}

pub(crate) fn load(b: &mut KernelBuilder, l: &Lane, wblk: Reg) -> Part {
    let ql_a = b.add(Type::U64, wblk, l.ql);
    let qh_a = b.add(Type::U64, wblk, l.qh);
    let ql = word2(b, Addr::reg(ql_a));
    let qh = word2(b, Addr::reg_off(qh_a, 128));
    let sc_a = b.add(Type::U64, wblk, l.sc);
    let mut q = Vec::new();
    let mut sc = Vec::new();
    for quarter in 0..2u32 {
        // Quarter h: low nibbles, qh bits 2h..2h+1; quarter h + 2: high nibbles, bits 4 + 2h.
        let nib = if quarter == 0 {
            ql
        } else {
            b.shr(Type::U32, ql, 4u32)
        };
        let nib = b.and(Type::B32, nib, Value::Hex(0x0F0F_0F0F));
        let shift = if quarter == 0 {
            l.two_bits
        } else {
            b.add(Type::U32, l.two_bits, 4u32)
        };
        let hb = b.shr(Type::U32, qh, shift);
        let hb = b.and(Type::B32, hb, Value::Hex(0x0303_0303));
        let hb = b.shl(Type::B32, hb, 4u32);
        q.push(b.or(Type::B32, nib, hb));
        let s = b.reg(Type::S32);
        let addr = Addr::reg_off(sc_a, 192 + 4 * quarter as i64);
        b.load_to(
            StateSpace::Global,
            Type::S8,
            &[s],
            addr,
            &[CacheHint::NonCoherent],
            None,
        );
        sc.push(s);
    }
    let d = half_as_f32(b, Addr::reg_off(wblk, 208));
    Part {
        q: [q[0], q[1]],
        sc: [sc[0], sc[1]],
        d,
    }
}

/// The lane's inputs of one vector for one weight block, per quarter: four quants, their
/// sum and their block's scale.
pub(crate) struct Inputs {
    x: [Reg; 2],
    sum: [Reg; 2],
    d: [Reg; 2],
}

pub(crate) fn load_x(b: &mut KernelBuilder, l: &Lane, x: &Q8Ptr, space: StateSpace) -> Inputs {
    let xl = x.lane(b, Some(l.x_q), Some(l.x_d));
    let x = [0, 1].map(|quarter| word4_in(b, space, xl.qs_addr(64 * quarter)));
    let sum = x.map(|w| b.dp4a(Type::U32, Type::S32, ONES, w, 0i32));
    let d = [0, 1].map(|quarter| half_as_f32_in(b, space, xl.ds_addr(8 * quarter)));
    Inputs { x, sum, d }
}

pub(crate) fn dot(b: &mut KernelBuilder, w: &Part, x: &Inputs) -> Reg {
    let mut terms = Vec::new();
    for quarter in 0..2usize {
        let dot = b.dp4a(Type::S32, Type::S32, w.q[quarter], x.x[quarter], 0i32);
        let dot = b.mad(Type::S32, FMode::NONE, x.sum[quarter], -32i32, dot);
        let ds = b.mul(Type::S32, dot, w.sc[quarter]);
        let dsf = b.cvt(Type::F32, Type::S32, FMode::rn(), ds);
        terms.push(b.bin(BinOp::Mul, Type::F32, FMode::rn(), x.d[quarter], dsf));
    }
    let sum = b.bin(BinOp::Add, Type::F32, FMode::rn(), terms[0], terms[1]);
    b.bin(BinOp::Mul, Type::F32, FMode::rn(), w.d, sum)
}

/// The format as the GEMV generator schedules it.
pub(crate) struct Format;

super::gemv::block_format!(Format, LANES, no_lane);
