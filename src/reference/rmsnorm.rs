//! RMSNorm: `y_i = x_i / sqrt(mean(x^2) + eps) * (w_i + offset)`, the sum of squares
//! accumulated in f64 as GGML's CPU backend does.

/// Normalizes `x` with weight `w` (same length).
pub fn rmsnorm(x: &[f32], w: &[f32], eps: f32, weight_offset: f32) -> Vec<f32> {
    assert_eq!(x.len(), w.len(), "rmsnorm: x and w differ in length");
    let sum: f64 = x.iter().map(|v| (*v as f64) * (*v as f64)).sum();
    let mean = (sum / x.len() as f64) as f32;
    let scale = 1.0f32 / (mean + eps).sqrt();
    x.iter()
        .zip(w)
        .map(|(v, g)| v * scale * (g + weight_offset))
        .collect()
}
