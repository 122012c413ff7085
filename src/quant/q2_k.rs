//! Q2_K: super-blocks of 256 values, `block_q2_K = { u8 scales[16]; u8 qs[64]; half d;
//! half dmin }` (84 bytes). Each 16-value group `g` has `scales[g]`: low nibble a 4-bit scale,
//! high nibble a 4-bit min; `x = d * (sc & 15) * q - dmin * (sc >> 4)`. Value
//! `128h + 32t + l` is bits `2t..2t+2` of `qs[32h + l]`.

use half::f16;

use super::block::{array_at, exact, f16_at, Block};
use super::q4_k::QK_K;
use super::{GgmlType, QuantError};

/// Bytes per block.
pub const BLOCK_Q2_K_BYTES: usize = 84;

/// One decoded Q2_K block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ2K {
    pub scales: [u8; QK_K / 16],
    pub qs: [u8; QK_K / 4],
    pub d: f16,
    pub dmin: f16,
}

impl BlockQ2K {
    /// Reads a block from its 84 bytes.
    pub fn from_bytes(b: &[u8; BLOCK_Q2_K_BYTES]) -> BlockQ2K {
        BlockQ2K {
            scales: array_at(b, 0),
            qs: array_at(b, 16),
            d: f16_at(b, 80),
            dmin: f16_at(b, 82),
        }
    }

    /// The block's 84 bytes.
    pub fn to_bytes(&self) -> [u8; BLOCK_Q2_K_BYTES] {
        let mut out = [0u8; BLOCK_Q2_K_BYTES];
        out[0..16].copy_from_slice(&self.scales);
        out[16..80].copy_from_slice(&self.qs);
        out[80..82].copy_from_slice(&self.d.to_le_bytes());
        out[82..84].copy_from_slice(&self.dmin.to_le_bytes());
        out
    }

    /// The 2-bit quants (0..=3) in element order.
    pub fn quants(&self) -> [u8; QK_K] {
        std::array::from_fn(|e| {
            let (h, t, l) = (e / 128, (e % 128) / 32, e % 32);
            (self.qs[32 * h + l] >> (2 * t)) & 3
        })
    }

    /// `(d * (sc & 15)) * q - dmin * (sc >> 4)` for each value, in GGML's operation order.
    pub fn dequantize(&self) -> [f32; QK_K] {
        let (d, dmin) = (self.d.to_f32(), self.dmin.to_f32());
        let q = self.quants();
        std::array::from_fn(|e| {
            let sc = self.scales[e / 16];
            let dl = d * f32::from(sc & 0x0F);
            let ml = dmin * f32::from(sc >> 4);
            dl * f32::from(q[e]) - ml
        })
    }
}

impl Block for BlockQ2K {
    const TYPE: GgmlType = GgmlType::Q2K;

    fn read(bytes: &[u8]) -> Option<Self> {
        exact(bytes).map(BlockQ2K::from_bytes)
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_bytes());
    }

    fn dequantize_into(&self, out: &mut Vec<f32>) {
        out.extend(self.dequantize());
    }
}

/// Dequantizes a row of Q2_K blocks.
pub fn dequantize_row(bytes: &[u8]) -> Result<Vec<f32>, QuantError> {
    super::block::dequantize_blocks::<BlockQ2K>(bytes)
}
