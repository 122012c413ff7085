//! GPU tests of the proof kernels (Q8_1 quantize, RMSNorm) against the CPU reference:
//! fresh random inputs, outputs poisoned and wrapped in guard regions before each run,
//! every element checked. Without a CUDA driver they print that they skipped.

mod common;

use common::{gpu_or_skip, poisoned, read_checked, Rng, GUARD};
use ptx_gen::kernels::{generate, KernelSpec, QuantizeQ8_1, RmsNorm};
use ptx_gen::Target;
use ptxforge::reference;
use ptxforge::runtime::{DeviceBuffer, KernelArg, LoadedKernel};

/// Random activations with per-block magnitudes from 1e-3 to 1e4, plus blocks that hit the
/// edge cases of Q8_1 rounding: exact halves (roundf rounds them away from zero) and an
/// all-zero block (d = 0).
fn q8_1_input(rng: &mut Rng, k: usize) -> Vec<f32> {
    let mut x = Vec::with_capacity(k);
    for block in 0..k / 32 {
        let scale = 10f32.powf(rng.uniform(-3.0, 4.0));
        for j in 0..32 {
            let v = match (block % 7, j) {
                // amax 127 gives d = 1, so v * (1/d) is exactly v: halves are ties.
                (3, 0) => 127.0,
                (3, _) => (rng.below(254) as f32 - 127.0) + 0.5 * (rng.below(2) as f32),
                (5, _) if k > 32 => 0.0,
                _ => rng.normal(scale),
            };
            x.push(v);
        }
    }
    x
}

#[test]
fn q8_1_quantize_is_bit_exact_with_the_cpu_reference() {
    let Some(dev) = gpu_or_skip("q8_1_quantize") else {
        return;
    };
    let mut rng = Rng::fresh("q8_1_quantize");
    for k in [
        32u32,
        64,
        256,
        576,
        640,
        896,
        1536,
        2048,
        4096,
        4864,
        14336,
        32 * 9,
        32 * 1001,
    ] {
        let spec = KernelSpec::QuantizeQ8_1(QuantizeQ8_1 { k, m: 1 });
        let kernel = generate(&spec, Target::dp4a_default()).expect("generating");
        let loaded = LoadedKernel::load_unchecked(&dev, &kernel).expect("loading");
        for round in 0..3 {
            let x = q8_1_input(&mut rng, k as usize);
            let want = reference::quantize_q8_1(&x).expect("k % 32 == 0");
            let xb = DeviceBuffer::from_f32(&dev, &x).unwrap();
            // The kernel writes the planar device layout: compared as GGML blocks.
            let len = ptxforge::quant::q8_1::device_bytes(k as usize);
            let out = poisoned(&dev, len);
            loaded
                .launch(
                    &[KernelArg::Ptr(xb.ptr()), KernelArg::Ptr(out.ptr_at(GUARD))],
                    |_| 0,
                )
                .unwrap();
            dev.synchronize().unwrap();
            let got = ptxforge::quant::q8_1::from_device(
                &read_checked(&out, len, &kernel.name),
                k as usize,
            );
            for (blk, (g, w)) in got.chunks(36).zip(want.chunks(36)).enumerate() {
                assert_eq!(
                    g,
                    w,
                    "{} round {round}: block {blk} differs\n gpu {g:?}\n cpu {w:?}\n x {:?}",
                    kernel.name,
                    &x[blk * 32..blk * 32 + 32]
                );
            }
        }
        println!("{}: {} blocks bit-exact x 3 rounds", kernel.name, k / 32);
    }
}

#[test]
fn rmsnorm_matches_the_cpu_reference() {
    let Some(dev) = gpu_or_skip("rmsnorm") else {
        return;
    };
    let mut rng = Rng::fresh("rmsnorm");
    let mut worst = 0f64;
    let cases: &[(u32, f32, f32)] = &[
        (64, 1e-5, 0.0),
        (99, 1e-6, 0.0),
        (130, 1e-5, 1.0),
        (576, 1e-5, 0.0),
        (640, 1e-6, 1.0),
        (896, 1e-6, 0.0),
        (1024, 1e-6, 0.0),
        (2048, 1e-5, 0.0),
        (3072, 1e-5, 0.0),
        (4096, 1e-5, 0.0),
        (5120, 1e-5, 0.0),
        (8192, 1e-5, 0.0),
        (12288, 1e-5, 0.0),
        (16384, 1e-6, 0.0),
        (65536, 1e-5, 0.0),
    ];
    for &(hidden, eps, weight_offset) in cases {
        let spec = KernelSpec::RmsNorm(RmsNorm {
            hidden,
            eps,
            weight_offset,
            m: 1,
        });
        let kernel = generate(&spec, Target::dp4a_default()).expect("generating");
        let loaded = LoadedKernel::load_unchecked(&dev, &kernel).expect("loading");
        for round in 0..3 {
            let sd = 10f32.powf(rng.uniform(-2.0, 2.0));
            let x: Vec<f32> = (0..hidden).map(|_| rng.normal(sd)).collect();
            let w: Vec<f32> = (0..hidden).map(|_| rng.uniform(-2.0, 2.0)).collect();
            let want = reference::rmsnorm(&x, &w, eps, weight_offset);
            let xb = DeviceBuffer::from_f32(&dev, &x).unwrap();
            let wb = DeviceBuffer::from_f32(&dev, &w).unwrap();
            let bytes = hidden as usize * 4;
            let out = poisoned(&dev, bytes);
            loaded
                .launch(
                    &[
                        KernelArg::Ptr(xb.ptr()),
                        KernelArg::Ptr(wb.ptr()),
                        KernelArg::Ptr(out.ptr_at(GUARD)),
                    ],
                    |_| 0,
                )
                .unwrap();
            dev.synchronize().unwrap();
            let got = read_checked(&out, bytes, &kernel.name);
            for (i, (g, w)) in got
                .chunks(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .zip(&want)
                .enumerate()
            {
                let err = ((g - w).abs() as f64) / (w.abs() as f64).max(f64::MIN_POSITIVE);
                assert!(
                    g.is_finite() && (err <= 1e-6 || g == *w),
                    "{} round {round}: element {i}: gpu {g:e} cpu {w:e} (relative error {err:e})",
                    kernel.name
                );
                worst = worst.max(if g == *w { 0.0 } else { err });
            }
        }
    }
    println!(
        "rmsnorm: worst relative error {worst:e} over {} shapes x 3 rounds",
        cases.len()
    );
}
