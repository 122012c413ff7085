//! GPU tests of decode attention (split kernel + combine kernel) against the f64 CPU
//! reference, on fresh random inputs.
//!
//! Criterion, per query head h: `max_d |gpu[h][d] - cpu[h][d]| <= 1e-4 * max_d |cpu[h][d]|`
//! (issue 4: attention <= 1e-4 relative), and every output finite.
//!
//! Every run also checks the partials the split kernel leaves for the combine kernel: for a
//! chunk with an attended position, `m` equals log2(e) times the chunk's largest logit (same
//! tolerance, relative to max(1, |m|)) and `l >= 1`; for a chunk without one, `{m, l}` is
//! exactly `{-inf, 0}` and its `o` is left untouched.
//!
//! Inputs the kernels must not read are poisoned: cache positions outside `[lo, seq_len)`
//! hold f16 NaN (K) and +-65504 (V), and q, K and V sit between NaN guard regions. Outputs
//! and partials are filled with NaN before each run and wrapped in guard regions that must
//! stay untouched. Without a CUDA driver the tests print that they skipped.

mod common;

use common::{gpu_or_skip, Rng};
use half::f16;
use ptx_gen::kernels::{generate, DecodeAttention, GeneratedKernel, KernelSpec};
use ptx_gen::Target;
use ptxforge::reference::attention as reference;
use ptxforge::runtime::{Device, DeviceBuffer, KernelArg, LoadedKernel};

/// Bytes on each side of every buffer.
const GUARD: usize = 256;
/// Fill of guards, outputs and partials: 0xFF bytes are NaN as f32 and as f16.
const FILL: u8 = 0xFF;
const TOLERANCE: f64 = 1e-4;
const LOG2_E: f64 = std::f64::consts::LOG2_E;
/// The sequence lengths of issue 4 (those that fit the cache are used).
const SEQ_LENS: [u32; 6] = [1, 2, 255, 256, 257, 4097];

/// A buffer of `bytes` between guard regions of FILL bytes (an input, or an output when
/// `bytes` is all FILL).
fn guarded(dev: &Device, bytes: &[u8]) -> DeviceBuffer {
    let mut all = vec![FILL; bytes.len() + 2 * GUARD];
    all[GUARD..GUARD + bytes.len()].copy_from_slice(bytes);
    DeviceBuffer::from_bytes(dev, &all).expect("uploading a buffer")
}

fn output(dev: &Device, len: u64) -> DeviceBuffer {
    guarded(dev, &vec![FILL; len as usize])
}

