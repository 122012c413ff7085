//! Mirror of the `rope_kv` kernel. Its rotation of a pair `(x, y)` by `(c, s)` is
//! `x' = fma.rn(x, c, -mul.rn(y, s))`, `y' = fma.rn(x, s, mul.rn(y, c))`, and the cache gets
//! `cvt.rn.f16.f32` of the rotated k and of v; [`crate::reference::rope_kv`] computes exactly
//! that in f32 (`mul_add`), so the mirror is the reference, behind typed length checks.
//! A position `>= max_ctx` changes nothing.

use half::f16;
use ptx_gen::kernels::RopeKv;

use super::{check_len, check_spec, MirrorError};

/// Rotates `q` and `k` in place and writes slot `pos` of the caches
/// (`f16[n_kv_heads][max_ctx][head_dim]`); `table` is `f32[max_ctx][rope_dims / 2][2]`.
#[allow(clippy::too_many_arguments)] // the kernel's buffers, each needed
pub fn rope_kv(
    spec: &RopeKv,
    table: &[f32],
    pos: u32,
    q: &mut [f32],
    k: &mut [f32],
    v: &[f32],
    k_cache: &mut [f16],
    v_cache: &mut [f16],
) -> Result<(), MirrorError> {
    rope_kv_parts(
        spec,
        table,
        pos,
        Some(q),
        Some((k, k_cache)),
        Some((v, v_cache)),
    )
}

/// The part of `rope_kv` a GEMV's RoPE epilogue computes (see
/// [`crate::reference::rope_kv::rope_kv_parts`]): the same arithmetic, so the same bits.
pub fn rope_kv_parts(
    spec: &RopeKv,
    table: &[f32],
    pos: u32,
    q: Option<&mut [f32]>,
    k: Option<(&mut [f32], &mut [f16])>,
    v: Option<(&[f32], &mut [f16])>,
) -> Result<(), MirrorError> {
    const K: &str = "rope_kv";
    check_spec(K, spec)?;
    let d = spec.head_dim as usize;
    let kv = spec.n_kv_heads as usize * d;
    let cache = kv * spec.max_ctx as usize;
    if let Some(q) = &q {
        check_len(K, "q", spec.n_heads as usize * d, q.len())?;
    }
    if let Some((x, c)) = &k {
        check_len(K, "k", kv, x.len())?;
        check_len(K, "k_cache", cache, c.len())?;
    }
    if let Some((x, c)) = &v {
        check_len(K, "v", kv, x.len())?;
        check_len(K, "v_cache", cache, c.len())?;
    }
    if q.is_some() || k.is_some() {
        let rows = spec.max_ctx as usize * spec.rope_dims as usize;
        check_len(K, "rope_table", rows, table.len())?;
    }
    crate::reference::rope_kv::rope_kv_parts(spec, table, pos, q, k, v);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::Rng;
    use super::*;
    use ptx_gen::kernels::RopeStyle;

    #[test]
    fn rotates_as_the_f64_rotation() {
        let spec = RopeKv {
            style: RopeStyle::Neox,
            n_heads: 4,
            n_kv_heads: 2,
            head_dim: 64,
            rope_dims: 64,
            max_ctx: 16,
            m: 1,
        };
        let table = crate::reference::rope::rope_table(10000.0, 64, 16);
        let mut rng = Rng(7);
        let (mut q, mut k, v) = (rng.vec(256, 2.0), rng.vec(128, 2.0), rng.vec(128, 2.0));
        let q0 = q.clone();
        let (mut kc, mut vc) = (vec![f16::ZERO; 2 * 16 * 64], vec![f16::ZERO; 2 * 16 * 64]);
        rope_kv(&spec, &table, 5, &mut q, &mut k, &v, &mut kc, &mut vc).unwrap();
        for i in 0..32 {
            let th = 5.0 * 10000f64.powf(-2.0 * i as f64 / 64.0);
            let (x, y) = (f64::from(q0[i]), f64::from(q0[i + 32]));
            let want = x * th.cos() - y * th.sin();
            assert!((f64::from(q[i]) - want).abs() < 1e-5, "pair {i}");
        }
        assert_eq!(vc[5 * 64], f16::from_f32(v[0]));
        assert!(rope_kv(&spec, &table[1..], 5, &mut q, &mut k, &v, &mut kc, &mut vc).is_err());
    }
}
