//! Q4_0: 32 values per block, `block_q4_0 = { half d; u8 qs[16] }` (18 bytes). Value `j < 16`
//! is the low nibble of `qs[j]`, value `j + 16` its high nibble; `x = d * (q - 8)`.
//! Quantized as GGML's `quantize_row_q4_0_ref`.

use half::f16;

use super::block::{array_at, exact, f16_at, Block, Quantize};
use super::{GgmlType, QuantError};

/// Values per block.
pub const QK4_0: usize = 32;
/// Bytes per block.
pub const BLOCK_Q4_0_BYTES: usize = 18;

/// One decoded Q4_0 block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ4_0 {
    pub d: f16,
    pub qs: [u8; QK4_0 / 2],
}

impl BlockQ4_0 {
    /// Reads a block from its 18 bytes.
    pub fn from_bytes(b: &[u8; BLOCK_Q4_0_BYTES]) -> BlockQ4_0 {
        BlockQ4_0 {
            d: f16_at(b, 0),
            qs: array_at(b, 2),
        }
    }

    /// The block's 18 bytes.
    pub fn to_bytes(&self) -> [u8; BLOCK_Q4_0_BYTES] {
        let mut out = [0u8; BLOCK_Q4_0_BYTES];
        out[0..2].copy_from_slice(&self.d.to_le_bytes());
        out[2..].copy_from_slice(&self.qs);
        out
    }

    /// The 4-bit quants (0..=15, before the -8 offset) in element order.
    pub fn quants(&self) -> [u8; QK4_0] {
        std::array::from_fn(|j| (self.qs[j % 16] >> (4 * (j / 16))) & 0x0F)
    }

    /// `d * (q - 8)` for each value.
    pub fn dequantize(&self) -> [f32; QK4_0] {
        let d = self.d.to_f32();
        self.quants().map(|q| f32::from(q as i8 - 8) * d)
    }

    /// `d = max / -8` where `max` is the value of largest magnitude (the first one on ties),
    /// `q = min(15, trunc(x / d + 8.5))`.
    pub fn quantize(x: &[f32; QK4_0]) -> BlockQ4_0 {
        let max = signed_absmax(x);
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let q = x.map(|v| ((v * id + 8.5) as i8).min(15) as u8);
        BlockQ4_0 {
            d: f16::from_f32(d),
            qs: std::array::from_fn(|j| q[j] | (q[j + 16] << 4)),
        }
    }
}

/// The value of largest magnitude, the first one on ties, 0 for an all-zero block (GGML's
/// `if (amax < fabsf(v)) { amax = fabsf(v); max = v; }` loop).
pub(crate) fn signed_absmax(x: &[f32]) -> f32 {
    let mut amax = 0.0f32;
    let mut max = 0.0f32;
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

impl Block for BlockQ4_0 {
    const TYPE: GgmlType = GgmlType::Q4_0;

    fn read(bytes: &[u8]) -> Option<Self> {
        exact(bytes).map(BlockQ4_0::from_bytes)
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_bytes());
    }

    fn dequantize_into(&self, out: &mut Vec<f32>) {
        out.extend(self.dequantize());
    }
}

impl Quantize for BlockQ4_0 {
    fn quantize_values(values: &[f32]) -> Option<Self> {
        Some(BlockQ4_0::quantize(values.try_into().ok()?))
    }
}

/// Dequantizes a row of Q4_0 blocks.
pub fn dequantize_row(bytes: &[u8]) -> Result<Vec<f32>, QuantError> {
    super::block::dequantize_blocks::<BlockQ4_0>(bytes)
}

/// Quantizes a row whose length is a multiple of 32.
pub fn quantize_row(x: &[f32]) -> Result<Vec<BlockQ4_0>, QuantError> {
    super::block::quantize_blocks(x)
}
