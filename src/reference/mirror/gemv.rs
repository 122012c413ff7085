//! The GEMV kernel's own arithmetic on the CPU, bit for bit: where [`crate::reference::gemv`] defines
//! the result (f64, rounded once), this mirror repeats what the generated kernel does in f32,
//! in its order, so that a whole decode step on the CPU can equal the GPU's exactly.
//!
//! The kernel (ptx-gen `kernels/gemv.rs`, tile from [`Gemv::tile`]): a row is shared by
//! `split` warps, i.e. `32 * split` lanes; `LANES` lanes share a weight block (8 for Q4_K,
//! 32 for Q6_K, 4 for the others), so a pass covers `32 * split / LANES` consecutive blocks,
//! lane `g` taking part `g % LANES` of block `g / LANES` of the pass. Each lane adds its parts
//! pass by pass to an f32 that starts at 0; each warp sums its lanes with the butterfly
//! (`v[l] + v[l ^ m]` for m = 16, 8, 4, 2, 1); the warps' sums are added in warp order; then
//! `+ bias`, `+ residual`. Sizes are in bytes (`w`; `x` in the planar device layout of Q8_1) or values (`bias`, `residual`). Every product and sum is one IEEE f32 operation rounded to
//! nearest, as the PTX (`mul.rn`, `add.rn`, `cvt.rn.f32.s32`); integer dot products are
//! exact (`dp4a`).

use half::f16;
use ptx_gen::kernels::{Gemv, GemvTile, WeightType};

use super::{check_len, MirrorError};
use crate::quant::q8_1::{device_bytes, from_device_batch, BLOCK_Q8_1_BYTES};

fn f16_at(b: &[u8], off: usize) -> f32 {
    f16::from_le_bytes([b[off], b[off + 1]]).to_f32()
}

/// One Q8_1 block: `d`, `s` and its 32 quants.
struct X<'a>(&'a [u8]);

impl X<'_> {
    fn d(&self) -> f32 {
        f16_at(self.0, 0)
    }
    fn s(&self) -> f32 {
        f16_at(self.0, 2)
    }
    fn q(&self, i: usize) -> i32 {
        i32::from(self.0[4 + i] as i8)
    }
}

/// Lane `p`'s part of a Q4_K block (sub-blocks 2c, 2c + 1 with c = p / 2, values
/// 16h..16h+15 of each with h = p % 2) with the block's 8 Q8_1 blocks `x`.
fn q4_k(w: &[u8], x: &[u8], p: usize) -> f32 {
    let (c, h) = (p / 2, p % 2);
    let scales: [u8; 12] = std::array::from_fn(|i| w[4 + i]);
    let (d, dmin) = (f16_at(w, 0), f16_at(w, 2));
    let mut fd = [0f32; 2];
    let mut fm = [0f32; 2];
    for s in 0..2 {
        let sub = 2 * c + s;
        let xb = X(&x[sub * BLOCK_Q8_1_BYTES..]);
        let (sc, m) = crate::quant::q4_k::scale_min(&scales, sub);
        let (mut dot, mut sum) = (0i32, 0i32);
        for i in 0..16 {
            let byte = w[16 + 16 * p + i];
            let q = i32::from((byte >> (4 * s)) & 0x0F);
            let u = xb.q(16 * h + i);
            dot += q * u;
            sum += u;
        }
        let dx = xb.d();
        fd[s] = dx * (dot * i32::from(sc)) as f32;
        fm[s] = dx * (sum * i32::from(m)) as f32;
    }
    d * (fd[0] + fd[1]) - dmin * (fm[0] + fm[1])
}

/// Lane `p`'s part of a Q6_K block: quarters h and h + 2 (h = (p % 16) / 8) of half
/// n = p / 16, values l = 4k..4k+3 (k = p % 8) of each.
fn q6_k(w: &[u8], x: &[u8], p: usize) -> f32 {
    let (n, j) = (p / 16, p % 16);
    let (k, h) = (j % 8, j / 8);
    let d = f16_at(w, 208);
    let mut t = [0f32; 2];
    for (qq, t) in t.iter_mut().enumerate() {
        let quarter = h + 2 * qq;
        let xb = X(&x[(4 * n + quarter) * BLOCK_Q8_1_BYTES..]);
        let sc = i32::from(w[192 + 8 * n + k / 4 + 2 * h + 4 * qq] as i8);
        let (mut dot, mut sum) = (0i32, 0i32);
        for i in 0..4 {
            let l = 4 * k + i;
            let ql = w[64 * n + 32 * (quarter % 2) + l];
            let low = if quarter < 2 { ql & 0x0F } else { ql >> 4 };
            let high = (w[128 + 32 * n + l] >> (2 * quarter)) & 3;
            let q = i32::from(low | (high << 4));
            let u = xb.q(4 * k + i);
            dot += q * u;
            sum += u;
        }
        let dot = sum * -32 + dot;
        *t = xb.d() * (dot * sc) as f32;
    }
    d * (t[0] + t[1])
}

