//! Q5_0 x Q8_1 dot product. `block_q5_0` = `{f16 d; u8 qh[4]; u8 qs[16]}` (22 bytes,
//! 2-byte aligned); value j = d * ((low or high nibble) | (bit j of qh) << 4) - 16) with
//! byte j of qs holding values j (low nibble) and j + 16 (high nibble). Four lanes per
//! block, lane p taking values 4p..4p+3 and 4p+16..4p+19:
//! `d * ((d_x * sum(q * q_x)) [- 16 * s_x on lane 0])`, the -16 offset through the Q8_1
//! block sum `s_x = d_x * sum(q_x)`, as GGML does.

use crate::ast::{StateSpace, Type};
use crate::ir::{Addr, BinOp, Cmp, FMode, KernelBuilder, Reg, Value};

use super::loads::{half2_as_f32, half_as_f32, word2, word4_in};
use super::q8_1_layout::Q8Ptr;

/// Lanes sharing one block.
const LANES: u32 = 4;

/// What a lane takes of every block, fixed for the kernel.
pub(crate) struct Lane {
    /// Byte offset of the lane's four qs bytes after the first: 4p.
    off: Reg,
    /// Shift of the lane's fifth bits in qh: 4p.
    shift: Reg,
    /// Lane 0 of the block adds the -16 offset.
    first: Reg,
}

pub(crate) fn lane(b: &mut KernelBuilder, part: Reg) -> Lane {
    let off = b.mul_wide(Type::U32, part, 4u32);
    let shift = b.shl(Type::B32, part, 2u32);
    let first = b.setp(Cmp::Eq, Type::U32, part, 0u32);
    Lane { off, shift, first }
}

/// The lane's part of one weight block.
pub(crate) struct Part {
    lo: Reg,
    hi: Reg,
    d: Reg,
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

pub(crate) fn load(b: &mut KernelBuilder, l: &Lane, wblk: Reg) -> Part {
    let wq = b.add(Type::U64, wblk, l.off);
    let q = word2(b, Addr::reg_off(wq, 6));
    let qh = word2(b, Addr::reg_off(wblk, 2));
    let qh_lo = b.shr(Type::U32, qh, l.shift);
    let qh_hi = b.shr(Type::U32, qh_lo, 16u32);
    let lo = b.and(Type::B32, q, Value::Hex(0x0F0F_0F0F));
    let lo = add_fifth_bits(b, lo, qh_lo);
    let q_hi = b.shr(Type::U32, q, 4u32);
    let hi = b.and(Type::B32, q_hi, Value::Hex(0x0F0F_0F0F));
    let hi = add_fifth_bits(b, hi, qh_hi);
    let d = half_as_f32(b, Addr::reg(wblk));
    Part { lo, hi, d }
}

/// The lane's inputs of one vector for one weight block.
pub(crate) struct Inputs {
    lo: Reg,
    hi: Reg,
    /// The block's scale, and its sum times 16 on lane 0 (0 elsewhere).
    d: Reg,
    offset: Reg,
}

pub(crate) fn load_x(b: &mut KernelBuilder, l: &Lane, x: &Q8Ptr, space: StateSpace) -> Inputs {
    let xl = x.lane(b, Some(l.off), None);
    let lo = word4_in(b, space, xl.qs_addr(0));
    let hi = word4_in(b, space, xl.qs_addr(16));
    let (d, sx) = half2_as_f32(b, space, x.ds_addr(0));
    let sx16 = b.bin(BinOp::Mul, Type::F32, FMode::rn(), sx, 16.0f32);
    let offset = b.selp(Type::F32, sx16, 0.0f32, l.first);
    Inputs { lo, hi, d, offset }
}

pub(crate) fn dot(b: &mut KernelBuilder, w: &Part, x: &Inputs) -> Reg {
    let s = b.dp4a(Type::S32, Type::S32, w.lo, x.lo, 0i32);
    let s = b.dp4a(Type::S32, Type::S32, w.hi, x.hi, s);
    let sf = b.cvt(Type::F32, Type::S32, FMode::rn(), s);
    let t = b.bin(BinOp::Mul, Type::F32, FMode::rn(), x.d, sf);
    let t = b.bin(BinOp::Sub, Type::F32, FMode::rn(), t, x.offset);
    b.bin(BinOp::Mul, Type::F32, FMode::rn(), w.d, t)
}

/// The format as the GEMV generator schedules it.
pub(crate) struct Format;

super::gemv::block_format!(Format, LANES, no_lane);
