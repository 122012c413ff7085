//! Q8_0: 32 values per block, `block_q8_0 = { half d; int8 qs[32] }` (34 bytes, little
//! endian), `x = d * q`. Quantized as GGML's `quantize_row_q8_0_ref`.

use half::f16;

use super::block::{array_at, exact, f16_at, Block, Quantize};
use super::{GgmlType, QuantError};

/// Values per block.
pub const QK8_0: usize = 32;
/// Bytes per block.
pub const BLOCK_Q8_0_BYTES: usize = 34;

/// One decoded Q8_0 block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ8_0 {
    pub d: f16,
    pub qs: [i8; QK8_0],
}

impl BlockQ8_0 {
    /// Reads a block from its 34 bytes.
    pub fn from_bytes(b: &[u8; BLOCK_Q8_0_BYTES]) -> BlockQ8_0 {
        let qs: [u8; QK8_0] = array_at(b, 2);
        BlockQ8_0 {
            d: f16_at(b, 0),
            qs: qs.map(|q| q as i8),
        }
    }

    /// The block's 34 bytes.
    pub fn to_bytes(&self) -> [u8; BLOCK_Q8_0_BYTES] {
        let mut out = [0u8; BLOCK_Q8_0_BYTES];
        out[0..2].copy_from_slice(&self.d.to_le_bytes());
        for (o, q) in out[2..].iter_mut().zip(self.qs) {
            *o = q as u8;
        }
        out
    }

    /// `d * q` for each value.
    pub fn dequantize(&self) -> [f32; QK8_0] {
        let d = self.d.to_f32();
        self.qs.map(|q| f32::from(q) * d)
    }

    /// `d = amax / 127`, `q = roundf(x / d)` (0 when `d` is 0), `d` stored as f16.
    pub fn quantize(x: &[f32; QK8_0]) -> BlockQ8_0 {
        let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        // `roundf` rounds half away from zero, as `f32::round`; |x * id| <= 127.
        BlockQ8_0 {
            d: f16::from_f32(d),
            qs: x.map(|v| (v * id).round() as i8),
        }
    }
}

impl Block for BlockQ8_0 {
    const TYPE: GgmlType = GgmlType::Q8_0;

    fn read(bytes: &[u8]) -> Option<Self> {
        exact(bytes).map(BlockQ8_0::from_bytes)
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_bytes());
    }

    fn dequantize_into(&self, out: &mut Vec<f32>) {
        out.extend(self.dequantize());
    }
}

impl Quantize for BlockQ8_0 {
    fn quantize_values(values: &[f32]) -> Option<Self> {
        Some(BlockQ8_0::quantize(values.try_into().ok()?))
    }
}

/// Dequantizes a row of Q8_0 blocks.
pub fn dequantize_row(bytes: &[u8]) -> Result<Vec<f32>, QuantError> {
    super::block::dequantize_blocks::<BlockQ8_0>(bytes)
}

/// Quantizes a row whose length is a multiple of 32.
pub fn quantize_row(x: &[f32]) -> Result<Vec<BlockQ8_0>, QuantError> {
    super::block::quantize_blocks(x)
}
