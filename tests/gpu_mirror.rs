//! Every non-GEMV kernel family, the GEMV's RoPE + KV cache epilogue and its RMSNorm +
//! quantize prologue, on the GPU against
//! its CPU mirror
//! (`ptxforge::reference::mirror`), BIT FOR BIT: fresh random inputs (seed printed; never
//! zeros), outputs poisoned and wrapped in poisoned guard regions, in-place buffers guarded
//! too, every byte of every written buffer compared (including what the kernel must leave
//! untouched: an attention chunk without an attended position keeps its poisoned `o`).
//! Single kernels and, for the grid-batched families, batched ones (vector v against the
//! mirror of vector v). Without a CUDA driver each test prints that it skipped.
//!
//! The launcher is generic: it reads the kernel's `ParamSpec`s, uploads the named inputs of
//! the read and read-write buffers (their sizes checked against the spec), poisons the
//! write-only ones, and returns every buffer the kernel may write.

mod common;

use std::collections::BTreeMap;

use common::{gpu_or_skip, poisoned, read_checked, Rng, GUARD, POISON};
use half::f16;
use ptx_gen::kernels::{
    generate, Access, Argmax, ArgmaxStage, AttentionCombine, DecodeAttention, Embed, EmbedTable,
    Gemv, GemvNorm, GemvPrologue, GemvRope, Glu, GluAct, HeadRmsNorm, KernelSpec, OutFormat,
    ParamKind, QuantizeQ8_1, ResidualAdd, ResidualRmsNorm, RmsNorm, RmsNormQ8_1, RopeKv,
    RopeOutputs, RopeStyle, WeightType,
};
use ptx_gen::Target;
use ptxforge::quant::q8_1::{from_device_batch, to_device};
use ptxforge::reference::mirror;
use ptxforge::runtime::{Device, DeviceBuffer, KernelArg, LoadedKernel};

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn f16_bytes(v: &[f16]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Normal values, never exactly zero.
fn values(rng: &mut Rng, n: usize, sd: f32) -> Vec<f32> {
    (0..n)
        .map(|_| match rng.normal(sd) {
            0.0 => sd * 0.25,
            v => v,
        })
        .collect()
}

fn halves(rng: &mut Rng, n: usize, sd: f32) -> Vec<f16> {
    values(rng, n, sd).into_iter().map(f16::from_f32).collect()
}

/// Launches the kernel of `spec` with `inputs` (by parameter name) and returns the bytes of
/// every buffer it may write, guard regions checked.
fn run(dev: Option<&Device>, spec: &KernelSpec, inputs: &[(&str, Vec<u8>)]) -> Outputs {
    let kernel = generate(spec, Target::dp4a_default()).unwrap_or_else(|e| panic!("{spec:?}: {e}"));
    let name = kernel.name.clone();
    // The inputs, checked against the parameters (also without a GPU).
    let mut uploads = Vec::new();
    for p in &kernel.params {
        let ParamKind::Buffer(bp) = &p.kind else {
            panic!("{name}: scalar parameter {} (not expected here)", p.name)
        };
        let len = bp.bytes as usize;
        let data = (bp.access != Access::Write).then(|| {
            let data = &inputs
                .iter()
                .find(|(n, _)| *n == p.name)
                .unwrap_or_else(|| panic!("{name}: no input for `{}`", p.name))
                .1;
            assert_eq!(data.len(), len, "{name}: `{}` bytes", p.name);
            data
        });
        uploads.push((p.name.clone(), bp.access, len, data));
    }
    let Some(dev) = dev else {
        return Outputs(None);
    };
    let loaded =
        LoadedKernel::load_unchecked(dev, &kernel).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut bufs = Vec::new();
    for (pname, access, len, data) in uploads {
        let buf = match data {
            None => poisoned(dev, len),
            Some(data) => {
                let mut all = vec![POISON; GUARD];
                all.extend_from_slice(data);
                all.extend(std::iter::repeat_n(POISON, GUARD));
                DeviceBuffer::from_bytes(dev, &all).expect("uploading an input")
            }
        };
        bufs.push((pname, access, len, buf));
    }
    let args: Vec<KernelArg> = bufs
        .iter()
        .map(|(_, _, _, b)| KernelArg::Ptr(b.ptr_at(GUARD)))
        .collect();
    loaded
        .launch(&args, |_| 0)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    dev.synchronize().unwrap_or_else(|e| panic!("{name}: {e}"));
    Outputs(Some(
        bufs.into_iter()
            .filter(|(_, a, _, _)| *a != Access::Read)
            .map(|(n, _, len, b)| {
                let what = format!("{name}: {n}");
                (n, read_checked(&b, len, &what))
            })
            .collect(),
    ))
}

/// What a launch wrote, by parameter name; nothing in a dry run (no GPU).
struct Outputs(Option<BTreeMap<String, Vec<u8>>>);

impl Outputs {
    /// Asserts that buffer `name` holds `want` byte for byte (a dry run checks nothing).
    fn check(&self, name: &str, want: &[u8], unit: usize, what: &str) {
        if let Some(out) = &self.0 {
            same(&out[name], want, unit, what);
        }
    }

    /// [`Outputs::check`] of an output in `fmt`, `n` values per vector: Q8_1 compared block
    /// by block as GGML blocks (the planar layout's padding is no kernel's output).
    fn check_out(&self, name: &str, want: &[u8], fmt: OutFormat, n: usize, what: &str) {
        match (fmt, &self.0) {
            (OutFormat::F32, _) => self.check(name, want, 4, what),
            (OutFormat::Q8_1, Some(out)) => same(
                &from_device_batch(&out[name], n),
                &from_device_batch(want, n),
                36,
                what,
            ),
            (OutFormat::Q8_1, None) => {}
        }
    }

    /// The outputs and caches of a GEMV with the RoPE epilogue: `[q, k, v, k_cache,
    /// v_cache]` as [`rope_kv_per_vector`] gives them.
    fn check_rope(&self, want: &[Vec<u8>; 5], what: &str) {
        let [q, k, v, kc, vc] = want;
        self.check("y", q, 4, &format!("{what}: q"));
        self.check("y1", k, 4, &format!("{what}: k"));
        self.check("y2", v, 4, &format!("{what}: v"));
        self.check("k_cache", kc, 2, &format!("{what}: k_cache"));
        self.check("v_cache", vc, 2, &format!("{what}: v_cache"));
    }

    /// Buffer `name`, or `otherwise` in a dry run.
    fn bytes_or(&self, name: &str, otherwise: &[u8]) -> Vec<u8> {
        self.0
            .as_ref()
            .map_or_else(|| otherwise.to_vec(), |o| o[name].clone())
    }
}

/// Asserts `gpu == cpu` byte for byte, naming the first differing `unit`-byte element.
fn same(gpu: &[u8], cpu: &[u8], unit: usize, what: &str) {
    assert_eq!(gpu.len(), cpu.len(), "{what}: length");
    if let Some(i) = gpu.iter().zip(cpu).position(|(a, b)| a != b) {
        let e = i / unit;
        let (g, c) = (
            &gpu[e * unit..(e + 1) * unit],
            &cpu[e * unit..(e + 1) * unit],
        );
        let show = |b: &[u8]| match b.len() {
            4 => format!(
                "{:e} ({:08x})",
                f32::from_le_bytes(b.try_into().unwrap()),
                u32::from_le_bytes(b.try_into().unwrap())
            ),
            _ => format!("{b:02x?}"),
        };
        let n = gpu
            .chunks(unit)
            .zip(cpu.chunks(unit))
            .filter(|(a, b)| a != b)
            .count();
        panic!(
            "{what}: {n} of {} elements differ; first, element {e}: gpu {} cpu {}",
            gpu.len() / unit,
            show(g),
            show(c)
        );
    }
}

#[test]
fn row_norms_equal_their_mirrors() {
    if let Some(dev) = gpu_or_skip("row_norms_equal_their_mirrors") {
        row_norms(Some(&dev));
    }
}

fn row_norms(dev: Option<&Device>) {
    let mut rng = Rng::fresh("row norms");
    for (hidden, off, m) in [
        (64, 0.0, 1),
        (99, 0.0, 1),
        (130, 1.0, 1),
        (576, 0.0, 1),
        (896, 0.0, 1),
        (4096, 0.0, 1),
        (16384, 0.0, 1),
        (4096, 0.0, 3),
        (99, 1.0, 2),
    ] {
        let s = RmsNorm {
            hidden,
            eps: 1e-6,
            weight_offset: off,
            m,
        };
        let n = hidden as usize;
        let (x, w) = (
            values(&mut rng, n * m as usize, 2.0),
            values(&mut rng, n, 1.0),
        );
        let out = run(
            dev,
            &KernelSpec::RmsNorm(s),
            &[("x", f32_bytes(&x)), ("w", f32_bytes(&w))],
        );
        let single = RmsNorm { m: 1, ..s };
        let want: Vec<u8> = x
            .chunks(n)
            .flat_map(|xv| f32_bytes(&mirror::rmsnorm::rmsnorm(&single, xv, &w).unwrap()))
            .collect();
        out.check("y", &want, 4, &format!("rmsnorm {hidden} m{m}"));
    }
    for (hidden, off, m) in [
        (576, 0.0, 1),
        (896, 0.0, 1),
        (2048, 1.0, 1),
        (4096, 0.0, 1),
        (4096, 0.0, 2),
        // Pass 2 preloaded with the last group partly past the slice (13 blocks, 2 warps).
        (832, 0.0, 2),
        (2304, 1.0, 1),
        // Pass 2 in several groups per warp, after the reduction.
        (16384, 0.0, 1),
    ] {
        let s = RmsNormQ8_1 {
            hidden,
            eps: 1e-5,
            weight_offset: off,
            m,
        };
        let n = hidden as usize;
        let (x, w) = (
            values(&mut rng, n * m as usize, 2.0),
            values(&mut rng, n, 1.0),
        );
        let out = run(
            dev,
            &KernelSpec::RmsNormQ8_1(s),
            &[("x", f32_bytes(&x)), ("w", f32_bytes(&w))],
        );
        let single = RmsNormQ8_1 { m: 1, ..s };
        let want: Vec<u8> = x
            .chunks(n)
            .flat_map(|xv| mirror::rmsnorm_q8_1::rmsnorm_q8_1(&single, xv, &w).unwrap())
            .collect();
        out.check_out(
            "y",
            &want,
            OutFormat::Q8_1,
            n,
            &format!("rmsnorm_q8_1 {hidden} m{m}"),
        );
    }
    // `post`: the residual is normalized first (Gemma's post-norms), with its own weight.
    for (hidden, out_fmt, m, post, woff) in [
        (99, OutFormat::F32, 1, false, 0.0),
        (896, OutFormat::F32, 1, false, 0.0),
        (896, OutFormat::Q8_1, 1, false, 0.0),
        (4096, OutFormat::Q8_1, 1, false, 0.0),
        (4096, OutFormat::F32, 2, false, 0.0),
        (576, OutFormat::Q8_1, 3, false, 0.0),
        (640, OutFormat::Q8_1, 1, true, 1.0),
        (99, OutFormat::F32, 1, true, 0.0),
        (1152, OutFormat::Q8_1, 1, true, 0.0),
        (16384, OutFormat::F32, 1, true, 1.0),
        (640, OutFormat::Q8_1, 3, true, 1.0),
        (16384, OutFormat::Q8_1, 2, true, 0.0),
    ] {
        let s = ResidualRmsNorm {
            hidden,
            eps: 1e-6,
            weight_offset: woff,
            out: out_fmt,
            post_norm: post,
            m,
        };
        let n = hidden as usize;
        let x = values(&mut rng, n * m as usize, 2.0);
        // A projection's output is larger than the residual stream's scale: the post-norm
        // must shrink it.
        let r = values(&mut rng, n * m as usize, if post { 40.0 } else { 2.0 });
        let w = values(&mut rng, n, 1.0);
        let rw = values(&mut rng, n, 1.0);
        let mut inputs = vec![
            ("x", f32_bytes(&x)),
            ("residual", f32_bytes(&r)),
            ("w", f32_bytes(&w)),
        ];
        if post {
            inputs.push(("rw", f32_bytes(&rw)));
        }
        let out = run(dev, &KernelSpec::ResidualRmsNorm(s), &inputs);
        let single = ResidualRmsNorm { m: 1, ..s };
        let rw = post.then_some(rw.as_slice());
        let (mut hs, mut ys) = (Vec::new(), Vec::new());
        for (xv, rv) in x.chunks(n).zip(r.chunks(n)) {
            let (h, y) =
                mirror::residual_rmsnorm::residual_rmsnorm(&single, xv, rv, rw, &w).unwrap();
            hs.extend(f32_bytes(&h));
            ys.extend(y);
        }
        let what = format!("residual_rmsnorm {hidden} {out_fmt:?} m{m} post {post}");
        out.check("x", &hs, 4, &format!("{what}: x"));
        out.check_out("y", &ys, out_fmt, n, &format!("{what}: y"));
    }
    // `k`: a second set of heads (K) with its own gamma in the same launch.
    for (heads, k, d, m) in [
        (14, 0, 64, 1),
        (8, 0, 128, 1),
        (4, 0, 256, 1),
        (5, 0, 80, 1),
        (3, 0, 96, 1),
        (16, 0, 128, 2),
        (4, 1, 256, 1),
        (16, 8, 128, 1),
        (3, 2, 64, 1),
        (5, 6, 34, 1),
        (4, 1, 256, 3),
        (16, 8, 128, 2),
    ] {
        let s = HeadRmsNorm {
            n_heads: heads,
            head_dim: d,
            eps: 1e-6,
            weight_offset: 1.0,
            k_heads: k,
            m,
        };
        let sets = HeadRmsNorm { m: 1, ..s }.sets();
        let names = [("x", "w"), ("x1", "w1")];
        let mut inputs = Vec::new();
        let mut wants = Vec::new();
        for (set, (xn, wn)) in sets.iter().zip(names) {
            let n = (set.n_heads * d) as usize;
            let (x, w) = (
                values(&mut rng, n * m as usize, 3.0),
                values(&mut rng, d as usize, 1.0),
            );
            let want: Vec<u8> = x
                .chunks(n)
                .flat_map(|xv| f32_bytes(&mirror::head_rmsnorm::head_rmsnorm(set, xv, &w).unwrap()))
                .collect();
            inputs.extend([(xn, f32_bytes(&x)), (wn, f32_bytes(&w))]);
            wants.push((xn, want));
        }
        let out = run(dev, &KernelSpec::HeadRmsNorm(s), &inputs);
        for (xn, want) in wants {
            out.check(
                xn,
                &want,
                4,
                &format!("head_rmsnorm {heads}+{k}x{d} m{m}: {xn}"),
            );
        }
    }
}

#[test]
fn elementwise_kernels_equal_their_mirrors() {
    if let Some(dev) = gpu_or_skip("elementwise_kernels_equal_their_mirrors") {
        elementwise(Some(&dev));
    }
}

fn elementwise(dev: Option<&Device>) {
    let mut rng = Rng::fresh("elementwise");
    for (k, m) in [(32, 1), (896, 1), (4864, 1), (4096, 3)] {
        let s = QuantizeQ8_1 { k, m };
        let x = values(&mut rng, (k * m) as usize, 3.0);
        let out = run(dev, &KernelSpec::QuantizeQ8_1(s), &[("x", f32_bytes(&x))]);
        let single = QuantizeQ8_1 { m: 1, ..s };
        let want: Vec<u8> = x
            .chunks(k as usize)
            .flat_map(|xv| mirror::quantize_q8_1::quantize_q8_1(&single, xv).unwrap())
            .collect();
        out.check_out(
            "y",
            &want,
            OutFormat::Q8_1,
            k as usize,
            &format!("quantize_q8_1 {k} m{m}"),
        );
    }
    for (n, scale, m) in [
        (1001, 1.0, 1),
        (4096, 0.5, 1),
        (896, 33.941_125, 1),
        (4096, 1.0, 2),
    ] {
        let s = ResidualAdd { n, scale, m };
        let len = (n * m) as usize;
        let (x, y) = (values(&mut rng, len, 2.0), values(&mut rng, len, 2.0));
        let out = run(
            dev,
            &KernelSpec::ResidualAdd(s),
            &[("x", f32_bytes(&x)), ("y", f32_bytes(&y))],
        );
        let single = ResidualAdd { m: 1, ..s };
        let want: Vec<u8> = y
            .chunks(n as usize)
            .zip(x.chunks(n as usize))
            .flat_map(|(yv, xv)| {
                f32_bytes(&mirror::residual_add::residual_add(&single, yv, xv).unwrap())
            })
            .collect();
        out.check("y", &want, 4, &format!("residual_add {n} x{scale} m{m}"));
    }
    for (act, ffn, out_fmt, m) in [
        (GluAct::Swiglu, 1001, OutFormat::F32, 1),
        (GluAct::Swiglu, 4864, OutFormat::Q8_1, 1),
        (GluAct::Geglu, 2048, OutFormat::F32, 1),
        (GluAct::Geglu, 2048, OutFormat::Q8_1, 1),
        (GluAct::Swiglu, 4096, OutFormat::F32, 2),
        (GluAct::Geglu, 1024, OutFormat::Q8_1, 3),
    ] {
        let s = Glu {
            act,
            ffn,
            out: out_fmt,
            m,
        };
        let len = (ffn * m) as usize;
        // Mostly moderate gates, some far into the tails of the activation.
        let g: Vec<f32> = values(&mut rng, len, 3.0)
            .into_iter()
            .enumerate()
            .map(|(i, v)| if i % 17 == 0 { v * 30.0 } else { v })
            .collect();
        let u = values(&mut rng, len, 2.0);
        let out = run(
            dev,
            &KernelSpec::Glu(s),
            &[("gate", f32_bytes(&g)), ("up", f32_bytes(&u))],
        );
        let single = Glu { m: 1, ..s };
        let want: Vec<u8> = g
            .chunks(ffn as usize)
            .zip(u.chunks(ffn as usize))
            .flat_map(|(gv, uv)| mirror::glu::glu(&single, gv, uv).unwrap())
            .collect();
        out.check_out(
            "y",
            &want,
            out_fmt,
            ffn as usize,
            &format!("glu {act:?} {ffn} {out_fmt:?} m{m}"),
        );
    }
}

#[test]
fn embed_rope_and_argmax_equal_their_mirrors() {
    if let Some(dev) = gpu_or_skip("embed_rope_and_argmax_equal_their_mirrors") {
        embed_rope_argmax(Some(&dev));
    }
}

fn embed_rope_argmax(dev: Option<&Device>) {
    let mut rng = Rng::fresh("embed, rope, argmax");
    for (table, hidden, scale) in [
        (EmbedTable::F32, 576, 1.0),
        (EmbedTable::F16, 130, 1.0),
        (EmbedTable::Q8_0, 640, 25.298_22),
        (EmbedTable::Q4K, 512, 1.0),
        (EmbedTable::Q6K, 768, 1.0),
    ] {
        let vocab = 37u32;
        let s = Embed {
            table,
            vocab,
            hidden,
            scale,
            m: 1,
        };
        let rows = quantized_rows(&mut rng, table, hidden as usize, vocab as usize);
        for token in [0, 17, vocab - 1, vocab, u32::MAX] {
            let out = run(
                dev,
                &KernelSpec::Embed(s),
                &[
                    ("table", rows.clone()),
                    ("token", token.to_le_bytes().to_vec()),
                ],
            );
            let want = f32_bytes(&mirror::embed::embed(&s, &rows, token).unwrap());
            out.check(
                "y",
                &want,
                4,
                &format!("embed {table:?} {hidden} token {token}"),
            );
        }
    }
    for (style, h, kv, d, rope_dims) in [
        (RopeStyle::Norm, 8, 2, 64, 64),
        (RopeStyle::Neox, 14, 2, 64, 64),
        (RopeStyle::Neox, 4, 4, 128, 64),
        (RopeStyle::Norm, 3, 1, 80, 32),
        (RopeStyle::Neox, 4, 1, 256, 256),
    ] {
        let max_ctx = 48u32;
        let s = RopeKv {
            style,
            n_heads: h,
            n_kv_heads: kv,
            head_dim: d,
            rope_dims,
            max_ctx,
            m: 1,
        };
        let table = ptxforge::reference::rope::rope_table(1e4, rope_dims, max_ctx);
        let (qn, kn) = ((h * d) as usize, (kv * d) as usize);
        let cache = kn * max_ctx as usize;
        for pos in [0, 29, max_ctx - 1, max_ctx] {
            let (q, k, v) = (
                values(&mut rng, qn, 2.0),
                values(&mut rng, kn, 2.0),
                values(&mut rng, kn, 2.0),
            );
            // The caches are write-only: the launch poisons them, so the rows it does not
            // write hold poison on both sides.
            let poison = f16::from_bits(u16::from_le_bytes([POISON; 2]));
            let (kc, vc) = (vec![poison; cache], vec![poison; cache]);
            let out = run(
                dev,
                &KernelSpec::RopeKv(s),
                &[
                    ("q", f32_bytes(&q)),
                    ("k", f32_bytes(&k)),
                    ("v", f32_bytes(&v)),
                    ("k_cache", f16_bytes(&kc)),
                    ("v_cache", f16_bytes(&vc)),
                    ("rope_table", f32_bytes(&table)),
                    ("pos", pos.to_le_bytes().to_vec()),
                ],
            );
            let (mut q2, mut k2, mut kc2, mut vc2) = (q, k, kc, vc);
            mirror::rope_kv::rope_kv(&s, &table, pos, &mut q2, &mut k2, &v, &mut kc2, &mut vc2)
                .unwrap();
            let what = format!("rope_kv {style:?} {h}/{kv}x{d} rope {rope_dims} pos {pos}");
            out.check("q", &f32_bytes(&q2), 4, &format!("{what}: q"));
            out.check("k", &f32_bytes(&k2), 4, &format!("{what}: k"));
            out.check("k_cache", &f16_bytes(&kc2), 2, &format!("{what}: k_cache"));
            out.check("v_cache", &f16_bytes(&vc2), 2, &format!("{what}: v_cache"));
        }
    }
    for vocab in [1u32, 2047, 2048, 2049, 32000, 151_936] {
        let mut logits = values(&mut rng, vocab as usize, 4.0);
        if vocab > 100 {
            // A tie for the maximum: the lower index wins.
            let best = logits.iter().copied().fold(f32::MIN, f32::max) + 1.0;
            logits[vocab as usize / 3] = best;
            logits[vocab as usize - 2] = best;
        }
        let partial = Argmax {
            vocab,
            stage: ArgmaxStage::Partial,
            m: 1,
        };
        let out = run(
            dev,
            &KernelSpec::Argmax(partial),
            &[("logits", f32_bytes(&logits))],
        );
        let want = mirror::argmax::partials(&logits).unwrap();
        let want_bytes: Vec<u8> = want.iter().flat_map(|c| c.to_le_bytes()).collect();
        out.check(
            "partials",
            &want_bytes,
            8,
            &format!("argmax partial {vocab}"),
        );
        let fin = Argmax {
            stage: ArgmaxStage::Final,
            ..partial
        };
        let out = run(dev, &KernelSpec::Argmax(fin), &[("partials", want_bytes)]);
        let index = mirror::argmax::index(&want);
        out.check(
            "index",
            &index.to_le_bytes(),
            4,
            &format!("argmax final {vocab}"),
        );
        assert_eq!(
            index,
            ptxforge::reference::argmax::argmax(&logits),
            "{vocab}"
        );
    }
}

/// `vocab` random rows of `table` blocks with sane scales (finite f16 `d`, `dmin`).
fn quantized_rows(rng: &mut Rng, table: EmbedTable, hidden: usize, vocab: usize) -> Vec<u8> {
    let n = hidden * vocab;
    let rand_bytes =
        |rng: &mut Rng, len: usize| -> Vec<u8> { (0..len).map(|_| rng.next_u64() as u8).collect() };
    let half =
        |rng: &mut Rng, sd: f32| f16::from_f32(rng.normal(sd).abs() + sd * 0.1).to_le_bytes();
    match table {
        EmbedTable::F32 => f32_bytes(&values(rng, n, 1.0)),
        EmbedTable::F16 => f16_bytes(&halves(rng, n, 1.0)),
        EmbedTable::Q8_0 => (0..n / 32)
            .flat_map(|_| {
                let mut b = half(rng, 0.01).to_vec();
                b.extend(rand_bytes(rng, 32));
                b
            })
            .collect(),
        EmbedTable::Q4K => (0..n / 256)
            .flat_map(|_| {
                let mut b = half(rng, 0.01).to_vec();
                b.extend(half(rng, 0.01));
                b.extend(rand_bytes(rng, 12 + 128));
                b
            })
            .collect(),
        EmbedTable::Q6K => (0..n / 256)
            .flat_map(|_| {
                let mut b = rand_bytes(rng, 128 + 64 + 16);
                b.extend(half(rng, 0.01));
                b
            })
            .collect(),
    }
}

/// Split + combine of one shape at the given lengths, on the GPU and in the mirror.
fn attention_case(dev: Option<&Device>, rng: &mut Rng, s: DecodeAttention, seq_lens: &[u32]) {
    let (h, kv, d, ctx) = (
        s.n_heads as usize,
        s.n_kv_heads as usize,
        s.head_dim as usize,
        s.max_ctx as usize,
    );
    let m = s.m as usize;
    let nc = s.n_chunks() as usize;
    let single = DecodeAttention { m: 1, ..s };
    let cache = kv * ctx * d;
    for chunk in seq_lens.chunks(m) {
        if chunk.len() != m {
            continue;
        }
        let q = values(rng, m * h * d, 1.5);
        let kc = halves(rng, m * cache, 1.0);
        let vc = halves(rng, m * cache, 1.0);
        let lens: Vec<u8> = chunk.iter().flat_map(|l| l.to_le_bytes()).collect();
        let split = run(
            dev,
            &KernelSpec::Attention(s),
            &[
                ("q", f32_bytes(&q)),
                ("k_cache", f16_bytes(&kc)),
                ("v_cache", f16_bytes(&vc)),
                ("seq_len", lens.clone()),
            ],
        );
        let poison = f32::from_le_bytes([POISON; 4]);
        let (mut all_o, mut all_ml, mut all_out) = (Vec::new(), Vec::new(), Vec::new());
        let mut all_q8 = Vec::new();
        for (v, &len) in chunk.iter().enumerate() {
            let mut po = vec![poison; h * nc * d];
            let mut ml = vec![poison; h * nc * 2];
            mirror::attention::attention_split(
                &single,
                &q[v * h * d..(v + 1) * h * d],
                &kc[v * cache..(v + 1) * cache],
                &vc[v * cache..(v + 1) * cache],
                len,
                &mut po,
                &mut ml,
            )
            .unwrap();
            let out =
                mirror::attention_combine::attention_combine(&single.combine(), &po, &ml, len)
                    .unwrap();
            all_o.extend(f32_bytes(&po));
            all_ml.extend(f32_bytes(&ml));
            all_out.extend(f32_bytes(&out));
            if d % 32 == 0 {
                let k = out.len() as u32;
                let q = QuantizeQ8_1 { k, m: 1 };
                all_q8.extend(mirror::quantize_q8_1::quantize_q8_1(&q, &out).unwrap());
            }
        }
        let what = format!("{} seq_len {chunk:?}", KernelSpec::Attention(s).name());
        split.check("part_ml", &all_ml, 4, &format!("{what}: part_ml"));
        split.check("part_o", &all_o, 4, &format!("{what}: part_o"));
        // The combine kernel on the GPU's partials (equal to the mirror's, checked above).
        let combined = run(
            dev,
            &KernelSpec::AttentionCombine(s.combine()),
            &[
                ("part_o", split.bytes_or("part_o", &all_o)),
                ("part_ml", split.bytes_or("part_ml", &all_ml)),
                ("seq_len", lens.clone()),
            ],
        );
        combined.check("out", &all_out, 4, &format!("{what}: combine"));
        if d % 32 == 0 {
            // The combine writing Q8_1: the mirror's values quantized as quantize_q8_1 does.
            let spec = AttentionCombine {
                out: OutFormat::Q8_1,
                ..s.combine()
            };
            let quantized = run(
                dev,
                &KernelSpec::AttentionCombine(spec),
                &[
                    ("part_o", split.bytes_or("part_o", &all_o)),
                    ("part_ml", split.bytes_or("part_ml", &all_ml)),
                    ("seq_len", lens.clone()),
                ],
            );
            quantized.check_out(
                "out",
                &all_q8,
                OutFormat::Q8_1,
                h * d,
                &format!("{what}: combine, q8_1 out"),
            );
        }
    }
}

#[test]
fn attention_equals_its_mirror() {
    if let Some(dev) = gpu_or_skip("attention_equals_its_mirror") {
        attention(Some(&dev));
    }
}

fn attention(dev: Option<&Device>) {
    let mut rng = Rng::fresh("attention");
    let base = |h, kv, d, ctx| DecodeAttention {
        n_heads: h,
        n_kv_heads: kv,
        head_dim: d,
        max_ctx: ctx,
        scale: 1.0 / (d as f32).sqrt(),
        window: None,
        softcap: None,
        m: 1,
    };
    let cases = [
        (
            base(32, 8, 128, 1024),
            vec![1, 2, 255, 256, 257, 700, 1024, 5000],
        ),
        (base(14, 2, 64, 600), vec![1, 64, 129, 600]),
        (base(9, 3, 64, 300), vec![3, 128, 299]),
        (base(6, 1, 80, 400), vec![1, 100, 257, 400]),
        (base(12, 12, 96, 300), vec![1, 77, 300]),
        (base(16, 1, 256, 520), vec![1, 33, 519]),
        (
            DecodeAttention {
                softcap: Some(50.0),
                window: Some(200),
                ..base(8, 2, 256, 700)
            },
            vec![1, 150, 201, 650],
        ),
        (
            DecodeAttention {
                window: Some(100),
                ..base(4, 1, 256, 1000)
            },
            vec![99, 100, 101, 513, 1000],
        ),
        (
            DecodeAttention {
                m: 2,
                ..base(14, 2, 64, 600)
            },
            vec![1, 600, 129, 300],
        ),
    ];
    for (s, lens) in cases {
        attention_case(dev, &mut rng, s, &lens);
    }
}

#[test]
fn gemv_rope_equals_gemv_then_rope_kv() {
    if let Some(dev) = gpu_or_skip("gemv_rope_equals_gemv_then_rope_kv") {
        gemv_rope(Some(&dev));
        gemv_rope_split(Some(&dev));
    }
}

/// The mirror of `rope_kv` on the GEMVs' outputs `ys` (Q, K, V, each `[vector][rows]`), each
/// vector at its own position with its own caches (poisoned where not written): the bytes of
/// q, k, v, the K caches and the V caches.
/// Random `ty` weights of every matrix of a GEMV (`parts` rows each, `k` columns) and an f32
/// bias per matrix.
fn part_weights(
    rng: &mut Rng,
    ty: ptxforge::quant::GgmlType,
    parts: &[u32],
    k: u32,
) -> (Vec<Vec<u8>>, Vec<Vec<f32>>) {
    let ws = parts
        .iter()
        .map(|rows| ptxforge::quant::quantize(ty, &values(rng, (rows * k) as usize, 0.05)).unwrap())
        .collect();
    let biases = parts
        .iter()
        .map(|rows| values(rng, *rows as usize, 1.0))
        .collect();
    (ws, biases)
}

fn rope_kv_per_vector(rk: &RopeKv, table: &[f32], pos: &[u32], ys: Vec<Vec<f32>>) -> [Vec<u8>; 5] {
    let (qn, kn) = (
        (rk.n_heads * rk.head_dim) as usize,
        (rk.n_kv_heads * rk.head_dim) as usize,
    );
    let cache = kn * rk.max_ctx as usize;
    let poison = f16::from_bits(u16::from_le_bytes([POISON; 2]));
    let mut kc = vec![poison; cache * pos.len()];
    let mut vc = kc.clone();
    let [mut q, mut k, v]: [Vec<f32>; 3] = ys.try_into().expect("Q, K and V outputs");
    for (i, p) in pos.iter().enumerate() {
        mirror::rope_kv::rope_kv(
            rk,
            table,
            *p,
            &mut q[i * qn..(i + 1) * qn],
            &mut k[i * kn..(i + 1) * kn],
            &v[i * kn..(i + 1) * kn],
            &mut kc[i * cache..(i + 1) * cache],
            &mut vc[i * cache..(i + 1) * cache],
        )
        .unwrap();
    }
    [
        f32_bytes(&q),
        f32_bytes(&k),
        f32_bytes(&v),
        f16_bytes(&kc),
        f16_bytes(&vc),
    ]
}

/// Q and K in one launch with the epilogue's Q and K part, V (another type) in its own with
/// the V part, against the mirrors of the three GEMVs and `rope_kv`: outputs and whole caches,
/// bit for bit, every vector at its own position (one past the cache).
fn gemv_rope_split(dev: Option<&Device>) {
    use ptxforge::quant::{quantize, GgmlType};
    let mut rng = Rng::fresh("gemv rope split");
    let max_ctx = 24u32;
    let (h, kv, d, k) = (32u32, 8u32, 128u32, 4096u32);
    for style in [RopeStyle::Norm, RopeStyle::Neox] {
        for m in [1u32, 2] {
            let rope = |outputs| GemvRope {
                style,
                head_dim: d,
                rope_dims: d,
                max_ctx,
                outputs,
            };
            let (qn, kn) = (h * d, kv * d);
            let qk = Gemv {
                weight: WeightType::Q4K,
                n: qn,
                k,
                bias: false,
                residual: false,
                m,
                more_rows: [kn, 0],
                rope: Some(rope(RopeOutputs::Qk)),
                prologue: None,
                tile: None,
            };
            let v_spec = Gemv {
                weight: WeightType::Q6K,
                n: kn,
                more_rows: [0, 0],
                rope: Some(rope(RopeOutputs::V)),
                ..qk
            };
            let w: Vec<Vec<u8>> = [
                (GgmlType::Q4K, qn),
                (GgmlType::Q4K, kn),
                (GgmlType::Q6K, kn),
            ]
            .iter()
            .map(|(ty, rows)| quantize(*ty, &values(&mut rng, (rows * k) as usize, 0.05)).unwrap())
            .collect();
            let x: Vec<u8> = (0..m)
                .flat_map(|_| {
                    let q = quantize(GgmlType::Q8_1, &values(&mut rng, k as usize, 1.0)).unwrap();
                    to_device(&q)
                })
                .collect();
            let pos: Vec<u32> = (0..m)
                .map(|v| {
                    if v == 1 {
                        max_ctx
                    } else {
                        rng.below(max_ctx as u64) as u32
                    }
                })
                .collect();
            let pos_bytes: Vec<u8> = pos.iter().flat_map(|p| p.to_le_bytes()).collect();
            let table = ptxforge::reference::rope::rope_table(1e4, d, max_ctx);
            let out_qk = run(
                dev,
                &KernelSpec::Gemv(qk),
                &[
                    ("w", w[0].clone()),
                    ("w1", w[1].clone()),
                    ("x", x.clone()),
                    ("rope_table", f32_bytes(&table)),
                    ("pos", pos_bytes.clone()),
                ],
            );
            let out_v = run(
                dev,
                &KernelSpec::Gemv(v_spec),
                &[("w", w[2].clone()), ("x", x.clone()), ("pos", pos_bytes)],
            );
            let ys: Vec<Vec<f32>> = [qk.part(0), qk.part(1), v_spec.part(0)]
                .iter()
                .zip(&w)
                .map(|(spec, w)| mirror::gemv::gemv(spec, w, &x, None, None).unwrap())
                .collect();
            let rk = rope(RopeOutputs::Qkv).rope_kv(qn, kn, 1);
            let [q, kk, v, kc, vc] = rope_kv_per_vector(&rk, &table, &pos, ys);
            let what = format!("{style:?} m {m} pos {pos:?}");
            out_qk.check("y", &q, 4, &format!("{what}: q"));
            out_qk.check("y1", &kk, 4, &format!("{what}: k"));
            out_qk.check("k_cache", &kc, 2, &format!("{what}: k_cache"));
            out_v.check("y", &v, 4, &format!("{what}: v"));
            out_v.check("v_cache", &vc, 2, &format!("{what}: v_cache"));
        }
    }
}

/// A Q, K, V GEMV with the RoPE + KV epilogue against the mirrors of its three GEMVs followed
/// by `rope_kv`, every vector at its own position (one of them past the cache: nothing
/// rotated, nothing cached): outputs and whole caches, bit for bit.
fn gemv_rope(dev: Option<&Device>) {
    use ptxforge::quant::{quantize, GgmlType};
    let mut rng = Rng::fresh("gemv rope");
    let max_ctx = 40u32;
    // SmolLM2 (rows paired in a thread), llama3-8b (pairs across two groups), a bias and
    // partial rotary (80-dim heads rotating 32), qwen2.5 (neox, biases), partial neox across
    // groups; batches.
    let (norm, neox) = (RopeStyle::Norm, RopeStyle::Neox);
    let cases = [
        (
            WeightType::Q4_1,
            GgmlType::Q4_1,
            9,
            3,
            64,
            64,
            576,
            false,
            norm,
        ),
        (
            WeightType::Q4K,
            GgmlType::Q4K,
            32,
            8,
            128,
            128,
            4096,
            false,
            norm,
        ),
        (
            WeightType::Q8_0,
            GgmlType::Q8_0,
            6,
            2,
            80,
            32,
            512,
            true,
            norm,
        ),
        (
            WeightType::Q5_0,
            GgmlType::Q5_0,
            14,
            2,
            64,
            64,
            896,
            true,
            neox,
        ),
        (
            WeightType::Q4K,
            GgmlType::Q4K,
            32,
            8,
            128,
            64,
            4096,
            false,
            neox,
        ),
    ];
    for (weight, ty, h, kv, d, rope_dims, k, bias, style) in cases {
        for m in [1u32, 3] {
            let epilogue = GemvRope {
                style,
                head_dim: d,
                rope_dims,
                max_ctx,
                outputs: RopeOutputs::Qkv,
            };
            let (qn, kn) = (h * d, kv * d);
            let spec = Gemv {
                weight,
                n: qn,
                k,
                bias,
                residual: false,
                m,
                more_rows: [kn, kn],
                rope: Some(epilogue),
                prologue: None,
                tile: None,
            };
            let parts = spec.parts();
            let (ws, biases) = part_weights(&mut rng, ty, &parts, k);
            let x: Vec<u8> = (0..m)
                .flat_map(|_| {
                    let q = quantize(GgmlType::Q8_1, &values(&mut rng, k as usize, 1.0)).unwrap();
                    to_device(&q)
                })
                .collect();
            // Vector 1 (of 3) sits past the cache.
            let pos: Vec<u32> = (0..m)
                .map(|v| {
                    if v == 1 {
                        max_ctx + 3
                    } else {
                        rng.below(max_ctx as u64) as u32
                    }
                })
                .collect();
            let table = ptxforge::reference::rope::rope_table(5e5, rope_dims, max_ctx);
            let mut inputs: Vec<(&str, Vec<u8>)> = vec![
                ("w", ws[0].clone()),
                ("w1", ws[1].clone()),
                ("w2", ws[2].clone()),
            ];
            inputs.push(("x", x.clone()));
            if bias {
                for (name, b) in ["bias", "bias1", "bias2"].into_iter().zip(&biases) {
                    inputs.push((name, f32_bytes(b)));
                }
            }
            inputs.push(("rope_table", f32_bytes(&table)));
            inputs.push(("pos", pos.iter().flat_map(|p| p.to_le_bytes()).collect()));
            let out = run(dev, &KernelSpec::Gemv(spec), &inputs);

            // The mirror: each matrix's own GEMV, then rope_kv per vector.
            let ys: Vec<Vec<f32>> = (0..parts.len())
                .map(|i| {
                    let b = bias.then_some(&biases[i][..]);
                    mirror::gemv::gemv(&spec.part(i), &ws[i], &x, b, None).unwrap()
                })
                .collect();
            let rk = epilogue.rope_kv(qn, kn, 1);
            let what = format!("{} m {m} pos {pos:?}", KernelSpec::Gemv(spec).name());
            out.check_rope(&rope_kv_per_vector(&rk, &table, &pos, ys), &what);
            if dev.is_some() {
                println!("{what}: outputs and caches bit-identical to GEMV + rope_kv");
            }
        }
    }
}

#[test]
fn gemv_norm_equals_rmsnorm_q8_1_then_gemv() {
    if let Some(dev) = gpu_or_skip("gemv_norm_equals_rmsnorm_q8_1_then_gemv") {
        gemv_norm(Some(&dev));
    }
}

/// The GEMV with RMSNorm + quantize in its prologue against the mirrors of `rmsnorm_q8_1`
/// (per vector) and of the plain GEMV on its output: every matrix's output, and with RoPE
/// the caches, bit for bit.
fn gemv_norm(dev: Option<&Device>) {
    use ptxforge::quant::GgmlType;
    let mut rng = Rng::fresh("gemv norm");
    let max_ctx = 40u32;
    let rope = GemvRope {
        style: RopeStyle::Norm,
        head_dim: 64,
        rope_dims: 64,
        max_ctx,
        outputs: RopeOutputs::Qkv,
    };
    // SmolLM2's Q, K, V with RoPE and its gate + up (576 values: 64 of 256 threads sum
    // squares), Q6_K and Q4_K at 4096 and 1024 (every thread sums), Q5_0 at 640 with a
    // weight offset (Gemma-style), Q8_0 at 2048 with a bias; batches of 3.
    let cases = [
        (
            WeightType::Q4_1,
            GgmlType::Q4_1,
            576,
            [192, 192],
            576,
            Some(rope),
            false,
            0.0,
        ),
        (
            WeightType::Q4_1,
            GgmlType::Q4_1,
            1536,
            [1536, 0],
            576,
            None,
            false,
            0.0,
        ),
        (
            WeightType::Q6K,
            GgmlType::Q6K,
            256,
            [0, 0],
            4096,
            None,
            false,
            0.0,
        ),
        (
            WeightType::Q4K,
            GgmlType::Q4K,
            64,
            [0, 0],
            1024,
            None,
            false,
            0.0,
        ),
        (
            WeightType::Q5_0,
            GgmlType::Q5_0,
            640,
            [0, 0],
            640,
            None,
            false,
            1.0,
        ),
        (
            WeightType::Q8_0,
            GgmlType::Q8_0,
            96,
            [0, 0],
            2048,
            None,
            true,
            0.0,
        ),
    ];
    for (weight, ty, n, more, k, rope, bias, weight_offset) in cases {
        for m in [1u32, 3] {
            let norm = GemvNorm {
                eps: 1e-5,
                weight_offset,
            };
            let spec = Gemv {
                weight,
                n,
                k,
                bias,
                residual: false,
                m,
                more_rows: more,
                rope,
                prologue: Some(GemvPrologue::Norm(norm)),
                tile: None,
            };
            let parts = spec.parts();
            let (ws, biases) = part_weights(&mut rng, ty, &parts, k);
            let xs: Vec<Vec<f32>> = (0..m).map(|_| values(&mut rng, k as usize, 2.0)).collect();
            let nw: Vec<f32> = values(&mut rng, k as usize, 0.3)
                .iter()
                .map(|v| 1.0 + v)
                .collect();
            let pos: Vec<u32> = (0..m).map(|_| rng.below(max_ctx as u64) as u32).collect();
            let table = ptxforge::reference::rope::rope_table(1e4, 64, max_ctx);
            let mut inputs: Vec<(&str, Vec<u8>)> = ["w", "w1", "w2"]
                .into_iter()
                .zip(&ws)
                .map(|(name, w)| (name, w.clone()))
                .collect();
            inputs.push(("x", xs.iter().flat_map(|x| f32_bytes(x)).collect()));
            inputs.push(("norm_w", f32_bytes(&nw)));
            if bias {
                for (name, b) in ["bias", "bias1", "bias2"].into_iter().zip(&biases) {
                    inputs.push((name, f32_bytes(b)));
                }
            }
            if rope.is_some() {
                inputs.push(("rope_table", f32_bytes(&table)));
                inputs.push(("pos", pos.iter().flat_map(|p| p.to_le_bytes()).collect()));
            }
            let out = run(dev, &KernelSpec::Gemv(spec), &inputs);

            // The mirror: rmsnorm_q8_1 of each vector, then each matrix's plain GEMV.
            let rms = norm.rmsnorm(k);
            let xq: Vec<u8> = xs
                .iter()
                .flat_map(|x| mirror::rmsnorm_q8_1::rmsnorm_q8_1(&rms, x, &nw).unwrap())
                .collect();
            let plain = Gemv {
                prologue: None,
                tile: None,
                rope: None,
                ..spec
            };
            let ys: Vec<Vec<f32>> = (0..parts.len())
                .map(|i| {
                    let b = bias.then_some(&biases[i][..]);
                    mirror::gemv::gemv(&plain.part(i), &ws[i], &xq, b, None).unwrap()
                })
                .collect();
            let what = format!("{} m {m}", KernelSpec::Gemv(spec).name());
            match rope {
                Some(r) => {
                    let rk = r.rope_kv(n, more[0], 1);
                    out.check_rope(&rope_kv_per_vector(&rk, &table, &pos, ys), &what);
                }
                None => {
                    for (i, y) in ys.iter().enumerate() {
                        let name = ["y", "y1", "y2"][i];
                        out.check(name, &f32_bytes(y), 4, &format!("{what}: {name}"));
                    }
                }
            }
            if dev.is_some() {
                println!("{what}: bit-identical to rmsnorm_q8_1 + GEMV");
            }
        }
    }
}

#[test]
fn gemv_glu_equals_glu_then_gemv() {
    if let Some(dev) = gpu_or_skip("gemv_glu_equals_glu_then_gemv") {
        gemv_glu(Some(&dev));
    }
}

/// The GEMV with the gated activation + quantize in its prologue against the mirrors of
/// `glu` (Q8_1 output, per vector) and of the plain GEMV on its output, bit for bit.
fn gemv_glu(dev: Option<&Device>) {
    use ptxforge::quant::{quantize, GgmlType};
    let mut rng = Rng::fresh("gemv glu");
    // SmolLM2's down (Q8_0, with the residual), Gemma3's (GeGLU, Q6_K), a ragged grid.
    let cases = [
        (
            WeightType::Q8_0,
            GgmlType::Q8_0,
            576,
            1536,
            GluAct::Swiglu,
            true,
        ),
        (
            WeightType::Q6K,
            GgmlType::Q6K,
            640,
            2048,
            GluAct::Geglu,
            true,
        ),
        (
            WeightType::Q4_1,
            GgmlType::Q4_1,
            100,
            1056,
            GluAct::Swiglu,
            false,
        ),
    ];
    for (weight, ty, n, k, act, residual) in cases {
        for m in [1u32, 3] {
            let spec = Gemv {
                weight,
                n,
                k,
                bias: false,
                residual,
                m,
                more_rows: [0, 0],
                rope: None,
                prologue: Some(GemvPrologue::Glu(act)),
                tile: None,
            };
            let w = quantize(ty, &values(&mut rng, (n * k) as usize, 0.05)).unwrap();
            let gates: Vec<Vec<f32>> = (0..m).map(|_| values(&mut rng, k as usize, 2.0)).collect();
            let ups: Vec<Vec<f32>> = (0..m).map(|_| values(&mut rng, k as usize, 1.0)).collect();
            let res: Vec<f32> = values(&mut rng, (n * m) as usize, 1.0);
            let mut inputs: Vec<(&str, Vec<u8>)> = vec![
                ("w", w.clone()),
                ("x", gates.iter().flat_map(|g| f32_bytes(g)).collect()),
                ("up", ups.iter().flat_map(|u| f32_bytes(u)).collect()),
            ];
            if residual {
                inputs.push(("residual", f32_bytes(&res)));
            }
            let out = run(dev, &KernelSpec::Gemv(spec), &inputs);
            let glu = Glu {
                act,
                ffn: k,
                out: OutFormat::Q8_1,
                m: 1,
            };
            let xq: Vec<u8> = gates
                .iter()
                .zip(&ups)
                .flat_map(|(g, u)| mirror::glu::glu(&glu, g, u).unwrap())
                .collect();
            let plain = Gemv {
                prologue: None,
                tile: None,
                ..spec
            };
            let r = residual.then_some(&res[..]);
            let y = mirror::gemv::gemv(&plain, &w, &xq, None, r).unwrap();
            let what = format!("{} m {m}", KernelSpec::Gemv(spec).name());
            out.check("y", &f32_bytes(&y), 4, &what);
            if dev.is_some() {
                println!("{what}: bit-identical to glu + GEMV");
            }
        }
    }
}

/// Without a GPU: every case above is a valid spec with inputs of the sizes its kernel
/// declares, and the mirrors accept them (so a GPU run fails only on a difference in bits).
#[test]
fn every_case_is_valid_without_a_gpu() {
    row_norms(None);
    elementwise(None);
    embed_rope_argmax(None);
    attention(None);
    gemv_rope(None);
    gemv_rope_split(None);
    gemv_norm(None);
    gemv_glu(None);
}
