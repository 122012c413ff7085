//! GPU numeric parity of the grid-batched families (one vector per `%ctaid.y`): Q8_1
//! quantize, rmsnorm, rmsnorm_q8_1, residual_rmsnorm (f32 and Q8_1), head_rmsnorm, glu (f32 and
//! Q8_1) and residual_add. For every shape and every M in 2..=16, on fresh random inputs (a
//! different magnitude per vector, seed printed), the batched kernel's output for vector v is
//! bit-identical to the single kernel's output run on vector v alone: every written buffer
//! (outputs and in-place buffers alike), every byte. Outputs are poisoned and every written
//! buffer is wrapped in guard regions that must stay untouched, in both runs.
//! Without a CUDA driver the GPU test prints that it skipped.

mod common;

use common::{f32s, gpu_or_skip, poisoned, read_checked, Rng, GUARD, POISON};
use ptx_gen::kernels::{
    generate, Access, Glu, GluAct, HeadRmsNorm, KernelSpec, OutFormat, ParamKind, QuantizeQ8_1,
    ResidualAdd, ResidualRmsNorm, RmsNorm, RmsNormQ8_1,
};
use ptx_gen::launch::Extent;
use ptx_gen::parity::ParamRole;
use ptx_gen::{GeneratedKernel, Target};
use ptxforge::runtime::{Device, DeviceBuffer, KernelArg, LoadedKernel};

/// The spec with `m` vectors.
fn with_m(spec: &KernelSpec, m: u32) -> KernelSpec {
    match spec.clone() {
        KernelSpec::QuantizeQ8_1(s) => KernelSpec::QuantizeQ8_1(QuantizeQ8_1 { m, ..s }),
        KernelSpec::RmsNorm(s) => KernelSpec::RmsNorm(RmsNorm { m, ..s }),
        KernelSpec::RmsNormQ8_1(s) => KernelSpec::RmsNormQ8_1(RmsNormQ8_1 { m, ..s }),
        KernelSpec::ResidualRmsNorm(s) => KernelSpec::ResidualRmsNorm(ResidualRmsNorm { m, ..s }),
        KernelSpec::HeadRmsNorm(s) => KernelSpec::HeadRmsNorm(HeadRmsNorm { m, ..s }),
        KernelSpec::Glu(s) => KernelSpec::Glu(Glu { m, ..s }),
        KernelSpec::ResidualAdd(s) => KernelSpec::ResidualAdd(ResidualAdd { m, ..s }),
        other => panic!("not a grid-batched family: {}", other.name()),
    }
}

/// Single-vector specs: real model shapes and shapes with bounds checks, partial chunks,
/// partial thread blocks and tails.
fn cases() -> Vec<KernelSpec> {
    let norm = |hidden, eps, weight_offset| {
        KernelSpec::RmsNorm(RmsNorm {
            hidden,
            eps,
            weight_offset,
            m: 1,
        })
    };
    let norm_q8 = |hidden, eps, weight_offset| {
        KernelSpec::RmsNormQ8_1(RmsNormQ8_1 {
            hidden,
            eps,
            weight_offset,
            m: 1,
        })
    };
    let res_norm = |hidden, out, weight_offset| {
        KernelSpec::ResidualRmsNorm(ResidualRmsNorm {
            hidden,
            eps: 1e-6,
            weight_offset,
            out,
            post_norm: false,
            m: 1,
        })
    };
    let head = |n_heads, head_dim, weight_offset| {
        KernelSpec::HeadRmsNorm(HeadRmsNorm {
            n_heads,
            head_dim,
            eps: 1e-6,
            weight_offset,
            k_heads: 0,
            m: 1,
        })
    };
    let glu = |act, ffn, out| {
        KernelSpec::Glu(Glu {
            act,
            ffn,
            out,
            m: 1,
        })
    };
    let add = |n, scale| KernelSpec::ResidualAdd(ResidualAdd { n, scale, m: 1 });
    vec![
        KernelSpec::QuantizeQ8_1(QuantizeQ8_1 { k: 4096, m: 1 }),
        KernelSpec::QuantizeQ8_1(QuantizeQ8_1 { k: 96, m: 1 }),
        norm(4096, 1e-5, 0.0),
        norm(99, 1e-6, 1.0),
        norm(16384, 1e-6, 0.0),
        norm_q8(4096, 1e-5, 0.0),
        norm_q8(96, 1e-6, 1.0),
        res_norm(4096, OutFormat::F32, 0.0),
        res_norm(130, OutFormat::F32, 1.0),
        res_norm(896, OutFormat::Q8_1, 0.0),
        res_norm(4096, OutFormat::Q8_1, 0.0),
        head(16, 128, 0.0),
        head(5, 34, 1.0),
        glu(GluAct::Swiglu, 14336, OutFormat::F32),
        glu(GluAct::Geglu, 1001, OutFormat::F32),
        glu(GluAct::Swiglu, 4864, OutFormat::Q8_1),
        glu(GluAct::Geglu, 96, OutFormat::Q8_1),
        add(4096, 1.0),
        add(3, 0.5),
        add(1028, 0.22),
    ]
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
    all.extend(std::iter::repeat_n(POISON, GUARD));
    DeviceBuffer::from_bytes(dev, &all).expect("uploading a buffer")
}

