//! GPU tests of the embedding lookup, residual add and argmax kernels against their CPU
//! references: fresh random inputs (the seed is printed), outputs poisoned and wrapped in
//! guard regions, every element checked. These kernels round every float operation exactly
//! as the CPU does, so values are compared bit for bit. Without a CUDA driver they print
//! that they skipped.

mod common;

use common::{f32s, gpu_or_skip, poisoned, read_checked, Rng, GUARD, POISON};
use ptx_gen::kernels::{
    generate, Argmax, ArgmaxStage, Embed, EmbedTable, GeneratedKernel, KernelSpec, ResidualAdd,
};
use ptx_gen::Target;
use ptxforge::reference;
use ptxforge::runtime::{Device, DeviceBuffer, KernelArg, LoadedKernel};

fn load(dev: &Device, spec: KernelSpec) -> (GeneratedKernel, LoadedKernel) {
    let kernel = generate(&spec, Target::dp4a_default()).expect("generating");
    let loaded = LoadedKernel::load_unchecked(dev, &kernel).expect("loading");
    (kernel, loaded)
}

/// `body` uploaded between two poisoned guard regions (for buffers updated in place).
fn guarded(dev: &Device, body: &[u8]) -> DeviceBuffer {
    let mut all = vec![POISON; GUARD];
    all.extend_from_slice(body);
    all.extend(std::iter::repeat_n(POISON, GUARD));
    DeviceBuffer::from_bytes(dev, &all).expect("uploading")
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Asserts `got` equals `want` bit for bit, naming the first differing element.
fn assert_bits_eq(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g.to_bits() == w.to_bits(),
            "{what}: element {i}: gpu {g:e} ({:#010x}) cpu {w:e} ({:#010x})",
            g.to_bits(),
            w.to_bits()
        );
    }
}

// ---- embed ------------------------------------------------------------------------------

/// Makes the f16 at `b[0..2]` finite (an all-ones exponent loses its top bit).
fn finite_f16(b: &mut [u8]) {
    let v = u16::from_le_bytes([b[0], b[1]]);
    if v & 0x7c00 == 0x7c00 {
        b[0..2].copy_from_slice(&(v & !0x4000).to_le_bytes());
    }
}

/// A table of `vocab` rows of random valid blocks: random bytes everywhere (every quant,
/// scale and min pattern), the f16 scales made finite (any sign, subnormals included);
/// F16/F32 tables hold random finite values over the type's whole range.
fn random_table(rng: &mut Rng, t: EmbedTable, vocab: usize, hidden: usize) -> Vec<u8> {
    let len = reference::embed::row_bytes(t, hidden) * vocab;
    let mut bytes = vec![0u8; len.div_ceil(8) * 8];
    for c in bytes.chunks_exact_mut(8) {
        c.copy_from_slice(&rng.next_u64().to_le_bytes());
    }
    bytes.truncate(len);
    let (block, d_fields): (usize, &[usize]) = match t {
        EmbedTable::F32 => {
            for c in bytes.chunks_exact_mut(4) {
                let v = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                if v & 0x7f80_0000 == 0x7f80_0000 {
                    c.copy_from_slice(&(v & !0x4000_0000).to_le_bytes());
                }
            }
            return bytes;
        }
        EmbedTable::F16 => (2, &[0]),
        EmbedTable::Q8_0 => (34, &[0]),
        EmbedTable::Q4K => (144, &[0, 2]),
        EmbedTable::Q6K => (210, &[208]),
    };
    for blk in bytes.chunks_exact_mut(block) {
        for &o in d_fields {
            finite_f16(&mut blk[o..o + 2]);
        }
    }
    bytes
}

