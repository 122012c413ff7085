//! Q4_1: 32 values per block, `block_q4_1 = { half d; half m; u8 qs[16] }` (20 bytes). Value
//! `j < 16` is the low nibble of `qs[j]`, value `j + 16` its high nibble; `x = d * q + m`.
//! Quantized as GGML's `quantize_row_q4_1_ref`.

use half::f16;

use super::block::{array_at, exact, f16_at, Block, Quantize};
use super::{GgmlType, QuantError};

/// Values per block.
pub const QK4_1: usize = 32;
/// Bytes per block.
pub const BLOCK_Q4_1_BYTES: usize = 20;

/// One decoded Q4_1 block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ4_1 {
    pub d: f16,
    pub m: f16,
    pub qs: [u8; QK4_1 / 2],
}

impl BlockQ4_1 {
    /// Reads a block from its 20 bytes.
    pub fn from_bytes(b: &[u8; BLOCK_Q4_1_BYTES]) -> BlockQ4_1 {
        BlockQ4_1 {
            d: f16_at(b, 0),
            m: f16_at(b, 2),
            qs: array_at(b, 4),
        }
    }

    /// The block's 20 bytes.
    pub fn to_bytes(&self) -> [u8; BLOCK_Q4_1_BYTES] {
        let mut out = [0u8; BLOCK_Q4_1_BYTES];
        out[0..2].copy_from_slice(&self.d.to_le_bytes());
        out[2..4].copy_from_slice(&self.m.to_le_bytes());
        out[4..].copy_from_slice(&self.qs);
        out
    }

    /// The 4-bit quants (0..=15) in element order.
    pub fn quants(&self) -> [u8; QK4_1] {
        std::array::from_fn(|j| (self.qs[j % 16] >> (4 * (j / 16))) & 0x0F)
    }

    /// `d * q + m` for each value.
    pub fn dequantize(&self) -> [f32; QK4_1] {
        let (d, m) = (self.d.to_f32(), self.m.to_f32());
        self.quants().map(|q| f32::from(q) * d + m)
    }

    /// `d = (max - min) / 15`, `m = min`, `q = min(15, trunc((x - min) / d + 0.5))`.
    pub fn quantize(x: &[f32; QK4_1]) -> BlockQ4_1 {
        let (min, max) = min_max(x);
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let q = x.map(|v| (((v - min) * id + 0.5) as i8).min(15) as u8);
        BlockQ4_1 {
            d: f16::from_f32(d),
            m: f16::from_f32(min),
            qs: std::array::from_fn(|j| q[j] | (q[j + 16] << 4)),
        }
    }
}

/// GGML's min/max scan, starting from `FLT_MAX` and `-FLT_MAX`.
pub(crate) fn min_max(x: &[f32]) -> (f32, f32) {
    let mut min = f32::MAX;
    let mut max = -f32::MAX;
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

impl Block for BlockQ4_1 {
    const TYPE: GgmlType = GgmlType::Q4_1;

    fn read(bytes: &[u8]) -> Option<Self> {
        exact(bytes).map(BlockQ4_1::from_bytes)
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_bytes());
    }

    fn dequantize_into(&self, out: &mut Vec<f32>) {
        out.extend(self.dequantize());
    }
}

impl Quantize for BlockQ4_1 {
    fn quantize_values(values: &[f32]) -> Option<Self> {
        Some(BlockQ4_1::quantize(values.try_into().ok()?))
    }
}

/// Dequantizes a row of Q4_1 blocks.
pub fn dequantize_row(bytes: &[u8]) -> Result<Vec<f32>, QuantError> {
    super::block::dequantize_blocks::<BlockQ4_1>(bytes)
}

/// Quantizes a row whose length is a multiple of 32.
pub fn quantize_row(x: &[f32]) -> Result<Vec<BlockQ4_1>, QuantError> {
    super::block::quantize_blocks(x)
}
