//! Mirror of the `residual_rmsnorm` kernel: `h = add.rn(x, residual)` (written back to `x`),
//! then `rmsnorm`'s pass 1 and normalization on `h` (see [`super::rmsnorm`]), the output as
//! f32 or as Q8_1 blocks (`quantize_q8_1`'s code).

use ptx_gen::kernels::{OutFormat, ResidualRmsNorm};

use super::rmsnorm::{normalize_row, row_scale};
use super::{check_len, check_spec, MirrorError};

/// The updated `x` and the output bytes (f32 little-endian or Q8_1 blocks).
pub fn residual_rmsnorm(
    spec: &ResidualRmsNorm,
    x: &[f32],
    residual: &[f32],
    w: &[f32],
) -> Result<(Vec<f32>, Vec<u8>), MirrorError> {
    const K: &str = "residual_rmsnorm";
    check_spec(K, spec)?;
    let n = spec.hidden as usize;
    check_len(K, "x", n, x.len())?;
    check_len(K, "residual", n, residual.len())?;
    check_len(K, "w", n, w.len())?;
    let h: Vec<f32> = x.iter().zip(residual).map(|(a, r)| a + r).collect();
    let y = normalize_row(&h, w, row_scale(&h, spec.eps), spec.weight_offset);
    let out = match spec.out {
        OutFormat::F32 => y.iter().flat_map(|v| v.to_le_bytes()).collect(),
        OutFormat::Q8_1 => super::quantize_q8_1::quantize_row(K, &y)?,
    };
    Ok((h, out))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{max_rel, Rng};
    use super::*;

    #[test]
    fn agrees_with_the_f64_reference() {
        let mut rng = Rng(4);
        for hidden in [99usize, 640, 2048] {
            let (x, r, w) = (
                rng.vec(hidden, 2.0),
                rng.vec(hidden, 2.0),
                rng.vec(hidden, 1.0),
            );
            let spec = ResidualRmsNorm {
                hidden: hidden as u32,
                eps: 1e-5,
                weight_offset: 1.0,
                out: OutFormat::F32,
                m: 1,
            };
            let (h, y) = residual_rmsnorm(&spec, &x, &r, &w).unwrap();
            let (rh, _) =
                crate::reference::residual_rmsnorm::residual_rmsnorm(&x, &r, &w, 1e-5, 1.0);
            assert_eq!(h, rh, "the sum is one add.rn either way");
            let y: Vec<f32> = y
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            let sum: f64 = h.iter().map(|v| f64::from(*v).powi(2)).sum();
            let s = 1.0 / (sum / hidden as f64 + 1e-5f32 as f64).sqrt();
            let want: Vec<f64> = h
                .iter()
                .zip(&w)
                .map(|(v, g)| f64::from(*v) * s * (f64::from(*g) + 1.0))
                .collect();
            assert!(max_rel(&y, &want, 1e-3) < 2e-6, "hidden {hidden}");
        }
    }
}
