//! GPU tests of the norm variants (rmsnorm_q8_1, residual_rmsnorm, head_rmsnorm), RoPE + KV
//! cache write (rope_kv) and the gated activations (glu) against the CPU references: fresh
//! random inputs (seed printed), outputs poisoned and wrapped in guard regions, in-place
//! buffers wrapped in guard regions too, every element checked. Without a CUDA driver they
//! print that they skipped.
//!
//! What is required of each family:
//! * rmsnorm_q8_1: bit-identical to the GPU `rmsnorm` kernel followed by the GPU `quantize_q8_1`
//!   kernel, and to the CPU quantize of the GPU rmsnorm output. Against the full CPU reference
//!   (sum of squares in f64) bit-exactness is impossible in general (the GPU sums in f32 in a
//!   tree order, so an element can land on the other side of a rounding tie), so there each value
//!   is checked within the Q8_1 error bound of [`check_q8_1_bound`].
//! * residual_rmsnorm: `x` updated to exactly `x + residual`; `y` bit-identical to the GPU
//!   `rmsnorm` (f32) / `rmsnorm_q8_1` (Q8_1) kernels run on that sum, and within 1e-6 relative
//!   (f32) or the Q8_1 bound (Q8_1) of the CPU reference.
//! * head_rmsnorm: within 1e-6 relative of the CPU reference.
//! * rope_kv: bit-identical to the CPU reference (same mul/fma sequence), caches included, every
//!   other cache byte untouched; positions >= max_ctx write nothing.
//! * glu: f32 output within 1e-6 relative (+ 2^-126 absolute) of the f64 CPU reference; Q8_1
//!   output bit-identical to `quantize_q8_1` of the f32 kernel's output (GPU kernel and CPU
//!   quantize), and within the Q8_1 error bound of the f64 reference.

mod common;

use common::{f32s, gpu_or_skip, poisoned, read_checked, Rng, GUARD, POISON};
use half::f16;
use ptx_gen::kernels::{
    generate, Glu, GluAct, HeadRmsNorm, KernelSpec, OutFormat, QuantizeQ8_1, ResidualRmsNorm,
    RmsNorm, RmsNormQ8_1, RopeKv, RopeStyle,
};
use ptx_gen::Target;
use ptxforge::quant::q8_1::{
    device_bytes, from_device, quantize_row_bytes, BlockQ8_1, BLOCK_Q8_1_BYTES,
};
use ptxforge::reference;
use ptxforge::runtime::{Device, DeviceBuffer, KernelArg, LoadedKernel};

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// `bytes` between two poisoned guard regions; the data starts at `ptr_at(GUARD)`.
fn guarded(dev: &Device, bytes: &[u8]) -> DeviceBuffer {
    let mut all = vec![POISON; GUARD];
    all.extend_from_slice(bytes);
    all.extend(std::iter::repeat_n(POISON, GUARD));
    DeviceBuffer::from_bytes(dev, &all).expect("uploading a buffer")
}

fn data(buf: &DeviceBuffer) -> KernelArg {
    KernelArg::Ptr(buf.ptr_at(GUARD))
}

fn load(dev: &Device, spec: KernelSpec) -> LoadedKernel {
    let kernel =
        generate(&spec, Target::dp4a_default()).unwrap_or_else(|e| panic!("{spec:?}: {e}"));
    LoadedKernel::load_unchecked(dev, &kernel).unwrap_or_else(|e| panic!("{}: {e}", kernel.name))
}

fn launch(dev: &Device, k: &LoadedKernel, args: &[KernelArg]) {
    k.launch(args, |_| 0)
        .unwrap_or_else(|e| panic!("{}: {e}", k.name()));
    dev.synchronize()
        .unwrap_or_else(|e| panic!("{}: {e}", k.name()));
}

fn rel_err(got: f32, want: f32) -> f64 {
    if got == want {
        return 0.0;
    }
    (got as f64 - want as f64).abs() / (want.abs() as f64).max(f64::MIN_POSITIVE)
}

