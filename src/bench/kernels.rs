//! The other decode kernels of issue 8's targets, timed like the GEMVs: decode attention
//! (split + combine) over a long f16 KV cache, the fused RMSNorm + Q8_1 quantize, and RoPE +
//! KV write, at llama3-8b's dims. Inputs are random and sane for each buffer's layout; the
//! sequence length and position are set explicitly.

use ptx_gen::kernels::{
    generate, generate_attention_tuned, AttentionTune, DecodeAttention, GeneratedKernel,
    KernelSpec, ParamKind, RmsNormQ8_1, RopeKv, RopeStyle,
};
use ptx_gen::Target;

use crate::runtime::numeric_parity::{random, Rng};
use crate::runtime::{Device, DeviceBuffer, KernelArg, LoadedKernel, RuntimeError};

use super::{median_graph_us, BenchRow, REPLAYS};

/// One kernel's buffers: every parameter, with `scalars` (name, u32 value) overriding the
/// random contents of 4-byte buffers such as `seq_len` and `pos`.
fn buffers(
    device: &Device,
    k: &GeneratedKernel,
    scalars: &[(&str, u32)],
    rng: &mut Rng,
) -> Result<Vec<DeviceBuffer>, RuntimeError> {
    k.params
        .iter()
        .map(|p| {
            let ParamKind::Buffer(b) = &p.kind else {
                return Err(RuntimeError::Launch {
                    kernel: k.name.clone(),
                    message: format!("scalar parameter {}", p.name),
                });
            };
            let bytes = match scalars.iter().find(|(n, _)| *n == p.name) {
                Some((_, v)) => v.to_le_bytes().to_vec(),
                None => random(&b.layout, b.bytes, rng),
            };
            DeviceBuffer::from_bytes(device, &bytes)
        })
        .collect()
}

fn load(
    device: &Device,
    spec: KernelSpec,
    target: Target,
    dependent_launch: bool,
) -> Result<(GeneratedKernel, LoadedKernel), RuntimeError> {
    let k = generate(&spec, target).map_err(|e| RuntimeError::Launch {
        kernel: spec.name(),
        message: e.to_string(),
    })?;
    load_generated(device, k, dependent_launch)
}

fn load_generated(
    device: &Device,
    k: GeneratedKernel,
    dependent_launch: bool,
) -> Result<(GeneratedKernel, LoadedKernel), RuntimeError> {
    let mut l = LoadedKernel::load_unchecked(device, &k)?;
    if !dependent_launch {
        l.serialize();
    }
    Ok((k, l))
}

fn args(bufs: &[DeviceBuffer]) -> Vec<KernelArg> {
    bufs.iter().map(|b| KernelArg::Ptr(b.ptr())).collect()
}