/// The body of a guarded buffer, after checking both guard regions still hold FILL.
fn read_checked(buf: &DeviceBuffer, what: &str) -> Vec<u8> {
    let all = buf.to_vec().expect("downloading a buffer");
    let body = all.len() - 2 * GUARD;
    assert!(
        all[..GUARD].iter().all(|b| *b == FILL),
        "{what}: bytes before the buffer were written"
    );
    assert!(
        all[GUARD + body..].iter().all(|b| *b == FILL),
        "{what}: bytes after the buffer were written"
    );
    all[GUARD..GUARD + body].to_vec()
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The split and combine kernels of one spec, loaded.
struct Attention {
    spec: DecodeAttention,
    split: LoadedKernel,
    combine: LoadedKernel,
    names: (String, String),
}

impl Attention {
    fn load(dev: &Device, spec: DecodeAttention) -> Attention {
        let gen = |s: KernelSpec| -> GeneratedKernel {
            generate(&s, Target::dp4a_default()).unwrap_or_else(|e| panic!("generating {s:?}: {e}"))
        };
        let split = gen(KernelSpec::Attention(spec));
        let combine = gen(KernelSpec::AttentionCombine(spec.combine()));
        assert_eq!(
            combine.launch.grid[0],
            ptx_gen::launch::Extent::Const(spec.n_heads)
        );
        Attention {
            spec,
            split: LoadedKernel::load_unchecked(dev, &split).expect("loading the split kernel"),
            combine: LoadedKernel::load_unchecked(dev, &combine)
                .expect("loading the combine kernel"),
            names: (split.name, combine.name),
        }
    }
}

/// Host inputs of one run: the caches hold random f16 values at the attended positions and
/// poison elsewhere.
struct Inputs {
    q: Vec<f32>,
    k: Vec<f16>,
    v: Vec<f16>,
}

fn inputs(rng: &mut Rng, s: &DecodeAttention, attended: std::ops::Range<u32>) -> Inputs {
    let d = s.head_dim as usize;
    // Per-head query scale: flat to peaky softmaxes (logits of sd 0.5 .. 3 at scale 1/sqrt(d)).
    let mut q = Vec::with_capacity(s.n_heads as usize * d);
    for _ in 0..s.n_heads {
        let sd = rng.uniform(0.5, 3.0);
        q.extend((0..d).map(|_| rng.normal(sd)));
    }
    let dim_scale: Vec<f32> = (0..d).map(|_| rng.uniform(0.25, 2.0)).collect();
    let len = s.n_kv_heads as usize * s.max_ctx as usize * d;
    let mut k = vec![f16::NAN; len];
    let mut v = vec![f16::NAN; len];
    for kv in 0..s.n_kv_heads as usize {
        for p in 0..s.max_ctx as usize {
            let row = (kv * s.max_ctx as usize + p) * d;
            if attended.contains(&(p as u32)) {
                for i in 0..d {
                    k[row + i] = f16::from_f32(rng.normal(dim_scale[i]));
                    v[row + i] = f16::from_f32(rng.normal(1.0) + 0.25 * dim_scale[i]);
                }
            } else {
                let huge = if p % 2 == 0 { f16::MAX } else { f16::MIN };
                v[row..row + d].fill(huge);
            }
        }
    }
    Inputs { q, k, v }
}

fn f16_bytes(v: &[f16]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Device buffers of one spec. The partials are reused across runs unless re-poisoned.
struct Buffers {
    part_o: DeviceBuffer,
    part_ml: DeviceBuffer,
    out: DeviceBuffer,
}

impl Buffers {
    fn new(dev: &Device, s: &DecodeAttention) -> Buffers {
        Buffers {
            part_o: output(dev, s.partial_o_bytes()),
            part_ml: output(dev, s.partial_ml_bytes()),
            out: output(dev, s.n_heads as u64 * s.head_dim as u64 * 4),
        }
    }
}

/// Runs both kernels with `seq_len` in device memory (`reference_len` is what the kernels
/// must treat it as: seq_len clamped to max_ctx) and checks everything. Returns the worst
/// relative error over the heads.
fn run_and_check(
    dev: &Device,
    rng: &mut Rng,
    a: &Attention,
    bufs: &Buffers,
    seq_len: u32,
    check_partials: bool,
) -> f64 {
    let s = &a.spec;
    let seq = seq_len.min(s.max_ctx);
    let attended = reference::attended(seq, s.window);
    let inp = inputs(rng, s, attended.clone());
    let q = guarded(dev, &f32_bytes(&inp.q));
    let k = guarded(dev, &f16_bytes(&inp.k));
    let v = guarded(dev, &f16_bytes(&inp.v));
    let sl = guarded(dev, &seq_len.to_le_bytes());
    a.split
        .launch(
            &[
                KernelArg::Ptr(q.ptr_at(GUARD)),
                KernelArg::Ptr(k.ptr_at(GUARD)),
                KernelArg::Ptr(v.ptr_at(GUARD)),
                KernelArg::Ptr(sl.ptr_at(GUARD)),
                KernelArg::Ptr(bufs.part_o.ptr_at(GUARD)),
                KernelArg::Ptr(bufs.part_ml.ptr_at(GUARD)),
            ],
            |_| 0,
        )
        .unwrap();
    a.combine
        .launch(
            &[
                KernelArg::Ptr(bufs.part_o.ptr_at(GUARD)),
                KernelArg::Ptr(bufs.part_ml.ptr_at(GUARD)),
                KernelArg::Ptr(sl.ptr_at(GUARD)),
                KernelArg::Ptr(bufs.out.ptr_at(GUARD)),
            ],
            |_| 0,
        )
        .unwrap();
    dev.synchronize()
        .unwrap_or_else(|e| panic!("{} / {}: {e}", a.names.0, a.names.1));
    let what = format!("{} seq_len {seq_len}", a.names.0);
    let got = f32s(&read_checked(&bufs.out, &what));
    let part_o = read_checked(&bufs.part_o, &what);
    let part_ml = f32s(&read_checked(&bufs.part_ml, &what));
    if check_partials {
        check_partials_of(s, &inp, seq, &part_o, &part_ml, &what);
    }

    let want = reference::decode_attention_f64(s, &inp.q, &inp.k, &inp.v, seq);
    let d = s.head_dim as usize;
    let mut worst = 0f64;
    for h in 0..s.n_heads as usize {
        let (g, w) = (&got[h * d..(h + 1) * d], &want[h * d..(h + 1) * d]);
        let scale = w.iter().fold(0f64, |m, x| m.max(x.abs()));
        let (i, err) = g
            .iter()
            .zip(w)
            .map(|(g, w)| {
                if g.is_finite() {
                    (*g as f64 - w).abs()
                } else {
                    f64::INFINITY
                }
            })
            .enumerate()
            .fold(
                (0, 0f64),
                |best, (i, e)| if e > best.1 { (i, e) } else { best },
            );
        let rel = err / scale.max(f64::MIN_POSITIVE);
        assert!(
            rel <= TOLERANCE,
            "{what}: head {h}: max |gpu - cpu| = {err:e} at dim {i} (gpu {:e}, cpu {:e}) is {rel:e} of max |cpu| = {scale:e}",
            g[i],
            w[i]
        );
        worst = worst.max(rel);
    }
    worst
}

/// The split kernel's partials: `{m, l}` of every chunk and `o` of the empty ones.
fn check_partials_of(
    s: &DecodeAttention,
    inp: &Inputs,
    seq: u32,
    part_o: &[u8],
    part_ml: &[f32],
    what: &str,
) {
    let (nc, chunk, d) = (s.n_chunks() as usize, s.chunk(), s.head_dim as usize);
    let attended = reference::attended(seq, s.window);
    for h in 0..s.n_heads as usize {
        let logits = reference::logits(s, &inp.q, &inp.k, h, seq);
        for c in 0..nc {
            let (m, l) = (part_ml[(h * nc + c) * 2], part_ml[(h * nc + c) * 2 + 1]);
            let lo = (c as u32 * chunk).max(attended.start);
            let hi = ((c as u32 + 1) * chunk).min(attended.end);
            let o_bytes = &part_o[(h * nc + c) * d * 4..(h * nc + c + 1) * d * 4];
            if lo >= hi {
                assert!(
                    m == f32::NEG_INFINITY && l == 0.0,
                    "{what}: head {h} chunk {c} has no attended position, partial {{{m}, {l}}}"
                );
                assert!(
                    o_bytes.iter().all(|b| *b == FILL),
                    "{what}: head {h} chunk {c}: o of an empty chunk was written"
                );
                continue;
            }
            let ref_m = LOG2_E
                * logits[(lo - attended.start) as usize..(hi - attended.start) as usize]
                    .iter()
                    .fold(f64::NEG_INFINITY, |a, b| a.max(*b));
            let err = (m as f64 - ref_m).abs();
            assert!(
                m.is_finite() && err <= TOLERANCE * ref_m.abs().max(1.0),
                "{what}: head {h} chunk {c}: m = {m:e}, reference {ref_m:e}"
            );
            assert!(
                l >= 0.999 && l <= (hi - lo) as f32 * 1.001,
                "{what}: head {h} chunk {c}: l = {l:e} for {} positions",
                hi - lo
            );
            assert!(
                f32s(o_bytes).iter().all(|x| x.is_finite()),
                "{what}: head {h} chunk {c}: o not finite"
            );
        }
    }
}

/// Every sequence length of issue 4 that fits the cache, the full cache, and a random one.
fn seq_lens(rng: &mut Rng, max_ctx: u32) -> Vec<u32> {
    let mut v: Vec<u32> = SEQ_LENS.iter().copied().filter(|n| *n <= max_ctx).collect();
    v.push(max_ctx);
    v.push(1 + rng.below(max_ctx as u64) as u32);
    v
}

fn spec(
    n_heads: u32,
    n_kv_heads: u32,
    head_dim: u32,
    max_ctx: u32,
    window: Option<u32>,
    softcap: Option<f32>,
) -> DecodeAttention {
    DecodeAttention {
        n_heads,
        n_kv_heads,
        head_dim,
        max_ctx,
        scale: 1.0 / (head_dim as f32).sqrt(),
        window,
        softcap,
        m: 1,
    }
}

/// Runs `specs` over `lens` (or the sequence lengths), fresh buffers for each run.
fn sweep(
    dev: &Device,
    rng: &mut Rng,
    specs: &[DecodeAttention],
    label: &str,
    lens: Option<&[u32]>,
) {
    let mut worst = (0f64, String::new());
    for s in specs {
        let a = Attention::load(dev, *s);
        let lens = match lens {
            Some(l) => l.iter().map(|n| (*n).min(s.max_ctx)).collect(),
            None => seq_lens(rng, s.max_ctx),
        };
        for seq_len in lens {
            let bufs = Buffers::new(dev, s);
            let e = run_and_check(dev, rng, &a, &bufs, seq_len, true);
            if e >= worst.0 {
                worst = (e, format!("{} seq_len {seq_len}", a.names.0));
            }
        }
        println!("{label}: {} ok", a.names.0);
    }
    println!(
        "{label}: {} specs, worst relative error {:e} ({})",
        specs.len(),
        worst.0,
        worst.1
    );
}

#[test]
fn attention_matches_the_reference_over_head_dims_groups_windows_and_softcaps() {
    let Some(dev) = gpu_or_skip("attention sweep") else {
        return;
    };
    let mut rng = Rng::fresh("attention sweep");
    let mut specs = Vec::new();
    let windows = [100u32, 300, 1000];
    let caps = [5.0f32, 30.0, 50.0];
    let mut n = 0;
    for d in [64u32, 80, 96, 128, 256] {
        for group in [1u32, 3, 4, 7, 8] {
            let kv = if group == 1 { 3 } else { 2 };
            for variant in 0..4 {
                let window = (variant % 2 == 1).then(|| windows[n % 3]);
                let softcap = (variant >= 2).then(|| caps[n % 3]);
                n += 1;
                // 4100: not a multiple of the chunk, so the last chunk is partial.
                specs.push(spec(group * kv, kv, d, 4100, window, softcap));
            }
        }
    }
    sweep(&dev, &mut rng, &specs, "attention sweep", None);
}

#[test]
fn attention_matches_the_reference_at_model_shapes_and_edges() {
    let Some(dev) = gpu_or_skip("attention models") else {
        return;
    };
    let mut rng = Rng::fresh("attention models");
    let specs = [
        spec(32, 8, 128, 8192, None, None),             // llama3-8b
        spec(14, 2, 64, 32768, None, None),             // qwen2.5-0.5b
        spec(4, 1, 256, 32768, Some(512), None),        // gemma3-270m, local layers
        spec(4, 1, 256, 32768, None, None),             // gemma3-270m, global layers
        spec(9, 3, 64, 8192, None, None),               // smollm2-135m
        spec(8, 4, 256, 8192, Some(4096), Some(50.0)),  // gemma2-2b-like
        spec(16, 1, 128, 4100, None, None),             // group 16
        spec(32, 2, 256, 4100, Some(2000), Some(30.0)), // group 16, head_dim 256
        spec(10, 2, 80, 2048, None, None),              // group 5
        spec(12, 4, 32, 300, Some(7), None),            // head_dim 32, tiny window
        spec(6, 2, 192, 4100, None, Some(20.0)),        // head_dim 192
        spec(2, 1, 128, 1, None, None),                 // a one-position cache
        spec(7, 7, 64, 130, Some(1), None),             // window of one position
    ];
    sweep(&dev, &mut rng, &specs, "attention models", None);
}

#[test]
fn every_group_size_from_1_to_16_matches_the_reference() {
    let Some(dev) = gpu_or_skip("attention groups") else {
        return;
    };
    let mut rng = Rng::fresh("attention groups");
    let mut specs = Vec::new();
    for group in 1..=16u32 {
        for (d, kv) in [(64u32, 3u32), (80, 2), (96, 1), (128, 2), (256, 1)] {
            let window = (group % 3 == 0).then_some(700);
            let softcap = (group % 2 == 0).then_some(30.0);
            specs.push(spec(group * kv, kv, d, 2100, window, softcap));
        }
    }
    sweep(
        &dev,
        &mut rng,
        &specs,
        "attention groups",
        Some(&[1, 129, 257, 2100]),
    );
}

#[test]
fn a_seq_len_past_max_ctx_is_clamped_and_stale_partials_are_never_read() {
    let Some(dev) = gpu_or_skip("attention clamp/replay") else {
        return;
    };
    let mut rng = Rng::fresh("attention clamp/replay");
    for s in [
        spec(8, 2, 128, 1000, None, None),
        spec(8, 2, 64, 700, Some(300), Some(30.0)),
    ] {
        let a = Attention::load(&dev, s);
        // seq_len beyond max_ctx reads as max_ctx.
        for seq_len in [s.max_ctx + 1, s.max_ctx + 300, u32::MAX] {
            let bufs = Buffers::new(&dev, &s);
            run_and_check(&dev, &mut rng, &a, &bufs, seq_len, true);
        }
        // Graph-style replay: the same partial buffers, seq_len changing between launches
        // (longest first, so shorter runs find stale partials of longer ones).
        let bufs = Buffers::new(&dev, &s);
        for seq_len in [s.max_ctx, 600, 257, 256, 129, 128, 2, 1, 500] {
            let seq_len = seq_len.min(s.max_ctx);
            run_and_check(&dev, &mut rng, &a, &bufs, seq_len, false);
        }
        println!("attention clamp/replay: {} ok", a.names.0);
    }
}
