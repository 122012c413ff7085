//! Mirror of the `head_rmsnorm` kernel: one warp per head, lane l squares and sums (`fma.rn`)
//! its chunks `l, l + 32, ...` of `vec` values (float4 where head_dim allows), the warp's
//! butterfly sums the lanes, and the scale and per-value normalization are `rmsnorm`'s.

use ptx_gen::kernels::HeadRmsNorm;

use super::reduce::block_sum;
use super::rmsnorm::{normalize_row, scale_of, thread_sums};
use super::{check_len, check_spec, MirrorError};

/// The normalized heads (`x` is `f32[n_heads][head_dim]`, normalized in place by the kernel).
pub fn head_rmsnorm(spec: &HeadRmsNorm, x: &[f32], w: &[f32]) -> Result<Vec<f32>, MirrorError> {
    const K: &str = "head_rmsnorm";
    check_spec(K, spec)?;
    if spec.k_heads > 0 {
        return Err(MirrorError::Spec {
            kernel: K,
            message:
                "a launch with a second set of heads is mirrored set by set (HeadRmsNorm::sets)"
                    .to_string(),
        });
    }
    let d = spec.head_dim as usize;
    check_len(K, "x", spec.n_heads as usize * d, x.len())?;
    check_len(K, "w", d, w.len())?;
    let vec = [4, 2, 1].into_iter().find(|v| d % v == 0).unwrap_or(1);
    Ok(x.chunks_exact(d)
        .flat_map(|head| {
            let total = block_sum(&thread_sums(head, vec, 32));
            normalize_row(
                head,
                w,
                scale_of(total, spec.head_dim, spec.eps),
                spec.weight_offset,
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::super::testing::{max_rel, Rng};
    use super::*;

    #[test]
    fn agrees_with_the_f64_reference() {
        let mut rng = Rng(5);
        for (heads, d) in [(2usize, 64usize), (14, 128), (3, 256), (4, 80)] {
            let (x, w) = (rng.vec(heads * d, 3.0), rng.vec(d, 1.0));
            let spec = HeadRmsNorm {
                n_heads: heads as u32,
                head_dim: d as u32,
                eps: 1e-6,
                weight_offset: 0.0,
                k_heads: 0,
                m: 1,
            };
            let got = head_rmsnorm(&spec, &x, &w).unwrap();
            let mut want = Vec::new();
            for head in x.chunks_exact(d) {
                let sum: f64 = head.iter().map(|v| f64::from(*v).powi(2)).sum();
                let s = 1.0 / (sum / d as f64 + 1e-6f32 as f64).sqrt();
                want.extend(
                    head.iter()
                        .zip(&w)
                        .map(|(v, g)| f64::from(*v) * s * f64::from(*g)),
                );
            }
            assert!(max_rel(&got, &want, 1e-3) < 2e-6, "{heads} x {d}");
        }
    }
}
