//! The reductions of `ptx-gen`'s `reduce.rs`, on per-thread values: the warp butterfly (lane
//! i combines its value with lane `i ^ m` for m = 16, 8, 4, 2, 1) and the block reduction
//! (each warp's butterfly, the partials through shared memory, then one more butterfly with
//! lanes past the last warp holding the identity). Addition is commutative in IEEE
//! arithmetic, so every lane ends with the same bits; lane 0's are returned.

/// The butterfly sum of one warp's 32 values.
pub fn warp_sum(lanes: &[f32; 32]) -> f32 {
    let mut v = *lanes;
    for m in [16, 8, 4, 2, 1] {
        let prev = v;
        for (i, x) in v.iter_mut().enumerate() {
            *x = prev[i] + prev[i ^ m];
        }
    }
    v[0]
}

/// The butterfly maximum of one warp's 32 values (PTX `max.f32`: a NaN operand yields the
/// other one, as Rust's `f32::max`).
pub fn warp_max(lanes: &[f32; 32]) -> f32 {
    let mut v = *lanes;
    for m in [16, 8, 4, 2, 1] {
        let prev = v;
        for (i, x) in v.iter_mut().enumerate() {
            *x = prev[i].max(prev[i ^ m]);
        }
    }
    v[0]
}

/// The block sum of `threads.len()` per-thread values (a positive multiple of 32; the
/// generators never build another block).
pub fn block_sum(threads: &[f32]) -> f32 {
    let partials: Vec<f32> = threads
        .chunks(32)
        .map(|w| {
            let mut lanes = [0f32; 32];
            lanes[..w.len()].copy_from_slice(w);
            warp_sum(&lanes)
        })
        .collect();
    if partials.len() == 1 {
        return partials[0];
    }
    let mut lanes = [0f32; 32];
    for (l, p) in lanes.iter_mut().zip(&partials) {
        *l = *p;
    }
    warp_sum(&lanes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_butterfly_order_is_not_the_sequential_order() {
        // 1 + 2^-24 * 31 summed sequentially rounds every step away; the butterfly pairs the
        // small values first and keeps part of them.
        let mut lanes = [2f32.powi(-24); 32];
        lanes[0] = 1.0;
        let seq: f32 = lanes.iter().sum();
        assert_eq!(seq, 1.0);
        let tree = warp_sum(&lanes);
        assert!(tree > 1.0, "{tree}");
        // The exact sum is 1 + 31 * 2^-24; the tree is within an ulp of it.
        assert!((f64::from(tree) - (1.0 + 31.0 * 2f64.powi(-24))).abs() <= 2f64.powi(-23));
    }

    #[test]
    fn block_sums_and_maxima() {
        let v: Vec<f32> = (0..256).map(|i| i as f32).collect();
        assert_eq!(block_sum(&v), (255 * 256 / 2) as f32);
        assert_eq!(block_sum(&v[..32]), (31 * 32 / 2) as f32);
        let mut lanes = [-3.0f32; 32];
        lanes[17] = 2.5;
        assert_eq!(warp_max(&lanes), 2.5);
    }
}
