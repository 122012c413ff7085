//! Warp and block reductions shared by the kernel families. Every reduction has one fixed
//! order (a butterfly over lane masks 16, 8, 4, 2, 1), so its result is the same bits in
//! every lane and in every kernel that uses it — the property batched/single parity rests on.

use crate::ast::{StateSpace, Type};
use crate::ir::{Addr, BinOp, FMode, KernelBuilder, Reg, SharedVar};

/// Lane masks of the butterfly, widest first.
const BUTTERFLY: [u32; 5] = [16, 8, 4, 2, 1];

/// `op` over the 32 lanes of the warp; every lane receives the result.
pub fn warp_reduce(b: &mut KernelBuilder, op: BinOp, ty: Type, v: Reg) -> Reg {
    let mut acc = v;
    for m in BUTTERFLY {
        let other = b.shfl_xor(acc, m);
        acc = b.bin(op, ty, FMode::NONE, acc, other);
    }
    acc
}

/// `op` over the whole block of `threads` threads (a multiple of 32); every thread receives
/// the result. The warps' partials go through a shared array named `smem_name` (declared
/// here, only when there is more than one warp). `lane` and `warp` are the thread's lane and
/// warp index. Uses one `bar.sync`: call it from uniform control flow only.
#[allow(clippy::too_many_arguments)] // the reduction's inputs, each needed, none derivable
pub fn block_reduce(
    b: &mut KernelBuilder,
    op: BinOp,
    ty: Type,
    v: Reg,
    smem_name: &str,
    threads: u32,
    lane: Reg,
    warp: Reg,
) -> Reg {
    let partial = warp_reduce(b, op, ty, v);
    let warps = threads / 32;
    if warps == 1 {
        return partial;
    }
    let base = stash_partial(b, ty, partial, smem_name, warps, (lane, warp));
    b.bar_sync(0);
    total_of_partials(b, op, ty, base, warps, lane)
}

/// The first half of [`block_reduce`]: lane 0 of each warp stores the warp's `partial` in
/// the shared array `smem_name` (`warps` slots, declared here). A `bar.sync` must come
/// before [`total_of_partials`] reads them. Returns the array's address.
pub fn stash_partial(
    b: &mut KernelBuilder,
    ty: Type,
    partial: Reg,
    smem_name: &str,
    warps: u32,
    (lane, warp): (Reg, Reg),
) -> Reg {
    let smem: SharedVar = b.shared(smem_name, ty, warps, ty.bytes().max(4));
    let base = b.shared_base(&smem);
    let elem = ty.bytes();
    let is_lane0 = b.setp(crate::ir::Cmp::Eq, Type::U32, lane, 0u32);
    let slot = b.mad(Type::U32, FMode::NONE, warp, elem, base);
    b.when(is_lane0).store(
        StateSpace::Shared,
        ty,
        Addr::reg(slot),
        &[partial.into()],
        &[],
        None,
    );
    base
}

/// The second half of [`block_reduce`]: every warp reduces the `warps` partials again,
/// lanes past the last warp contributing the identity (`base`: the array's address).
pub fn total_of_partials(
    b: &mut KernelBuilder,
    op: BinOp,
    ty: Type,
    base: Reg,
    warps: u32,
    lane: Reg,
) -> Reg {
    let elem = ty.bytes();
    let identity = match (op, ty) {
        (BinOp::Add, Type::F32) => crate::ir::Value::f32(0.0),
        (BinOp::Max, Type::F32) => crate::ir::Value::f32(f32::NEG_INFINITY),
        (BinOp::Add, _) => crate::ir::Value::Int(0),
        _ => crate::ir::Value::Int(i32::MIN as i64),
    };
    let acc = b.mov(ty, identity);
    let has = b.setp(crate::ir::Cmp::Lt, Type::U32, lane, warps);
    let src = b.mad(Type::U32, FMode::NONE, lane, elem, base);
    b.when(has).to(acc).ld_shared(ty, Addr::reg(src));
    warp_reduce(b, op, ty, acc)
}