/// Checks f32 results against a reference: relative error <= `tol` or absolute error
/// <= `abs`; returns the worst relative error seen.
fn check_f32(got: &[f32], want: &[f32], tol: f64, abs: f64, what: &str) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = 0f64;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let e = rel_err(*g, *w);
        let ok = g.to_bits() == w.to_bits()
            || (g.is_finite() && (e <= tol || (*g as f64 - *w as f64).abs() <= abs));
        assert!(
            ok,
            "{what}: element {i}: gpu {g:e} cpu {w:e} (relative error {e:e})"
        );
        if (*g as f64 - *w as f64).abs() > abs {
            worst = worst.max(e);
        }
    }
    worst
}

/// A Q8_1 output of `n` values (the kernels' planar layout) as GGML blocks; the layout's
/// padding must be untouched.
fn read_q8_1(buf: &DeviceBuffer, n: usize, what: &str) -> Vec<u8> {
    let all = read_checked(buf, device_bytes(n), what);
    assert!(
        all[n + n / 8..].iter().all(|b| *b == POISON),
        "{what}: the Q8_1 vector's padding was written"
    );
    from_device(&all, n)
}

/// Checks Q8_1 blocks against the exact values they quantize. For a block quantized from
/// values `y` (the GPU's) close to the reference values `r` (|y - r| <= `rel * |r|`):
/// `q = round(y / d)` with `d = amax(y) / 127` gives `|q d - y| <= d / 2` (plus 2^-23 |y| for
/// the rounding of `y * (1/d)`); the stored `d16 = f16(d)` adds `|q| |d16 - d| <= 127 (2^-11 d
/// + 2^-25)` (f16 rounding, subnormals included). So
/// `|q d16 - r| <= d / 2 + 127 (2^-11 d + 2^-25) + (rel + 2^-23) |r|` with
/// `d <= max(amax(r) (1 + rel), d16 (1 + 2^-10)) / 127`-ish, taken as the larger of the two.
/// Returns the number of blocks identical to the CPU quantize of `r`.
fn check_q8_1_bound(got: &[u8], r: &[f32], rel: f64, what: &str) -> usize {
    assert_eq!(got.len(), r.len() / 32 * BLOCK_Q8_1_BYTES, "{what}: length");
    let want = quantize_row_bytes(r).expect("multiple of 32");
    let mut exact = 0;
    for (blk, (g, vals)) in got.chunks(BLOCK_Q8_1_BYTES).zip(r.chunks(32)).enumerate() {
        if g == &want[blk * BLOCK_Q8_1_BYTES..(blk + 1) * BLOCK_Q8_1_BYTES] {
            exact += 1;
            continue;
        }
        let b = BlockQ8_1::from_bytes(g.try_into().unwrap());
        let d16 = b.d.to_f32() as f64;
        let amax = vals.iter().fold(0f64, |m, v| m.max(v.abs() as f64));
        let d = (amax * (1.0 + rel) / 127.0).max(d16 * (1.0 + 2f64.powi(-10)));
        let mut sum_q = 0i32;
        for (j, (q, v)) in b.qs.iter().zip(vals).enumerate() {
            let v = *v as f64;
            let err = (*q as f64 * d16 - v).abs();
            let bound = 0.5 * d
                + 127.0 * (2f64.powi(-11) * d + 2f64.powi(-25))
                + (rel + 2f64.powi(-23)) * v.abs()
                + 1e-30;
            assert!(
                err <= bound,
                "{what}: block {blk} value {j}: q {q} * d {d16:e} = {:e}, reference {v:e}, error {err:e} > bound {bound:e}",
                *q as f64 * d16
            );
            sum_q += *q as i32;
        }
        // s = f16(d * sum(q)) with the unrounded d, |d - d16| <= 2^-11 d + 2^-25.
        let s = b.s.to_f32() as f64;
        let s_want = sum_q as f64 * d16;
        let n_q = (sum_q as f64).abs();
        let tol = 2f64.powi(-11) * s_want.abs()
            + 2f64.powi(-25)
            + n_q * (2f64.powi(-11) * d + 2f64.powi(-25))
            + 1e-30;
        assert!(
            (s - s_want).abs() <= tol,
            "{what}: block {blk}: s {s:e}, sum(q) * d = {s_want:e}"
        );
    }
    exact
}

