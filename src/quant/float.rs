//! The float tensor types: F32, F16 (IEEE binary16) and BF16 (the top half of an f32), each
//! value stored little endian with no block structure.

use half::f16;

use super::{GgmlType, QuantError};

/// F32 bytes to values.
pub fn f32_from_bytes(bytes: &[u8]) -> Result<Vec<f32>, QuantError> {
    Ok(words::<4>(GgmlType::F32, bytes)?
        .map(f32::from_le_bytes)
        .collect())
}

/// F16 bytes to values (exact: every f16 is an f32).
pub fn f16_to_f32(bytes: &[u8]) -> Result<Vec<f32>, QuantError> {
    Ok(words::<2>(GgmlType::F16, bytes)?
        .map(|w| f16::from_le_bytes(w).to_f32())
        .collect())
}

/// BF16 bytes to values: the 16 bits become the high half of an f32 (exact).
pub fn bf16_to_f32(bytes: &[u8]) -> Result<Vec<f32>, QuantError> {
    Ok(words::<2>(GgmlType::BF16, bytes)?
        .map(|w| f32::from_bits(u32::from(u16::from_le_bytes(w)) << 16))
        .collect())
}

/// Values to F16 bytes, rounded to nearest even (`GGML_FP32_TO_FP16`).
pub fn f32_to_f16(values: &[f32]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|&v| f16::from_f32(v).to_le_bytes())
        .collect()
}

/// Values to BF16 bytes as `ggml_compute_fp32_to_bf16`: NaN becomes a quiet NaN with the same
/// sign and top payload bits, everything else rounds to nearest even.
pub fn f32_to_bf16(values: &[f32]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|&v| bf16_bits(v).to_le_bytes())
        .collect()
}

fn bf16_bits(v: f32) -> u16 {
    let u = v.to_bits();
    if (u & 0x7fff_ffff) > 0x7f80_0000 {
        return ((u >> 16) | 64) as u16;
    }
    ((u64::from(u) + 0x7fff + u64::from((u >> 16) & 1)) >> 16) as u16
}

/// Values to F32 bytes.
pub fn f32_to_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn words<const N: usize>(
    ty: GgmlType,
    bytes: &[u8],
) -> Result<impl Iterator<Item = [u8; N]> + '_, QuantError> {
    if bytes.len() % N != 0 {
        return Err(QuantError::NotWholeBlockBytes {
            ty,
            found: bytes.len(),
            block: N,
        });
    }
    Ok(bytes.chunks_exact(N).map(|c| {
        let mut w = [0u8; N];
        w.copy_from_slice(c);
        w
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_rounds_to_nearest_even_and_quiets_nan() {
        // 1 + 2^-8 is halfway between two bf16 values: ties to the even one (1.0).
        assert_eq!(bf16_bits(1.0 + 1.0 / 256.0), 0x3f80);
        assert_eq!(bf16_bits(1.0 + 3.0 / 256.0), 0x3f82);
        assert_eq!(bf16_bits(f32::from_bits(0x7f80_0001)), 0x7fc0);
        assert_eq!(bf16_bits(f32::INFINITY), 0x7f80);
        let back = bf16_to_f32(&f32_to_bf16(&[-2.5])).unwrap();
        assert_eq!(back, vec![-2.5]);
    }
}