/// Lane `p`'s part of a Q5_0 block: values 4p..4p+3 and 4p+16..4p+19.
fn q5_0(w: &[u8], x: &[u8], p: usize) -> f32 {
    let xb = X(x);
    let qh = u32::from_le_bytes([w[2], w[3], w[4], w[5]]);
    let mut s = 0i32;
    for i in 0..4 {
        let byte = w[6 + 4 * p + i];
        let lo = i32::from(byte & 0x0F) | (((qh >> (4 * p + i)) & 1) << 4) as i32;
        let hi = i32::from(byte >> 4) | (((qh >> (4 * p + i + 16)) & 1) << 4) as i32;
        s += lo * xb.q(4 * p + i) + hi * xb.q(16 + 4 * p + i);
    }
    let t = xb.d() * s as f32;
    let offset = if p == 0 { xb.s() * 16.0 } else { 0.0 };
    f16_at(w, 0) * (t - offset)
}

/// Lane `p`'s part of a Q4_1 block: bytes 4p..4p+3 (values 4p.. and 4p+16..).
fn q4_1(w: &[u8], x: &[u8], p: usize) -> f32 {
    let xb = X(x);
    let mut s = 0i32;
    for i in 0..4 {
        let byte = w[4 + 4 * p + i];
        s += i32::from(byte & 0x0F) * xb.q(4 * p + i) + i32::from(byte >> 4) * xb.q(16 + 4 * p + i);
    }
    let (d, m) = (f16_at(w, 0), f16_at(w, 2));
    let part = (d * xb.d()) * s as f32;
    let offset = if p == 0 { m * xb.s() } else { 0.0 };
    part + offset
}

/// Lane `p`'s part of a Q8_0 block: values 8p..8p+7.
fn q8_0(w: &[u8], x: &[u8], p: usize) -> f32 {
    let xb = X(x);
    let s: i32 = (0..8)
        .map(|i| i32::from(w[2 + 8 * p + i] as i8) * xb.q(8 * p + i))
        .sum();
    (f16_at(w, 0) * xb.d()) * s as f32
}

/// `y[v][row]` for every vector of `x` (`spec.m` vectors of Q8_1 bytes, back to back), as the
/// kernel of `spec` computes it.
pub fn gemv(
    spec: &Gemv,
    w: &[u8],
    x: &[u8],
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
) -> Result<Vec<f32>, MirrorError> {
    gemv_tiled(spec, spec.tile(), w, x, bias, residual)
}

