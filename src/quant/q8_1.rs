//! Q8_1: GGML's activation format for integer dot products. 32 values per block stored as
//! `half2 {d, s}` then `int8 qs[32]` (36 bytes), `x ~= d * q`, `s = d * sum(q)`.
//! Written from `quantize_row_q8_1_ref`'s definition.

use half::f16;

/// Values per block.
pub const QK8_1: usize = 32;
/// Bytes per block.
pub const BLOCK_Q8_1_BYTES: usize = 36;

/// One decoded Q8_1 block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ8_1 {
    pub d: f16,
    pub s: f16,
    pub qs: [i8; QK8_1],
}

impl BlockQ8_1 {
    /// The block's 36 bytes in GGML's layout (little endian).
    pub fn to_bytes(&self) -> [u8; BLOCK_Q8_1_BYTES] {
        let mut out = [0u8; BLOCK_Q8_1_BYTES];
        out[0..2].copy_from_slice(&self.d.to_le_bytes());
        out[2..4].copy_from_slice(&self.s.to_le_bytes());
        for (o, q) in out[4..].iter_mut().zip(self.qs) {
            *o = q as u8;
        }
        out
    }

    /// Reads a block from its 36 bytes.
    pub fn from_bytes(b: &[u8; BLOCK_Q8_1_BYTES]) -> BlockQ8_1 {
        let mut qs = [0i8; QK8_1];
        for (q, byte) in qs.iter_mut().zip(&b[4..]) {
            *q = *byte as i8;
        }
        BlockQ8_1 {
            d: f16::from_le_bytes([b[0], b[1]]),
            s: f16::from_le_bytes([b[2], b[3]]),
            qs,
        }
    }
}

/// Quantizes one block of 32 values, exactly as `quantize_row_q8_1_ref`: `d = amax / 127`,
/// `q = roundf(x * (1 / d))` (0 when d is 0), `s = sum(q) * d`, both halves rounded to
/// nearest even when stored as f16.
pub fn quantize_block(x: &[f32; QK8_1]) -> BlockQ8_1 {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut qs = [0i8; QK8_1];
    let mut sum = 0i32;
    for (q, v) in qs.iter_mut().zip(x) {
        // `roundf`: half away from zero. |v * id| <= 127 (+ rounding), so the cast is exact.
        *q = (v * id).round() as i8;
        sum += *q as i32;
    }
    BlockQ8_1 {
        d: f16::from_f32(d),
        s: f16::from_f32(sum as f32 * d),
        qs,
    }
}

/// Quantizes a row whose length is a multiple of 32; `None` otherwise.
pub fn quantize_row(x: &[f32]) -> Option<Vec<BlockQ8_1>> {
    if x.len() % QK8_1 != 0 {
        return None;
    }
    Some(
        x.chunks_exact(QK8_1)
            .map(|c| {
                let mut block = [0f32; QK8_1];
                block.copy_from_slice(c);
                quantize_block(&block)
            })
            .collect(),
    )
}

/// The bytes of a quantized row, as the GPU kernel writes them.
pub fn quantize_row_bytes(x: &[f32]) -> Option<Vec<u8>> {
    Some(quantize_row(x)?.iter().flat_map(|b| b.to_bytes()).collect())
}

/// `d * q` for every value of the blocks.
pub fn dequantize_row(blocks: &[BlockQ8_1]) -> Vec<f32> {
    blocks
        .iter()
        .flat_map(|b| {
            let d = b.d.to_f32();
            b.qs.iter().map(move |q| d * *q as f32)
        })
        .collect()
}
