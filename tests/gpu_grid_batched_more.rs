//! GPU numeric parity of the grid-batched embedding lookup, argmax (partial and final),
//! RoPE + KV write and decode attention (split and combine). For every shape and every M in
//! 2..=16, on fresh random inputs (seed printed), the batched kernel's output for vector
//! (token, sequence) v is bit-identical to the single kernel's output run on vector v alone:
//! every written buffer, every byte. Each vector has its own token, position or sequence
//! length, some of them out of range (bad token, position past the cache, length past
//! `max_ctx`) so the guarded paths run inside a batch too. Outputs are poisoned and every
//! written buffer is wrapped in guard regions that must stay untouched, in both runs.
//! Without a CUDA driver the GPU test prints that it skipped.

mod common;

use common::{f32s, gpu_or_skip, poisoned, read_checked, Rng, GUARD, POISON};
use half::f16;
use ptx_gen::kernels::{
    generate, Access, Argmax, ArgmaxStage, AttentionCombine, DecodeAttention, Embed, EmbedTable,
    KernelSpec, ParamKind, RopeKv, RopeStyle,
};
use ptx_gen::launch::Extent;
use ptx_gen::parity::{ParamRole, VectorIndex};
use ptx_gen::{GeneratedKernel, Target};
use ptxforge::runtime::{Device, DeviceBuffer, KernelArg, LoadedKernel};

/// The spec with `m` vectors.
fn with_m(spec: &KernelSpec, m: u32) -> KernelSpec {
    match spec.clone() {
        KernelSpec::Embed(s) => KernelSpec::Embed(Embed { m, ..s }),
        KernelSpec::Argmax(s) => KernelSpec::Argmax(Argmax { m, ..s }),
        KernelSpec::RopeKv(s) => KernelSpec::RopeKv(RopeKv { m, ..s }),
        KernelSpec::Attention(s) => KernelSpec::Attention(DecodeAttention { m, ..s }),
        KernelSpec::AttentionCombine(s) => {
            KernelSpec::AttentionCombine(AttentionCombine { m, ..s })
        }
        other => panic!("not a family of this file: {}", other.name()),
    }
}

/// Single-vector specs: real model shapes (smaller caches) and shapes with bounds checks.
fn cases() -> Vec<KernelSpec> {
    use EmbedTable::*;
    let embed = |table, vocab, hidden, scale| {
        KernelSpec::Embed(Embed {
            table,
            vocab,
            hidden,
            scale,
            m: 1,
        })
    };
    let argmax = |vocab, stage| KernelSpec::Argmax(Argmax { vocab, stage, m: 1 });
    let rope = |style, n_heads, n_kv_heads, head_dim, rope_dims, max_ctx| {
        KernelSpec::RopeKv(RopeKv {
            style,
            n_heads,
            n_kv_heads,
            head_dim,
            rope_dims,
            max_ctx,
            m: 1,
        })
    };
    let attn = |n_heads, n_kv_heads, head_dim: u32, max_ctx, window, softcap| DecodeAttention {
        n_heads,
        n_kv_heads,
        head_dim,
        max_ctx,
        scale: 1.0 / (head_dim as f32).sqrt(),
        window,
        softcap,
        m: 1,
    };
    let attns = [
        attn(32, 8, 128, 1024, None, None),
        attn(14, 2, 64, 600, None, None),
        attn(7, 1, 128, 257, Some(1), Some(50.0)),
        attn(10, 2, 80, 700, Some(100), None),
    ];
    let mut all = vec![
        embed(Q4K, 1000, 4096, 1.0),
        embed(Q6K, 3, 768, 2.5),
        embed(Q8_0, 500, 640, 640f32.sqrt()),
        embed(F16, 5, 33, 1.0),
        embed(F32, 2, 6, 0.5),
        argmax(128256, ArgmaxStage::Partial),
        argmax(2049, ArgmaxStage::Partial),
        argmax(31, ArgmaxStage::Partial),
        argmax(128256, ArgmaxStage::Final),
        argmax(151936, ArgmaxStage::Final),
        argmax(2049, ArgmaxStage::Final),
        rope(RopeStyle::Norm, 32, 8, 128, 128, 256),
        rope(RopeStyle::Neox, 14, 2, 64, 64, 300),
        rope(RopeStyle::Norm, 5, 5, 80, 34, 257),
    ];
    all.extend(attns.iter().map(|a| KernelSpec::Attention(*a)));
    all.extend(
        attns
            .iter()
            .map(|a| KernelSpec::AttentionCombine(a.combine())),
    );
    all
}

