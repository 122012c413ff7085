//! Argmax over f32 logits, as a sequential CPU argmax: the first index of the largest
//! value (`-0.0 == +0.0`, so the earlier of the two zeros wins a tie between them). NaN
//! ranks above every number: if any value is NaN the answer is the index of the first NaN
//! (numpy's and torch's convention), so a broken forward pass is visible.

/// The index of the largest value of `x` (non-empty).
pub fn argmax(x: &[f32]) -> u32 {
    assert!(!x.is_empty(), "argmax of an empty vector");
    let mut best = 0usize;
    for (i, v) in x.iter().enumerate().skip(1) {
        let b = x[best];
        let better = !b.is_nan() && (v.is_nan() || *v > b);
        if better {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::argmax;

    #[test]
    fn by_hand() {
        assert_eq!(argmax(&[1.0]), 0);
        assert_eq!(argmax(&[1.0, 3.0, 2.0]), 1);
        assert_eq!(argmax(&[3.0, 1.0, 3.0]), 0, "ties: the lowest index");
        assert_eq!(argmax(&[-1.0, 2.0, 2.0, 2.0]), 1);
        assert_eq!(argmax(&[-1.0, -0.0, 0.0]), 1, "the zeros tie");
        assert_eq!(argmax(&[-1.0, 0.0, -0.0]), 1);
        assert_eq!(argmax(&[f32::NEG_INFINITY; 4]), 0);
        assert_eq!(argmax(&[1.0, f32::INFINITY, 2.0]), 1);
        assert_eq!(
            argmax(&[1.0, f32::INFINITY, f32::NAN, f32::NAN]),
            2,
            "NaN wins"
        );
        assert_eq!(argmax(&[f32::NAN, 5.0]), 0);
        assert_eq!(argmax(&[1.0, 2.0, 7.0]), 2);
    }
}
