//! The planar device layout of Q8_1 vectors, which every kernel that writes Q8_1 and every
//! GEMV that reads it shares: a vector of k values is its k int8 quants `qs[k]` (block j's at
//! byte 32j), then the k / 32 `half2 {d, s}` (block j's at byte k + 4j), padded to a multiple
//! of 16 bytes ([`q8_1_vector_bytes`]). The quants of a block are 32-byte aligned, so a GEMV
//! lane reads its 8 or 16 inputs with one vector load, and the scales of neighbouring blocks
//! share cache lines (GGML's interleaved 36-byte blocks allow only 4-byte loads).

use crate::ast::Type;
use crate::ir::{Addr, KernelBuilder, Reg};

/// Values per Q8_1 block.
pub const Q8_1_BLOCK_VALUES: u32 = 32;
/// Bytes per Q8_1 block: 32 int8 quants and two f16.
pub const Q8_1_BLOCK_BYTES: u32 = 36;

/// Bytes of one vector of `k` values (`k % 32 == 0`) in the planar device layout: `qs[k]`,
/// then `half2 ds[k / 32]`, padded to 16 bytes so every vector of a batch starts 16-byte
/// aligned.
pub const fn q8_1_vector_bytes(k: u32) -> u32 {
    (k / Q8_1_BLOCK_VALUES * Q8_1_BLOCK_BYTES).next_multiple_of(16)
}

/// The layout name of a Q8_1 vector in the planar device layout.
pub const Q8_1_LAYOUT_NAME: &str = "block_q8_1_planar";

/// The layout string of `blocks` Q8_1 blocks (a batch inserts `[m]` before the `[`).
pub fn q8_1_layout(blocks: u32) -> String {
    format!("{Q8_1_LAYOUT_NAME}[{blocks}]")
}

/// What a Q8_1 buffer parameter says of itself: `prefix`, then the layout.
macro_rules! q8_1_meaning {
    ($prefix:literal) => {
        concat!(
            $prefix,
            "Q8_1, planar: int8 qs[k], then half2 {d, s} per 32 values, padded to 16 bytes"
        )
    };
}
pub(crate) use q8_1_meaning;

/// A Q8_1 block of a vector in the planar layout: its quants at `qs + 32 * off + bytes`,
/// its `{d, s}` at `ds + 4 * off + bytes` (`off` a constant number of blocks and `bytes` a
/// constant shift of the whole vector, such as a batch's vector stride: both free in the
/// address).
#[derive(Clone, Copy)]
pub(crate) struct Q8Ptr {
    qs: Reg,
    ds: Reg,
    off: i64,
    bytes: i64,
}

impl Q8Ptr {
    /// Block 0 of the vector of `k` values at `base`.
    pub fn vector(b: &mut KernelBuilder, base: Reg, k: u32) -> Q8Ptr {
        let ds = b.add(Type::U64, base, k as i64);
        Q8Ptr {
            qs: base,
            ds,
            off: 0,
            bytes: 0,
        }
    }

    /// `blocks` (a register) blocks on.
    pub fn at(self, b: &mut KernelBuilder, blocks: Reg) -> Q8Ptr {
        Q8Ptr {
            qs: b.mad_wide(Type::U32, blocks, Q8_1_BLOCK_VALUES, self.qs),
            ds: b.mad_wide(Type::U32, blocks, 4u32, self.ds),
            ..self
        }
    }

    /// `n` blocks on.
    pub fn plus(self, n: u32) -> Q8Ptr {
        Q8Ptr {
            off: self.off + n as i64,
            ..self
        }
    }

    /// The same block of the vector `bytes` further on.
    pub fn bytes_on(self, bytes: i64) -> Q8Ptr {
        Q8Ptr {
            bytes: self.bytes + bytes,
            ..self
        }
    }

    /// A lane's place in the block: its quants `qs` (a byte offset, u64) and its scales `ds`
    /// further on, where given.
    pub fn lane(self, b: &mut KernelBuilder, qs: Option<Reg>, ds: Option<Reg>) -> Q8Ptr {
        Q8Ptr {
            qs: qs.map_or(self.qs, |o| b.add(Type::U64, self.qs, o)),
            ds: ds.map_or(self.ds, |o| b.add(Type::U64, self.ds, o)),
            ..self
        }
    }

    /// The address of the block's quants, `bytes` in.
    pub fn qs_addr(&self, bytes: i64) -> Addr {
        Addr::reg_off(self.qs, 32 * self.off + self.bytes + bytes)
    }

    /// The address of the block's `{d, s}`, `bytes` in (4 for the next block's).
    pub fn ds_addr(&self, bytes: i64) -> Addr {
        Addr::reg_off(self.ds, 4 * self.off + self.bytes + bytes)
    }
}
