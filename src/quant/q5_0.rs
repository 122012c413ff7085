//! Q5_0: 32 values per block, `block_q5_0 = { half d; u8 qh[4]; u8 qs[16] }` (22 bytes).
//! Value `j < 16` has the low nibble of `qs[j]`, value `j + 16` its high nibble; bit `j` of the
//! little-endian `u32` `qh` is value `j`'s fifth bit; `x = d * (q - 16)`.
//! Quantized as GGML's `quantize_row_q5_0_ref`.

use half::f16;

use super::block::{array_at, exact, f16_at, Block, Quantize};
use super::q4_0::signed_absmax;
use super::{GgmlType, QuantError};

/// Values per block.
pub const QK5_0: usize = 32;
/// Bytes per block.
pub const BLOCK_Q5_0_BYTES: usize = 22;

/// One decoded Q5_0 block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ5_0 {
    pub d: f16,
    pub qh: [u8; 4],
    pub qs: [u8; QK5_0 / 2],
}

impl BlockQ5_0 {
    /// Reads a block from its 22 bytes.
    pub fn from_bytes(b: &[u8; BLOCK_Q5_0_BYTES]) -> BlockQ5_0 {
        BlockQ5_0 {
            d: f16_at(b, 0),
            qh: array_at(b, 2),
            qs: array_at(b, 6),
        }
    }

    /// The block's 22 bytes.
    pub fn to_bytes(&self) -> [u8; BLOCK_Q5_0_BYTES] {
        let mut out = [0u8; BLOCK_Q5_0_BYTES];
        out[0..2].copy_from_slice(&self.d.to_le_bytes());
        out[2..6].copy_from_slice(&self.qh);
        out[6..].copy_from_slice(&self.qs);
        out
    }

    /// The 5-bit quants (0..=31, before the -16 offset) in element order.
    pub fn quants(&self) -> [u8; QK5_0] {
        five_bit_quants(&self.qs, self.qh)
    }

    /// `d * (q - 16)` for each value.
    pub fn dequantize(&self) -> [f32; QK5_0] {
        let d = self.d.to_f32();
        self.quants().map(|q| f32::from(q as i8 - 16) * d)
    }

    /// `d = max / -16` where `max` is the value of largest magnitude (the first one on ties),
    /// `q = min(31, trunc(x / d + 16.5))`.
    pub fn quantize(x: &[f32; QK5_0]) -> BlockQ5_0 {
        let max = signed_absmax(x);
        let d = max / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let q = x.map(|v| ((v * id + 16.5) as i8).min(31) as u8);
        let (qs, qh) = pack_five_bit(&q);
        BlockQ5_0 {
            d: f16::from_f32(d),
            qh,
            qs,
        }
    }
}

/// Unpacks 32 five-bit quants: low nibbles from `qs` (value `j` and `j + 16` share byte `j`),
/// fifth bits from the little-endian `u32` `qh`. Shared with Q5_1.
pub(crate) fn five_bit_quants(qs: &[u8; 16], qh: [u8; 4]) -> [u8; 32] {
    let qh = u32::from_le_bytes(qh);
    std::array::from_fn(|j| {
        let low = (qs[j % 16] >> (4 * (j / 16))) & 0x0F;
        low | ((((qh >> j) & 1) as u8) << 4)
    })
}

/// The inverse of [`five_bit_quants`] for quants in 0..=31.
pub(crate) fn pack_five_bit(q: &[u8; 32]) -> ([u8; 16], [u8; 4]) {
    let qs = std::array::from_fn(|j| (q[j] & 0x0F) | ((q[j + 16] & 0x0F) << 4));
    let qh = q
        .iter()
        .enumerate()
        .fold(0u32, |h, (j, &v)| h | (u32::from((v >> 4) & 1) << j));
    (qs, qh.to_le_bytes())
}

impl Block for BlockQ5_0 {
    const TYPE: GgmlType = GgmlType::Q5_0;

    fn read(bytes: &[u8]) -> Option<Self> {
        exact(bytes).map(BlockQ5_0::from_bytes)
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_bytes());
    }

    fn dequantize_into(&self, out: &mut Vec<f32>) {
        out.extend(self.dequantize());
    }
}

impl Quantize for BlockQ5_0 {
    fn quantize_values(values: &[f32]) -> Option<Self> {
        Some(BlockQ5_0::quantize(values.try_into().ok()?))
    }
}

/// Dequantizes a row of Q5_0 blocks.
pub fn dequantize_row(bytes: &[u8]) -> Result<Vec<f32>, QuantError> {
    super::block::dequantize_blocks::<BlockQ5_0>(bytes)
}

/// Quantizes a row whose length is a multiple of 32.
pub fn quantize_row(x: &[f32]) -> Result<Vec<BlockQ5_0>, QuantError> {
    super::block::quantize_blocks(x)
}
