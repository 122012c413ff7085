//! Per-head RMSNorm (QK norm): every row of `head_dim` values normalized on its own with the
//! one weight of `head_dim` values, from [`super::rmsnorm`]'s definition.

use super::rmsnorm::rmsnorm;

/// Normalizes each head of `x` (`x.len()` a multiple of `head_dim`).
pub fn head_rmsnorm(x: &[f32], w: &[f32], eps: f32, weight_offset: f32) -> Vec<f32> {
    let head_dim = w.len();
    assert!(
        head_dim > 0 && x.len() % head_dim == 0,
        "head_rmsnorm: x is not whole heads"
    );
    x.chunks_exact(head_dim)
        .flat_map(|head| rmsnorm(head, w, eps, weight_offset))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_head_has_its_own_scale() {
        // Head 0 = (3, 4): rms sqrt(12.5); head 1 = (6, 8): rms sqrt(50).
        let y = head_rmsnorm(&[3.0, 4.0, 6.0, 8.0], &[1.0, 1.0], 0.0, 0.0);
        let (a, b) = (12.5f32.sqrt(), 50f32.sqrt());
        let want = [3.0 / a, 4.0 / a, 6.0 / b, 8.0 / b];
        for (g, w) in y.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{y:?}");
        }
        // Both heads are the same direction: the same normalized values.
        assert!((y[0] - y[2]).abs() < 1e-6 && (y[1] - y[3]).abs() < 1e-6);
    }
}
