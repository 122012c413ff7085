//! Q5_0 x Q8_1 dot product. `block_q5_0` = `{f16 d; u8 qh[4]; u8 qs[16]}` (22 bytes,
//! 2-byte aligned); value j = d * ((low or high nibble) | (bit j of qh) << 4) - 16) with
//! byte j of qs holding values j (low nibble) and j + 16 (high nibble). Four lanes per
//! block, lane p taking values 4p..4p+3 and 4p+16..4p+19:
//! `d * ((d_x * sum(q * q_x)) [- 16 * s_x on lane 0])`, the -16 offset through the Q8_1
//! block sum `s_x = d_x * sum(q_x)`, as GGML does.

use crate::ast::Type;
use crate::ir::{Addr, BinOp, Cmp, FMode, KernelBuilder, Reg, Value};

use super::loads::{half2_as_f32, half_as_f32, word2, word4};

/// The lane's part of a weight block, loaded once for all vectors.
pub(crate) struct Part {
    lo: Reg,
    hi: Reg,
    d: Reg,
    first: Reg,
    off: Reg,
}

/// Moves bits 0..3 of `bits` to bit 4 of bytes 0..3 and ORs them into `nibbles`.
fn add_fifth_bits(b: &mut KernelBuilder, nibbles: Reg, bits: Reg) -> Reg {
    let mut v = nibbles;
    for j in 0..4u32 {
        let shifted = b.shl(Type::B32, bits, 7 * j + 4);
        let bit = b.and(Type::B32, shifted, Value::Hex(0x10u64 << (8 * j)));
        v = b.or(Type::B32, v, bit);
    }
    v
}

pub(crate) fn load(b: &mut KernelBuilder, wblk: Reg, part: Reg) -> Part {
    let off = b.mul_wide(Type::U32, part, 4u32);
    let wq = b.add(Type::U64, wblk, off);
    let q = word2(b, Addr::reg_off(wq, 6));
    let qh = word2(b, Addr::reg_off(wblk, 2));
    let shift = b.shl(Type::B32, part, 2u32);
    let qh_lo = b.shr(Type::U32, qh, shift);
    let qh_hi = b.shr(Type::U32, qh_lo, 16u32);
    let lo = b.and(Type::B32, q, Value::Hex(0x0F0F_0F0F));
    let lo = add_fifth_bits(b, lo, qh_lo);
    let q_hi = b.shr(Type::U32, q, 4u32);
    let hi = b.and(Type::B32, q_hi, Value::Hex(0x0F0F_0F0F));
    let hi = add_fifth_bits(b, hi, qh_hi);
    let d = half_as_f32(b, Addr::reg(wblk));
    let first = b.setp(Cmp::Eq, Type::U32, part, 0u32);
    Part {
        lo,
        hi,
        d,
        first,
        off,
    }
}

pub(crate) fn dot(b: &mut KernelBuilder, w: &Part, xblk: Reg) -> Reg {
    let xq = b.add(Type::U64, xblk, w.off);
    let x_lo = word4(b, Addr::reg_off(xq, 4));
    let x_hi = word4(b, Addr::reg_off(xq, 20));
    let s = b.dp4a(Type::S32, Type::S32, w.lo, x_lo, 0i32);
    let s = b.dp4a(Type::S32, Type::S32, w.hi, x_hi, s);
    let (dx, sx) = half2_as_f32(b, Addr::reg(xblk));
    let sf = b.cvt(Type::F32, Type::S32, FMode::rn(), s);
    let t = b.bin(BinOp::Mul, Type::F32, FMode::rn(), dx, sf);
    let sx16 = b.bin(BinOp::Mul, Type::F32, FMode::rn(), sx, 16.0f32);
    let offset = b.selp(Type::F32, sx16, 0.0f32, w.first);
    let t = b.bin(BinOp::Sub, Type::F32, FMode::rn(), t, offset);
    b.bin(BinOp::Mul, Type::F32, FMode::rn(), w.d, t)
}
