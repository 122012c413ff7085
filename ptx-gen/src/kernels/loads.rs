//! Loads of GGML block fields whose alignment is only what the block size allows
//! (34-, 22- and 210-byte blocks keep 2-byte alignment), shared by the block-format kernels.

use crate::ast::{StateSpace, Type};
use crate::ir::{Addr, CacheHint, FMode, KernelBuilder, Reg};

/// Read-only weight data: the non-coherent path.
const RO: &[CacheHint] = &[CacheHint::NonCoherent];

/// The cache hints of a read from `space`: weights and inputs in global memory take the
/// non-coherent path.
fn hints(space: StateSpace) -> &'static [CacheHint] {
    match space {
        StateSpace::Global => RO,
        _ => &[],
    }
}

/// A 32-bit word at an address that is 4-byte aligned.
pub fn word4(b: &mut KernelBuilder, addr: Addr) -> Reg {
    word4_in(b, StateSpace::Global, addr)
}

/// [`word4`] from `space` (a GEMV's inputs staged in shared memory).
pub fn word4_in(b: &mut KernelBuilder, space: StateSpace, addr: Addr) -> Reg {
    b.load(space, Type::B32, 1, addr, hints(space), None)[0]
}

/// A 32-bit word at an address that is only 2-byte aligned: two 16-bit loads, low first.
pub fn word2(b: &mut KernelBuilder, addr: Addr) -> Reg {
    let lo = b.load(StateSpace::Global, Type::B16, 1, addr.clone(), RO, None)[0];
    let hi = b.load(StateSpace::Global, Type::B16, 1, addr.plus(2), RO, None)[0];
    b.pack(Type::B32, &[lo, hi])
}

/// `n` consecutive 32-bit words (2 or 4: one vector load) at an address aligned to `4 n`
/// bytes in `space`.
pub fn words_in(b: &mut KernelBuilder, space: StateSpace, n: usize, addr: Addr) -> Vec<Reg> {
    b.load(space, Type::B32, n, addr, hints(space), None)
}

/// The low f16 of a 32-bit word (the `d` of a Q8_1 block's `{d, s}`), widened to f32.
pub fn low_half_as_f32(b: &mut KernelBuilder, w: Reg) -> Reg {
    let parts = b.unpack(Type::B32, w, Type::B16);
    b.cvt(Type::F32, Type::F16, FMode::NONE, parts[0])
}

/// An f16 at a 2-byte-aligned address, widened to f32 (exact).
pub fn half_as_f32(b: &mut KernelBuilder, addr: Addr) -> Reg {
    half_as_f32_in(b, StateSpace::Global, addr)
}

/// [`half_as_f32`] from `space`.
pub fn half_as_f32_in(b: &mut KernelBuilder, space: StateSpace, addr: Addr) -> Reg {
    let h = b.load(space, Type::B16, 1, addr, hints(space), None)[0];
    b.cvt(Type::F32, Type::F16, FMode::NONE, h)
}

/// The two f16 halves of a 4-byte-aligned word in `space`, widened to f32: (low, high).
pub fn half2_as_f32(b: &mut KernelBuilder, space: StateSpace, addr: Addr) -> (Reg, Reg) {
    let w = word4_in(b, space, addr);
    let parts = b.unpack(Type::B32, w, Type::B16);
    let lo = b.cvt(Type::F32, Type::F16, FMode::NONE, parts[0]);
    let hi = b.cvt(Type::F32, Type::F16, FMode::NONE, parts[1]);
    (lo, hi)
}