/// [`gemv`] as the kernel of `spec` with an explicit `tile` (the bench's tile search)
/// computes it: a row's sum depends on the tile only through its warps per row (`split`).
pub fn gemv_tiled(
    spec: &Gemv,
    tile: GemvTile,
    w: &[u8],
    x: &[u8],
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
) -> Result<Vec<f32>, MirrorError> {
    let wt = spec.weight;
    let (n, m) = (spec.n as usize, spec.m as usize);
    let blocks = (spec.k / wt.block_values()) as usize;
    let bb = wt.block_bytes() as usize;
    let x_per_block = (wt.block_values() / 32) as usize * BLOCK_Q8_1_BYTES;
    let x_bytes = blocks * x_per_block;
    let sizes = [
        ("w", w.len(), n * blocks * bb),
        ("x", x.len(), m * device_bytes(spec.k as usize)),
        ("bias", bias.map_or(n, <[f32]>::len), n),
        ("residual", residual.map_or(n * m, <[f32]>::len), n * m),
    ];
    for (what, found, expected) in sizes {
        check_len("gemv", what, expected, found)?;
    }
    let lanes = wt.threads_per_block() as usize;
    let group = 32 * tile.split as usize;
    let per_pass = group / lanes;
    let part: fn(&[u8], &[u8], usize) -> f32 = match wt {
        WeightType::Q4K => q4_k,
        WeightType::Q6K => q6_k,
        WeightType::Q5_0 => q5_0,
        WeightType::Q4_1 => q4_1,
        WeightType::Q8_0 => q8_0,
    };
    // The kernel's planar inputs, as GGML blocks (the same values, one decode per block).
    let x = &from_device_batch(x, spec.k as usize)[..];
    let mut y = vec![0f32; n * m];
    for v in 0..m {
        let xv = &x[v * x_bytes..(v + 1) * x_bytes];
        for row in 0..n {
            let wr = &w[row * blocks * bb..(row + 1) * blocks * bb];
            let acc: Vec<f32> = (0..group)
                .map(|g| {
                    let (slot, p) = (g / lanes, g % lanes);
                    let mut acc = 0f32;
                    for blk in (slot..blocks).step_by(per_pass) {
                        acc += part(&wr[blk * bb..], &xv[blk * x_per_block..], p);
                    }
                    acc
                })
                .collect();
            let mut total = 0f32;
            for (k, warp) in acc.chunks_exact(32).enumerate() {
                let mut lanes: Vec<f32> = warp.to_vec();
                for mask in [16, 8, 4, 2, 1] {
                    lanes = (0..32).map(|l| lanes[l] + lanes[l ^ mask]).collect();
                }
                total = if k == 0 { lanes[0] } else { total + lanes[0] };
            }
            if let Some(b) = bias {
                total += b[row];
            }
            if let Some(r) = residual {
                total += r[v * n + row];
            }
            y[v * n + row] = total;
        }
    }
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::GgmlType;
    use crate::reference::gemv::{gemv as reference, Epilogue, QuantMatrix};

    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut s = seed | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 24) as u8
            })
            .collect()
    }

    /// Random blocks with every f16 field a finite scale of either sign.
    fn weights(wt: WeightType, n: usize, blocks: usize, seed: u64) -> Vec<u8> {
        let bb = wt.block_bytes() as usize;
        let mut w = noise(n * blocks * bb, seed);
        let fields: &[usize] = match wt {
            WeightType::Q4K | WeightType::Q4_1 => &[0, 2],
            WeightType::Q6K => &[208],
            _ => &[0],
        };
        for (i, blk) in w.chunks_exact_mut(bb).enumerate() {
            for &f in fields {
                let v = (1.0 + (i % 7) as f32) / 512.0 * if (i + f) % 3 == 0 { -1.0 } else { 1.0 };
                let v = if wt == WeightType::Q4K { v.abs() } else { v };
                blk[f..f + 2].copy_from_slice(&f16::from_f32(v).to_le_bytes());
            }
        }
        w
    }

    #[test]
    fn the_mirror_computes_the_reference_gemv_up_to_f32_rounding() {
        for wt in WeightType::ALL {
            let ty = match wt {
                WeightType::Q4K => GgmlType::Q4K,
                WeightType::Q6K => GgmlType::Q6K,
                WeightType::Q5_0 => GgmlType::Q5_0,
                WeightType::Q8_0 => GgmlType::Q8_0,
                WeightType::Q4_1 => GgmlType::Q4_1,
            };
            // 3 and 17 blocks: tail passes with and without split warps.
            for blocks in [3u32, 17] {
                let (n, k) = (5u32, blocks * wt.block_values());
                let spec = Gemv {
                    weight: wt,
                    n,
                    k,
                    bias: true,
                    residual: true,
                    m: 2,
                    more_rows: [0, 0],
                    rope: None,
                    prologue: None,
                    tile: None,
                };
                let w = weights(wt, n as usize, blocks as usize, u64::from(k));
                let vals: Vec<f32> = noise(2 * k as usize, 9)
                    .iter()
                    .map(|&b| f32::from(b) / 64.0 - 2.0)
                    .collect();
                let xq: Vec<_> = vals
                    .chunks_exact(k as usize)
                    .map(|row| crate::quant::q8_1::quantize_row(row).expect("whole blocks"))
                    .collect();
                let xb: Vec<u8> = xq.iter().flatten().flat_map(|b| b.to_bytes()).collect();
                let xb = crate::quant::q8_1::to_device_batch(&xb, k as usize);
                let bias: Vec<f32> = (0..n).map(|i| i as f32 * 0.25 - 0.5).collect();
                let res: Vec<f32> = (0..2 * n).map(|i| 1.0 - i as f32 * 0.125).collect();
                let got = gemv(&spec, &w, &xb, Some(&bias), Some(&res)).expect("mirror");
                let mat = QuantMatrix {
                    ty,
                    rows: n as usize,
                    cols: k as usize,
                    data: &w,
                };
                for v in 0..2 {
                    let r = &res[v * n as usize..(v + 1) * n as usize];
                    let want = reference(
                        &mat,
                        &xq[v],
                        &Epilogue {
                            bias: Some(&bias),
                            residual: Some(r),
                        },
                    )
                    .expect("reference");
                    for (row, (g, e)) in got[v * n as usize..].iter().zip(&want).enumerate() {
                        let tol = 1e-5 * (1.0 + e.abs());
                        assert!(
                            (g - e).abs() <= tol,
                            "{wt:?} {blocks} blocks, vector {v} row {row}: mirror {g}, reference {e}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn wrong_sizes_are_typed_errors() {
        let spec = Gemv::plain(WeightType::Q8_0, 2, 32);
        let e = gemv(&spec, &[0; 67], &[0; 36], None, None).unwrap_err();
        assert_eq!(
            e,
            MirrorError::Length {
                kernel: "gemv",
                what: "w",
                expected: 68,
                found: 67
            }
        );
    }
}
