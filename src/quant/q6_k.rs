//! Q6_K: super-blocks of 256 values, `block_q6_K = { u8 ql[128]; u8 qh[64]; i8 scales[16];
//! half d }` (210 bytes). Value `128h + 32t + l` (t in 0..4) has its low 4 bits in nibble
//! `t / 2` of `ql[64h + 32 (t % 2) + l]` and its high 2 bits in bits `2t..2t+2` of
//! `qh[32h + l]`; `q = bits - 32` is in -32..=31. Each 16-value group `g` has the signed scale
//! `scales[g]`; `x = d * scales[g] * q`. Quantized as GGML's `quantize_row_q6_K_ref`.

use half::f16;

use super::block::{array_at, exact, f16_at, Block, Quantize};
use super::fit::{make_qx_quants, nearest_int, GROUP_MAX_EPS};
use super::q4_k::QK_K;
use super::{GgmlType, QuantError};

/// Bytes per block.
pub const BLOCK_Q6_K_BYTES: usize = 210;

/// One decoded Q6_K block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ6K {
    pub ql: [u8; QK_K / 2],
    pub qh: [u8; QK_K / 4],
    pub scales: [i8; QK_K / 16],
    pub d: f16,
}

impl BlockQ6K {
    /// Reads a block from its 210 bytes.
    pub fn from_bytes(b: &[u8; BLOCK_Q6_K_BYTES]) -> BlockQ6K {
        let scales: [u8; 16] = array_at(b, 192);
        BlockQ6K {
            ql: array_at(b, 0),
            qh: array_at(b, 128),
            scales: scales.map(|s| s as i8),
            d: f16_at(b, 208),
        }
    }

    /// The block's 210 bytes.
    pub fn to_bytes(&self) -> [u8; BLOCK_Q6_K_BYTES] {
        let mut out = [0u8; BLOCK_Q6_K_BYTES];
        out[0..128].copy_from_slice(&self.ql);
        out[128..192].copy_from_slice(&self.qh);
        for (o, s) in out[192..208].iter_mut().zip(self.scales) {
            *o = s as u8;
        }
        out[208..210].copy_from_slice(&self.d.to_le_bytes());
        out
    }

    /// The 6-bit quants with the -32 offset applied (-32..=31), in element order.
    pub fn quants(&self) -> [i8; QK_K] {
        std::array::from_fn(|e| {
            let (h, t, l) = (e / 128, (e % 128) / 32, e % 32);
            let low = (self.ql[64 * h + 32 * (t % 2) + l] >> (4 * (t / 2))) & 0x0F;
            let high = (self.qh[32 * h + l] >> (2 * t)) & 3;
            (low | (high << 4)) as i8 - 32
        })
    }

    /// `(d * scale) * q` for each value, in GGML's operation order.
    pub fn dequantize(&self) -> [f32; QK_K] {
        let d = self.d.to_f32();
        let q = self.quants();
        std::array::from_fn(|e| d * f32::from(self.scales[e / 16]) * f32::from(q[e]))
    }

    /// GGML's `quantize_row_q6_K_ref` for one super-block: a symmetric scale per 16-value
    /// group (`make_qx_quants`, weights `x^2`), the scales quantized to 8 bits against the one
    /// of largest magnitude (`d = max_scale / -128`), then every value re-quantized with the
    /// stored scales. A block whose scales are all below `GROUP_MAX_EPS` is all zeros.
    pub fn quantize(x: &[f32; QK_K]) -> BlockQ6K {
        let mut levels = [0u8; QK_K];
        let mut scales = [0f32; 16];
        let (mut max_scale, mut max_abs_scale) = (0.0f32, 0.0f32);
        for (g, scale) in scales.iter_mut().enumerate() {
            *scale = make_qx_quants(
                32,
                &x[16 * g..16 * g + 16],
                &mut levels[16 * g..16 * g + 16],
            );
            if scale.abs() > max_abs_scale {
                max_abs_scale = scale.abs();
                max_scale = *scale;
            }
        }
        if max_abs_scale < GROUP_MAX_EPS {
            return BlockQ6K {
                ql: [0; QK_K / 2],
                qh: [0; QK_K / 4],
                scales: [0; QK_K / 16],
                d: f16::ZERO,
            };
        }
        let iscale = -128.0 / max_scale;
        let d = f16::from_f32(1.0 / iscale);
        // `int8_t = MIN(127, nearest_int(...))`: the product is within [-128, 128].
        let qscales = scales.map(|s| nearest_int(iscale * s).min(127) as i8);
        for (g, &sc) in qscales.iter().enumerate() {
            let dg = d.to_f32() * f32::from(sc);
            if dg == 0.0 {
                continue;
            }
            for i in 16 * g..16 * g + 16 {
                levels[i] = (nearest_int(x[i] / dg).clamp(-32, 31) + 32) as u8;
            }
        }
        let mut block = BlockQ6K {
            ql: [0; QK_K / 2],
            qh: [0; QK_K / 4],
            scales: qscales,
            d,
        };
        for h in 0..2 {
            for l in 0..32 {
                let q: [u8; 4] = std::array::from_fn(|t| levels[128 * h + 32 * t + l]);
                block.ql[64 * h + l] = (q[0] & 0x0F) | ((q[2] & 0x0F) << 4);
                block.ql[64 * h + 32 + l] = (q[1] & 0x0F) | ((q[3] & 0x0F) << 4);
                block.qh[32 * h + l] =
                    (q[0] >> 4) | ((q[1] >> 4) << 2) | ((q[2] >> 4) << 4) | ((q[3] >> 4) << 6);
            }
        }
        block
    }
}

impl Block for BlockQ6K {
    const TYPE: GgmlType = GgmlType::Q6K;

    fn read(bytes: &[u8]) -> Option<Self> {
        exact(bytes).map(BlockQ6K::from_bytes)
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_bytes());
    }

    fn dequantize_into(&self, out: &mut Vec<f32>) {
        out.extend(self.dequantize());
    }
}

impl Quantize for BlockQ6K {
    fn quantize_values(values: &[f32]) -> Option<Self> {
        Some(BlockQ6K::quantize(values.try_into().ok()?))
    }
}

/// Dequantizes a row of Q6_K blocks.
pub fn dequantize_row(bytes: &[u8]) -> Result<Vec<f32>, QuantError> {
    super::block::dequantize_blocks::<BlockQ6K>(bytes)
}

/// Quantizes a row whose length is a multiple of 256.
pub fn quantize_row(x: &[f32]) -> Result<Vec<BlockQ6K>, QuantError> {
    super::block::quantize_blocks(x)
}