/// A row of `n` activations with standard deviation `sd`; for n > 32 the second Q8_1 block
/// is all zeros (d = 0) when `zero_block`.
fn activations(rng: &mut Rng, n: usize, sd: f32, zero_block: bool) -> Vec<f32> {
    (0..n)
        .map(|i| {
            if zero_block && n > 32 && (32..64).contains(&i) {
                0.0
            } else {
                rng.normal(sd)
            }
        })
        .collect()
}

#[test]
fn rmsnorm_q8_1_equals_rmsnorm_then_quantize() {
    let Some(dev) = gpu_or_skip("rmsnorm_q8_1") else {
        return;
    };
    let mut rng = Rng::fresh("rmsnorm_q8_1");
    let cases: &[(u32, f32, f32)] = &[
        (32, 1e-5, 0.0),
        (96, 1e-6, 1.0),
        (576, 1e-5, 0.0),
        (640, 1e-6, 0.0),
        (640, 1e-6, 1.0),
        (896, 1e-6, 0.0),
        (1024, 1e-6, 0.0),
        (2048, 1e-5, 0.0),
        (3072, 1e-5, 0.0),
        (4096, 1e-5, 0.0),
        (5120, 1e-5, 0.0),
        (8192, 1e-5, 0.0),
        (16384, 1e-6, 0.0),
        (65536, 1e-5, 0.0),
    ];
    let (mut exact, mut blocks) = (0, 0);
    for &(hidden, eps, weight_offset) in cases {
        let fused = load(
            &dev,
            KernelSpec::RmsNormQ8_1(RmsNormQ8_1 {
                hidden,
                eps,
                weight_offset,
                m: 1,
            }),
        );
        let norm = load(
            &dev,
            KernelSpec::RmsNorm(RmsNorm {
                hidden,
                eps,
                weight_offset,
                m: 1,
            }),
        );
        let quant = load(
            &dev,
            KernelSpec::QuantizeQ8_1(QuantizeQ8_1 { k: hidden, m: 1 }),
        );
        let n = hidden as usize;
        let qbytes = device_bytes(n);
        for round in 0..3 {
            let what = format!("{} round {round}", fused.name());
            let sd = 10f32.powf(rng.uniform(-2.0, 2.0));
            let x = activations(&mut rng, n, sd, round == 1);
            let w: Vec<f32> = (0..n).map(|_| rng.uniform(-2.0, 2.0)).collect();
            let xb = DeviceBuffer::from_f32(&dev, &x).unwrap();
            let wb = DeviceBuffer::from_f32(&dev, &w).unwrap();
            let out = poisoned(&dev, qbytes);
            launch(
                &dev,
                &fused,
                &[
                    KernelArg::Ptr(xb.ptr()),
                    KernelArg::Ptr(wb.ptr()),
                    data(&out),
                ],
            );
            let got = read_q8_1(&out, n, &what);

            let y = poisoned(&dev, n * 4);
            launch(
                &dev,
                &norm,
                &[KernelArg::Ptr(xb.ptr()), KernelArg::Ptr(wb.ptr()), data(&y)],
            );
            let y_gpu = f32s(&read_checked(&y, n * 4, &what));
            let two = poisoned(&dev, qbytes);
            launch(&dev, &quant, &[data(&y), data(&two)]);
            let two = read_q8_1(&two, n, &what);
            assert!(
                got == two,
                "{what}: differs from rmsnorm then quantize_q8_1 on the GPU"
            );
            let cpu_of_gpu = quantize_row_bytes(&y_gpu).unwrap();
            assert!(
                got == cpu_of_gpu,
                "{what}: differs from the CPU quantize of the GPU rmsnorm"
            );

            let y_ref = reference::rmsnorm(&x, &w, eps, weight_offset);
            check_f32(&y_gpu, &y_ref, 1e-6, 0.0, &what);
            exact += check_q8_1_bound(&got, &y_ref, 1e-6, &what);
            blocks += n / 32;
        }
    }
    println!("rmsnorm_q8_1: {exact} of {blocks} blocks bit-identical to the f64 CPU reference, all within the Q8_1 bound");
}

