//! The decode step of M independent sequences, derived from the single-sequence step.
//!
//! Every batched kernel addresses a per-vector parameter as `[m][single region]` (its
//! batching claim, checked by parity). So the batched step binds the same buffers, each M
//! times as large, with every single-step offset `o` into a buffer moved to `o * m`: the
//! region a single launch uses at `o` becomes M consecutive regions of the same size there.
//! KV caches are likewise `[m][single cache]` per layer; weights and rope tables are shared.
//! The derivation checks that every launch's per-vector stride equals the size of the region
//! it addresses, so no two regions of the batched layout overlap.

use std::collections::BTreeMap;

use ptx_gen::parity::ParamRole;

use super::{Arg, Buffer, KernelPlan, Launch, PlanError};

impl KernelPlan {
    /// The decode step of `m` sequences (`m == 1`: the single step), each launch bound to
    /// the batched twin of its kernel.
    pub fn step_for(&self, m: u32) -> Result<Vec<Launch>, PlanError> {
        if m <= 1 {
            return Ok(self.step.clone());
        }
        let err = |kernel: &str, what: String| PlanError::Batch {
            kernel: kernel.to_string(),
            m,
            what,
        };
        // (buffer, single offset) -> per-vector stride every launch uses there.
        let mut regions: BTreeMap<(Buffer, u64), u64> = BTreeMap::new();
        let mut out = Vec::with_capacity(self.step.len());
        for launch in &self.step {
            let spec = self
                .kernels
                .iter()
                .find(|k| k.name() == launch.kernel)
                .ok_or_else(|| err(&launch.kernel, "not a kernel of the plan".into()))?;
            let batched = spec
                .batched(m)
                .ok_or_else(|| err(&launch.kernel, "has no batched variant".into()))?;
            let decl = batched.batch_decl().ok_or_else(|| {
                err(
                    &launch.kernel,
                    "batched variant has no batching claim".into(),
                )
            })?;
            let mut args = Vec::with_capacity(launch.args.len());
            for (param, arg) in &launch.args {
                let role = decl.role(param).ok_or_else(|| {
                    err(
                        &launch.kernel,
                        format!("parameter {param} missing from the batching claim"),
                    )
                })?;
                let arg = match (arg, role) {
                    (Arg::Buffer { buffer, offset }, ParamRole::PerVector { stride_bytes }) => {
                        let seen = regions.entry((*buffer, *offset)).or_insert(*stride_bytes);
                        if seen != stride_bytes {
                            return Err(err(
                                &launch.kernel,
                                format!(
                                    "{param}: {} at offset {offset} is used with per-vector strides {seen} and {stride_bytes}",
                                    buffer.name()
                                ),
                            ));
                        }
                        Arg::Buffer {
                            buffer: *buffer,
                            offset: offset * m as u64,
                        }
                    }
                    (
                        Arg::KCache { .. } | Arg::VCache { .. },
                        ParamRole::PerVector { stride_bytes },
                    ) if *stride_bytes == self.kv_cache_bytes => arg.clone(),
                    (Arg::Weight { .. } | Arg::RopeTable { .. }, ParamRole::Shared) => arg.clone(),
                    (arg, role) => {
                        return Err(err(
                            &launch.kernel,
                            format!("{param}: binding {arg:?} cannot be batched as {role:?}"),
                        ))
                    }
                };
                args.push((param.clone(), arg));
            }
            out.push(Launch {
                kernel: batched.name(),
                layer: launch.layer,
                args,
            });
        }
        // Regions of one buffer must not overlap: region at o spans [o, o + stride).
        let sizes: BTreeMap<Buffer, u64> = self.buffers.iter().map(|b| (b.name, b.bytes)).collect();
        let mut last: Option<(Buffer, u64)> = None;
        for (&(buffer, offset), &stride) in &regions {
            if let Some((b, end)) = last {
                if b == buffer && offset < end {
                    return Err(PlanError::Batch {
                        kernel: String::new(),
                        m,
                        what: format!(
                            "regions of {} overlap at offset {offset} (previous ends at {end})",
                            buffer.name()
                        ),
                    });
                }
            }
            let end = offset + stride;
            if end > sizes.get(&buffer).copied().unwrap_or(0) {
                return Err(PlanError::Batch {
                    kernel: String::new(),
                    m,
                    what: format!("region [{offset}, {end}) exceeds buffer {}", buffer.name()),
                });
            }
            last = Some((buffer, end));
        }
        Ok(out)
    }
}
