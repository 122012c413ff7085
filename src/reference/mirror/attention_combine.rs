//! Mirror of the `attention_combine` kernel: per head and dim, over the chunks holding an
//! attended position in ascending order, `M = max m_c` (`max.f32`), then
//! `w = 2^(m_c - M)` (`sub.rn`, [`exp2_f32`]), `L = fma.rn(w, l_c, L)`,
//! `O = fma.rn(w, o_c, O)`; `out = div.rn(O, L)`, or 0 where `L` is not positive.

use ptx_gen::kernels::{exp2_f32, AttentionCombine};

use super::attention::attended_range;
use super::{check_len, check_spec, MirrorError};

/// The combine kernel for one sequence: `f32[n_heads][head_dim]`.
pub fn attention_combine(
    spec: &AttentionCombine,
    part_o: &[f32],
    part_ml: &[f32],
    seq_len: u32,
) -> Result<Vec<f32>, MirrorError> {
    const K: &str = "attention_combine";
    check_spec(K, spec)?;
    let (h_n, d, nc) = (
        spec.n_heads as usize,
        spec.head_dim as usize,
        spec.n_chunks() as usize,
    );
    check_len(K, "part_o", h_n * nc * d, part_o.len())?;
    check_len(K, "part_ml", h_n * nc * 2, part_ml.len())?;
    let (seq, lo) = attended_range(seq_len, spec.max_ctx, spec.window);
    let shift = spec.chunk.trailing_zeros();
    let (c0, c1) = (
        (lo >> shift) as usize,
        ((seq + spec.chunk - 1) >> shift) as usize,
    );
    let mut out = vec![0f32; h_n * d];
    for h in 0..h_n {
        let ml = |c: usize| (part_ml[(h * nc + c) * 2], part_ml[(h * nc + c) * 2 + 1]);
        let m = (c0..c1).fold(f32::NEG_INFINITY, |m, c| m.max(ml(c).0));
        for (t, o) in out[h * d..(h + 1) * d].iter_mut().enumerate() {
            let (mut l_all, mut o_all) = (0f32, 0f32);
            for c in c0..c1 {
                let (mc, lc) = ml(c);
                let w = exp2_f32(mc - m);
                l_all = w.mul_add(lc, l_all);
                o_all = w.mul_add(part_o[(h * nc + c) * d + t], o_all);
            }
            *o = if l_all > 0.0 { o_all / l_all } else { 0.0 };
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_two_chunks_by_hand() {
        // Two chunks of 128, seq 200: chunk 0 {m = 0, l = 2, o = 4}, chunk 1 {m = -1, l = 2,
        // o = 6}: M = 0, L = 2 + 2/2 = 3, O = 4 + 6/2 = 7.
        let spec = AttentionCombine {
            n_heads: 1,
            head_dim: 32,
            max_ctx: 256,
            chunk: 128,
            window: None,
            m: 1,
            out: ptx_gen::kernels::OutFormat::F32,
        };
        let mut po = vec![4.0f32; 64];
        po[32..].fill(6.0);
        let out = attention_combine(&spec, &po, &[0.0, 2.0, -1.0, 2.0], 200).unwrap();
        assert!(out.iter().all(|v| *v == 7.0 / 3.0), "{out:?}");
        // Only chunk 0 attended (seq 100): its own o / l.
        let out = attention_combine(&spec, &po, &[0.0, 2.0, f32::NAN, f32::NAN], 100).unwrap();
        assert!(out.iter().all(|v| *v == 2.0));
        assert!(attention_combine(&spec, &po[1..], &[0.0; 4], 1).is_err());
    }
}
