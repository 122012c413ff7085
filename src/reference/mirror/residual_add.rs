//! Mirror of the `residual_add` kernel: `y = add.rn(y, x)`, or with a scale
//! `y = add.rn(y, mul.rn(x, scale))` (never fused).

use ptx_gen::kernels::ResidualAdd;

use super::{check_len, check_spec, MirrorError};

/// The updated `y`.
pub fn residual_add(spec: &ResidualAdd, y: &[f32], x: &[f32]) -> Result<Vec<f32>, MirrorError> {
    const K: &str = "residual_add";
    check_spec(K, spec)?;
    check_len(K, "x", spec.n as usize, x.len())?;
    check_len(K, "y", spec.n as usize, y.len())?;
    Ok(y.iter()
        .zip(x)
        .map(|(yv, xv)| {
            let t = if spec.scale == 1.0 {
                *xv
            } else {
                xv * spec.scale
            };
            yv + t
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::super::testing::Rng;
    use super::*;

    #[test]
    fn agrees_with_the_reference() {
        let mut rng = Rng(6);
        let (x, y) = (rng.vec(1001, 3.0), rng.vec(1001, 3.0));
        for scale in [1.0, 0.7] {
            let spec = ResidualAdd {
                n: 1001,
                scale,
                m: 1,
            };
            let got = residual_add(&spec, &y, &x).unwrap();
            for ((g, a), b) in got.iter().zip(&y).zip(&x) {
                let want = f64::from(*a) + f64::from(*b) * f64::from(scale);
                let size = f64::from(*a).abs() + (f64::from(*b) * f64::from(scale)).abs();
                assert!((f64::from(*g) - want).abs() <= 1.2e-7 * size);
            }
            assert_eq!(
                got,
                crate::reference::residual_add::residual_add(&y, &x, scale)
            );
        }
    }
}