#[test]
fn residual_rmsnorm_updates_x_and_normalizes_the_sum() {
    let Some(dev) = gpu_or_skip("residual_rmsnorm") else {
        return;
    };
    let mut rng = Rng::fresh("residual_rmsnorm");
    let cases: &[(u32, f32, f32, OutFormat)] = &[
        (64, 1e-5, 0.0, OutFormat::F32),
        (99, 1e-6, 0.0, OutFormat::F32),
        (130, 1e-5, 1.0, OutFormat::F32),
        (576, 1e-5, 0.0, OutFormat::F32),
        (640, 1e-6, 1.0, OutFormat::F32),
        (896, 1e-6, 0.0, OutFormat::F32),
        (4096, 1e-5, 0.0, OutFormat::F32),
        (5120, 1e-5, 0.0, OutFormat::F32),
        (16384, 1e-6, 0.0, OutFormat::F32),
        (65536, 1e-5, 0.0, OutFormat::F32),
        (32, 1e-5, 0.0, OutFormat::Q8_1),
        (576, 1e-5, 0.0, OutFormat::Q8_1),
        (640, 1e-6, 1.0, OutFormat::Q8_1),
        (896, 1e-6, 0.0, OutFormat::Q8_1),
        (2048, 1e-6, 0.0, OutFormat::Q8_1),
        (4096, 1e-5, 0.0, OutFormat::Q8_1),
        (16384, 1e-5, 0.0, OutFormat::Q8_1),
        (65536, 1e-5, 0.0, OutFormat::Q8_1),
    ];
    let mut worst = 0f64;
    for &(hidden, eps, weight_offset, out) in cases {
        let kernel = load(
            &dev,
            KernelSpec::ResidualRmsNorm(ResidualRmsNorm {
                hidden,
                eps,
                weight_offset,
                out,
                post_norm: false,
                m: 1,
            }),
        );
        let twin = match out {
            OutFormat::F32 => load(
                &dev,
                KernelSpec::RmsNorm(RmsNorm {
                    hidden,
                    eps,
                    weight_offset,
                    m: 1,
                }),
            ),
            OutFormat::Q8_1 => load(
                &dev,
                KernelSpec::RmsNormQ8_1(RmsNormQ8_1 {
                    hidden,
                    eps,
                    weight_offset,
                    m: 1,
                }),
            ),
        };
        let n = hidden as usize;
        let y_len = match out {
            OutFormat::F32 => n * 4,
            OutFormat::Q8_1 => device_bytes(n),
        };
        // Q8_1 outputs compared as GGML blocks.
        let read_y = |buf: &DeviceBuffer, what: &str| match out {
            OutFormat::F32 => read_checked(buf, y_len, what),
            OutFormat::Q8_1 => read_q8_1(buf, n, what),
        };
        for round in 0..3 {
            let what = format!("{} round {round}", kernel.name());
            let sd = 10f32.powf(rng.uniform(-2.0, 2.0));
            let x = activations(&mut rng, n, sd, false);
            let r: Vec<f32> = (0..n).map(|_| rng.normal(sd * 0.5)).collect();
            let w: Vec<f32> = (0..n).map(|_| rng.uniform(-2.0, 2.0)).collect();
            let (h_ref, y_ref) =
                reference::residual_rmsnorm::residual_rmsnorm(&x, &r, &w, eps, weight_offset);
            let xb = guarded(&dev, &f32_bytes(&x));
            let rb = DeviceBuffer::from_f32(&dev, &r).unwrap();
            let wb = DeviceBuffer::from_f32(&dev, &w).unwrap();
            let yb = poisoned(&dev, y_len);
            launch(
                &dev,
                &kernel,
                &[
                    data(&xb),
                    KernelArg::Ptr(rb.ptr()),
                    KernelArg::Ptr(wb.ptr()),
                    data(&yb),
                ],
            );
            let h = f32s(&read_checked(&xb, n * 4, &format!("{what} x")));
            for (i, (g, want)) in h.iter().zip(&h_ref).enumerate() {
                assert_eq!(
                    g.to_bits(),
                    want.to_bits(),
                    "{what}: x[{i}] = {g:e}, x + residual = {want:e}"
                );
            }
            let got = read_y(&yb, &format!("{what} y"));

            // The twin kernel on the CPU-computed sum.
            let hb = DeviceBuffer::from_f32(&dev, &h_ref).unwrap();
            let tb = poisoned(&dev, y_len);
            launch(
                &dev,
                &twin,
                &[
                    KernelArg::Ptr(hb.ptr()),
                    KernelArg::Ptr(wb.ptr()),
                    data(&tb),
                ],
            );
            let twin_out = read_y(&tb, &format!("{what} twin"));
            assert!(
                got == twin_out,
                "{what}: y differs from {} on x + residual",
                twin.name()
            );
            match out {
                OutFormat::F32 => {
                    worst = worst.max(check_f32(&f32s(&got), &y_ref, 1e-6, 0.0, &what))
                }
                OutFormat::Q8_1 => {
                    check_q8_1_bound(&got, &y_ref, 1e-6, &what);
                }
            }
        }
    }
    println!(
        "residual_rmsnorm: worst relative error {worst:e} (f32 output) over {} shapes x 3 rounds",
        cases.len()
    );
}

