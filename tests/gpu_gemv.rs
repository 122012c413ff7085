//! GPU tests of the DP4A GEMV (Q4_K, Q6_K, Q5_0, Q8_0, Q4_1 x Q8_1) against the CPU
//! reference: random weight blocks with finite scales, random activations quantized by our
//! Q8_1 quantizer, outputs poisoned inside guard regions, every element checked within 1e-5
//! of its row's L1 magnitude, and equal bit for bit to the kernel's CPU mirror
//! (`reference::mirror::gemv`). Batched kernels must also equal, bit for bit, the single-vector
//! kernel run on each vector.

mod common;

use common::{f32s, gpu_or_skip, poisoned, read_checked, Rng, GUARD};
use half::f16;
use ptx_gen::kernels::{generate, generate_tiled, Gemv, GemvTile, KernelSpec, WeightType};
use ptx_gen::Target;
use ptxforge::quant::q8_1;
use ptxforge::quant::GgmlType;
use ptxforge::reference::gemv::{gemv, row_magnitudes, Epilogue, QuantMatrix};
use ptxforge::reference::mirror::gemv as gemv_mirror;
use ptxforge::runtime::{Device, DeviceBuffer, KernelArg, LoadedKernel};

fn ggml(w: WeightType) -> GgmlType {
    match w {
        WeightType::Q4K => GgmlType::Q4K,
        WeightType::Q6K => GgmlType::Q6K,
        WeightType::Q5_0 => GgmlType::Q5_0,
        WeightType::Q8_0 => GgmlType::Q8_0,
        WeightType::Q4_1 => GgmlType::Q4_1,
    }
}

/// A random finite f16 scale of magnitude 2^-12 .. 2^-5, with a random sign when `signed`.
fn scale(rng: &mut Rng, signed: bool) -> [u8; 2] {
    let mag = 2f32.powf(rng.uniform(-12.0, -5.0));
    let v = if signed && rng.below(2) == 0 {
        -mag
    } else {
        mag
    };
    f16::from_f32(v).to_le_bytes()
}

/// Random blocks: random quant bytes with every f16 field replaced by a finite scale.
fn random_weights(rng: &mut Rng, w: WeightType, n: u32, k: u32) -> Vec<u8> {
    let bb = w.block_bytes() as usize;
    let blocks = (n * (k / w.block_values())) as usize;
    let mut bytes: Vec<u8> = (0..blocks * bb).map(|_| rng.next_u64() as u8).collect();
    for blk in bytes.chunks_exact_mut(bb) {
        let fields: &[(usize, bool)] = match w {
            WeightType::Q4K => &[(0, false), (2, false)],
            WeightType::Q6K => &[(208, true)],
            WeightType::Q5_0 | WeightType::Q8_0 => &[(0, true)],
            WeightType::Q4_1 => &[(0, false), (2, true)],
        };
        for &(off, signed) in fields {
            blk[off..off + 2].copy_from_slice(&scale(rng, signed));
        }
    }
    bytes
}

/// Random activations quantized to Q8_1 blocks (and their bytes in the kernels' planar
/// device layout).
fn random_x(rng: &mut Rng, k: u32) -> (Vec<q8_1::BlockQ8_1>, Vec<u8>) {
    let sd = 10f32.powf(rng.uniform(-1.0, 1.0));
    let x: Vec<f32> = (0..k).map(|_| rng.normal(sd)).collect();
    let blocks = q8_1::quantize_row(&x).expect("k % 32 == 0");
    let ggml: Vec<u8> = blocks.iter().flat_map(|b| b.to_bytes()).collect();
    (blocks, q8_1::to_device(&ggml))
}

struct Case {
    weight: WeightType,
    n: u32,
    k: u32,
    bias: bool,
    residual: bool,
}

