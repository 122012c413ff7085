//! Mirror of the `quantize_q8_1` kernel (and of `emit_block`, which the fused norms and GLU
//! share): one warp per block of 32, `amax` by butterfly `max` (exact in any order),
//! `d = div.rn(amax, 127)`, `q = roundf(mul.rn(x, rcp.rn(d)))` (0 where d is 0),
//! `s = mul.rn(cvt.rn(sum q), d)`, both stored with `cvt.rn.f16.f32`. Every step is exact or
//! one IEEE rounding, in the order [`crate::quant::q8_1::quantize_block`] takes them, so the
//! mirror is that function. Its bytes are in the kernels' planar device layout
//! ([`crate::quant::q8_1::to_device`]).

use ptx_gen::kernels::QuantizeQ8_1;

use super::{check_len, MirrorError};

/// The Q8_1 bytes of `x` (a whole number of 32-value blocks), as `kernel` writes them (the
/// device layout).
pub(crate) fn quantize_row(kernel: &'static str, x: &[f32]) -> Result<Vec<u8>, MirrorError> {
    let ggml = crate::quant::q8_1::quantize_row_bytes(x).ok_or(MirrorError::Length {
        kernel,
        what: "x (whole Q8_1 blocks)",
        expected: x.len().next_multiple_of(32),
        found: x.len(),
    })?;
    Ok(crate::quant::q8_1::to_device(&ggml))
}

/// The `quantize_q8_1` kernel on one vector.
pub fn quantize_q8_1(spec: &QuantizeQ8_1, x: &[f32]) -> Result<Vec<u8>, MirrorError> {
    const K: &str = "quantize_q8_1";
    super::check_spec(K, spec)?;
    check_len(K, "x", spec.k as usize, x.len())?;
    quantize_row(K, x)
}

#[cfg(test)]
mod tests {
    use super::super::testing::Rng;
    use super::*;
    use crate::quant::q8_1::{dequantize_row, BlockQ8_1};

    #[test]
    fn round_trips_within_a_quantum() {
        let mut rng = Rng(3);
        let x = rng.vec(896, 4.0);
        let q = quantize_q8_1(&QuantizeQ8_1 { k: 896, m: 1 }, &x).unwrap();
        assert_eq!(q.len(), 28 * 36);
        let q = crate::quant::q8_1::from_device(&q, 896);
        let blocks: Vec<BlockQ8_1> = q
            .chunks_exact(36)
            .map(|c| BlockQ8_1::from_bytes(c.try_into().unwrap()))
            .collect();
        for (i, (a, b)) in dequantize_row(&blocks).iter().zip(&x).enumerate() {
            let d = f32::from(blocks[i / 32].d);
            // Half a quantum, plus d's own rounding to f16 (127 quanta x 2^-11).
            assert!((a - b).abs() <= 0.57 * d, "{i}: {a} vs {b}");
        }
        assert!(quantize_q8_1(&QuantizeQ8_1 { k: 96, m: 1 }, &x).is_err());
    }
}
