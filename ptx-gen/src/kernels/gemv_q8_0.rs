//! Q8_0 x Q8_1 dot product. `block_q8_0` = `{f16 d; i8 qs[32]}` (34 bytes, 2-byte
//! aligned), value = d * q. Four lanes per block, eight values each:
//! `(d_w * d_x) * sum(q_w * q_x)`.

use crate::ast::{StateSpace, Type};
use crate::ir::{Addr, BinOp, FMode, KernelBuilder, Reg};

use super::loads::{half_as_f32, half_as_f32_in, word2, words_in};
use super::q8_1_layout::Q8Ptr;

/// Lanes sharing one block.
const LANES: u32 = 4;

/// What a lane takes of every block, fixed for the kernel.
pub(crate) struct Lane {
    /// Byte offset of the lane's eight values: 8p.
    off: Reg,
}

pub(crate) fn lane(b: &mut KernelBuilder, part: Reg) -> Lane {
    let off = b.mul_wide(Type::U32, part, 8u32);
    Lane { off }
}

/// The lane's part of one weight block.
pub(crate) struct Part {
    q: [Reg; 2],
    d: Reg,
}

pub(crate) fn load(b: &mut KernelBuilder, l: &Lane, wblk: Reg) -> Part {
    let wq = b.add(Type::U64, wblk, l.off);
    let q = [
        word2(b, Addr::reg_off(wq, 2)),
        word2(b, Addr::reg_off(wq, 6)),
    ];
    let d = half_as_f32(b, Addr::reg(wblk));
    Part { q, d }
}

/// The lane's inputs of one vector for one weight block.
pub(crate) struct Inputs {
    q: [Reg; 2],
    d: Reg,
}

/// The eight quants with one 8-byte load.
pub(crate) fn load_x(b: &mut KernelBuilder, l: &Lane, x: &Q8Ptr, space: StateSpace) -> Inputs {
    let xl = x.lane(b, Some(l.off), None);
    let q = words_in(b, space, 2, xl.qs_addr(0));
    let d = half_as_f32_in(b, space, x.ds_addr(0));
    Inputs { q: [q[0], q[1]], d }
}

pub(crate) fn dot(b: &mut KernelBuilder, w: &Part, x: &Inputs) -> Reg {
    let s = b.dp4a(Type::S32, Type::S32, w.q[0], x.q[0], 0i32);
    let s = b.dp4a(Type::S32, Type::S32, w.q[1], x.q[1], s);
    let dd = b.bin(BinOp::Mul, Type::F32, FMode::rn(), w.d, x.d);
    let sf = b.cvt(Type::F32, Type::S32, FMode::rn(), s);
    b.bin(BinOp::Mul, Type::F32, FMode::rn(), dd, sf)
}

/// The format as the GEMV generator schedules it.
pub(crate) struct Format;

super::gemv::block_format!(Format, LANES, no_lane);