fn kernel(spec: &KernelSpec) -> GeneratedKernel {
    generate(spec, Target::dp4a_default()).unwrap_or_else(|e| panic!("{}: {e}", spec.name()))
}

fn load(dev: &Device, k: &GeneratedKernel) -> LoadedKernel {
    LoadedKernel::load_unchecked(dev, k).unwrap_or_else(|e| panic!("{}: {e}", k.name))
}

fn launch(dev: &Device, k: &LoadedKernel, args: &[KernelArg]) {
    k.launch(args, |_| 0)
        .unwrap_or_else(|e| panic!("{}: {e}", k.name()));
    dev.synchronize()
        .unwrap_or_else(|e| panic!("{}: {e}", k.name()));
}

/// `bytes` between two poisoned guard regions; the data starts at `ptr_at(GUARD)`.
fn guarded(dev: &Device, bytes: &[u8]) -> DeviceBuffer {
    let mut all = vec![POISON; GUARD];
    all.extend_from_slice(bytes);
    all.extend_from_slice(&[POISON; GUARD]);
    DeviceBuffer::from_bytes(dev, &all).expect("uploading a buffer")
}

fn f32_bytes(v: impl IntoIterator<Item = f32>) -> Vec<u8> {
    v.into_iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn u32_bytes(x: u32) -> Vec<u8> {
    x.to_le_bytes().to_vec()
}

fn f16_at(buf: &mut [u8], at: usize, x: f32) {
    buf[at..at + 2].copy_from_slice(&f16::from_f32(x).to_le_bytes());
}

/// Input bytes of buffer `name` (`bytes` long) of vector `v`: values each family expects
/// (finite scales, in-range ids), with some vectors out of range on purpose.
fn input(rng: &mut Rng, spec: &KernelSpec, name: &str, bytes: usize, v: usize) -> Vec<u8> {
    let sd = 10f32.powf(rng.uniform(-2.0, 2.0));
    let normals = |rng: &mut Rng, sd: f32| f32_bytes((0..bytes / 4).map(|_| rng.normal(sd)));
    match (spec, name) {
        (KernelSpec::Embed(s), "table") => {
            let mut t: Vec<u8> = (0..bytes).map(|_| rng.below(256) as u8).collect();
            match s.table {
                EmbedTable::F32 => return normals(rng, 1.0),
                EmbedTable::F16 => {
                    for i in 0..bytes / 2 {
                        f16_at(&mut t, 2 * i, rng.normal(1.0));
                    }
                }
                EmbedTable::Q8_0 => {
                    for b in 0..bytes / 34 {
                        f16_at(&mut t, 34 * b, rng.uniform(-0.1, 0.1));
                    }
                }
                EmbedTable::Q4K => {
                    for b in 0..bytes / 144 {
                        f16_at(&mut t, 144 * b, rng.uniform(0.0, 0.1));
                        f16_at(&mut t, 144 * b + 2, rng.uniform(0.0, 0.1));
                    }
                }
                EmbedTable::Q6K => {
                    for b in 0..bytes / 210 {
                        f16_at(&mut t, 210 * b + 208, rng.uniform(-0.1, 0.1));
                    }
                }
            }
            t
        }
        // Every fifth token is out of range (NaN row).
        (KernelSpec::Embed(s), "token") => u32_bytes(if v % 5 == 4 {
            s.vocab + v as u32
        } else {
            rng.below(s.vocab as u64) as u32
        }),
        (KernelSpec::Argmax(_), "logits") => normals(rng, sd),
        (KernelSpec::Argmax(_), "partials") => (0..bytes).map(|_| rng.below(256) as u8).collect(),
        (KernelSpec::RopeKv(_), "rope_table") => {
            f32_bytes((0..bytes / 4).map(|_| rng.uniform(-1.0, 1.0)))
        }
        // Every seventh position is past the cache (nothing written).
        (KernelSpec::RopeKv(s), "pos") => u32_bytes(if v % 7 == 6 {
            s.max_ctx + v as u32
        } else {
            rng.below(s.max_ctx as u64) as u32
        }),
        (KernelSpec::Attention(_), "k_cache" | "v_cache") => {
            let mut t = vec![0u8; bytes];
            for i in 0..bytes / 2 {
                f16_at(&mut t, 2 * i, rng.normal(1.0));
            }
            t
        }
        // Every sixth length is past max_ctx (clamped); the rest 1..=max_ctx.
        (KernelSpec::Attention(DecodeAttention { max_ctx, .. }), "seq_len")
        | (KernelSpec::AttentionCombine(AttentionCombine { max_ctx, .. }), "seq_len") => {
            u32_bytes(if v % 6 == 5 {
                max_ctx + 3
            } else {
                1 + rng.below(*max_ctx as u64) as u32
            })
        }
        (KernelSpec::AttentionCombine(_), "part_ml") => {
            f32_bytes((0..bytes / 8).flat_map(|_| [rng.normal(4.0), rng.uniform(0.5, 50.0)]))
        }
        _ => normals(rng, sd),
    }
}

/// One buffer parameter of the pair.
struct Buf {
    name: String,
    /// The single kernel's bytes (the per-vector stride of a per-vector buffer).
    bytes: usize,
    access: Access,
    per_vector: bool,
}

fn buffers(single: &GeneratedKernel, batched_spec: &KernelSpec) -> Vec<Buf> {
    let decl = batched_spec.batch_decl().expect("a batched spec claims");
    single
        .params
        .iter()
        .map(|p| {
            let ParamKind::Buffer(b) = &p.kind else {
                panic!("{}: scalar parameter {}", single.name, p.name)
            };
            let per_vector = match decl.role(&p.name) {
                Some(ParamRole::PerVector { stride_bytes }) => {
                    assert_eq!(*stride_bytes, b.bytes, "{}: {}", single.name, p.name);
                    true
                }
                Some(ParamRole::Shared) => false,
                other => panic!("{}: {} has role {other:?}", single.name, p.name),
            };
            Buf {
                name: p.name.clone(),
                bytes: b.bytes as usize,
                access: b.access,
                per_vector,
            }
        })
        .collect()
}

/// Outputs every value of which is written whatever the inputs.
fn fully_written(spec: &KernelSpec, name: &str) -> bool {
    matches!(
        (spec, name),
        (KernelSpec::Embed(_), "y") | (KernelSpec::AttentionCombine(_), "out")
    )
}

/// Runs the single kernel on each vector and the batched kernel on all of them, and compares
/// every written buffer of every vector bit for bit.
fn check_pair(dev: &Device, rng: &mut Rng, spec: &KernelSpec, m: u32) {
    let single = kernel(spec);
    let bspec = with_m(spec, m);
    let batched = kernel(&bspec);
    let decl = bspec.batch_decl().expect("a batched spec claims");
    let VectorIndex::Grid { axis } = decl.index else {
        panic!("{}: not grid-batched", batched.name)
    };
    assert_eq!(
        batched.launch.grid[axis.index()],
        Extent::Const(m),
        "{}",
        batched.name
    );
    let bufs = buffers(&single, &bspec);
    let m = m as usize;
    let init: Vec<Vec<Vec<u8>>> = bufs
        .iter()
        .map(|b| {
            let copies = if b.per_vector { m } else { 1 };
            (0..copies)
                .map(|v| match b.access {
                    Access::Write => Vec::new(),
                    Access::Read | Access::ReadWrite => input(rng, spec, &b.name, b.bytes, v),
                })
                .collect()
        })
        .collect();
    let device_buf = |b: &Buf, data: Vec<u8>, len: usize| match b.access {
        Access::Read => DeviceBuffer::from_bytes(dev, &data).expect("uploading"),
        Access::ReadWrite => guarded(dev, &data),
        Access::Write => poisoned(dev, len),
    };
    let arg = |b: &Buf, d: &DeviceBuffer| match b.access {
        Access::Read => KernelArg::Ptr(d.ptr()),
        Access::ReadWrite | Access::Write => KernelArg::Ptr(d.ptr_at(GUARD)),
    };

    // Batched: all vectors at once.
    let loaded_b = load(dev, &batched);
    let bdev: Vec<DeviceBuffer> = bufs
        .iter()
        .zip(&init)
        .map(|(b, data)| {
            let len = if b.per_vector { m * b.bytes } else { b.bytes };
            device_buf(b, data.concat(), len)
        })
        .collect();
    let args: Vec<KernelArg> = bufs.iter().zip(&bdev).map(|(b, d)| arg(b, d)).collect();
    launch(dev, &loaded_b, &args);
    let mut bout = Vec::new();
    for (b, d) in bufs.iter().zip(&bdev) {
        if b.access == Access::Read {
            bout.push(Vec::new());
            continue;
        }
        assert!(
            b.per_vector,
            "{}: written buffer {} is shared",
            batched.name, b.name
        );
        let what = format!("{} {}", batched.name, b.name);
        bout.push(read_checked(d, m * b.bytes, &what));
    }

    // Single: each vector alone.
    let loaded_s = load(dev, &single);
    for v in 0..m {
        let sdev: Vec<DeviceBuffer> = bufs
            .iter()
            .zip(&init)
            .map(|(b, data)| {
                let d = if b.per_vector {
                    data[v].clone()
                } else {
                    data[0].clone()
                };
                device_buf(b, d, b.bytes)
            })
            .collect();
        let args: Vec<KernelArg> = bufs.iter().zip(&sdev).map(|(b, d)| arg(b, d)).collect();
        launch(dev, &loaded_s, &args);
        for (k, (b, d)) in bufs.iter().zip(&sdev).enumerate() {
            if b.access == Access::Read {
                continue;
            }
            let what = format!("{} {} (vector {v} of {m})", single.name, b.name);
            let want = read_checked(d, b.bytes, &what);
            let got = &bout[k][v * b.bytes..(v + 1) * b.bytes];
            if got != want.as_slice() {
                let first = got.iter().zip(&want).position(|(g, w)| g != w).unwrap();
                panic!(
                    "{} {}: vector {v} of {m} differs from {} at byte {first}: batched {:02x?}, single {:02x?}",
                    batched.name,
                    b.name,
                    single.name,
                    &got[first..(first + 8).min(got.len())],
                    &want[first..(first + 8).min(want.len())],
                );
            }
            if fully_written(spec, &b.name) {
                let poison = u32::from_le_bytes([POISON; 4]);
                assert!(
                    f32s(got).iter().all(|x| x.to_bits() != poison),
                    "{what}: an output value was never written"
                );
            }
        }
    }
}

#[test]
fn batched_output_of_every_vector_is_bit_identical_to_the_single_kernel() {
    let Some(dev) = gpu_or_skip("grid_batched_more") else {
        return;
    };
    let mut rng = Rng::fresh("grid_batched_more");
    let cases = cases();
    for spec in &cases {
        for m in 2..=16 {
            check_pair(&dev, &mut rng, spec, m);
        }
        println!(
            "{}: M = 2..=16 bit-identical to the single kernel",
            spec.name()
        );
    }
    println!(
        "grid_batched_more: {} shapes x 15 batch sizes bit-identical",
        cases.len()
    );
}

/// No GPU needed: the batched specs serialize `m`, single ones leave it out, and each pair's
/// per-vector buffers are the single layout M times (shared ones unchanged).
#[test]
fn batched_specs_serialize_m_and_scale_their_buffers() {
    for spec in cases() {
        let json = serde_json::to_value(&spec).unwrap();
        assert!(json.get("m").is_none(), "{json}");
        let back: KernelSpec = serde_json::from_value(json).unwrap();
        assert_eq!(back, spec);
        let b = with_m(&spec, 16);
        let json = serde_json::to_value(&b).unwrap();
        assert_eq!(json.get("m").and_then(|v| v.as_u64()), Some(16), "{json}");
        let back: KernelSpec = serde_json::from_value(json).unwrap();
        assert_eq!(back, b);
        let single = kernel(&spec);
        let batched = kernel(&b);
        assert_eq!(single.params.len(), batched.params.len());
        for (s, p) in single.params.iter().zip(&batched.params) {
            let (ParamKind::Buffer(sb), ParamKind::Buffer(pb)) = (&s.kind, &p.kind) else {
                panic!("{}: scalar parameter", single.name)
            };
            let shared = matches!(
                b.batch_decl().unwrap().role(&s.name),
                Some(ParamRole::Shared)
            );
            if shared {
                assert_eq!(sb, pb, "{}: {}", batched.name, s.name);
            } else {
                assert_eq!(pb.bytes, 16 * sb.bytes, "{}: {}", batched.name, s.name);
                assert!(pb.layout.contains("[16]"), "{}", pb.layout);
                assert_eq!((pb.align, pb.access), (sb.align, sb.access));
            }
        }
    }
}