#[test]
fn head_rmsnorm_matches_the_cpu_reference() {
    let Some(dev) = gpu_or_skip("head_rmsnorm") else {
        return;
    };
    let mut rng = Rng::fresh("head_rmsnorm");
    let cases: &[(u32, u32, f32, f32)] = &[
        (16, 128, 1e-6, 0.0),
        (8, 128, 1e-6, 0.0),
        (4, 256, 1e-6, 0.0),
        (1, 256, 1e-6, 1.0),
        (32, 128, 1e-6, 0.0),
        (14, 64, 1e-6, 0.0),
        (2, 64, 1e-6, 1.0),
        (9, 80, 1e-5, 0.0),
        (7, 96, 1e-6, 0.0),
        (3, 1, 1e-6, 0.0),
        (5, 34, 1e-6, 0.0),
        (6, 3, 1e-6, 0.0),
        (2, 1023, 1e-6, 0.0),
        (64, 1024, 1e-5, 0.0),
    ];
    let mut worst = 0f64;
    for &(n_heads, head_dim, eps, weight_offset) in cases {
        let kernel = load(
            &dev,
            KernelSpec::HeadRmsNorm(HeadRmsNorm {
                n_heads,
                head_dim,
                eps,
                weight_offset,
                k_heads: 0,
                m: 1,
            }),
        );
        let (h, d) = (n_heads as usize, head_dim as usize);
        for round in 0..3 {
            let what = format!("{} round {round}", kernel.name());
            // Each head its own magnitude.
            let mut x = Vec::with_capacity(h * d);
            for _ in 0..h {
                let sd = 10f32.powf(rng.uniform(-2.0, 2.0));
                x.extend((0..d).map(|_| rng.normal(sd)));
            }
            let w: Vec<f32> = (0..d).map(|_| rng.uniform(-2.0, 2.0)).collect();
            let want = reference::head_rmsnorm::head_rmsnorm(&x, &w, eps, weight_offset);
            let xb = guarded(&dev, &f32_bytes(&x));
            let wb = DeviceBuffer::from_f32(&dev, &w).unwrap();
            launch(&dev, &kernel, &[data(&xb), KernelArg::Ptr(wb.ptr())]);
            let got = f32s(&read_checked(&xb, h * d * 4, &what));
            worst = worst.max(check_f32(&got, &want, 1e-6, 0.0, &what));
        }
    }
    println!(
        "head_rmsnorm: worst relative error {worst:e} over {} shapes x 3 rounds",
        cases.len()
    );
}

