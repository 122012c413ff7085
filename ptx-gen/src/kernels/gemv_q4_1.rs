//! Q4_1 x Q8_1 dot product. `block_q4_1` = `{f16 d; f16 m; u8 qs[16]}` (20 bytes, 4-byte
//! aligned); byte j holds value j (low nibble) and value j + 16 (high nibble); value =
//! d * q + m. Four lanes per block, lane p taking bytes 4p..4p+3:
//! `(d * d_x) * sum(q * q_x) [+ m * s_x on lane 0]`, with `s_x = d_x * sum(q_x)` the Q8_1
//! block sum, as GGML does.

use crate::ast::Type;
use crate::ir::{Addr, BinOp, Cmp, FMode, KernelBuilder, Reg, Value};

use super::loads::{half2_as_f32, word4};

/// The lane's part of a weight block, loaded once for all vectors.
pub(crate) struct Part {
    lo: Reg,
    hi: Reg,
    d: Reg,
    m: Reg,
    first: Reg,
    off: Reg,
}

pub(crate) fn load(b: &mut KernelBuilder, wblk: Reg, part: Reg) -> Part {
    let off = b.mul_wide(Type::U32, part, 4u32);
    let wq = b.add(Type::U64, wblk, off);
    let q = word4(b, Addr::reg_off(wq, 4));
    let lo = b.and(Type::B32, q, Value::Hex(0x0F0F_0F0F));
    let q_hi = b.shr(Type::U32, q, 4u32);
    let hi = b.and(Type::B32, q_hi, Value::Hex(0x0F0F_0F0F));
    let (d, m) = half2_as_f32(b, Addr::reg(wblk));
    let first = b.setp(Cmp::Eq, Type::U32, part, 0u32);
    Part {
        lo,
        hi,
        d,
        m,
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
    let dd = b.bin(BinOp::Mul, Type::F32, FMode::rn(), w.d, dx);
    let sf = b.cvt(Type::F32, Type::S32, FMode::rn(), s);
    let part = b.bin(BinOp::Mul, Type::F32, FMode::rn(), dd, sf);
    let ms = b.bin(BinOp::Mul, Type::F32, FMode::rn(), w.m, sx);
    let offset = b.selp(Type::F32, ms, 0.0f32, w.first);
    b.bin(BinOp::Add, Type::F32, FMode::rn(), part, offset)
}
