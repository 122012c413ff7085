//! Q5_K: super-blocks of 256 values, `block_q5_K = { half d; half dmin; u8 scales[12];
//! u8 qh[32]; u8 qs[128] }` (176 bytes). Scales and mins are packed as in Q4_K
//! ([`super::q4_k::scale_min`]); the low 4 bits of each quant are laid out as Q4_K's nibbles,
//! and bit `j` of `qh[l]` is the fifth bit of value `32j + l`; `x = d * sc * q - dmin * m`.

use half::f16;

use super::block::{array_at, exact, f16_at, Block};
use super::q4_k::{scale_min, QK_K};
use super::{GgmlType, QuantError};

/// Bytes per block.
pub const BLOCK_Q5_K_BYTES: usize = 176;

/// One decoded Q5_K block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ5K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; 12],
    pub qh: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 2],
}

impl BlockQ5K {
    /// Reads a block from its 176 bytes.
    pub fn from_bytes(b: &[u8; BLOCK_Q5_K_BYTES]) -> BlockQ5K {
        BlockQ5K {
            d: f16_at(b, 0),
            dmin: f16_at(b, 2),
            scales: array_at(b, 4),
            qh: array_at(b, 16),
            qs: array_at(b, 48),
        }
    }

    /// The block's 176 bytes.
    pub fn to_bytes(&self) -> [u8; BLOCK_Q5_K_BYTES] {
        let mut out = [0u8; BLOCK_Q5_K_BYTES];
        out[0..2].copy_from_slice(&self.d.to_le_bytes());
        out[2..4].copy_from_slice(&self.dmin.to_le_bytes());
        out[4..16].copy_from_slice(&self.scales);
        out[16..48].copy_from_slice(&self.qh);
        out[48..].copy_from_slice(&self.qs);
        out
    }

    /// The 5-bit quants (0..=31) in element order.
    pub fn quants(&self) -> [u8; QK_K] {
        std::array::from_fn(|e| {
            let (j, l) = (e / 32, e % 32);
            let low = (self.qs[32 * (j / 2) + l] >> (4 * (j % 2))) & 0x0F;
            low | (((self.qh[l] >> j) & 1) << 4)
        })
    }

    /// `(d * sc) * q - dmin * m` for each value, in GGML's operation order.
    pub fn dequantize(&self) -> [f32; QK_K] {
        let (d, dmin) = (self.d.to_f32(), self.dmin.to_f32());
        let q = self.quants();
        std::array::from_fn(|e| {
            let (sc, m) = scale_min(&self.scales, e / 32);
            let (d1, m1) = (d * f32::from(sc), dmin * f32::from(m));
            d1 * f32::from(q[e]) - m1
        })
    }
}

impl Block for BlockQ5K {
    const TYPE: GgmlType = GgmlType::Q5K;

    fn read(bytes: &[u8]) -> Option<Self> {
        exact(bytes).map(BlockQ5K::from_bytes)
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_bytes());
    }

    fn dequantize_into(&self, out: &mut Vec<f32>) {
        out.extend(self.dequantize());
    }
}

/// Dequantizes a row of Q5_K blocks.
pub fn dequantize_row(bytes: &[u8]) -> Result<Vec<f32>, QuantError> {
    super::block::dequantize_blocks::<BlockQ5K>(bytes)
}