#[test]
fn rope_kv_is_bit_exact_with_the_cpu_reference() {
    let Some(dev) = gpu_or_skip("rope_kv") else {
        return;
    };
    let mut rng = Rng::fresh("rope_kv");
    use RopeStyle::*;
    let cases: &[(RopeStyle, u32, u32, u32, u32, u32, f64)] = &[
        (Norm, 32, 8, 128, 128, 4096, 500000.0),
        (Neox, 14, 2, 64, 64, 32768, 1000000.0),
        (Neox, 4, 1, 256, 256, 32768, 1000000.0),
        (Neox, 4, 1, 256, 256, 4096, 10000.0),
        (Norm, 9, 3, 64, 64, 2048, 10000.0),
        (Neox, 32, 32, 128, 64, 4096, 10000.0),
        (Norm, 32, 8, 128, 64, 4096, 10000.0),
        (Neox, 32, 32, 96, 96, 4096, 10000.0),
        (Neox, 28, 4, 128, 128, 1024, 1000000.0),
        (Neox, 7, 1, 80, 80, 300, 10000.0),
        (Norm, 5, 5, 80, 34, 257, 10000.0),
        (Neox, 10, 2, 80, 46, 100, 10000.0),
        (Neox, 3, 1, 2, 2, 1, 10000.0),
        (Norm, 16, 16, 1024, 1024, 128, 10000.0),
    ];
    for &(style, n_heads, n_kv_heads, head_dim, rope_dims, max_ctx, theta) in cases {
        let spec = RopeKv {
            style,
            n_heads,
            n_kv_heads,
            head_dim,
            rope_dims,
            max_ctx,
            m: 1,
        };
        let kernel = load(&dev, KernelSpec::RopeKv(spec));
        let table = reference::rope::rope_table(theta, rope_dims, max_ctx);
        let tb = DeviceBuffer::from_f32(&dev, &table).unwrap();
        let d = head_dim as usize;
        let (qn, kvn) = (n_heads as usize * d, n_kv_heads as usize * d);
        let cache_len = n_kv_heads as usize * max_ctx as usize * d;
        let random_pos = rng.below(max_ctx as u64) as u32;
        let positions = [0, max_ctx - 1, random_pos, max_ctx, max_ctx + 7, u32::MAX];
        for pos in positions {
            let what = format!("{} pos {pos}", kernel.name());
            let sd = 10f32.powf(rng.uniform(-2.0, 2.0));
            let q: Vec<f32> = (0..qn).map(|_| rng.normal(sd)).collect();
            let k: Vec<f32> = (0..kvn).map(|_| rng.normal(sd)).collect();
            let v: Vec<f32> = (0..kvn).map(|_| rng.normal(sd)).collect();
            let poison = f16::from_bits(u16::from_le_bytes([POISON, POISON]));
            let (mut q_ref, mut k_ref) = (q.clone(), k.clone());
            let (mut kc_ref, mut vc_ref) = (vec![poison; cache_len], vec![poison; cache_len]);
            reference::rope_kv::rope_kv(
                &spec,
                &table,
                pos,
                &mut q_ref,
                &mut k_ref,
                &v,
                &mut kc_ref,
                &mut vc_ref,
            );

            let qb = guarded(&dev, &f32_bytes(&q));
            let kb = guarded(&dev, &f32_bytes(&k));
            let vb = DeviceBuffer::from_f32(&dev, &v).unwrap();
            let kcb = poisoned(&dev, cache_len * 2);
            let vcb = poisoned(&dev, cache_len * 2);
            let pb = DeviceBuffer::from_bytes(&dev, &pos.to_le_bytes()).unwrap();
            launch(
                &dev,
                &kernel,
                &[
                    data(&qb),
                    data(&kb),
                    KernelArg::Ptr(vb.ptr()),
                    data(&kcb),
                    data(&vcb),
                    KernelArg::Ptr(tb.ptr()),
                    KernelArg::Ptr(pb.ptr()),
                ],
            );
            for (name, buf, want) in [("q", &qb, &q_ref), ("k", &kb, &k_ref)] {
                let got = f32s(&read_checked(
                    buf,
                    want.len() * 4,
                    &format!("{what} {name}"),
                ));
                for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
                    assert_eq!(
                        g.to_bits(),
                        w.to_bits(),
                        "{what}: {name}[{i}] (head {}, dim {}): gpu {g:e} cpu {w:e}",
                        i / d,
                        i % d
                    );
                }
            }
            for (name, buf, want) in [("k_cache", &kcb, &kc_ref), ("v_cache", &vcb, &vc_ref)] {
                let got = read_checked(buf, cache_len * 2, &format!("{what} {name}"));
                for (i, (g, w)) in got.chunks(2).zip(want.iter()).enumerate() {
                    let g = u16::from_le_bytes([g[0], g[1]]);
                    let (h, rest) = (i / (max_ctx as usize * d), i % (max_ctx as usize * d));
                    assert_eq!(
                        g,
                        w.to_bits(),
                        "{what}: {name} head {h} position {} dim {}: gpu {:e} cpu {:e}",
                        rest / d,
                        rest % d,
                        f16::from_bits(g).to_f32(),
                        w.to_f32()
                    );
                }
            }
        }
        println!("{}: bit-exact at positions {positions:?}", kernel.name());
    }
}