#[test]
fn embed_rows_equal_the_cpu_dequantization_bit_for_bit() {
    let Some(dev) = gpu_or_skip("embed") else {
        return;
    };
    let mut rng = Rng::fresh("embed");
    let gemma = (640f32).sqrt();
    use EmbedTable::*;
    let cases: &[(EmbedTable, u32, u32, f32)] = &[
        // llama3-8b
        (Q4K, 128256, 4096, 1.0),
        (Q6K, 128256, 4096, 1.0),
        (Q8_0, 128256, 4096, 1.0),
        // qwen2.5-0.5b
        (Q8_0, 151936, 896, 1.0),
        (F16, 151936, 896, 1.0),
        // gemma3-270m, with its sqrt(hidden) scale
        (Q8_0, 262144, 640, gemma),
        (F16, 262144, 640, gemma),
        (F32, 262144, 640, gemma),
        // smollm2-135m
        (Q8_0, 49152, 576, 1.0),
        (F32, 49152, 576, 1.0),
        // K-quant widths of small models
        (Q4K, 300, 1024, 1.0),
        (Q6K, 300, 2048, 1.0),
        (Q4K, 77, 1536, 1.0),
        // edges: one block, one row, odd float rows, a tail block of threads
        (Q4K, 1, 256, 1.0),
        (Q6K, 3, 768, 2.5),
        (Q8_0, 7, 32, 1.0),
        (Q8_0, 2, 32 * 33, 1.0),
        (F16, 5, 33, 1.0),
        (F16, 1000, 4098, 1.0),
        (F32, 2, 6, 0.5),
        (F32, 1, 1, 1.0),
        (F32, 9, 1027, 1.0),
    ];
    for &(table, vocab, hidden, scale) in cases {
        let spec = Embed {
            table,
            vocab,
            hidden,
            scale,
            m: 1,
        };
        let (kernel, loaded) = load(&dev, KernelSpec::Embed(spec));
        let bytes = random_table(&mut rng, table, vocab as usize, hidden as usize);
        let tb = DeviceBuffer::from_bytes(&dev, &bytes).unwrap();
        let mut tokens = vec![0, vocab - 1, vocab / 2, 1.min(vocab - 1)];
        tokens.extend((0..3).map(|_| rng.below(vocab as u64) as u32));
        // Out of range: every value must be NaN.
        tokens.extend([vocab, vocab.saturating_add(1), u32::MAX]);
        tokens.sort_unstable();
        tokens.dedup();
        let out_bytes = hidden as usize * 4;
        for &token in &tokens {
            let want = reference::embed::embed(&spec, &bytes, token);
            let tok = DeviceBuffer::from_bytes(&dev, &token.to_le_bytes()).unwrap();
            let out = poisoned(&dev, out_bytes);
            loaded
                .launch(
                    &[
                        KernelArg::Ptr(tb.ptr()),
                        KernelArg::Ptr(tok.ptr()),
                        KernelArg::Ptr(out.ptr_at(GUARD)),
                    ],
                    |_| 0,
                )
                .unwrap();
            dev.synchronize().unwrap();
            let what = format!("{} token {token}", kernel.name);
            let got = f32s(&read_checked(&out, out_bytes, &what));
            assert_bits_eq(&got, &want, &what);
        }
        println!(
            "{}: {} tokens ({} out of range) bit-exact",
            kernel.name,
            tokens.len(),
            tokens.iter().filter(|t| **t >= vocab).count()
        );
    }
}

// ---- residual add -----------------------------------------------------------------------

