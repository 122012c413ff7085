//! Mirror of the `residual_rmsnorm` kernel: `h = add.rn(x, residual)` (written back to `x`),
//! then `rmsnorm`'s pass 1 and normalization on `h` (see [`super::rmsnorm`]), the output as
//! f32 or as Q8_1 blocks (`quantize_q8_1`'s code). With a post-norm, the residual is first
//! what the `rmsnorm` kernel makes of it (the kernel runs that kernel's code).

use ptx_gen::kernels::{OutFormat, ResidualRmsNorm};

use super::rmsnorm::{normalize_row, row_scale};
use super::{check_len, check_spec, MirrorError};

/// The updated `x` and the output bytes (f32 little-endian or Q8_1 blocks). `rw` is the
/// post-norm's weight, given exactly when `spec.post_norm`.
pub fn residual_rmsnorm(
    spec: &ResidualRmsNorm,
    x: &[f32],
    residual: &[f32],
    rw: Option<&[f32]>,
    w: &[f32],
) -> Result<(Vec<f32>, Vec<u8>), MirrorError> {
    const K: &str = "residual_rmsnorm";
    check_spec(K, spec)?;
    let n = spec.hidden as usize;
    check_len(K, "x", n, x.len())?;
    check_len(K, "residual", n, residual.len())?;
    check_len(K, "w", n, w.len())?;
    let normed;
    let residual = match (spec.post_norm, rw) {
        (false, None) => residual,
        (true, Some(rw)) => {
            check_len(K, "rw", n, rw.len())?;
            normed = normalize_row(
                residual,
                rw,
                row_scale(residual, spec.eps),
                spec.weight_offset,
            );
            &normed
        }
        (post_norm, _) => {
            return Err(MirrorError::Spec {
                kernel: K,
                message: format!(
                    "post_norm is {post_norm}, but the post-norm weight `rw` was {}given",
                    if post_norm { "not " } else { "" }
                ),
            })
        }
    };
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
                post_norm: false,
                m: 1,
            };
            let (h, y) = residual_rmsnorm(&spec, &x, &r, None, &w).unwrap();
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

    #[test]
    fn a_post_norm_adds_what_the_rmsnorm_mirror_makes_of_the_residual() {
        let mut rng = Rng(9);
        for (hidden, out) in [(99usize, OutFormat::F32), (640, OutFormat::Q8_1)] {
            let (x, r, rw, w) = (
                rng.vec(hidden, 2.0),
                rng.vec(hidden, 30.0),
                rng.vec(hidden, 1.0),
                rng.vec(hidden, 1.0),
            );
            let post = ResidualRmsNorm {
                hidden: hidden as u32,
                eps: 1e-6,
                weight_offset: 1.0,
                out,
                post_norm: true,
                m: 1,
            };
            let plain = ResidualRmsNorm {
                post_norm: false,
                ..post
            };
            let norm = ptx_gen::kernels::RmsNorm {
                hidden: hidden as u32,
                eps: 1e-6,
                weight_offset: 1.0,
                m: 1,
            };
            let t = super::super::rmsnorm::rmsnorm(&norm, &r, &rw).unwrap();
            let fused = residual_rmsnorm(&post, &x, &r, Some(&rw), &w).unwrap();
            let two = residual_rmsnorm(&plain, &x, &t, None, &w).unwrap();
            assert_eq!(
                fused, two,
                "hidden {hidden}: one launch = rmsnorm, then the add"
            );
            // And both are what the f64 reference says the post-norm means.
            let (rh, _) = crate::reference::residual_rmsnorm::post_residual_rmsnorm(
                &x, &r, &rw, &w, 1e-6, 1.0,
            );
            let want: Vec<f64> = rh.iter().map(|v| f64::from(*v)).collect();
            // Absolute near zero: x + t cancels.
            assert!(max_rel(&fused.0, &want, 1.0) < 1e-5, "hidden {hidden}");
        }
    }

    #[test]
    fn the_post_norm_weight_is_given_exactly_when_the_spec_says_so() {
        let spec = ResidualRmsNorm {
            hidden: 64,
            eps: 1e-6,
            weight_offset: 0.0,
            out: OutFormat::F32,
            post_norm: true,
            m: 1,
        };
        let v = vec![1.0f32; 64];
        let err = residual_rmsnorm(&spec, &v, &v, None, &v).unwrap_err();
        assert!(matches!(err, MirrorError::Spec { .. }), "{err}");
        let plain = ResidualRmsNorm {
            post_norm: false,
            ..spec
        };
        let err = residual_rmsnorm(&plain, &v, &v, Some(&v), &v).unwrap_err();
        assert!(matches!(err, MirrorError::Spec { .. }), "{err}");
        let err = residual_rmsnorm(&spec, &v, &v, Some(&v[..63]), &v).unwrap_err();
        assert!(
            matches!(
                err,
                MirrorError::Length {
                    what: "rw",
                    expected: 64,
                    found: 63,
                    ..
                }
            ),
            "{err}"
        );
    }
}
