//! Q8_0 x Q8_1 dot product. `block_q8_0` = `{f16 d; i8 qs[32]}` (34 bytes, 2-byte
//! aligned), value = d * q. Four lanes per block, eight values each:
//! `(d_w * d_x) * sum(q_w * q_x)`.

use crate::ast::Type;
use crate::ir::{BinOp, FMode, KernelBuilder, Reg};

use super::gemv::DotInputs;
use super::loads::{half_as_f32, word2, word4};
use crate::ir::Addr;

pub(crate) fn dot(b: &mut KernelBuilder, i: &DotInputs) -> Reg {
    let off = b.mul_wide(Type::U32, i.part, 8u32);
    let wq = b.add(Type::U64, i.wblk, off);
    let xq = b.add(Type::U64, i.xblk, off);
    let w0 = word2(b, Addr::reg_off(wq, 2));
    let w1 = word2(b, Addr::reg_off(wq, 6));
    let x0 = word4(b, Addr::reg_off(xq, 4));
    let x1 = word4(b, Addr::reg_off(xq, 8));
    let s = b.dp4a(Type::S32, Type::S32, w0, x0, 0i32);
    let s = b.dp4a(Type::S32, Type::S32, w1, x1, s);
    let dw = half_as_f32(b, Addr::reg(i.wblk));
    let dx = half_as_f32(b, Addr::reg(i.xblk));
    let dd = b.bin(BinOp::Mul, Type::F32, FMode::rn(), dw, dx);
    let sf = b.cvt(Type::F32, Type::S32, FMode::rn(), s);
    b.bin(BinOp::Mul, Type::F32, FMode::rn(), dd, sf)
}
