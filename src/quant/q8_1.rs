//! Q8_1: GGML's activation format for integer dot products. 32 values per block stored as
//! `half2 {d, s}` then `int8 qs[32]` (36 bytes), `x ~= d * q`, `s = d * sum(q)`.
//! Written from `quantize_row_q8_1_ref`'s definition. The GPU's buffers hold the same blocks
//! in a planar layout ([`device_bytes`], [`to_device`], [`from_device`]).

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

/// Bytes of a vector of `n` values (`n % 32 == 0`) in ptxforge's planar device layout, the
/// layout of every Q8_1 buffer the kernels read and write: the `n` quants, then the `n / 32`
/// `{d, s}` pairs, padded to a multiple of 16 bytes (`ptx_gen::kernels::q8_1_vector_bytes`).
pub fn device_bytes(n: usize) -> usize {
    ptx_gen::kernels::q8_1_vector_bytes(n as u32) as usize
}

/// One vector's GGML blocks (36 bytes each) in the device layout.
pub fn to_device(ggml: &[u8]) -> Vec<u8> {
    let blocks = ggml.len() / BLOCK_Q8_1_BYTES;
    let n = blocks * QK8_1;
    let mut out = vec![0u8; device_bytes(n)];
    for (j, b) in ggml.chunks_exact(BLOCK_Q8_1_BYTES).enumerate() {
        out[QK8_1 * j..QK8_1 * (j + 1)].copy_from_slice(&b[4..]);
        out[n + 4 * j..n + 4 * j + 4].copy_from_slice(&b[..4]);
    }
    out
}

/// Vectors of `n` values each, as GGML blocks back to back, in the device layout (each
/// vector padded: vector v starts at `v * device_bytes(n)`).
pub fn to_device_batch(ggml: &[u8], n: usize) -> Vec<u8> {
    ggml.chunks(n / QK8_1 * BLOCK_Q8_1_BYTES)
        .flat_map(to_device)
        .collect()
}

/// One vector of `n` values in the device layout (at least `n + n / 8` bytes) back to GGML
/// blocks.
pub fn from_device(dev: &[u8], n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n / QK8_1 * BLOCK_Q8_1_BYTES);
    for j in 0..n / QK8_1 {
        out.extend_from_slice(&dev[n + 4 * j..n + 4 * j + 4]);
        out.extend_from_slice(&dev[QK8_1 * j..QK8_1 * (j + 1)]);
    }
    out
}

/// Vectors of `n` values each in the device layout (`device_bytes(n)` apart) back to GGML
/// blocks back to back.
pub fn from_device_batch(dev: &[u8], n: usize) -> Vec<u8> {
    dev.chunks(device_bytes(n))
        .flat_map(|v| from_device(v, n))
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_layout_puts_quants_first_then_scales_and_round_trips() {
        // 3 blocks of distinct values: 96 quants, 3 {d, s}, padded from 108 to 112 bytes.
        let x: Vec<f32> = (0..96).map(|i| (i as f32 - 40.5) * 0.37).collect();
        let ggml = quantize_row_bytes(&x).unwrap();
        let dev = to_device(&ggml);
        assert_eq!(dev.len(), 112);
        assert_eq!(device_bytes(96), 112);
        for j in 0..3 {
            let b = &ggml[36 * j..36 * (j + 1)];
            assert_eq!(&dev[32 * j..32 * (j + 1)], &b[4..], "block {j}'s quants");
            assert_eq!(&dev[96 + 4 * j..100 + 4 * j], &b[..4], "block {j}'s d, s");
        }
        assert_eq!(&dev[108..], &[0; 4]);
        assert_eq!(from_device(&dev, 96), ggml);
        let two: Vec<u8> = ggml.iter().chain(&ggml).copied().collect();
        let dev2 = to_device_batch(&two, 96);
        assert_eq!(dev2.len(), 224);
        assert_eq!(&dev2[112..], &dev[..]);
        assert_eq!(from_device_batch(&dev2, 96), two);
        // 4096 values: 4608 bytes, already a multiple of 16.
        assert_eq!(device_bytes(4096), 4608);
    }
}
