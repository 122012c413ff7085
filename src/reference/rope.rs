//! The RoPE angle table the `rope_kv` kernel reads: `f32[max_ctx][rope_dims / 2][2]` holding
//! `(cos, sin)` of `pos * theta^(-2i / rope_dims)` (divided by `freq_factors[i]` when a model
//! has them, as llama3's `rope_freqs`), computed in f64 and rounded to f32. The runtime uploads
//! one table per distinct theta (Gemma3's local and global layers).

/// The table for `theta`, `rope_dims` rotated dimensions (even) and `max_ctx` positions.
pub fn rope_table(theta: f64, rope_dims: u32, max_ctx: u32) -> Vec<f32> {
    rope_table_with_factors(theta, rope_dims, max_ctx, None)
}

/// Like [`rope_table`], with the frequency of pair `i` divided by `freq_factors[i]`
/// (`rope_dims / 2` factors).
pub fn rope_table_with_factors(
    theta: f64,
    rope_dims: u32,
    max_ctx: u32,
    freq_factors: Option<&[f32]>,
) -> Vec<f32> {
    assert!(
        rope_dims >= 2 && rope_dims % 2 == 0,
        "rope_table: rope_dims {rope_dims} must be even"
    );
    let half = (rope_dims / 2) as usize;
    if let Some(f) = freq_factors {
        assert_eq!(
            f.len(),
            half,
            "rope_table: one frequency factor per rotated pair"
        );
    }
    let freqs: Vec<f64> = (0..half)
        .map(|i| {
            let base = theta.powf(-2.0 * i as f64 / rope_dims as f64);
            base / freq_factors.map_or(1.0, |f| f[i] as f64)
        })
        .collect();
    let mut table = Vec::with_capacity(max_ctx as usize * half * 2);
    for pos in 0..max_ctx {
        for f in &freqs {
            let angle = pos as f64 * f;
            table.push(angle.cos() as f32);
            table.push(angle.sin() as f32);
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn angles_are_pos_times_theta_powers() {
        // theta 10000, 4 dims: frequencies 1 and 10000^(-1/2) = 0.01.
        let t = rope_table(10000.0, 4, 3);
        assert_eq!(t.len(), 3 * 2 * 2);
        assert_eq!(&t[0..4], &[1.0, 0.0, 1.0, 0.0]);
        assert_eq!(t[4], 1f64.cos() as f32);
        assert_eq!(t[5], 1f64.sin() as f32);
        assert_eq!(t[6], 0.01f64.cos() as f32);
        assert_eq!(t[7], 0.01f64.sin() as f32);
        assert_eq!(t[8], 2f64.cos() as f32);
        assert_eq!(t[11], 0.02f64.sin() as f32);
    }

    #[test]
    fn frequency_factors_divide_the_frequencies() {
        let t = rope_table_with_factors(10000.0, 4, 2, Some(&[1.0, 4.0]));
        assert_eq!(t[6], 0.0025f64.cos() as f32);
        assert_eq!(t[7], 0.0025f64.sin() as f32);
    }
}
