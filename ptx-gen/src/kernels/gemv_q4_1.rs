//! Q4_1 x Q8_1 dot product. `block_q4_1` = `{f16 d; f16 m; u8 qs[16]}` (20 bytes, 4-byte
//! aligned); byte j holds value j (low nibble) and value j + 16 (high nibble); value =
//! d * q + m. Four lanes per block, lane p taking bytes 4p..4p+3:
//! `(d * d_x) * sum(q * q_x) [+ m * s_x on lane 0]`, with `s_x = d_x * sum(q_x)` the Q8_1
//! block sum, as GGML does.

use crate::ast::{StateSpace, Type};
use crate::ir::{Addr, BinOp, Cmp, FMode, KernelBuilder, Reg, Value};

use super::loads::{half2_as_f32, word4, word4_in};
use super::q8_1_layout::Q8Ptr;

/// Lanes sharing one block.
const LANES: u32 = 4;

/// What a lane takes of every block, fixed for the kernel.
pub(crate) struct Lane {
    /// Byte offset of the lane's four qs bytes after the first: 4p.
    off: Reg,
    /// Lane 0 of the block adds the min term.
    first: Reg,
}

pub(crate) fn lane(b: &mut KernelBuilder, part: Reg) -> Lane {
    let off = b.mul_wide(Type::U32, part, 4u32);
    let first = b.setp(Cmp::Eq, Type::U32, part, 0u32);
    Lane { off, first }
}

/// The lane's part of one weight block.
pub(crate) struct Part {
    lo: Reg,
    hi: Reg,
    d: Reg,
    m: Reg,
}

pub(crate) fn load(b: &mut KernelBuilder, l: &Lane, wblk: Reg) -> Part {
    let wq = b.add(Type::U64, wblk, l.off);
    let q = word4(b, Addr::reg_off(wq, 4));
    let lo = b.and(Type::B32, q, Value::Hex(0x0F0F_0F0F));
    let q_hi = b.shr(Type::U32, q, 4u32);
    let hi = b.and(Type::B32, q_hi, Value::Hex(0x0F0F_0F0F));
    let (d, m) = half2_as_f32(b, StateSpace::Global, Addr::reg(wblk));
    Part { lo, hi, d, m }
}

/// The lane's inputs of one vector for one weight block.
pub(crate) struct Inputs {
    lo: Reg,
    hi: Reg,
    d: Reg,
    s: Reg,
}

pub(crate) fn load_x(b: &mut KernelBuilder, l: &Lane, x: &Q8Ptr, space: StateSpace) -> Inputs {
    let xl = x.lane(b, Some(l.off), None);
    let lo = word4_in(b, space, xl.qs_addr(0));
    let hi = word4_in(b, space, xl.qs_addr(16));
    let (d, s) = half2_as_f32(b, space, x.ds_addr(0));
    Inputs { lo, hi, d, s }
}

pub(crate) fn dot(b: &mut KernelBuilder, l: &Lane, w: &Part, x: &Inputs) -> Reg {
    let s = b.dp4a(Type::S32, Type::S32, w.lo, x.lo, 0i32);
    let s = b.dp4a(Type::S32, Type::S32, w.hi, x.hi, s);
    let dd = b.bin(BinOp::Mul, Type::F32, FMode::rn(), w.d, x.d);
    let sf = b.cvt(Type::F32, Type::S32, FMode::rn(), s);
    let part = b.bin(BinOp::Mul, Type::F32, FMode::rn(), dd, sf);
    let ms = b.bin(BinOp::Mul, Type::F32, FMode::rn(), w.m, x.s);
    let offset = b.selp(Type::F32, ms, 0.0f32, l.first);
    b.bin(BinOp::Add, Type::F32, FMode::rn(), part, offset)
}

/// The format as the GEMV generator schedules it.
pub(crate) struct Format;

super::gemv::block_format!(Format, LANES, lane);
