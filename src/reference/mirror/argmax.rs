//! Mirror of the two `argmax` kernels: every logit becomes the u64 candidate
//! `order_key(x) << 32 | !index`, the partial kernel writes the unsigned maximum of each
//! block of `ARGMAX_BLOCK_VALUES` logits, the final kernel the complement of the low half of
//! the maximum of those. Integer maxima over a total order: no rounding at all.

use ptx_gen::kernels::ARGMAX_BLOCK_VALUES;

use super::MirrorError;

/// The u32 whose unsigned order is the float order of `x`: negatives flipped, the rest with
/// the sign bit set, both zeros the key of +0, every NaN `u32::MAX`.
pub fn order_key(x: f32) -> u32 {
    let bits = x.to_bits();
    if x.is_nan() {
        u32::MAX
    } else if x == 0.0 {
        0x8000_0000
    } else if bits & 0x8000_0000 != 0 {
        !bits
    } else {
        bits | 0x8000_0000
    }
}

/// The candidate of logit `x` at `index`.
pub fn candidate(x: f32, index: u32) -> u64 {
    (u64::from(order_key(x)) << 32) | u64::from(!index)
}

/// The partial kernel: one candidate per block of `ARGMAX_BLOCK_VALUES` logits.
pub fn partials(logits: &[f32]) -> Result<Vec<u64>, MirrorError> {
    if logits.is_empty() || logits.len() > u32::MAX as usize {
        return Err(MirrorError::Length {
            kernel: "argmax_partial",
            what: "logits",
            expected: 1,
            found: logits.len(),
        });
    }
    Ok(logits
        .chunks(ARGMAX_BLOCK_VALUES as usize)
        .enumerate()
        .map(|(b, block)| {
            let base = b * ARGMAX_BLOCK_VALUES as usize;
            block
                .iter()
                .enumerate()
                .map(|(j, x)| candidate(*x, (base + j) as u32))
                .max()
                .unwrap_or(0)
        })
        .collect())
}

/// The final kernel: the index of the best candidate.
pub fn index(partials: &[u64]) -> u32 {
    !(partials.iter().copied().max().unwrap_or(0) as u32)
}

#[cfg(test)]
mod tests {
    use super::super::testing::Rng;
    use super::*;

    #[test]
    fn agrees_with_the_sequential_argmax() {
        let mut rng = Rng(8);
        for n in [1usize, 7, 2048, 2049, 10_000] {
            let mut x = rng.vec(n, 5.0);
            assert_eq!(
                index(&partials(&x).unwrap()),
                crate::reference::argmax::argmax(&x)
            );
            if n > 3 {
                x[n - 2] = f32::NAN;
                x[n - 1] = f32::NAN;
                assert_eq!(index(&partials(&x).unwrap()), (n - 2) as u32);
                x[1] = 100.0;
                x[3] = 100.0;
                x[n - 2] = 0.0;
                x[n - 1] = 0.0;
                assert_eq!(index(&partials(&x).unwrap()), 1, "ties: the lowest index");
            }
        }
        assert!(partials(&[]).is_err());
    }
}
