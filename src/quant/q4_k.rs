//! Q4_K: super-blocks of 256 values, `block_q4_K = { half d; half dmin; u8 scales[12];
//! u8 qs[128] }` (144 bytes). Eight sub-blocks of 32 values each have a 6-bit scale `sc` and a
//! 6-bit min `m`, packed in `scales` (see [`scale_min`]); `x = d * sc * q - dmin * m`.
//! Values `64c..64c+32` are the low nibbles of `qs[32c..32c+32]`, values `64c+32..64c+64`
//! their high nibbles. Quantized as GGML's `quantize_row_q4_K_ref`.

use half::f16;

use super::block::{array_at, exact, f16_at, Block, Quantize};
use super::fit::{make_qkx2_quants, nearest_int, Qkx2};
use super::{GgmlType, QuantError};

/// Values per super-block (`QK_K`).
pub const QK_K: usize = 256;
/// Bytes per block.
pub const BLOCK_Q4_K_BYTES: usize = 144;

/// One decoded Q4_K block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ4K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; 12],
    pub qs: [u8; QK_K / 2],
}

/// The 6-bit scale and min of sub-block `j` (0..8) from the 12 packed bytes
/// (`get_scale_min_k4`): sub-blocks 0..4 keep theirs in the low 6 bits of bytes `j` (scale)
/// and `j + 4` (min); sub-blocks 4..8 keep the low 4 bits in the nibbles of byte `j + 4` and
/// the high 2 bits in the top bits of bytes `j - 4` (scale) and `j` (min). `j` is taken
/// modulo 8. Shared with Q5_K.
pub fn scale_min(scales: &[u8; 12], j: usize) -> (u8, u8) {
    let j = j % 8;
    if j < 4 {
        (scales[j] & 63, scales[j + 4] & 63)
    } else {
        (
            (scales[j + 4] & 0x0F) | ((scales[j - 4] >> 6) << 4),
            (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4),
        )
    }
}

/// Packs eight 6-bit (scale, min) pairs, the inverse of [`scale_min`].
pub fn pack_scale_min(ls: &[u8; 8], lm: &[u8; 8]) -> [u8; 12] {
    let mut out = [0u8; 12];
    for j in 0..8 {
        let (s, m) = (ls[j] & 63, lm[j] & 63);
        if j < 4 {
            out[j] |= s;
            out[j + 4] |= m;
        } else {
            out[j + 4] = (s & 0x0F) | ((m & 0x0F) << 4);
            out[j - 4] |= (s >> 4) << 6;
            out[j] |= (m >> 4) << 6;
        }
    }
    out
}

impl BlockQ4K {
    /// Reads a block from its 144 bytes.
    pub fn from_bytes(b: &[u8; BLOCK_Q4_K_BYTES]) -> BlockQ4K {
        BlockQ4K {
            d: f16_at(b, 0),
            dmin: f16_at(b, 2),
            scales: array_at(b, 4),
            qs: array_at(b, 16),
        }
    }

    /// The block's 144 bytes.
    pub fn to_bytes(&self) -> [u8; BLOCK_Q4_K_BYTES] {
        let mut out = [0u8; BLOCK_Q4_K_BYTES];
        out[0..2].copy_from_slice(&self.d.to_le_bytes());
        out[2..4].copy_from_slice(&self.dmin.to_le_bytes());
        out[4..16].copy_from_slice(&self.scales);
        out[16..].copy_from_slice(&self.qs);
        out
    }

    /// The 6-bit (scale, min) of sub-block `j` (0..8).
    pub fn scale_min(&self, j: usize) -> (u8, u8) {
        scale_min(&self.scales, j)
    }

    /// The 4-bit quants (0..=15) in element order.
    pub fn quants(&self) -> [u8; QK_K] {
        std::array::from_fn(|e| {
            let byte = self.qs[32 * (e / 64) + e % 32];
            (byte >> (4 * ((e / 32) % 2))) & 0x0F
        })
    }

    /// `(d * sc) * q - dmin * m` for each value, in GGML's operation order.
    pub fn dequantize(&self) -> [f32; QK_K] {
        let (d, dmin) = (self.d.to_f32(), self.dmin.to_f32());
        let q = self.quants();
        std::array::from_fn(|e| {
            let (sc, m) = self.scale_min(e / 32);
            let (d1, m1) = (d * f32::from(sc), dmin * f32::from(m));
            d1 * f32::from(q[e]) - m1
        })
    }

