//! Q3_K: super-blocks of 256 values, `block_q3_K = { u8 hmask[32]; u8 qs[64]; u8 scales[12];
//! half d }` (110 bytes). Value `128h + 32t + l` has its low 2 bits in bits `2t..2t+2` of
//! `qs[32h + l]` and its high bit in bit `4h + t` of `hmask[l]`; a clear high bit subtracts 4,
//! so `q` is in -4..=3. Each 16-value group `g` has a 6-bit scale (see [`BlockQ3K::scale`]);
//! `x = d * (scale - 32) * q`.

use half::f16;

use super::block::{array_at, exact, f16_at, Block};
use super::q4_k::QK_K;
use super::{GgmlType, QuantError};

/// Bytes per block.
pub const BLOCK_Q3_K_BYTES: usize = 110;

/// One decoded Q3_K block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ3K {
    pub hmask: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 4],
    pub scales: [u8; 12],
    pub d: f16,
}

impl BlockQ3K {
    /// Reads a block from its 110 bytes.
    pub fn from_bytes(b: &[u8; BLOCK_Q3_K_BYTES]) -> BlockQ3K {
        BlockQ3K {
            hmask: array_at(b, 0),
            qs: array_at(b, 32),
            scales: array_at(b, 96),
            d: f16_at(b, 108),
        }
    }

    /// The block's 110 bytes.
    pub fn to_bytes(&self) -> [u8; BLOCK_Q3_K_BYTES] {
        let mut out = [0u8; BLOCK_Q3_K_BYTES];
        out[0..32].copy_from_slice(&self.hmask);
        out[32..96].copy_from_slice(&self.qs);
        out[96..108].copy_from_slice(&self.scales);
        out[108..110].copy_from_slice(&self.d.to_le_bytes());
        out
    }

    /// The signed 6-bit scale of group `g` (0..16), already minus 32: the low 4 bits are
    /// nibble `g / 8` of `scales[g % 8]`, the high 2 bits are bits `2 (g / 4)..` of
    /// `scales[8 + g % 4]`. `g` is taken modulo 16.
    pub fn scale(&self, g: usize) -> i8 {
        let g = g % 16;
        let low = (self.scales[g % 8] >> (4 * (g / 8))) & 0x0F;
        let high = (self.scales[8 + g % 4] >> (2 * (g / 4))) & 3;
        (low | (high << 4)) as i8 - 32
    }

    /// The 3-bit quants (-4..=3) in element order.
    pub fn quants(&self) -> [i8; QK_K] {
        std::array::from_fn(|e| {
            let (h, t, l) = (e / 128, (e % 128) / 32, e % 32);
            let low = ((self.qs[32 * h + l] >> (2 * t)) & 3) as i8;
            let high_set = (self.hmask[l] >> (4 * h + t)) & 1 == 1;
            if high_set {
                low
            } else {
                low - 4
            }
        })
    }

    /// `(d * (scale - 32)) * q` for each value, in GGML's operation order.
    pub fn dequantize(&self) -> [f32; QK_K] {
        let d = self.d.to_f32();
        let q = self.quants();
        std::array::from_fn(|e| d * f32::from(self.scale(e / 16)) * f32::from(q[e]))
    }
}

impl Block for BlockQ3K {
    const TYPE: GgmlType = GgmlType::Q3K;

    fn read(bytes: &[u8]) -> Option<Self> {
        exact(bytes).map(BlockQ3K::from_bytes)
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_bytes());
    }

    fn dequantize_into(&self, out: &mut Vec<f32>) {
        out.extend(self.dequantize());
    }
}

/// Dequantizes a row of Q3_K blocks.
pub fn dequantize_row(bytes: &[u8]) -> Result<Vec<f32>, QuantError> {
    super::block::dequantize_blocks::<BlockQ3K>(bytes)
}