/// `n` bytes of f32 values for one vector: normal with the vector's magnitude, some exact
/// zeros and exact halves (Q8_1 rounding ties when the block's amax is 127).
fn vector_bytes(rng: &mut Rng, n_bytes: usize, sd: f32) -> Vec<u8> {
    (0..n_bytes / 4)
        .map(|_| match rng.below(16) {
            0 => 0.0,
            1 => (rng.below(254) as f32 - 127.0) + 0.5,
            _ => rng.normal(sd),
        })
        .flat_map(|v: f32| v.to_le_bytes())
        .collect()
}

/// One buffer parameter of the pair.
struct Buf {
    name: String,
    /// The single kernel's bytes (the per-vector stride of a per-vector buffer).
    bytes: usize,
    access: Access,
    per_vector: bool,
    f32_layout: bool,
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
                f32_layout: b.layout.starts_with("f32"),
            }
        })
        .collect()
}

/// Runs the single kernel on each vector and the batched kernel on all of them, and compares
/// every written buffer of every vector bit for bit.
fn check_pair(dev: &Device, rng: &mut Rng, spec: &KernelSpec, m: u32) {
    let single = kernel(spec);
    let bspec = with_m(spec, m);
    let batched = kernel(&bspec);
    assert_eq!(batched.launch.grid[1], Extent::Const(m), "{}", batched.name);
    let bufs = buffers(&single, &bspec);
    let m = m as usize;
    // Inputs (and initial contents of in-place buffers): per vector for per-vector buffers.
    let init: Vec<Vec<Vec<u8>>> = bufs
        .iter()
        .map(|b| {
            let copies = if b.per_vector { m } else { 1 };
            (0..copies)
                .map(|_| {
                    let sd = 10f32.powf(rng.uniform(-2.0, 2.0));
                    match b.access {
                        Access::Write => Vec::new(),
                        Access::Read | Access::ReadWrite => vector_bytes(rng, b.bytes, sd),
                    }
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
            if b.f32_layout && b.access == Access::Write {
                let poison = f32::from_bits(u32::from_le_bytes([POISON; 4]));
                assert!(
                    f32s(got).iter().all(|x| x.to_bits() != poison.to_bits()),
                    "{what}: an output value was never written"
                );
            }
        }
    }
}

#[test]
fn batched_output_of_every_vector_is_bit_identical_to_the_single_kernel() {
    let Some(dev) = gpu_or_skip("grid_batched") else {
        return;
    };
    let mut rng = Rng::fresh("grid_batched");
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
        "grid_batched: {} shapes x 15 batch sizes bit-identical",
        cases.len()
    );
}

/// No GPU needed: the batched specs serialize `m`, single ones leave it out (older manifests
/// read back unchanged), and each pair's buffers are the single layout M times.
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