/// Rows for attention (32 query / 8 KV heads, head_dim 128, 16384 positions, f16 cache;
/// once per entry of `tunes`, or with its own tune where that is empty), RMSNorm +
/// quantize (hidden 4096) and RoPE + KV write (32 / 8 heads, head_dim 128).
pub fn kernels(
    device: &Device,
    target: Target,
    dependent_launch: bool,
    tunes: &[AttentionTune],
    copy_gb_per_s: f64,
) -> Result<Vec<BenchRow>, RuntimeError> {
    let load_spec = |spec| load(device, spec, target, dependent_launch);
    let mut rng = Rng(0x5eed_1234);
    let mut rows = Vec::new();
    let mut row = |kernel: String, shape: &str, us: f64, bytes: u64| {
        let gbps = bytes as f64 / (us * 1e3);
        tracing::info!("{kernel}: {us:.2} us, {gbps:.0} GB/s");
        rows.push(BenchRow {
            kernel,
            shape: shape.to_string(),
            m: 1,
            median_us: us,
            bytes,
            gb_per_s: gbps,
            percent_of_copy: 100.0 * gbps / copy_gb_per_s,
        });
    };

    // Attention: two sets of caches (2 x 64 MB > 2 x L2) so every launch reads DRAM.
    let ctx = 16384;
    let attn = DecodeAttention {
        n_heads: 32,
        n_kv_heads: 8,
        head_dim: 128,
        max_ctx: ctx,
        scale: 1.0 / (128f32).sqrt(),
        window: None,
        softcap: None,
        m: 1,
    };
    let combine = attn.combine();
    let (ck, cl) = load_spec(KernelSpec::AttentionCombine(combine))?;
    let own = [attn.tune()];
    for &tune in if tunes.is_empty() { &own[..] } else { tunes } {
        let k =
            generate_attention_tuned(&attn, tune, target).map_err(|e| RuntimeError::Launch {
                kernel: KernelSpec::Attention(attn).name(),
                message: e.to_string(),
            })?;
        let (sk, sl) = load_generated(device, k, dependent_launch)?;
        let sets = (0..2)
            .map(|_| buffers(device, &sk, &[("seq_len", ctx)], &mut rng))
            .collect::<Result<Vec<_>, _>>()?;
        // The combine reads the split's partials and the same seq_len.
        let combine_bufs: Vec<Vec<KernelArg>> = sets
            .iter()
            .map(|s| {
                let by = |name: &str| {
                    let i = sk.params.iter().position(|p| p.name == name).unwrap_or(0);
                    KernelArg::Ptr(s[i].ptr())
                };
                ck.params
                    .iter()
                    .map(|p| match p.name.as_str() {
                        "part_o" | "part_ml" | "seq_len" => Ok(by(&p.name)),
                        _ => Err(()),
                    })
                    .collect::<Vec<_>>()
            })
            .map(|v| v.into_iter().filter_map(Result::ok).collect())
            .collect();
        let out = buffers(device, &ck, &[("seq_len", ctx)], &mut rng)?;
        let combine_args: Vec<Vec<KernelArg>> = combine_bufs
            .into_iter()
            .map(|mut a| {
                // `out` is the combine's last parameter.
                if let Some(o) = out.last() {
                    a.push(KernelArg::Ptr(o.ptr()));
                }
                a
            })
            .collect();
        let split_args: Vec<Vec<KernelArg>> = sets.iter().map(|s| args(s)).collect();
        let t = median_graph_us(device, REPLAYS, |i| {
            sl.launch(&split_args[i % 2], |_| ctx)?;
            cl.launch(&combine_args[i % 2], |_| ctx)
        })?;
        row(
            format!("{} + combine", sk.name),
            "32/8 heads, d128, 16384 pos",
            t.median_us,
            2 * attn.cache_bytes(),
        );
    }

    let norm = RmsNormQ8_1 {
        hidden: 4096,
        eps: 1e-5,
        weight_offset: 0.0,
        m: 1,
    };
    let (nk, nl) = load_spec(KernelSpec::RmsNormQ8_1(norm))?;
    let nb = buffers(device, &nk, &[], &mut rng)?;
    let na = args(&nb);
    let t = median_graph_us(device, REPLAYS, |_| nl.launch(&na, |_| 1))?;
    let bytes: u64 = 4096 * 4 * 2 + 4096 / 32 * 36;
    row(nk.name.clone(), "hidden 4096", t.median_us, bytes);

    let rope = RopeKv {
        style: RopeStyle::Norm,
        n_heads: 32,
        n_kv_heads: 8,
        head_dim: 128,
        rope_dims: 128,
        max_ctx: 4096,
        m: 1,
    };
    let (rk, rl) = load_spec(KernelSpec::RopeKv(rope))?;
    let rb = buffers(device, &rk, &[("pos", 1000)], &mut rng)?;
    let ra = args(&rb);
    let t = median_graph_us(device, REPLAYS, |_| rl.launch(&ra, |_| 1))?;
    // q, k, v read, q and k written back, k and v rows into the caches, one table row.
    let bytes: u64 = (4096 + 2 * 1024) * 4 + (4096 + 1024) * 4 + 2 * 1024 * 2 + 64 * 8;
    row(rk.name.clone(), "32/8 heads, d128", t.median_us, bytes);
    Ok(rows)
}
