//! Numeric parity on the device: for every batched kernel of a loaded set, M runs of the
//! single kernel the step launches (one per vector; for a batched GEMV with more rows per
//! group, the single kernel its parity twin stands in for) and one batched run on the same
//! random inputs must leave every output byte identical. Run once per device and set when an [`Engine`] loads (the
//! structural proof in `parity.json` says the PTX computes the same; this shows the GPU's
//! JIT-compiled code does too).
//!
//! Shared parameters bound to weights or rope tables read the engine's own device copies;
//! every other buffer gets random contents sane for its layout (floats in ±[0.5, 1), u32
//! positions/lengths/tokens in 1..=8, Q8_1 blocks with small scales).

use ptx_gen::kernels::{GeneratedKernel, ParamKind};
use ptx_gen::parity::{BatchDecl, ParamRole};

use crate::plan::Launch;

use super::engine::Engine;
use super::error::RuntimeError;
use super::kernel::{DeviceBuffer, KernelArg, LoadedKernel};

/// Checks every batched pair of the engine's set; returns how many.
pub(crate) fn check_set(engine: &Engine) -> Result<usize, RuntimeError> {
    let set = &engine.set;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for pair in &set.batched {
        let missing = |name: &str| RuntimeError::KernelSet(format!("no single kernel {name}"));
        let twin = set
            .single(&pair.single)
            .ok_or_else(|| missing(&pair.single))?;
        // A parity twin (the batch's tile) stands in for the kernel the single step launches:
        // the batched kernel must give that kernel's bits.
        let single = match twin.spec.twin_source() {
            Some(source) => {
                let name = source.name();
                set.kernels
                    .iter()
                    .find(|k| k.name == name)
                    .ok_or_else(|| missing(&name))?
            }
            None => twin,
        };
        let decl = pair.batched.spec.batch_decl().ok_or_else(|| {
            RuntimeError::KernelSet(format!("{} has no batching claim", pair.batched.name))
        })?;
        let launch = set.plan.step.iter().find(|l| l.kernel == single.name);
        check_pair(engine, single, &pair.batched, &decl, launch, &mut rng)?;
    }
    Ok(set.batched.len())
}

/// One parameter's device data for the two runs.
enum Data {
    /// A read-only shared pointer (weights, rope tables, or one random buffer).
    Shared(u64),
    /// Per-vector regions: copy `a` for the single runs, `b` for the batched run.
    PerVector {
        a: Box<DeviceBuffer>,
        b: Box<DeviceBuffer>,
        stride: u64,
        written: bool,
    },
}

