//! Decode attention for one query token over an f16 KV cache, in f64, from the definition:
//! for query head h (kv head `h / (n_heads / n_kv_heads)`) and the attended positions
//! `p` in `[lo, seq_len)`, `lo = seq_len - window` (0 without a window or when the window is
//! longer than `seq_len`):
//!
//! ```text
//! logit_p = scale * sum_i q[h][i] * k[kv][p][i]
//! logit_p = cap * tanh(logit_p / cap)                 (with a soft-cap)
//! out[h]  = sum_p softmax(logit)_p * v[kv][p]
//! ```
//!
//! The caches are `f16[n_kv_heads][max_ctx][head_dim]`, converted to f64 exactly.

use half::f16;
use ptx_gen::kernels::DecodeAttention;

/// The attended positions `[lo, seq_len)` for a window.
pub fn attended(seq_len: u32, window: Option<u32>) -> std::ops::Range<u32> {
    let lo = window.map_or(0, |w| seq_len.saturating_sub(w));
    lo..seq_len
}

/// The logits of head `h` over the attended positions (scaled and soft-capped), in f64.
pub fn logits(
    spec: &DecodeAttention,
    q: &[f32],
    k_cache: &[f16],
    h: usize,
    seq_len: u32,
) -> Vec<f64> {
    let d = spec.head_dim as usize;
    let group = (spec.n_heads / spec.n_kv_heads) as usize;
    let kv = h / group;
    let qh = &q[h * d..(h + 1) * d];
    attended(seq_len, spec.window)
        .map(|p| {
            let row = (kv * spec.max_ctx as usize + p as usize) * d;
            let dot: f64 = qh
                .iter()
                .zip(&k_cache[row..row + d])
                .map(|(a, b)| *a as f64 * b.to_f64())
                .sum();
            let x = spec.scale as f64 * dot;
            match spec.softcap {
                Some(cap) => cap as f64 * (x / cap as f64).tanh(),
                None => x,
            }
        })
        .collect()
}

/// Attention output `f64[n_heads][head_dim]` of one token. `seq_len` must be in
/// `1..=max_ctx`; `q` is `f32[n_heads][head_dim]`.
pub fn decode_attention_f64(
    spec: &DecodeAttention,
    q: &[f32],
    k_cache: &[f16],
    v_cache: &[f16],
    seq_len: u32,
) -> Vec<f64> {
    let (h_n, d) = (spec.n_heads as usize, spec.head_dim as usize);
    let cache_len = spec.n_kv_heads as usize * spec.max_ctx as usize * d;
    assert_eq!(q.len(), h_n * d, "attention: q is f32[{h_n}][{d}]");
    assert_eq!(
        k_cache.len(),
        cache_len,
        "attention: k_cache is f16[n_kv_heads][max_ctx][head_dim]"
    );
    assert_eq!(
        v_cache.len(),
        cache_len,
        "attention: v_cache is f16[n_kv_heads][max_ctx][head_dim]"
    );
    assert!(
        (1..=spec.max_ctx).contains(&seq_len),
        "attention: seq_len {seq_len} outside 1..={}",
        spec.max_ctx
    );
    let group = (spec.n_heads / spec.n_kv_heads) as usize;
    let mut out = vec![0f64; h_n * d];
    for h in 0..h_n {
        let kv = h / group;
        let l = logits(spec, q, k_cache, h, seq_len);
        let m = l.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let w: Vec<f64> = l.iter().map(|x| (x - m).exp()).collect();
        let sum: f64 = w.iter().sum();
        let o = &mut out[h * d..(h + 1) * d];
        for (p, wp) in attended(seq_len, spec.window).zip(&w) {
            let row = (kv * spec.max_ctx as usize + p as usize) * d;
            for (oi, v) in o.iter_mut().zip(&v_cache[row..row + d]) {
                *oi += wp * v.to_f64();
            }
        }
        o.iter_mut().for_each(|x| *x /= sum);
    }
    out
}