/// Runs one spec on M random vectors; checks against the reference and returns the outputs
/// and the worst error relative to the row magnitude.
fn run_case(dev: &Device, rng: &mut Rng, c: &Case, m: u32, single: Option<&LoadedKernel>) -> f64 {
    let spec = Gemv {
        weight: c.weight,
        n: c.n,
        k: c.k,
        bias: c.bias,
        residual: c.residual,
        m,
        more_rows: [0, 0],
        rope: None,
        prologue: None,
        tile: None,
    };
    let kernel = generate(&KernelSpec::Gemv(spec), Target::dp4a_default()).expect("generating");
    let loaded = LoadedKernel::load_unchecked(dev, &kernel).expect("loading");
    let wbytes = random_weights(rng, c.weight, c.n, c.k);
    let wmat = QuantMatrix {
        ty: ggml(c.weight),
        rows: c.n as usize,
        cols: c.k as usize,
        data: &wbytes,
    };
    let xs: Vec<_> = (0..m).map(|_| random_x(rng, c.k)).collect();
    let bias: Vec<f32> = (0..c.n).map(|_| rng.normal(1.0)).collect();
    let residual: Vec<Vec<f32>> = (0..m)
        .map(|_| (0..c.n).map(|_| rng.normal(1.0)).collect())
        .collect();

    let wbuf = DeviceBuffer::from_bytes(dev, &wbytes).unwrap();
    let xbuf = DeviceBuffer::from_bytes(
        dev,
        &xs.iter().flat_map(|(_, b)| b.clone()).collect::<Vec<u8>>(),
    )
    .unwrap();
    let bbuf = DeviceBuffer::from_f32(dev, &bias).unwrap();
    let rbuf = DeviceBuffer::from_f32(dev, &residual.concat()).unwrap();
    let y_bytes = (c.n * m * 4) as usize;
    let out = poisoned(dev, y_bytes);
    let mut args = vec![KernelArg::Ptr(wbuf.ptr()), KernelArg::Ptr(xbuf.ptr())];
    if c.bias {
        args.push(KernelArg::Ptr(bbuf.ptr()));
    }
    if c.residual {
        args.push(KernelArg::Ptr(rbuf.ptr()));
    }
    args.push(KernelArg::Ptr(out.ptr_at(GUARD)));
    loaded.launch(&args, |_| 0).unwrap();
    dev.synchronize().unwrap();
    let got = f32s(&read_checked(&out, y_bytes, &kernel.name));
    // The kernel's own arithmetic on the CPU: equal bit for bit.
    let all_x: Vec<u8> = xs.iter().flat_map(|(_, b)| b.clone()).collect();
    let all_res = residual.concat();
    let mirror = gemv_mirror::gemv(
        &spec,
        &wbytes,
        &all_x,
        c.bias.then_some(&bias[..]),
        c.residual.then_some(&all_res[..]),
    )
    .expect("mirror");
    for (i, (g, w)) in got.iter().zip(&mirror).enumerate() {
        assert_eq!(
            g.to_bits(),
            w.to_bits(),
            "{} output {i}: gpu {g:e} != cpu mirror {w:e}",
            kernel.name
        );
    }

    let mut worst = 0f64;
    for (v, (xb, xbytes)) in xs.iter().enumerate() {
        let epi = Epilogue {
            bias: c.bias.then_some(&bias[..]),
            residual: c.residual.then_some(&residual[v][..]),
        };
        let want = gemv(&wmat, xb, &epi).expect("reference");
        let mags = row_magnitudes(&wmat, xb).expect("magnitudes");
        let gv = &got[v * c.n as usize..(v + 1) * c.n as usize];
        for (i, (g, w)) in gv.iter().zip(&want).enumerate() {
            let extra = if c.bias { bias[i].abs() as f64 } else { 0.0 }
                + if c.residual {
                    residual[v][i].abs() as f64
                } else {
                    0.0
                };
            let scale = mags[i] + extra;
            let err = (*g as f64 - *w as f64).abs() / scale.max(f64::MIN_POSITIVE);
            assert!(
                g.is_finite() && err <= 1e-5,
                "{} vector {v} row {i}: gpu {g:e} cpu {w:e}, error {err:e} of the row magnitude {scale:e}",
                kernel.name
            );
            worst = worst.max(err);
        }
        // The batched kernel must compute each vector exactly as the single kernel does.
        if let Some(single) = single {
            let one = poisoned(dev, c.n as usize * 4);
            let xone = DeviceBuffer::from_bytes(dev, xbytes).unwrap();
            let rone = DeviceBuffer::from_f32(dev, &residual[v]).unwrap();
            let mut args = vec![KernelArg::Ptr(wbuf.ptr()), KernelArg::Ptr(xone.ptr())];
            if c.bias {
                args.push(KernelArg::Ptr(bbuf.ptr()));
            }
            if c.residual {
                args.push(KernelArg::Ptr(rone.ptr()));
            }
            args.push(KernelArg::Ptr(one.ptr_at(GUARD)));
            single.launch(&args, |_| 0).unwrap();
            dev.synchronize().unwrap();
            let sv = f32s(&read_checked(&one, c.n as usize * 4, "single"));
            for (i, (a, b)) in gv.iter().zip(&sv).enumerate() {
                assert_eq!(
                    a.to_bits(),
                    b.to_bits(),
                    "{} vector {v} row {i}: batched {a:e} != single {b:e}",
                    kernel.name
                );
            }
        }
    }
    worst
}

fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    let all = |n, k| {
        WeightType::ALL
            .into_iter()
            .filter(move |w| k % w.block_values() == 0)
            .map(move |w| (w, n, k))
    };
    let shapes = [
        (4096, 4096),
        (14336, 4096),
        (4096, 14336),
        (4864, 896),
        (896, 4864),
    ];
    for (weight, n, k) in shapes.into_iter().flat_map(|(n, k)| all(n, k)) {
        v.push(Case {
            weight,
            n,
            k,
            bias: false,
            residual: false,
        });
    }
    for (weight, n, k) in [
        (WeightType::Q5_0, 1024, 640),
        (WeightType::Q8_0, 640, 640),
        (WeightType::Q8_0, 262144 / 64, 640),
        (WeightType::Q4K, 640, 1024),
        (WeightType::Q4K, 640, 2048),
        (WeightType::Q6K, 2048, 1024),
        (WeightType::Q6K, 640, 2048),
        (WeightType::Q4_1, 1536, 576),
        (WeightType::Q4_1, 576, 1536),
        (WeightType::Q4_1, 49152 / 16, 576),
    ] {
        v.push(Case {
            weight,
            n,
            k,
            bias: false,
            residual: false,
        });
    }
    for weight in WeightType::ALL {
        // Rows not a multiple of the rows per block, a partial last pass, both epilogues.
        v.push(Case {
            weight,
            n: 1001,
            k: 7 * weight.block_values(),
            bias: true,
            residual: true,
        });
        v.push(Case {
            weight,
            n: 33,
            k: weight.block_values(),
            bias: true,
            residual: false,
        });
    }
    v
}

#[test]
fn gemv_matches_the_cpu_reference() {
    let Some(dev) = gpu_or_skip("gemv") else {
        return;
    };
    let mut rng = Rng::fresh("gemv");
    let mut worst = std::collections::BTreeMap::new();
    for c in cases() {
        let e = run_case(&dev, &mut rng, &c, 1, None);
        let w: &mut f64 = worst.entry(c.weight.name()).or_insert(0.0);
        *w = w.max(e);
    }
    for (t, e) in worst {
        println!("gemv {t}: worst error {e:e} of the row magnitude");
    }
}

#[test]
fn batched_gemv_matches_the_reference_and_the_single_kernel_bit_for_bit() {
    let Some(dev) = gpu_or_skip("batched gemv") else {
        return;
    };
    let mut rng = Rng::fresh("batched gemv");
    for weight in WeightType::ALL {
        // Rows not a multiple of the rows per block, both epilogues, every batch; then
        // batches that take more rows per group than the single kernel (`Gemv::tile`), with
        // split 4 at 4096 values and split 8 at 14336.
        let cases = [
            (
                1001,
                7 * weight.block_values(),
                true,
                &[2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16][..],
            ),
            (4096, 4096, false, &[2, 5, 8, 16][..]),
            (4096, 14336, false, &[8][..]),
        ];
        for (n, k, epilogues, ms) in cases {
            let c = Case {
                weight,
                n,
                k,
                bias: epilogues,
                residual: epilogues,
            };
            let single = Gemv {
                weight,
                n,
                k,
                bias: epilogues,
                residual: epilogues,
                m: 1,
                more_rows: [0, 0],
                rope: None,
                prologue: None,
                tile: None,
            };
            let single = generate(&KernelSpec::Gemv(single), Target::dp4a_default()).unwrap();
            let single = LoadedKernel::load_unchecked(&dev, &single).unwrap();
            for &m in ms {
                run_case(&dev, &mut rng, &c, m, Some(&single));
            }
        }
        println!(
            "batched gemv {}: M = 2..=16 bit-identical to single",
            weight.name()
        );
    }
}

