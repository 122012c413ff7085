//! RoPE on q and k plus the KV cache write of one position, from the definition:
//! pair i of a head (`(2i, 2i + 1)` in the norm style, `(i, i + rope_dims / 2)` in the neox
//! style) is rotated by the angle of row `pos`, pair i of the table (see [`super::rope`]):
//! `x' = x cos - y sin`, `y' = x sin + y cos`, each a fused multiply-add of a rounded product
//! (`x.mul_add(cos, -(y * sin))`, `x.mul_add(sin, y * cos)`) in f32. Dimensions past
//! `rope_dims` pass through. Slot `pos` of every kv head of the f16 caches
//! (`[n_kv_heads][max_ctx][head_dim]`) gets the rotated k and the v, rounded to nearest f16.
//! Positions `>= max_ctx` change nothing.

use half::f16;
use ptx_gen::kernels::RopeKv;

/// Applies RoPE to `q` and `k` in place and writes slot `pos` of `k_cache` / `v_cache`.
#[allow(clippy::too_many_arguments)]
pub fn rope_kv(
    spec: &RopeKv,
    table: &[f32],
    pos: u32,
    q: &mut [f32],
    k: &mut [f32],
    v: &[f32],
    k_cache: &mut [f16],
    v_cache: &mut [f16],
) {
    rope_kv_parts(
        spec,
        table,
        pos,
        Some(q),
        Some((k, k_cache)),
        Some((v, v_cache)),
    );
}

/// [`rope_kv`] on the parts a launch has (a GEMV's RoPE epilogue may hold Q and K without V,
/// or V alone): q rotated; k rotated and written to its cache; v written to its cache. The
/// table is read only where q or k is given.
pub fn rope_kv_parts(
    spec: &RopeKv,
    table: &[f32],
    pos: u32,
    q: Option<&mut [f32]>,
    k: Option<(&mut [f32], &mut [f16])>,
    v: Option<(&[f32], &mut [f16])>,
) {
    let d = spec.head_dim as usize;
    let half = (spec.rope_dims / 2) as usize;
    let ctx = spec.max_ctx as usize;
    let kv = spec.n_kv_heads as usize;
    if let Some(q) = &q {
        assert_eq!(q.len(), spec.n_heads as usize * d, "rope_kv: q");
    }
    for (what, x, cache) in [
        ("k", k.as_ref().map(|(x, c)| (x.len(), c.len()))),
        ("v", v.as_ref().map(|(x, c)| (x.len(), c.len()))),
    ]
    .into_iter()
    .filter_map(|(w, p)| p.map(|(x, c)| (w, x, c)))
    {
        assert_eq!(x, kv * d, "rope_kv: {what}");
        assert_eq!(cache, kv * ctx * d, "rope_kv: {what}_cache");
    }
    if pos as usize >= ctx {
        return;
    }
    let rotates = q.is_some() || k.is_some();
    if rotates {
        assert_eq!(table.len(), ctx * half * 2, "rope_kv: table");
    }
    let angles = || &table[pos as usize * half * 2..][..half * 2];
    if let Some(q) = q {
        for head in q.chunks_exact_mut(d) {
            rotate_head(spec, angles(), head);
        }
    }
    if let Some((k, k_cache)) = k {
        for head in k.chunks_exact_mut(d) {
            rotate_head(spec, angles(), head);
        }
        write_slot(spec, pos, k, k_cache);
    }
    if let Some((v, v_cache)) = v {
        write_slot(spec, pos, v, v_cache);
    }
}

/// Slot `pos` of every kv head of `cache` gets `x`, rounded to nearest f16.
fn write_slot(spec: &RopeKv, pos: u32, x: &[f32], cache: &mut [f16]) {
    let d = spec.head_dim as usize;
    let ctx = spec.max_ctx as usize;
    for (h, head) in x.chunks_exact(d).enumerate() {
        let slot = (h * ctx + pos as usize) * d;
        for (c, value) in cache[slot..slot + d].iter_mut().zip(head) {
            *c = f16::from_f32(*value);
        }
    }
}

