//! RMSNorm fused with Q8_1 quantization: `quantize_row_q8_1(rmsnorm(x))`, from the two
//! definitions (the sum of squares in f64, as in [`super::rmsnorm`]).

use super::rmsnorm::rmsnorm;
use crate::quant::q8_1::quantize_row_bytes;

/// The Q8_1 bytes of the normalized `x`; `None` when the length is not a multiple of 32.
pub fn rmsnorm_q8_1(x: &[f32], w: &[f32], eps: f32, weight_offset: f32) -> Option<Vec<u8>> {
    quantize_row_bytes(&rmsnorm(x, w, eps, weight_offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_normalizes_then_quantizes() {
        // x = 2 everywhere: mean(x^2) = 4, scale = 1 / sqrt(4 + 0) ~ 1/2, so y = w.
        let x = [2.0f32; 32];
        let w: Vec<f32> = (0..32).map(|i| i as f32 - 16.0).collect();
        let bytes = rmsnorm_q8_1(&x, &w, 1e-30, 0.0).unwrap();
        assert_eq!(bytes.len(), 36);
        // amax 16 -> d = 16/127; q = round(v * 127/16): -16 -> -127, 15 -> 119 (119.06).
        let d = half::f16::from_le_bytes([bytes[0], bytes[1]]).to_f32();
        assert_eq!(d, half::f16::from_f32(16.0 / 127.0).to_f32());
        assert_eq!(bytes[4] as i8, -127);
        assert_eq!(bytes[4 + 31] as i8, 119);
        assert_eq!(bytes[4 + 16] as i8, 0);
        assert!(rmsnorm_q8_1(&x[..31], &w[..31], 1e-5, 0.0).is_none());
    }
}
