//! [`Arithmetic::Mirror`](super::Arithmetic::Mirror): each resolved launch computed by its
//! kernel's CPU mirror ([`crate::reference::mirror`]) on the sequence's buffers, caches and
//! the rope tables, writing exactly what the kernel writes (an attention chunk without an
//! attended position leaves its `o` untouched, as on the GPU).

use super::{
    bytes, bytes_mut, f32s, put_f32s, put_u32, u32_at, CpuForward, ForwardError, Op, Prologue,
    Sequence,
};
use crate::reference::mirror;
use ptx_gen::kernels::OutFormat;

impl CpuForward<'_> {
    pub(super) fn exec_mirror(&self, op: &Op<'_>, seq: &mut Sequence) -> Result<(), ForwardError> {
        let read = |seq: &Sequence, r| -> Vec<f32> { f32s(bytes(seq, r)) };
        match op {
            Op::Parts(ops) => {
                for op in ops {
                    self.exec_mirror(op, seq)?;
                }
            }
            Op::Embed {
                spec,
                table,
                token,
                y,
            } => {
                let t = u32_at(bytes(seq, *token), 0);
                let v = mirror::embed::embed(spec, table, t)?;
                put_f32s(bytes_mut(seq, *y), &v);
            }
            Op::RmsNormQ8_1 { spec, x, w, y } => {
                let q = mirror::rmsnorm_q8_1::rmsnorm_q8_1(spec, &read(seq, *x), w)?;
                bytes_mut(seq, *y).copy_from_slice(&q);
            }
            Op::RmsNorm { spec, x, w, y } => {
                let v = mirror::rmsnorm::rmsnorm(spec, &read(seq, *x), w)?;
                put_f32s(bytes_mut(seq, *y), &v);
            }
            Op::ResidualRmsNorm {
                spec,
                x,
                residual,
                rw,
                w,
                y,
            } => {
                let (h, out) = mirror::residual_rmsnorm::residual_rmsnorm(
                    spec,
                    &read(seq, *x),
                    &read(seq, *residual),
                    rw.as_deref(),
                    w,
                )?;
                put_f32s(bytes_mut(seq, *x), &h);
                bytes_mut(seq, *y).copy_from_slice(&out);
            }
            Op::HeadRmsNorm { spec, x, w, second } => {
                let regions = std::iter::once((x, w)).chain(second.as_ref().map(|(x, w)| (x, w)));
                for (set, (x, w)) in spec.sets().iter().zip(regions) {
                    let v = mirror::head_rmsnorm::head_rmsnorm(set, &read(seq, *x), w)?;
                    put_f32s(bytes_mut(seq, *x), &v);
                }
            }
            Op::QuantizeQ8_1 { x, y } => {
                let xv = read(seq, *x);
                let spec = ptx_gen::kernels::QuantizeQ8_1 {
                    k: xv.len() as u32,
                    m: 1,
                };
                let q = mirror::quantize_q8_1::quantize_q8_1(&spec, &xv)?;
                bytes_mut(seq, *y).copy_from_slice(&q);
            }
            Op::Gemv {
                spec,
                w,
                x,
                prologue,
                bias,
                residual,
                y,
                ..
            } => {
                let res = residual.map(|r| read(seq, r));
                // The prologue computes the bits of the kernel before into shared memory.
                let staged = match prologue {
                    Some(Prologue::Norm(nm, nw)) => {
                        Some(mirror::rmsnorm_q8_1::rmsnorm_q8_1(nm, &read(seq, *x), nw)?)
                    }
                    Some(Prologue::Glu(glu, up)) => {
                        Some(mirror::glu::glu(glu, &read(seq, *x), &read(seq, *up))?)
                    }
                    None => None,
                };
                let xq = staged.as_deref().unwrap_or_else(|| bytes(seq, *x));
                let plain = ptx_gen::kernels::Gemv {
                    prologue: None,
                    tile: None,
                    ..*spec
                };
                let out = mirror::gemv::gemv(&plain, w, xq, bias.as_deref(), res.as_deref())?;
                put_f32s(bytes_mut(seq, *y), &out);
            }
            Op::RopeKv {
                spec,
                q,
                k,
                v,
                layer,
                table,
                pos,
            } => {
                let p = u32_at(bytes(seq, *pos), 0);
                let mut qv = q.map(|r| read(seq, r));
                let mut kv = k.map(|r| read(seq, r));
                let vv = v.map(|r| read(seq, r));
                let table = table.map_or(&[][..], |t| &self.rope[t][..]);
                let Sequence {
                    k_cache, v_cache, ..
                } = seq;
                mirror::rope_kv::rope_kv_parts(
                    spec,
                    table,
                    p,
                    qv.as_deref_mut(),
                    kv.as_deref_mut().map(|x| (x, &mut k_cache[*layer][..])),
                    vv.as_deref().map(|x| (x, &mut v_cache[*layer][..])),
                )?;
                for (region, values) in [(q, qv), (k, kv)] {
                    if let (Some(r), Some(v)) = (region, values) {
                        put_f32s(bytes_mut(seq, *r), &v);
                    }
                }
            }
            Op::Attention {
                spec,
                q,
                layer,
                seq_len,
                part_o,
                part_ml,
            } => {
                let n = u32_at(bytes(seq, *seq_len), 0);
                let qv = read(seq, *q);
                let mut po = read(seq, *part_o);
                let mut ml = read(seq, *part_ml);
                mirror::attention::attention_split(
                    spec,
                    &qv,
                    &seq.k_cache[*layer],
                    &seq.v_cache[*layer],
                    n,
                    &mut po,
                    &mut ml,
                )?;
                put_f32s(bytes_mut(seq, *part_o), &po);
                put_f32s(bytes_mut(seq, *part_ml), &ml);
            }
            Op::Combine {
                spec,
                part_o,
                part_ml,
                seq_len,
                out,
            } => {
                let n = u32_at(bytes(seq, *seq_len), 0);
                let v = mirror::attention_combine::attention_combine(
                    spec,
                    &read(seq, *part_o),
                    &read(seq, *part_ml),
                    n,
                )?;
                match spec.out {
                    OutFormat::F32 => put_f32s(bytes_mut(seq, *out), &v),
                    // The kernel quantizes each warp's 32 values as quantize_q8_1 does.
                    OutFormat::Q8_1 => {
                        let q = mirror::quantize_q8_1::quantize_q8_1(
                            &ptx_gen::kernels::QuantizeQ8_1 {
                                k: v.len() as u32,
                                m: 1,
                            },
                            &v,
                        )?;
                        bytes_mut(seq, *out).copy_from_slice(&q);
                    }
                }
            }
            Op::Glu { spec, gate, up, y } => {
                let out = mirror::glu::glu(spec, &read(seq, *gate), &read(seq, *up))?;
                bytes_mut(seq, *y).copy_from_slice(&out);
            }
            Op::ResidualAdd { spec, x, y } => {
                let v = mirror::residual_add::residual_add(spec, &read(seq, *y), &read(seq, *x))?;
                put_f32s(bytes_mut(seq, *y), &v);
            }
            Op::ArgmaxPartial {
                vocab,
                logits,
                partials,
            } => {
                let l = read(seq, *logits);
                let p = mirror::argmax::partials(&l[..*vocab])?;
                for (d, c) in bytes_mut(seq, *partials).chunks_exact_mut(8).zip(&p) {
                    d.copy_from_slice(&c.to_le_bytes());
                }
            }
            Op::ArgmaxFinal { partials, index } => {
                let p: Vec<u64> = bytes(seq, *partials)
                    .chunks_exact(8)
                    .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                    .collect();
                put_u32(bytes_mut(seq, *index), 0, mirror::argmax::index(&p));
            }
        }
        Ok(())
    }
}