#[test]
fn residual_add_equals_the_cpu_bit_for_bit() {
    let Some(dev) = gpu_or_skip("residual_add") else {
        return;
    };
    let mut rng = Rng::fresh("residual_add");
    let cases: &[(u32, f32)] = &[
        (1, 1.0),
        (2, 1.0),
        (3, 1.0),
        (5, 0.5),
        (7, 0.5),
        (576, 1.0),
        (640, 1.0),
        (896, 1.0),
        (1030, 1.0),
        (1536, 1.0),
        (2048, 0.22),
        (4096, 1.0),
        (4097, 1.0),
        (4099, 3.0),
        (4864, 1.0),
        (14336, 1.0),
        (14336, 0.7),
        (65536 + 2, 1.0),
    ];
    for &(n, scale) in cases {
        let (kernel, loaded) = load(
            &dev,
            KernelSpec::ResidualAdd(ResidualAdd { n, scale, m: 1 }),
        );
        for round in 0..3 {
            let sd = 10f32.powf(rng.uniform(-3.0, 3.0));
            let x: Vec<f32> = (0..n).map(|_| rng.normal(sd)).collect();
            let mut y: Vec<f32> = (0..n).map(|_| rng.normal(sd)).collect();
            // Exact cancellations and values far apart in magnitude.
            for i in (0..n as usize).step_by(11) {
                y[i] = -x[i] * scale;
            }
            for i in (5..n as usize).step_by(13) {
                y[i] *= 1e6;
            }
            let want = reference::residual_add::residual_add(&y, &x, scale);
            let xb = DeviceBuffer::from_f32(&dev, &x).unwrap();
            let yb = guarded(&dev, &f32_bytes(&y));
            loaded
                .launch(
                    &[KernelArg::Ptr(xb.ptr()), KernelArg::Ptr(yb.ptr_at(GUARD))],
                    |_| 0,
                )
                .unwrap();
            dev.synchronize().unwrap();
            let what = format!("{} round {round}", kernel.name);
            let got = f32s(&read_checked(&yb, n as usize * 4, &what));
            assert_bits_eq(&got, &want, &what);
        }
        println!("{}: bit-exact x 3 rounds", kernel.name);
    }
}

// ---- argmax -----------------------------------------------------------------------------

/// The logit patterns every vocabulary is tested with: (name, logits).
fn argmax_inputs(rng: &mut Rng, n: usize) -> Vec<(&'static str, Vec<f32>)> {
    let random = |rng: &mut Rng| -> Vec<f32> {
        let sd = 10f32.powf(rng.uniform(-2.0, 2.0));
        (0..n).map(|_| rng.normal(sd)).collect()
    };
    let max_of = |x: &[f32]| x.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let mut cases = Vec::new();
    cases.push(("random", random(rng)));
    // Few distinct values: the maximum occurs many times, the first must win.
    cases.push((
        "many ties",
        (0..n).map(|_| rng.below(5) as f32 - 2.0).collect(),
    ));
    let mut x = random(rng);
    x[0] = max_of(&x) + 1.0;
    cases.push(("max at 0", x));
    let mut x = random(rng);
    x[n - 1] = max_of(&x) + 1.0;
    cases.push(("max at the last index", x));
    cases.push(("all equal", vec![0.25; n]));
    cases.push(("all -inf", vec![f32::NEG_INFINITY; n]));
    // Equal maxima in different blocks (around the 2048 boundary and in the last block).
    let mut x: Vec<f32> = (0..n).map(|_| rng.uniform(-1.0, 1.0)).collect();
    for i in [2047, 2048, 4096, n - 1, n / 2, rng.below(n as u64) as usize] {
        if i < n {
            x[i] = 7.5;
        }
    }
    cases.push(("ties across blocks", x));
    // Signed zeros compare equal: the earlier one wins, whichever sign it has.
    for (name, first, second) in [("-0 then +0", -0.0f32, 0.0f32), ("+0 then -0", 0.0, -0.0)] {
        let mut x: Vec<f32> = (0..n).map(|_| -1.0 - rng.unit()).collect();
        let i = rng.below(n as u64) as usize;
        let j = i + rng.below((n - i) as u64) as usize;
        x[j] = second;
        x[i] = first;
        cases.push((name, x));
    }
    let mut x = random(rng);
    for _ in 0..2 {
        x[rng.below(n as u64) as usize] = f32::INFINITY;
    }
    cases.push(("+inf twice", x));
    // NaN ranks above +inf: the first NaN wins.
    let mut x = random(rng);
    x[rng.below(n as u64) as usize] = f32::INFINITY;
    for _ in 0..2 {
        x[rng.below(n as u64) as usize] = f32::NAN;
    }
    cases.push(("NaN and +inf", x));
    let mut x = random(rng);
    x[n - 1] = -f32::NAN;
    cases.push(("negative NaN at the end", x));
    cases
}