    /// GGML's `quantize_row_q4_K_ref` for one super-block: per sub-block an asymmetric fit
    /// (`make_qkx2_quants`, weights `rms + |x|`), the scales and mins quantized to 6 bits
    /// against the largest of each, then every value re-quantized with the stored scales.
    pub fn quantize(x: &[f32; QK_K]) -> BlockQ4K {
        let search = Qkx2 {
            nmax: 15,
            rmin: -1.0,
            rdelta: 0.1,
            nstep: 20,
        };
        let mut levels = [0u8; QK_K];
        let mut scales = [0f32; 8];
        let mut mins = [0f32; 8];
        let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
        for j in 0..8 {
            let xs = &x[32 * j..32 * j + 32];
            let sum_x2 = xs.iter().fold(0.0f32, |s, v| s + v * v);
            let av_x = (sum_x2 / 32.0).sqrt();
            let weights: Vec<f32> = xs.iter().map(|v| av_x + v.abs()).collect();
            let (scale, min) =
                make_qkx2_quants(&search, xs, &weights, &mut levels[32 * j..32 * j + 32]);
            scales[j] = scale;
            mins[j] = min;
            if scale > max_scale {
                max_scale = scale;
            }
            if min > max_min {
                max_min = min;
            }
        }
        let inv_scale = if max_scale > 0.0 {
            63.0 / max_scale
        } else {
            0.0
        };
        let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
        // `uint8_t ls = nearest_int(...)` keeps the low byte, then MIN(63, ls).
        let ls = scales.map(|s| (nearest_int(inv_scale * s) as u8).min(63));
        let lm = mins.map(|m| (nearest_int(inv_min * m) as u8).min(63));
        let mut block = BlockQ4K {
            d: f16::from_f32(max_scale / 63.0),
            dmin: f16::from_f32(max_min / 63.0),
            scales: pack_scale_min(&ls, &lm),
            qs: [0; QK_K / 2],
        };
        for j in 0..8 {
            let (sc, m) = block.scale_min(j);
            let d = block.d.to_f32() * f32::from(sc);
            if d == 0.0 {
                continue;
            }
            let dm = block.dmin.to_f32() * f32::from(m);
            for i in 32 * j..32 * j + 32 {
                levels[i] = nearest_int((x[i] + dm) / d).clamp(0, 15) as u8;
            }
        }
        for (i, q) in block.qs.iter_mut().enumerate() {
            let (c, l) = (i / 32, i % 32);
            *q = levels[64 * c + l] | (levels[64 * c + 32 + l] << 4);
        }
        block
    }
}

impl Block for BlockQ4K {
    const TYPE: GgmlType = GgmlType::Q4K;

    fn read(bytes: &[u8]) -> Option<Self> {
        exact(bytes).map(BlockQ4K::from_bytes)
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_bytes());
    }

    fn dequantize_into(&self, out: &mut Vec<f32>) {
        out.extend(self.dequantize());
    }
}

impl Quantize for BlockQ4K {
    fn quantize_values(values: &[f32]) -> Option<Self> {
        Some(BlockQ4K::quantize(values.try_into().ok()?))
    }
}

/// Dequantizes a row of Q4_K blocks.
pub fn dequantize_row(bytes: &[u8]) -> Result<Vec<f32>, QuantError> {
    super::block::dequantize_blocks::<BlockQ4K>(bytes)
}

/// Quantizes a row whose length is a multiple of 256.
pub fn quantize_row(x: &[f32]) -> Result<Vec<BlockQ4K>, QuantError> {
    super::block::quantize_blocks(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_min_packing_round_trips() {
        let ls = [0, 1, 17, 63, 32, 5, 48, 63];
        let lm = [63, 0, 33, 2, 16, 47, 1, 62];
        let packed = pack_scale_min(&ls, &lm);
        for j in 0..8 {
            assert_eq!(scale_min(&packed, j), (ls[j], lm[j]), "sub-block {j}");
        }
    }
}