fn check_pair(
    engine: &Engine,
    single: &GeneratedKernel,
    batched: &GeneratedKernel,
    decl: &BatchDecl,
    launch: Option<&Launch>,
    rng: &mut Rng,
) -> Result<(), RuntimeError> {
    let device = &engine.device;
    let m = decl.m;
    let unsupported = |what: String| RuntimeError::KernelSet(format!("{}: {what}", batched.name));
    let mut keep = Vec::new(); // random shared buffers live until the runs end
    let mut data: Vec<(String, Data)> = Vec::new();
    for p in &single.params {
        let ParamKind::Buffer(bp) = &p.kind else {
            return Err(unsupported(format!(
                "scalar parameter {} cannot be re-checked",
                p.name
            )));
        };
        let role = decl
            .role(&p.name)
            .ok_or_else(|| unsupported(format!("{} missing from the batching claim", p.name)))?;
        let d = match role {
            ParamRole::Shared => {
                let bound = launch
                    .and_then(|l| l.args.iter().find(|(n, _)| *n == p.name))
                    .map(|(_, a)| engine.shared_ptr(a))
                    .transpose()?
                    .flatten();
                match bound {
                    Some(ptr) => Data::Shared(ptr),
                    None => {
                        let buf =
                            DeviceBuffer::from_bytes(device, &random(&bp.layout, bp.bytes, rng))?;
                        let ptr = buf.ptr();
                        keep.push(buf);
                        Data::Shared(ptr)
                    }
                }
            }
            ParamRole::PerVector { stride_bytes } => {
                let total = stride_bytes * (m as u64 - 1) + bp.bytes;
                let host = random(&bp.layout, total, rng);
                Data::PerVector {
                    a: Box::new(DeviceBuffer::from_bytes(device, &host)?),
                    b: Box::new(DeviceBuffer::from_bytes(device, &host)?),
                    stride: *stride_bytes,
                    written: bp.access != ptx_gen::kernels::Access::Read,
                }
            }
            ParamRole::ScalarTable { .. } => {
                return Err(unsupported(format!(
                    "scalar table {} cannot be re-checked",
                    p.name
                )))
            }
        };
        data.push((p.name.clone(), d));
    }
    let single_k = engine.kernel(&single.name)?;
    let batched_k = engine.kernel(&batched.name)?;
    for v in 0..m as u64 {
        let args = data
            .iter()
            .map(|(_, d)| match d {
                Data::Shared(p) => KernelArg::Ptr(*p),
                Data::PerVector { a, stride, .. } => KernelArg::Ptr(a.ptr() + v * stride),
            })
            .collect::<Vec<_>>();
        launch_const(single_k, &args)?;
    }
    let args = batched
        .params
        .iter()
        .map(|p| {
            data.iter()
                .find(|(n, _)| *n == p.name)
                .map(|(_, d)| match d {
                    Data::Shared(p) => KernelArg::Ptr(*p),
                    Data::PerVector { b, .. } => KernelArg::Ptr(b.ptr()),
                })
                .ok_or_else(|| {
                    unsupported(format!("batched parameter {} has no single twin", p.name))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    launch_const(batched_k, &args)?;
    device.synchronize()?;
    for (name, d) in &data {
        if let Data::PerVector {
            a,
            b,
            stride,
            written: true,
        } = d
        {
            let (x, y) = (a.to_vec()?, b.to_vec()?);
            if let Some(byte) = x.iter().zip(&y).position(|(p, q)| p != q) {
                return Err(RuntimeError::NumericParity {
                    device: device.name().to_string(),
                    single: single.name.clone(),
                    batched: batched.name.clone(),
                    param: name.clone(),
                    vector: (byte as u64 / stride) as u32,
                    byte,
                });
            }
        }
    }
    drop(keep);
    Ok(())
}

fn launch_const(k: &LoadedKernel, args: &[KernelArg]) -> Result<(), RuntimeError> {
    k.launch(args, |_| 1)
}

/// splitmix64.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// `bytes` random bytes sane for `layout` (its element type is the prefix).
pub(crate) fn random(layout: &str, bytes: u64, rng: &mut Rng) -> Vec<u8> {
    let n = bytes as usize;
    let mut out = Vec::with_capacity(n.div_ceil(8) * 8);
    // Per 64-bit word: mask and set bits so each element is a sane value.
    let (and, or) = if layout.starts_with("f32") {
        // sign + mantissa random, exponent 126: ±[0.5, 1)
        (0x807F_FFFF_807F_FFFFu64, 0x3F00_0000_3F00_0000u64)
    } else if layout.starts_with("f16") {
        (0x83FF_83FF_83FF_83FF, 0x3800_3800_3800_3800)
    } else if layout.starts_with("u32") {
        // 1..=8
        (0x0000_0007_0000_0007, 0x0000_0001_0000_0001)
    } else {
        (u64::MAX, 0)
    };
    while out.len() < n {
        let w = (rng.next() & and) | or;
        out.extend_from_slice(&w.to_le_bytes());
    }
    out.truncate(n);
    if layout.starts_with(ptx_gen::kernels::Q8_1_LAYOUT_NAME) {
        // Planar vectors (`..[m][blocks]` or `..[blocks]`): after each vector's quants, per
        // block d, a small positive scale (f16 in [2^-7, 2^-6)), and s, ±[0.5, 1).
        let blocks: usize = layout
            .rsplit('[')
            .next()
            .and_then(|b| b.trim_end_matches(']').parse().ok())
            .unwrap_or(0);
        let n = blocks * 32;
        if n > 0 {
            for vector in out.chunks_exact_mut(crate::quant::q8_1::device_bytes(n)) {
                for ds in vector[n..n + 4 * blocks].chunks_exact_mut(4) {
                    let r = rng.next();
                    let d = 0x2000u16 | (r as u16 & 0x03FF);
                    let s = 0x3800u16 | ((r >> 16) as u16 & 0x83FF);
                    ds[0..2].copy_from_slice(&d.to_le_bytes());
                    ds[2..4].copy_from_slice(&s.to_le_bytes());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_q8_1_inputs_have_sane_scales_in_every_planar_block() {
        // Two vectors of 96 values: 112 bytes each, the scales at 96..108 of each.
        let mut rng = Rng(5);
        let layout = format!("{}[2][3]", ptx_gen::kernels::Q8_1_LAYOUT_NAME);
        let bytes = random(&layout, 224, &mut rng);
        assert_eq!(bytes.len(), 224);
        for v in 0..2 {
            for j in 0..3 {
                let at = 112 * v + 96 + 4 * j;
                let d = half::f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32();
                let s = half::f16::from_le_bytes([bytes[at + 2], bytes[at + 3]]).to_f32();
                assert!(
                    (2f32.powi(-7)..2f32.powi(-6)).contains(&d),
                    "vector {v} block {j}: d {d}"
                );
                assert!((0.5..1.0).contains(&s.abs()), "vector {v} block {j}: s {s}");
            }
        }
    }
}