#[test]
fn argmax_equals_a_cpu_argmax() {
    let Some(dev) = gpu_or_skip("argmax") else {
        return;
    };
    let mut rng = Rng::fresh("argmax");
    for vocab in [
        1u32,
        2,
        3,
        31,
        2048,
        2049,
        4097,
        32000,
        49152,
        100003,
        128256,
        151936,
        262144,
        1 << 24,
    ] {
        let partial = Argmax {
            vocab,
            stage: ArgmaxStage::Partial,
            m: 1,
        };
        let fin = Argmax {
            vocab,
            stage: ArgmaxStage::Final,
            m: 1,
        };
        let p = partial.partials() as usize;
        let (pk, pl) = load(&dev, KernelSpec::Argmax(partial));
        let (fk, fl) = load(&dev, KernelSpec::Argmax(fin));
        let inputs = argmax_inputs(&mut rng, vocab as usize);
        for (name, x) in &inputs {
            let want = reference::argmax::argmax(x);
            let xb = DeviceBuffer::from_f32(&dev, x).unwrap();
            let parts = poisoned(&dev, p * 8);
            let out = poisoned(&dev, 4);
            pl.launch(
                &[
                    KernelArg::Ptr(xb.ptr()),
                    KernelArg::Ptr(parts.ptr_at(GUARD)),
                ],
                |_| 0,
            )
            .unwrap();
            fl.launch(
                &[
                    KernelArg::Ptr(parts.ptr_at(GUARD)),
                    KernelArg::Ptr(out.ptr_at(GUARD)),
                ],
                |_| 0,
            )
            .unwrap();
            dev.synchronize().unwrap();
            let what = format!("{} / {} on `{name}`", pk.name, fk.name);
            // Every block wrote a candidate from its own slice of the logits.
            let cands = read_checked(&parts, p * 8, &what);
            for (blk, c) in cands.chunks_exact(8).enumerate() {
                let v = u64::from_le_bytes(c.try_into().unwrap());
                let idx = !(v as u32) as usize;
                assert!(
                    (blk * 2048..(blk * 2048 + 2048).min(vocab as usize)).contains(&idx),
                    "{what}: partial {blk} names index {idx} ({v:#018x})"
                );
            }
            let got = u32::from_le_bytes(read_checked(&out, 4, &what).try_into().unwrap());
            assert_eq!(
                got,
                want,
                "{what}: gpu {got} ({:e}) cpu {want} ({:e})",
                x.get(got as usize).copied().unwrap_or(f32::NAN),
                x[want as usize]
            );
        }
        println!(
            "{} + {}: {} input patterns agree",
            pk.name,
            fk.name,
            inputs.len()
        );
    }
}

/// The CPU-only part of the harness: the edge-case inputs mean what their names say.
#[test]
fn argmax_inputs_have_their_intended_answers() {
    let mut rng = Rng::seeded(42);
    let n = 5000;
    for (name, x) in argmax_inputs(&mut rng, n) {
        let a = reference::argmax::argmax(&x) as usize;
        match name {
            "max at 0" | "all equal" | "all -inf" => assert_eq!(a, 0, "{name}"),
            "max at the last index" | "negative NaN at the end" => {
                if name == "negative NaN at the end" && x.iter().take(n - 1).any(|v| v.is_nan()) {
                    continue;
                }
                assert_eq!(a, n - 1, "{name}")
            }
            "ties across blocks" => assert_eq!(a, 2047, "{name}"),
            "-0 then +0" | "+0 then -0" => assert_eq!(x[a], 0.0, "{name}"),
            "NaN and +inf" => assert!(x[a].is_nan() && !x[..a].iter().any(|v| v.is_nan())),
            _ => {}
        }
    }
}