/// Tiles other than the default (the bench's tile search), splits that are not powers of two
/// included (7 and 3 warps per row): every output equal, bit for bit, to the CPU mirror of
/// that tile, single and batched, outputs poisoned and guarded.
#[test]
fn other_tiles_equal_their_mirror_bit_for_bit() {
    let Some(dev) = gpu_or_skip("gemv tiles") else {
        return;
    };
    let mut rng = Rng::fresh("gemv tiles");
    for (weight, n, k, tile) in [
        (WeightType::Q4K, 96, 14336, "r1w7l1s7"),
        (WeightType::Q4K, 96, 14336, "r1w6l1s3"),
        (WeightType::Q6K, 64, 4096, "r1w6l3s3"),
        (WeightType::Q5_0, 64, 2048, "r2w5l2s5"),
        (WeightType::Q8_0, 100, 896, "r2w8l1s2"),
    ] {
        let tile: GemvTile = tile.parse().unwrap();
        for m in [1u32, 2] {
            let spec = Gemv {
                weight,
                n,
                k,
                bias: true,
                residual: false,
                m,
                more_rows: [0, 0],
                rope: None,
                prologue: None,
                tile: None,
            };
            let kernel = generate_tiled(&spec, tile, Target::dp4a_default()).unwrap();
            let loaded = LoadedKernel::load_unchecked(&dev, &kernel).unwrap();
            let w = random_weights(&mut rng, weight, n, k);
            let x: Vec<u8> = (0..m).flat_map(|_| random_x(&mut rng, k).1).collect();
            let bias: Vec<f32> = (0..n).map(|_| rng.normal(1.0)).collect();
            let (wb, xb) = (
                DeviceBuffer::from_bytes(&dev, &w).unwrap(),
                DeviceBuffer::from_bytes(&dev, &x).unwrap(),
            );
            let bb = DeviceBuffer::from_f32(&dev, &bias).unwrap();
            let bytes = (n * m * 4) as usize;
            let out = poisoned(&dev, bytes);
            let args = [
                KernelArg::Ptr(wb.ptr()),
                KernelArg::Ptr(xb.ptr()),
                KernelArg::Ptr(bb.ptr()),
                KernelArg::Ptr(out.ptr_at(GUARD)),
            ];
            loaded.launch(&args, |_| 0).unwrap();
            dev.synchronize().unwrap();
            let got = f32s(&read_checked(&out, bytes, &kernel.name));
            let want = gemv_mirror::gemv_tiled(&spec, tile, &w, &x, Some(&bias), None).unwrap();
            for (j, (g, c)) in got.iter().zip(&want).enumerate() {
                assert!(
                    g.to_bits() == c.to_bits(),
                    "{} output {j}: {g:e}, mirror {c:e}",
                    kernel.name
                );
            }
            println!("{}: bit-identical to its mirror", kernel.name);
        }
    }
}

