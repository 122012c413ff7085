//! Q8_0 x Q8_1 dot product. `block_q8_0` = `{f16 d; i8 qs[32]}` (34 bytes, 2-byte
//! aligned), value = d * q. Four lanes per block, eight values each:
//! `(d_w * d_x) * sum(q_w * q_x)`.

use crate::ast::Type;
use crate::ir::{Addr, BinOp, FMode, KernelBuilder, Reg};

use super::loads::{half_as_f32, word2, word4};

/// The lane's part of a weight block, loaded once for all vectors.
pub(crate) struct Part {
    q: [Reg; 2],
    d: Reg,
    /// Byte offset of the lane's eight values: 8 * part.
    off: Reg,
}

pub(crate) fn load(b: &mut KernelBuilder, wblk: Reg, part: Reg) -> Part {
    let off = b.mul_wide(Type::U32, part, 8u32);
    let wq = b.add(Type::U64, wblk, off);
    let q = [
        word2(b, Addr::reg_off(wq, 2)),
        word2(b, Addr::reg_off(wq, 6)),
    ];
    let d = half_as_f32(b, Addr::reg(wblk));
    Part { q, d, off }
}

pub(crate) fn dot(b: &mut KernelBuilder, w: &Part, xblk: Reg) -> Reg {
    let xq = b.add(Type::U64, xblk, w.off);
    let x0 = word4(b, Addr::reg_off(xq, 4));
    let x1 = word4(b, Addr::reg_off(xq, 8));
    let s = b.dp4a(Type::S32, Type::S32, w.q[0], x0, 0i32);
    let s = b.dp4a(Type::S32, Type::S32, w.q[1], x1, s);
    let dx = half_as_f32(b, Addr::reg(xblk));
    let dd = b.bin(BinOp::Mul, Type::F32, FMode::rn(), w.d, dx);
    let sf = b.cvt(Type::F32, Type::S32, FMode::rn(), s);
    b.bin(BinOp::Mul, Type::F32, FMode::rn(), dd, sf)
}
