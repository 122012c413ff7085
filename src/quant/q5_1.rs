//! Q5_1: 32 values per block, `block_q5_1 = { half d; half m; u8 qh[4]; u8 qs[16] }` (24
//! bytes). Quants are packed as in Q5_0 (low nibbles in `qs`, fifth bits in the little-endian
//! `u32` `qh`); `x = d * q + m`. Quantized as GGML's `quantize_row_q5_1_ref`.

use half::f16;

use super::block::{array_at, exact, f16_at, Block, Quantize};
use super::q4_1::min_max;
use super::q5_0::{five_bit_quants, pack_five_bit};
use super::{GgmlType, QuantError};

/// Values per block.
pub const QK5_1: usize = 32;
/// Bytes per block.
pub const BLOCK_Q5_1_BYTES: usize = 24;

/// One decoded Q5_1 block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ5_1 {
    pub d: f16,
    pub m: f16,
    pub qh: [u8; 4],
    pub qs: [u8; QK5_1 / 2],
}

impl BlockQ5_1 {
    /// Reads a block from its 24 bytes.
    pub fn from_bytes(b: &[u8; BLOCK_Q5_1_BYTES]) -> BlockQ5_1 {
        BlockQ5_1 {
            d: f16_at(b, 0),
            m: f16_at(b, 2),
            qh: array_at(b, 4),
            qs: array_at(b, 8),
        }
    }

    /// The block's 24 bytes.
    pub fn to_bytes(&self) -> [u8; BLOCK_Q5_1_BYTES] {
        let mut out = [0u8; BLOCK_Q5_1_BYTES];
        out[0..2].copy_from_slice(&self.d.to_le_bytes());
        out[2..4].copy_from_slice(&self.m.to_le_bytes());
        out[4..8].copy_from_slice(&self.qh);
        out[8..].copy_from_slice(&self.qs);
        out
    }

    /// The 5-bit quants (0..=31) in element order.
    pub fn quants(&self) -> [u8; QK5_1] {
        five_bit_quants(&self.qs, self.qh)
    }

    /// `d * q + m` for each value.
    pub fn dequantize(&self) -> [f32; QK5_1] {
        let (d, m) = (self.d.to_f32(), self.m.to_f32());
        self.quants().map(|q| f32::from(q) * d + m)
    }

    /// `d = (max - min) / 31`, `m = min`, `q = trunc((x - min) / d + 0.5)` (at most 31).
    pub fn quantize(x: &[f32; QK5_1]) -> BlockQ5_1 {
        let (min, max) = min_max(x);
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let q = x.map(|v| (((v - min) * id + 0.5) as u8).min(31));
        let (qs, qh) = pack_five_bit(&q);
        BlockQ5_1 {
            d: f16::from_f32(d),
            m: f16::from_f32(min),
            qh,
            qs,
        }
    }
}

impl Block for BlockQ5_1 {
    const TYPE: GgmlType = GgmlType::Q5_1;

    fn read(bytes: &[u8]) -> Option<Self> {
        exact(bytes).map(BlockQ5_1::from_bytes)
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_bytes());
    }

    fn dequantize_into(&self, out: &mut Vec<f32>) {
        out.extend(self.dequantize());
    }
}

impl Quantize for BlockQ5_1 {
    fn quantize_values(values: &[f32]) -> Option<Self> {
        Some(BlockQ5_1::quantize(values.try_into().ok()?))
    }
}

/// Dequantizes a row of Q5_1 blocks.
pub fn dequantize_row(bytes: &[u8]) -> Result<Vec<f32>, QuantError> {
    super::block::dequantize_blocks::<BlockQ5_1>(bytes)
}

/// Quantizes a row whose length is a multiple of 32.
pub fn quantize_row(x: &[f32]) -> Result<Vec<BlockQ5_1>, QuantError> {
    super::block::quantize_blocks(x)
}