/// Rotates the `rope_dims / 2` pairs of one head by `angles` (`(cos, sin)` per pair).
pub fn rotate_head(spec: &RopeKv, angles: &[f32], head: &mut [f32]) {
    for (i, cs) in angles.chunks_exact(2).enumerate() {
        let (a, b) = spec.style.pair(i as u32, spec.rope_dims);
        let (x, y) = (head[a as usize], head[b as usize]);
        let (c, s) = (cs[0], cs[1]);
        head[a as usize] = x.mul_add(c, -(y * s));
        head[b as usize] = x.mul_add(s, y * c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ptx_gen::kernels::RopeStyle;

    fn spec(style: RopeStyle, head_dim: u32, rope_dims: u32, max_ctx: u32) -> RopeKv {
        RopeKv {
            style,
            n_heads: 1,
            n_kv_heads: 1,
            head_dim,
            rope_dims,
            max_ctx,
            m: 1,
        }
    }

    #[test]
    fn a_quarter_turn_maps_x_to_y() {
        // Angles (cos, sin) = (0, 1) for pair 0 and (1, 0) for pair 1, exactly.
        let angles = [0.0, 1.0, 1.0, 0.0];
        let mut norm = [1.0, 2.0, 3.0, 4.0, 5.0];
        rotate_head(&spec(RopeStyle::Norm, 6, 4, 1), &angles, &mut norm);
        // Pair (0, 1): (1, 2) -> (-2, 1); pair (2, 3) unchanged; dim 4 passes through.
        assert_eq!(norm, [-2.0, 1.0, 3.0, 4.0, 5.0]);
        let mut neox = [1.0, 2.0, 3.0, 4.0, 5.0];
        rotate_head(&spec(RopeStyle::Neox, 6, 4, 1), &angles, &mut neox);
        // Pair (0, 2): (1, 3) -> (-3, 1); pair (1, 3) unchanged.
        assert_eq!(neox, [-3.0, 2.0, 1.0, 4.0, 5.0]);
    }

    #[test]
    fn the_cache_slot_of_pos_gets_rotated_k_and_v() {
        let s = spec(RopeStyle::Norm, 2, 2, 3);
        // Position 1: (cos, sin) = (0, -1), exact.
        let table = [1.0, 0.0, 0.0, -1.0, 1.0, 0.0];
        let (mut q, mut k, v) = (vec![1.0, 2.0], vec![3.0, 4.0], vec![0.5, 1e-8]);
        let nan = f16::from_bits(0x7e00);
        let (mut kc, mut vc) = (vec![nan; 6], vec![nan; 6]);
        rope_kv(&s, &table, 1, &mut q, &mut k, &v, &mut kc, &mut vc);
        assert_eq!(q, vec![2.0, -1.0]);
        assert_eq!(k, vec![4.0, -3.0]);
        assert_eq!(kc[2..4], [f16::from_f32(4.0), f16::from_f32(-3.0)]);
        assert_eq!(vc[2..4], [f16::from_f32(0.5), f16::from_f32(1e-8)]);
        assert!(kc[..2].iter().chain(&kc[4..]).all(|h| h.is_nan()));
        // Past the end nothing changes.
        rope_kv(&s, &table, 3, &mut q, &mut k, &v, &mut kc, &mut vc);
        assert_eq!((q, k), (vec![2.0, -1.0], vec![4.0, -3.0]));
    }

    #[test]
    fn rotation_preserves_the_norm() {
        let s = spec(RopeStyle::Neox, 8, 8, 100);
        let table = crate::reference::rope::rope_table(10000.0, 8, 100);
        let mut head = [0.3, -1.2, 2.5, 0.7, -0.1, 1.9, -2.2, 0.4];
        let before: f32 = head.iter().map(|v| v * v).sum();
        rotate_head(&s, &table[77 * 8..78 * 8], &mut head);
        let after: f32 = head.iter().map(|v| v * v).sum();
        assert!((before - after).abs() < 1e-5 * before, "{before} {after}");
    }
}