/// Gate values: normal with a random spread, plus fixed values that reach the saturated ends
/// of the activations and tiny ones.
fn gate_values(rng: &mut Rng, n: usize) -> Vec<f32> {
    const SPECIAL: [f32; 16] = [
        0.0, -0.0, 1e-30, -1e-30, 1e-3, -1e-3, 5.0, -5.0, 17.0, -17.0, 60.0, -60.0, 100.0, -100.0,
        1e4, -1e4,
    ];
    let sd = rng.uniform(0.5, 4.0);
    (0..n)
        .map(|i| {
            if i % 97 == 13 {
                SPECIAL[(i / 97) % SPECIAL.len()]
            } else {
                rng.normal(sd)
            }
        })
        .collect()
}

#[test]
fn glu_matches_the_f64_reference_and_q8_1_is_quantize_of_f32() {
    let Some(dev) = gpu_or_skip("glu") else {
        return;
    };
    let mut rng = Rng::fresh("glu");
    use GluAct::*;
    let cases: &[(GluAct, u32)] = &[
        (Swiglu, 14336),
        (Swiglu, 4864),
        (Swiglu, 1536),
        (Swiglu, 8192 + 32),
        (Swiglu, 32),
        (Swiglu, 1),
        (Swiglu, 1001),
        (Geglu, 2048),
        (Geglu, 96),
        (Geglu, 1001),
        (Geglu, 4098),
        (Geglu, 14336),
    ];
    let mut worst = [0f64; 2];
    for &(act, ffn) in cases {
        let f32_kernel = load(
            &dev,
            KernelSpec::Glu(Glu {
                act,
                ffn,
                out: OutFormat::F32,
                m: 1,
            }),
        );
        let q8 = (ffn % 32 == 0).then(|| {
            (
                load(
                    &dev,
                    KernelSpec::Glu(Glu {
                        act,
                        ffn,
                        out: OutFormat::Q8_1,
                        m: 1,
                    }),
                ),
                load(
                    &dev,
                    KernelSpec::QuantizeQ8_1(QuantizeQ8_1 { k: ffn, m: 1 }),
                ),
            )
        });
        let n = ffn as usize;
        for round in 0..3 {
            let what = format!("{} round {round}", f32_kernel.name());
            let gate = gate_values(&mut rng, n);
            let up_sd = rng.uniform(0.1, 3.0);
            let up: Vec<f32> = (0..n).map(|_| rng.normal(up_sd)).collect();
            let want = reference::glu::glu(act, &gate, &up);
            let gb = DeviceBuffer::from_f32(&dev, &gate).unwrap();
            let ub = DeviceBuffer::from_f32(&dev, &up).unwrap();
            let yb = poisoned(&dev, n * 4);
            let gu = [KernelArg::Ptr(gb.ptr()), KernelArg::Ptr(ub.ptr())];
            launch(&dev, &f32_kernel, &[gu[0], gu[1], data(&yb)]);
            let y = f32s(&read_checked(&yb, n * 4, &what));
            let e = check_f32(&y, &want, 1e-6, f32::MIN_POSITIVE as f64, &what);
            worst[act as usize] = worst[act as usize].max(e);

            if let Some((fused, quant)) = &q8 {
                let what = format!("{} round {round}", fused.name());
                let len = device_bytes(n);
                let ob = poisoned(&dev, len);
                launch(&dev, fused, &[gu[0], gu[1], data(&ob)]);
                let got = read_q8_1(&ob, n, &what);
                let tb = poisoned(&dev, len);
                launch(&dev, quant, &[data(&yb), data(&tb)]);
                let two = read_q8_1(&tb, n, &what);
                assert!(
                    got == two,
                    "{what}: differs from quantize_q8_1 of the f32 kernel's output (GPU)"
                );
                assert!(
                    got == quantize_row_bytes(&y).unwrap(),
                    "{what}: differs from the CPU quantize of the f32 kernel's output"
                );
                check_q8_1_bound(&got, &want, 1e-6, &what);
            }
        }
    }
    println!(
        "glu: worst relative error (f32 output) swiglu {:e}, geglu {:e}",
        worst[0], worst[1]
    );
}
