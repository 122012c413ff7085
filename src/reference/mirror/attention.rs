//! Mirror of the split `attention` kernel (see `ptx-gen`'s `kernels/attention.rs`). Block
//! (chunk c, kv head) walks the attended positions `[pb, pe)` of its chunk in tiles of
//! [`DecodeAttention::tile`] positions, from the tile holding `pb`:
//! 1. logits: q prescaled once (`mul.rn` by [`DecodeAttention::q_prescale`]), then one
//!    sequential `fma.rn` over head_dim per (position, head), f16 K converted exactly; with a
//!    soft-cap `(1 - 2 rcp.rn(2^dot + 1)) * cap log2(e)` (`fma.rn`, `mul.rn`); positions
//!    outside `[pb, pe)` are -inf;
//! 2. softmax, per head: lane l holds positions `l, l + 32, ...` of the tile, takes their
//!    `max` in order, the warp's butterfly `max` gives the tile's; `m' = max(m, tile max)`,
//!    `alpha = 2^(m - m')`, `e = 2^(s - m')` (`sub.rn`, [`exp2_f32`]), lane sums of `e` in
//!    order (`add.rn`), butterfly sum, `l' = fma.rn(l, alpha, tile sum)`;
//! 3. V: thread (pair p of dims, row group r of R = 128 / (head_dim / 2)) first multiplies its
//!    accumulators by `alpha` (`mul.rn`), then for rows `r, r + R, ...` of the tile (a whole
//!    number of 8-row steps; rows outside `[pb, pe)` contribute `fma(0, 0, acc)`) adds
//!    `fma.rn(e, v, acc)`;
//! 4. after the last tile, row group 0 adds the groups' accumulators in order 1, ..., R-1
//!    (`add.rn`) and writes `o`; the softmax writes `{m, l}`.
//!
//! A chunk with no attended position writes `{-inf, 0}` and leaves its `o` untouched.

use half::f16;
use ptx_gen::kernels::{exp2_f32, DecodeAttention, ATTENTION_THREADS};

use super::reduce::{warp_max, warp_sum};
use super::{check_len, check_spec, MirrorError};

/// The clamped length and first attended position, as both attention kernels compute them:
/// `seq = min(seq_len, max_ctx)`, `lo = max(seq - window, 0)` (a window of `max_ctx` or more
/// excludes nothing).
pub fn attended_range(seq_len: u32, max_ctx: u32, window: Option<u32>) -> (u32, u32) {
    let seq = seq_len.min(max_ctx);
    let lo = match window {
        Some(w) if w < max_ctx => seq.saturating_sub(w),
        _ => 0,
    };
    (seq, lo)
}

