//! Residual add: `y_i + x_i * scale`, each operation rounded to f32 (no fused multiply-add;
//! with `scale == 1` the product is exact, so this is `y_i + x_i`).

/// The updated residual stream.
pub fn residual_add(y: &[f32], x: &[f32], scale: f32) -> Vec<f32> {
    assert_eq!(x.len(), y.len(), "residual_add: x and y differ in length");
    y.iter().zip(x).map(|(yv, xv)| yv + xv * scale).collect()
}

#[cfg(test)]
mod tests {
    use super::residual_add;

    #[test]
    fn by_hand() {
        assert_eq!(residual_add(&[1.0, -2.0], &[0.5, 2.0], 1.0), vec![1.5, 0.0]);
        assert_eq!(residual_add(&[1.0, -2.0], &[0.5, 2.0], 2.0), vec![2.0, 2.0]);
        // Two roundings: x * scale = 1 + 2^-11 (+ 2^-24, a tie rounded to even), then - 1.
        // A fused multiply-add would keep the 2^-24.
        let a = 1.0 + 2f32.powi(-12);
        let got = residual_add(&[-1.0], &[a], a);
        assert_eq!(got, vec![2f32.powi(-11)]);
        assert_eq!(a.mul_add(a, -1.0), 2f32.powi(-11) + 2f32.powi(-24));
    }
}