/// [`decode_attention_f64`] rounded to f32.
pub fn decode_attention(
    spec: &DecodeAttention,
    q: &[f32],
    k_cache: &[f16],
    v_cache: &[f16],
    seq_len: u32,
) -> Vec<f32> {
    decode_attention_f64(spec, q, k_cache, v_cache, seq_len)
        .into_iter()
        .map(|x| x as f32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(n_heads: u32, n_kv_heads: u32, head_dim: u32, max_ctx: u32) -> DecodeAttention {
        DecodeAttention {
            n_heads,
            n_kv_heads,
            head_dim,
            max_ctx,
            scale: 1.0,
            window: None,
            softcap: None,
            m: 1,
        }
    }

    fn h(v: &[f32]) -> Vec<f16> {
        v.iter().map(|x| f16::from_f32(*x)).collect()
    }

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-6, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn one_position_returns_its_value_row() {
        let s = spec(2, 1, 2, 3);
        let k = h(&[1.0, 2.0, 9.0, 9.0, 9.0, 9.0]);
        let v = h(&[0.5, -3.0, 7.0, 7.0, 7.0, 7.0]);
        let out = decode_attention(&s, &[0.3, -1.0, 5.0, 2.0], &k, &v, 1);
        assert_eq!(out, vec![0.5, -3.0, 0.5, -3.0]);
    }

    #[test]
    fn equal_logits_average_the_values() {
        let s = spec(1, 1, 2, 2);
        let k = h(&[1.0, 0.0, 1.0, 0.0]);
        let v = h(&[1.0, 2.0, 3.0, -6.0]);
        close(&decode_attention(&s, &[4.0, 0.0], &k, &v, 2), &[2.0, -2.0]);
    }

    #[test]
    fn weights_follow_the_scaled_logits() {
        // logits 0 and ln 3 (scale 0.5 * q 2 ln 3 * k 1): weights 1/4 and 3/4.
        let s = DecodeAttention {
            scale: 0.5,
            ..spec(1, 1, 2, 2)
        };
        let k = h(&[0.0, 0.0, 1.0, 0.0]);
        let v = h(&[4.0, 8.0, 8.0, -4.0]);
        let q = [2.0 * 3f32.ln(), 0.0];
        close(&decode_attention(&s, &q, &k, &v, 2), &[7.0, -1.0]);
    }

    #[test]
    fn the_window_keeps_the_last_positions() {
        let s = DecodeAttention {
            window: Some(1),
            ..spec(1, 1, 1, 4)
        };
        let k = h(&[5.0, 5.0, 0.0, 7.0]);
        let v = h(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(decode_attention(&s, &[1.0], &k, &v, 3), vec![3.0]);
        let s2 = DecodeAttention {
            window: Some(2),
            ..s
        };
        // positions 1 and 2: logits 5 and 0.
        let w = 1.0 / (1.0 + (-5f64).exp());
        let want = (2.0 * w + 3.0 * (1.0 - w)) as f32;
        close(&decode_attention(&s2, &[1.0], &k, &v, 3), &[want]);
        assert_eq!(attended(3, Some(10)), 0..3);
    }

    #[test]
    fn the_soft_cap_bounds_the_logits() {
        // logits 100 and 0 with cap 1: capped to tanh(100) = 1 and 0.
        let s = DecodeAttention {
            softcap: Some(1.0),
            ..spec(1, 1, 1, 2)
        };
        let k = h(&[100.0, 0.0]);
        let v = h(&[1.0, 0.0]);
        let e = std::f64::consts::E;
        close(
            &decode_attention(&s, &[1.0], &k, &v, 2),
            &[(e / (e + 1.0)) as f32],
        );
        assert_eq!(logits(&s, &[1.0], &k, 0, 2), vec![1.0, 0.0]);
    }

    #[test]
    fn query_heads_use_their_group_kv_head() {
        // 4 query heads, 2 kv heads: heads 0, 1 read kv 0, heads 2, 3 read kv 1.
        let s = spec(4, 2, 1, 1);
        let k = h(&[1.0, 1.0]);
        let v = h(&[10.0, 20.0]);
        assert_eq!(
            decode_attention(&s, &[1.0; 4], &k, &v, 1),
            vec![10.0, 10.0, 20.0, 20.0]
        );
    }
}