/// One launch over several matrices (`Gemv::more_rows`): every output of every matrix equal,
/// bit for bit, to that matrix's own GEMV kernel run on the same inputs and to the CPU mirror,
/// single and batched; each output buffer poisoned and guarded.
#[test]
fn several_matrices_in_one_launch_equal_their_own_gemvs_bit_for_bit() {
    let Some(dev) = gpu_or_skip("gemv over several matrices") else {
        return;
    };
    let mut rng = Rng::fresh("gemv parts");
    let specs = [
        // Q, K, V of llama3-8b; of qwen2.5-0.5b with biases; of SmolLM2; gate + up.
        (WeightType::Q4K, 4096, [1024, 1024], 4096, false),
        (WeightType::Q8_0, 896, [128, 128], 896, true),
        (WeightType::Q4_1, 576, [192, 192], 576, false),
        (WeightType::Q5_0, 2048, [2048, 0], 640, false),
        (WeightType::Q6K, 1024, [256, 0], 2048, true),
    ];
    for (weight, n, more_rows, k, bias) in specs {
        for m in [1u32, 3] {
            let spec = Gemv {
                weight,
                n,
                k,
                bias,
                residual: false,
                m,
                more_rows,
                rope: None,
                prologue: None,
                tile: None,
            };
            let fused = generate(&KernelSpec::Gemv(spec), Target::dp4a_default()).unwrap();
            let fused_k = LoadedKernel::load_unchecked(&dev, &fused).unwrap();
            let parts = spec.parts();
            let ws: Vec<Vec<u8>> = parts
                .iter()
                .map(|rows| random_weights(&mut rng, weight, *rows, k))
                .collect();
            let biases: Vec<Vec<f32>> = parts
                .iter()
                .map(|rows| (0..*rows).map(|_| rng.normal(1.0)).collect())
                .collect();
            let x: Vec<u8> = (0..m).flat_map(|_| random_x(&mut rng, k).1).collect();
            let wbufs: Vec<_> = ws
                .iter()
                .map(|w| DeviceBuffer::from_bytes(&dev, w).unwrap())
                .collect();
            let bbufs: Vec<_> = biases
                .iter()
                .map(|b| DeviceBuffer::from_f32(&dev, b).unwrap())
                .collect();
            let xbuf = DeviceBuffer::from_bytes(&dev, &x).unwrap();
            let outs: Vec<_> = parts
                .iter()
                .map(|rows| poisoned(&dev, (rows * m * 4) as usize))
                .collect();
            // w, w1, w2, x, bias, bias1, bias2, y, y1, y2.
            let mut args: Vec<KernelArg> = wbufs.iter().map(|b| KernelArg::Ptr(b.ptr())).collect();
            args.push(KernelArg::Ptr(xbuf.ptr()));
            if bias {
                args.extend(bbufs.iter().map(|b| KernelArg::Ptr(b.ptr())));
            }
            args.extend(outs.iter().map(|o| KernelArg::Ptr(o.ptr_at(GUARD))));
            fused_k.launch(&args, |_| 0).unwrap();
            dev.synchronize().unwrap();
            for (i, rows) in parts.iter().enumerate() {
                let bytes = (rows * m * 4) as usize;
                let got = f32s(&read_checked(&outs[i], bytes, &fused.name));
                let own = spec.part(i);
                let own_kernel = generate(&KernelSpec::Gemv(own), Target::dp4a_default()).unwrap();
                let own_k = LoadedKernel::load_unchecked(&dev, &own_kernel).unwrap();
                let alone = poisoned(&dev, bytes);
                let mut a = vec![KernelArg::Ptr(wbufs[i].ptr()), KernelArg::Ptr(xbuf.ptr())];
                if bias {
                    a.push(KernelArg::Ptr(bbufs[i].ptr()));
                }
                a.push(KernelArg::Ptr(alone.ptr_at(GUARD)));
                own_k.launch(&a, |_| 0).unwrap();
                dev.synchronize().unwrap();
                let want = f32s(&read_checked(&alone, bytes, &own_kernel.name));
                let mirror =
                    gemv_mirror::gemv(&own, &ws[i], &x, bias.then_some(&biases[i][..]), None)
                        .expect("mirror");
                for (j, ((g, w), c)) in got.iter().zip(&want).zip(&mirror).enumerate() {
                    assert!(
                        g.to_bits() == w.to_bits() && g.to_bits() == c.to_bits(),
                        "{} matrix {i} output {j}: {g:e}, its own GEMV {w:e}, mirror {c:e}",
                        fused.name
                    );
                }
            }
            println!("{}: every matrix bit-identical to its own GEMV", fused.name);
        }
    }
}
