//! Residual add fused with RMSNorm: `x += residual` (f32 addition), then
//! `y = rmsnorm(x)` from [`super::rmsnorm`]'s definition.

use super::rmsnorm::rmsnorm;

/// Returns the updated `x` and the normalized vector.
pub fn residual_rmsnorm(
    x: &[f32],
    residual: &[f32],
    w: &[f32],
    eps: f32,
    weight_offset: f32,
) -> (Vec<f32>, Vec<f32>) {
    assert_eq!(
        x.len(),
        residual.len(),
        "residual_rmsnorm: x and residual differ in length"
    );
    let h: Vec<f32> = x.iter().zip(residual).map(|(a, r)| a + r).collect();
    let y = rmsnorm(&h, w, eps, weight_offset);
    (h, y)
}

/// With a post-norm: `x += rmsnorm(residual) * (rw + weight_offset)`, then as
/// [`residual_rmsnorm`]. Returns the updated `x` and the normalized vector.
pub fn post_residual_rmsnorm(
    x: &[f32],
    residual: &[f32],
    rw: &[f32],
    w: &[f32],
    eps: f32,
    weight_offset: f32,
) -> (Vec<f32>, Vec<f32>) {
    let t = rmsnorm(residual, rw, eps, weight_offset);
    residual_rmsnorm(x, &t, w, eps, weight_offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sum_is_normalized() {
        // h = (3, 4): mean(h^2) = 12.5, y = h / sqrt(12.5) * w.
        let (h, y) = residual_rmsnorm(&[1.0, 5.0], &[2.0, -1.0], &[1.0, 2.0], 0.0, 0.0);
        assert_eq!(h, vec![3.0, 4.0]);
        let r = 12.5f32.sqrt();
        assert!(
            (y[0] - 3.0 / r).abs() < 1e-6 && (y[1] - 8.0 / r).abs() < 1e-6,
            "{y:?}"
        );
        // Weight offset 1: w + 1.
        let (_, y1) = residual_rmsnorm(&[1.0, 5.0], &[2.0, -1.0], &[0.0, 1.0], 0.0, 1.0);
        assert!((y1[0] - y[0]).abs() < 1e-7 && (y1[1] - y[1]).abs() < 1e-7);
    }
}
