//! Mirror of the `rmsnorm_q8_1` kernel: pass 1 is `rmsnorm`'s (same layout, order and scale),
//! pass 2 normalizes each value as `rmsnorm` does and quantizes each block of 32 with
//! `quantize_q8_1`'s code, so the output is [`super::quantize_q8_1::quantize_q8_1`] of
//! [`super::rmsnorm::rmsnorm`]'s.

use ptx_gen::kernels::{RmsNorm, RmsNormQ8_1};

use super::quantize_q8_1::quantize_row;
use super::{check_len, MirrorError};

/// The `rmsnorm_q8_1` kernel on one vector: `hidden / 32` Q8_1 blocks, device layout.
pub fn rmsnorm_q8_1(spec: &RmsNormQ8_1, x: &[f32], w: &[f32]) -> Result<Vec<u8>, MirrorError> {
    const K: &str = "rmsnorm_q8_1";
    super::check_spec(K, spec)?;
    check_len(K, "x", spec.hidden as usize, x.len())?;
    let norm = RmsNorm {
        hidden: spec.hidden,
        eps: spec.eps,
        weight_offset: spec.weight_offset,
        m: 1,
    };
    let y = super::rmsnorm::rmsnorm(&norm, x, w)?;
    quantize_row(K, &y)
}

#[cfg(test)]
mod tests {
    use super::super::testing::Rng;
    use super::*;
    use crate::quant::q8_1::{dequantize_row, BlockQ8_1};

    #[test]
    fn agrees_with_the_f64_reference() {
        let mut rng = Rng(2);
        for hidden in [64usize, 576, 896, 4096] {
            let x = rng.vec(hidden, 2.0);
            let w = rng.vec(hidden, 1.0);
            let spec = RmsNormQ8_1 {
                hidden: hidden as u32,
                eps: 1e-6,
                weight_offset: 0.0,
                m: 1,
            };
            let got = rmsnorm_q8_1(&spec, &x, &w).unwrap();
            let got = crate::quant::q8_1::from_device(&got, hidden);
            let want = crate::reference::rmsnorm_q8_1::rmsnorm_q8_1(&x, &w, 1e-6, 0.0).unwrap();
            let blocks = |b: &[u8]| -> Vec<BlockQ8_1> {
                b.chunks_exact(36)
                    .map(|c| BlockQ8_1::from_bytes(c.try_into().unwrap()))
                    .collect()
            };
            let (g, r) = (
                dequantize_row(&blocks(&got)),
                dequantize_row(&blocks(&want)),
            );
            // The two differ at most where a value sits on a rounding boundary: one quantum.
            for (i, (a, b)) in g.iter().zip(&r).enumerate() {
                let d = f32::from(blocks(&want)[i / 32].d);
                assert!((a - b).abs() <= d * 1.001, "hidden {hidden}, value {i}");
            }
        }
    }
}
