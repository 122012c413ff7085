//! Mirror of the `rmsnorm` kernel, and the row-norm steps the fused norms share with it:
//! thread t of the block ([`RowLayout`]) squares and sums, with `fma.rn` in load order, the
//! values of its chunks `t, t + threads, ...` (`vec` floats each); the block sums the threads'
//! values ([`super::reduce::block_sum`]); `scale = rcp.rn(sqrt.rn(div.rn(sum, n) + eps))`
//! (`add.rn`); `y = mul.rn(mul.rn(x, scale), add.rn(w, offset))` (the add only where the
//! offset is not 0).

use ptx_gen::kernels::{RmsNorm, RowLayout};

use super::reduce::block_sum;
use super::{check_len, check_spec, MirrorError};

/// Each thread's sum of squares when `threads` threads hold chunks of `vec` values of `x`,
/// thread t the chunks `t, t + threads, ...`.
pub fn thread_sums(x: &[f32], vec: usize, threads: usize) -> Vec<f32> {
    let chunks = x.len() / vec;
    (0..threads)
        .map(|t| {
            let mut acc = 0f32;
            for c in (t..chunks).step_by(threads) {
                for v in &x[c * vec..(c + 1) * vec] {
                    acc = v.mul_add(*v, acc);
                }
            }
            acc
        })
        .collect()
}

/// `1 / sqrt(total / n + eps)` as the kernels round it.
pub fn scale_of(total: f32, n: u32, eps: f32) -> f32 {
    let mean = total / n as f32;
    let root = (mean + eps).sqrt();
    1.0 / root
}

/// The scale of a whole row, laid out over a block as the row-norm kernels lay it out.
pub fn row_scale(x: &[f32], eps: f32) -> f32 {
    let layout = RowLayout::new(x.len() as u32);
    let sums = thread_sums(x, layout.vec as usize, layout.threads as usize);
    scale_of(block_sum(&sums), x.len() as u32, eps)
}

/// One normalized value.
pub fn normalize(x: f32, scale: f32, w: f32, weight_offset: f32) -> f32 {
    let g = if weight_offset != 0.0 {
        w + weight_offset
    } else {
        w
    };
    (x * scale) * g
}

/// The normalized row.
pub fn normalize_row(x: &[f32], w: &[f32], scale: f32, weight_offset: f32) -> Vec<f32> {
    x.iter()
        .zip(w)
        .map(|(v, g)| normalize(*v, scale, *g, weight_offset))
        .collect()
}

/// The `rmsnorm` kernel on one vector.
pub fn rmsnorm(spec: &RmsNorm, x: &[f32], w: &[f32]) -> Result<Vec<f32>, MirrorError> {
    const K: &str = "rmsnorm";
    check_spec(K, spec)?;
    let n = spec.hidden as usize;
    check_len(K, "x", n, x.len())?;
    check_len(K, "w", n, w.len())?;
    Ok(normalize_row(
        x,
        w,
        row_scale(x, spec.eps),
        spec.weight_offset,
    ))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{max_rel, Rng};
    use super::*;

    #[test]
    fn agrees_with_the_f64_reference() {
        let mut rng = Rng(1);
        for (hidden, off) in [(64, 0.0), (99, 0.0), (130, 1.0), (896, 0.0), (4096, 0.0)] {
            for _ in 0..3 {
                let x = rng.vec(hidden, 3.0);
                let w = rng.vec(hidden, 1.5);
                let spec = RmsNorm {
                    hidden: hidden as u32,
                    eps: 1e-5,
                    weight_offset: off,
                    m: 1,
                };
                let got = rmsnorm(&spec, &x, &w).unwrap();
                let sum: f64 = x.iter().map(|v| f64::from(*v).powi(2)).sum();
                let s = 1.0 / (sum / hidden as f64 + 1e-5f32 as f64).sqrt();
                let want: Vec<f64> = x
                    .iter()
                    .zip(&w)
                    .map(|(v, g)| f64::from(*v) * s * (f64::from(*g) + f64::from(off)))
                    .collect();
                assert!(max_rel(&got, &want, 1e-3) < 2e-6, "hidden {hidden}");
                let r = crate::reference::rmsnorm(&x, &w, 1e-5, off);
                assert!(got
                    .iter()
                    .zip(&r)
                    .all(|(a, b)| (a - b).abs() <= 1e-5 * b.abs().max(1e-2)));
            }
        }
    }

    #[test]
    fn bad_lengths_are_errors() {
        let spec = RmsNorm {
            hidden: 64,
            eps: 1e-5,
            weight_offset: 0.0,
            m: 1,
        };
        assert!(matches!(
            rmsnorm(&spec, &[1.0; 63], &[1.0; 64]),
            Err(MirrorError::Length { what: "x", .. })
        ));
        let bad = RmsNorm { hidden: 0, ..spec };
        assert!(matches!(
            rmsnorm(&bad, &[], &[]),
            Err(MirrorError::Spec { .. })
        ));
    }

    #[test]
    fn the_reduction_order_is_the_kernels() {
        // 4096 values over 256 threads of float4: thread 0 holds x[0..4], x[1024..1028], ...
        let layout = RowLayout::new(4096);
        assert_eq!((layout.vec, layout.threads), (4, 256));
        let mut x = vec![0f32; 4096];
        x[0] = 1.0;
        x[1024] = 2.0;
        let sums = thread_sums(&x, 4, 256);
        assert_eq!(sums[0], 5.0);
        assert!(sums[1..].iter().all(|s| *s == 0.0));
    }
}