/// The split kernel for one sequence: writes what the kernel writes of `part_o`
/// (`f32[n_heads][n_chunks][head_dim]`) and `part_ml` (`f32[n_heads][n_chunks][2]`).
#[allow(clippy::too_many_arguments)] // the kernel's buffers, each needed
pub fn attention_split(
    spec: &DecodeAttention,
    q: &[f32],
    k_cache: &[f16],
    v_cache: &[f16],
    seq_len: u32,
    part_o: &mut [f32],
    part_ml: &mut [f32],
) -> Result<(), MirrorError> {
    const K: &str = "attention";
    check_spec(K, spec)?;
    let tile = spec.tile().ok_or(MirrorError::Spec {
        kernel: K,
        message: "no shared-memory plan".into(),
    })? as usize;
    let (g, d) = (spec.group() as usize, spec.head_dim as usize);
    let (ctx, nc) = (spec.max_ctx as usize, spec.n_chunks() as usize);
    let cache = spec.n_kv_heads as usize * ctx * d;
    check_len(K, "q", spec.n_heads as usize * d, q.len())?;
    check_len(K, "k_cache", cache, k_cache.len())?;
    check_len(K, "v_cache", cache, v_cache.len())?;
    check_len(K, "part_o", spec.n_heads as usize * nc * d, part_o.len())?;
    check_len(K, "part_ml", spec.n_heads as usize * nc * 2, part_ml.len())?;

    let chunk = spec.chunk();
    let pairs = d / 2;
    let v_rows = ATTENTION_THREADS as usize / pairs;
    let v_steps = tile.div_ceil(v_rows).next_multiple_of(8);
    let (seq, lo) = attended_range(seq_len, spec.max_ctx, spec.window);
    let factor = spec.q_prescale();
    let cap = spec.softcap_factor();
    for kvh in 0..spec.n_kv_heads as usize {
        let head0 = kvh * g;
        let qs: Vec<f32> = q[head0 * d..(head0 + g) * d]
            .iter()
            .map(|v| v * factor)
            .collect();
        let row = |p: usize| (kvh * ctx + p) * d;
        for c in 0..nc {
            let cstart = c as u32 * chunk;
            let (pb, pe) = (cstart.max(lo), (cstart + chunk).min(seq));
            let ml_at = |h: usize| ((head0 + h) * nc + c) * 2;
            if pb >= pe {
                for h in 0..g {
                    part_ml[ml_at(h)] = f32::NEG_INFINITY;
                    part_ml[ml_at(h) + 1] = 0.0;
                }
                continue;
            }
            let mut m = vec![f32::NEG_INFINITY; g];
            let mut l = vec![0f32; g];
            // acc[row group][head][dim]
            let mut acc = vec![0f32; v_rows * g * d];
            let t0 = cstart + ((pb - cstart) & !(tile as u32 - 1));
            for ts in (t0..pe).step_by(tile) {
                let tlo = (pb.max(ts) - ts) as usize;
                let thi = (pe.min(ts + tile as u32) - ts) as usize;
                // Scores, then weights, of [head][position in the tile].
                let mut s = vec![f32::NEG_INFINITY; g * tile];
                for r in tlo..thi {
                    let k = &k_cache[row(ts as usize + r)..][..d];
                    for h in 0..g {
                        let mut dot = 0f32;
                        for (qv, kv) in qs[h * d..(h + 1) * d].iter().zip(k) {
                            dot = qv.mul_add(kv.to_f32(), dot);
                        }
                        s[h * tile + r] = match cap {
                            None => dot,
                            Some(f) => {
                                let r = 1.0 / (exp2_f32(dot) + 1.0);
                                r.mul_add(-2.0, 1.0) * f
                            }
                        };
                    }
                }
                let mut alpha = vec![0f32; g];
                for h in 0..g {
                    let sh = &mut s[h * tile..(h + 1) * tile];
                    let mut local = [0f32; 32];
                    for (lane, lm) in local.iter_mut().enumerate() {
                        *lm = (lane + 32..tile)
                            .step_by(32)
                            .fold(sh[lane], |a, p| a.max(sh[p]));
                    }
                    let m_new = m[h].max(warp_max(&local));
                    alpha[h] = exp2_f32(m[h] - m_new);
                    let mut sums = [0f32; 32];
                    for (lane, sum) in sums.iter_mut().enumerate() {
                        for (j, p) in (lane..tile).step_by(32).enumerate() {
                            let e = exp2_f32(sh[p] - m_new);
                            sh[p] = e;
                            *sum = if j == 0 { e } else { *sum + e };
                        }
                    }
                    l[h] = l[h].mul_add(alpha[h], warp_sum(&sums));
                    m[h] = m_new;
                }
                for (i, a) in acc.iter_mut().enumerate() {
                    *a *= alpha[(i / d) % g];
                }
                for vr in 0..v_rows {
                    for step in 0..v_steps {
                        let r = vr + step * v_rows;
                        let ok = r >= tlo && r < thi;
                        let v = ok.then(|| &v_cache[row(ts as usize + r)..][..d]);
                        for h in 0..g {
                            let pr = if ok { s[h * tile + r] } else { 0.0 };
                            let a = &mut acc[(vr * g + h) * d..][..d];
                            for (i, ai) in a.iter_mut().enumerate() {
                                let vi = v.map_or(0.0, |v| v[i].to_f32());
                                *ai = pr.mul_add(vi, *ai);
                            }
                        }
                    }
                }
            }
            for h in 0..g {
                part_ml[ml_at(h)] = m[h];
                part_ml[ml_at(h) + 1] = l[h];
                let out = &mut part_o[((head0 + h) * nc + c) * d..][..d];
                for (i, o) in out.iter_mut().enumerate() {
                    let mut sum = acc[h * d + i];
                    for vr in 1..v_rows {
                        sum += acc[(vr * g + h) * d + i];
                    }
                    *o = sum;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::attention_combine::attention_combine;
    use super::super::testing::Rng;
    use super::*;
    use ptx_gen::kernels::FamilySpec;

    fn spec(h: u32, kv: u32, d: u32, ctx: u32) -> DecodeAttention {
        DecodeAttention {
            n_heads: h,
            n_kv_heads: kv,
            head_dim: d,
            max_ctx: ctx,
            scale: 1.0 / (d as f32).sqrt(),
            window: None,
            softcap: None,
            m: 1,
        }
    }

    #[test]
    fn split_and_combine_agree_with_the_f64_reference() {
        let mut rng = Rng(10);
        let cases = [
            (spec(4, 4, 64, 700), 650),
            (spec(6, 2, 128, 300), 300),
            (spec(9, 3, 64, 520), 1),
            (spec(5, 1, 80, 400), 257),
            (
                DecodeAttention {
                    softcap: Some(30.0),
                    window: Some(200),
                    ..spec(8, 2, 256, 600)
                },
                590,
            ),
            (
                DecodeAttention {
                    window: Some(100),
                    ..spec(12, 4, 96, 1024)
                },
                700,
            ),
        ];
        for (s, seq_len) in cases {
            s.validate().unwrap();
            let (hd, kvd) = (
                (s.n_heads * s.head_dim) as usize,
                (s.n_kv_heads * s.max_ctx * s.head_dim) as usize,
            );
            // Large q so the softmax is peaked somewhere and flat elsewhere.
            let q = rng.vec(hd, 4.0);
            let kc: Vec<f16> = (0..kvd).map(|_| f16::from_f32(rng.f32(2.0))).collect();
            let vc: Vec<f16> = (0..kvd).map(|_| f16::from_f32(rng.f32(1.0))).collect();
            let nc = s.n_chunks() as usize;
            let mut po = vec![f32::NAN; s.n_heads as usize * nc * s.head_dim as usize];
            let mut ml = vec![f32::NAN; s.n_heads as usize * nc * 2];
            attention_split(&s, &q, &kc, &vc, seq_len, &mut po, &mut ml).unwrap();
            assert!(ml.iter().all(|v| !v.is_nan()), "every {{m, l}} is written");
            let got = attention_combine(&s.combine(), &po, &ml, seq_len).unwrap();
            let want = crate::reference::attention::decode_attention_f64(&s, &q, &kc, &vc, seq_len);
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (f64::from(*a) - b).abs() <= 2e-6 + 1e-5 * b.abs(),
                    "{}: value {i}: {a} vs {b}",
                    s.name()
                );
            }
        }
    }

    #[test]
    fn bad_lengths_are_errors() {
        let s = spec(4, 4, 64, 128);
        let (mut po, mut ml) = (vec![0f32; 4 * 64], vec![0f32; 8]);
        let kc = vec![f16::ZERO; 4 * 128 * 64];
        let r = attention_split(&s, &[0.0; 255], &kc, &kc, 1, &mut po, &mut ml);
        assert!(matches!(r, Err(MirrorError::Length { what: "q", .. })));
    }
}
