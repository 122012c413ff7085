//! The single-sequence decode step, in the order the contract implies:
//! embed -> per layer [norm+quantize, QKV GEMV (+bias; with RoPE + KV write in its epilogue
//! where one launch computes Q, K and V and no QK norm comes between), QK norm, RoPE + KV
//! write, attention
//! split + combine (quantizing its output where head_dim is a multiple of 32, else a separate
//! quantize), O GEMV (+residual, or post-norm then fused residual + norm),
//! gate/up GEMV, activation + quantize, down GEMV (likewise)] -> LM head -> argmax.
//! Every residual add is fused into a GEMV epilogue or into the next norm. With
//! [`super::Folds`] (off by default: measured slower), where the vector is short and the
//! GEMVs reading a norm's or the activation's Q8_1 output fit one wave of thread blocks,
//! that kernel goes into those GEMVs' prologue instead of a launch of its own
//! (`GemvPrologue`).

use ptx_gen::kernels::{
    default_tile, Argmax, ArgmaxStage, AttentionCombine, DecodeAttention, Embed, EmbedTable, Gemv,
    GemvNorm, GemvPrologue, GemvRope, Glu, GluAct, HeadRmsNorm, KernelSpec, OutFormat,
    QuantizeQ8_1, ResidualRmsNorm, RopeOutputs, RopeStyle as KRopeStyle, GEMV_MAX_BATCH,
};

use crate::contract::{Activation, EmbeddingScale, ModelSpec, QkNorm, Role, RopeStyle};
use crate::quant::GgmlType;

use super::buffers::{workspace, Buffer};
use super::{
    gemv_weight, tensor_name, Arg, KernelPlan, PlanError, PlanOptions, Recorder, RopeTable,
};

fn buf(buffer: Buffer) -> Arg {
    Arg::Buffer { buffer, offset: 0 }
}

fn buf_at(buffer: Buffer, offset: u64) -> Arg {
    Arg::Buffer { buffer, offset }
}

fn weight(role: Role, layer: Option<u32>) -> Arg {
    Arg::Weight {
        role,
        layer,
        offset: 0,
    }
}

struct Planner<'a> {
    model: &'a ModelSpec,
    rec: Recorder,
    /// Which kernels may fold (the plan's options).
    may_fold: super::Folds,
    /// Kernels whose Q8_1 output (`xq`, `act_q8`) the GEMVs reading it compute in their
    /// prologue instead (see [`Folded`]); a buffer written by a launch has no entry.
    folded: Vec<Folded>,
}

/// A kernel folded into the prologue of the GEMVs that read its Q8_1 output `into`: they
/// bind `x` and `second` instead and compute what it would have written.
#[derive(Clone)]
struct Folded {
    into: Buffer,
    prologue: GemvPrologue,
    x: Arg,
    second: Arg,
}

/// A GEMV's prologue with its second input's parameter and binding.
type PrologueArgs = (GemvPrologue, (&'static str, Arg));

/// Inputs up to this many values fold into the next GEMVs' prologue (with
/// [`super::Folds`]): each thread block computes the whole Q8_1 vector itself, so its cost
/// grows with the vector (on an H100 it exceeded a launch's already at 576 values).
const FOLD_MAX_K: u32 = 2048;

/// ... and only where those GEMVs fit in one wave of thread blocks (8 per SM on a 132-SM
/// H100): past that every further wave pays the prologue again (an LM head of 49152 rows
/// would run 6 of them).
const FOLD_MAX_BLOCKS: u32 = 1024;

impl Planner<'_> {
    /// `RMSNorm(x) -> xq` with weight `w`, read next by the GEMV(s) of `rows` rows of
    /// `reader`: folded into their prologue where [`Planner::folds`], else launched.
    fn norm_into_xq(
        &mut self,
        layer: Option<u32>,
        w: Arg,
        reader: (Role, Option<u32>, u32),
    ) -> Result<(), PlanError> {
        let d = &self.model.dims;
        let norm = GemvNorm {
            eps: d.rms_eps,
            weight_offset: self.model.behaviour.norm_weight_offset,
        };
        let prologue = GemvPrologue::Norm(norm);
        if self.may_fold.norm && self.folds(prologue, reader, d.hidden)? {
            self.fold(Folded {
                into: Buffer::Xq,
                prologue,
                x: buf(Buffer::X),
                second: w,
            });
            return Ok(());
        }
        self.written(Buffer::Xq);
        self.launch(
            KernelSpec::RmsNormQ8_1(norm.rmsnorm(d.hidden)),
            layer,
            vec![("x", buf(Buffer::X)), ("w", w), ("y", buf(Buffer::Xq))],
        )
    }

    /// Records a folded kernel (replacing an earlier one into the same buffer).
    fn fold(&mut self, f: Folded) {
        self.written(f.into);
        self.folded.push(f);
    }

    /// A launch writes `buffer`: GEMVs reading it read it.
    fn written(&mut self, buffer: Buffer) {
        self.folded.retain(|f| f.into != buffer);
    }

    /// Whether `prologue` over `k` values, read by `rows` rows of `role`, folds into their
    /// prologue: `k` at most [`FOLD_MAX_K`], their grid at most [`FOLD_MAX_BLOCKS`], and
    /// the prologue valid for the largest batch (every batched twin exists).
    fn folds(
        &self,
        prologue: GemvPrologue,
        (role, layer, rows): (Role, Option<u32>, u32),
        k: u32,
    ) -> Result<bool, PlanError> {
        let Some(w) = gemv_weight(self.ty(role, layer)?) else {
            return Ok(false);
        };
        if k > FOLD_MAX_K || k % w.block_values() != 0 {
            return Ok(false);
        }
        let tile = default_tile(w, rows, k);
        let per_block = tile.rows * tile.warps / tile.split;
        let spec = Gemv {
            weight: w,
            n: rows,
            k,
            bias: false,
            residual: false,
            m: GEMV_MAX_BATCH,
            more_rows: [0, 0],
            rope: None,
            prologue: Some(prologue),
            tile: None,
        };
        Ok(
            rows.div_ceil(per_block) <= FOLD_MAX_BLOCKS
                && KernelSpec::Gemv(spec).validate().is_ok(),
        )
    }

    /// The binding of a GEMV's `x` where it reads `x`, and the prologue it applies with
    /// its second input's parameter and binding: where `x` is a folded kernel's output,
    /// the GEMV reads that kernel's inputs.
    fn gemv_input(&self, x: Buffer) -> (Arg, Option<PrologueArgs>) {
        match self.folded.iter().find(|f| f.into == x) {
            Some(f) => (
                f.x.clone(),
                Some((f.prologue, (f.prologue.second_input(), f.second.clone()))),
            ),
            None => (buf(x), None),
        }
    }

    fn kernel_err(&self, e: ptx_gen::kernels::GenError) -> PlanError {
        PlanError::Kernel {
            model: self.model.name.clone(),
            source: Box::new(e),
        }
    }

    fn launch(
        &mut self,
        spec: KernelSpec,
        layer: Option<u32>,
        args: Vec<(&str, Arg)>,
    ) -> Result<(), PlanError> {
        self.rec
            .launch(spec, layer, args)
            .map_err(|e| self.kernel_err(e))
    }

    /// The type of a tensor the schedule reads, or an error naming it.
    fn ty(&self, role: Role, layer: Option<u32>) -> Result<GgmlType, PlanError> {
        self.model
            .weights
            .get(role, layer)
            .ok_or_else(|| PlanError::Tensor {
                tensor: tensor_name(role, layer),
                constraint: "required by the decode step but absent from the model".into(),
            })
    }

    /// Norm weights are read as f32.
    fn norm_weight(&self, role: Role, layer: Option<u32>) -> Result<Arg, PlanError> {
        match self.ty(role, layer)? {
            GgmlType::F32 => Ok(weight(role, layer)),
            other => Err(PlanError::Tensor {
                tensor: tensor_name(role, layer),
                constraint: format!("norm weights must be F32, got {other}"),
            }),
        }
    }

    /// `y[n] = W x (+bias) (+residual)` for the matrix `role` of `layer`.
    #[allow(clippy::too_many_arguments)]
    fn gemv(
        &mut self,
        role: Role,
        layer: Option<u32>,
        n: u32,
        k: u32,
        x: Buffer,
        y: Arg,
        bias: Option<Role>,
        residual: Option<Arg>,
    ) -> Result<(), PlanError> {
        self.gemv_rows(role, layer, 0, n, k, x, y, bias, residual, None)
    }

    /// One launch for several matrices of one type and width (Q, K and V; gate and up), each
    /// given as (role, first row, rows, output, bias): `false` when they cannot share one
    /// (types differ, biases on some only, or a matrix's rows are not a multiple of the
    /// tile's rows per thread block), and the caller launches a GEMV per matrix. Each row is
    /// computed exactly as that matrix's own GEMV computes it. With `rope` (Q, K and V, the
    /// epilogue's spec and its cache, table and position arguments), `false` also where the
    /// epilogue cannot be fused (see `GemvRope`).
    fn gemv_parts(
        &mut self,
        layer: Option<u32>,
        k: u32,
        x: Buffer,
        parts: &[(Role, u32, u32, Arg, Option<Role>)],
        rope: Option<(GemvRope, Vec<(&'static str, Arg)>)>,
    ) -> Result<bool, PlanError> {
        const W: [&str; 3] = ["w", "w1", "w2"];
        const BIAS: [&str; 3] = ["bias", "bias1", "bias2"];
        const Y: [&str; 3] = ["y", "y1", "y2"];
        if parts.len() < 2 || parts.len() > 3 {
            return Ok(false);
        }
        let ty = self.ty(parts[0].0, layer)?;
        for (role, ..) in parts {
            if self.ty(*role, layer)? != ty {
                return Ok(false);
            }
        }
        let with_bias = parts.iter().filter(|p| p.4.is_some()).count();
        if with_bias != 0 && with_bias != parts.len() {
            return Ok(false);
        }
        let Some(w) = gemv_weight(ty) else {
            return Ok(false);
        };
        let mut more_rows = [0u32; 2];
        for (slot, p) in more_rows.iter_mut().zip(&parts[1..]) {
            *slot = p.2;
        }
        let (x, prologue) = self.gemv_input(x);
        let spec = Gemv {
            weight: w,
            n: parts[0].2,
            k,
            bias: with_bias > 0,
            residual: false,
            m: 1,
            more_rows,
            rope: rope.as_ref().map(|r| r.0),
            prologue: prologue.as_ref().map(|p| p.0),
            tile: None,
        };
        if KernelSpec::Gemv(spec).validate().is_err() {
            return Ok(false);
        }
        let row_bytes = ty.row_bytes(k as u64).unwrap_or(0);
        let mut args = Vec::new();
        for (i, (role, first, ..)) in parts.iter().enumerate() {
            args.push((
                W[i],
                Arg::Weight {
                    role: *role,
                    layer,
                    offset: *first as u64 * row_bytes,
                },
            ));
        }
        args.push(("x", x));
        args.extend(prologue.map(|p| p.1));
        for (i, p) in parts.iter().enumerate() {
            if let Some(b) = p.4 {
                if self.ty(b, layer)? != GgmlType::F32 {
                    return Err(PlanError::Tensor {
                        tensor: tensor_name(b, layer),
                        constraint: "biases must be F32".into(),
                    });
                }
                args.push((BIAS[i], weight(b, layer)));
            }
        }
        for (i, p) in parts.iter().enumerate() {
            args.push((Y[i], p.3.clone()));
        }
        args.extend(rope.map(|r| r.1).unwrap_or_default());
        self.launch(KernelSpec::Gemv(spec), layer, args)?;
        Ok(true)
    }

    /// Like [`Planner::gemv`] over rows `first_row..first_row + n` of `role` (one part of a
    /// fused tensor).
    #[allow(clippy::too_many_arguments)]
    fn gemv_rows(
        &mut self,
        role: Role,
        layer: Option<u32>,
        first_row: u32,
        n: u32,
        k: u32,
        x: Buffer,
        y: Arg,
        bias: Option<Role>,
        residual: Option<Arg>,
        rope: Option<(GemvRope, Vec<(&'static str, Arg)>)>,
    ) -> Result<(), PlanError> {
        let mut spec = self.gemv_spec(
            role,
            layer,
            (n, k),
            (bias.is_some(), residual.is_some()),
            rope.as_ref().map(|r| r.0),
        )?;
        let (x, prologue) = self.gemv_input(x);
        spec.prologue = prologue.as_ref().map(|p| p.0);
        let ty = self.ty(role, layer)?;
        let row_bytes = ty.row_bytes(k as u64).unwrap_or(0);
        let w_arg = Arg::Weight {
            role,
            layer,
            offset: first_row as u64 * row_bytes,
        };
        let mut args = vec![("w", w_arg), ("x", x)];
        args.extend(prologue.map(|p| p.1));
        if let Some(b) = bias {
            if self.ty(b, layer)? != GgmlType::F32 {
                return Err(PlanError::Tensor {
                    tensor: tensor_name(b, layer),
                    constraint: "biases must be F32".into(),
                });
            }
            args.push(("bias", weight(b, layer)));
        }
        if let Some(r) = residual {
            args.push(("residual", r));
        }
        args.push(("y", y));
        args.extend(rope.map(|r| r.1).unwrap_or_default());
        self.launch(KernelSpec::Gemv(spec), layer, args)
    }

    /// The single-matrix GEMV spec of `n x k` rows of `role`, its weight type checked (not
    /// validated: a caller may try a variant and fall back).
    fn gemv_spec(
        &self,
        role: Role,
        layer: Option<u32>,
        (n, k): (u32, u32),
        (bias, residual): (bool, bool),
        rope: Option<GemvRope>,
    ) -> Result<Gemv, PlanError> {
        let ty = self.ty(role, layer)?;
        let w = gemv_weight(ty).ok_or_else(|| PlanError::Tensor {
            tensor: tensor_name(role, layer),
            constraint: format!("the GEMV reads Q4_K, Q6_K, Q5_0, Q8_0 or Q4_1, got {ty}"),
        })?;
        if k % w.block_values() != 0 {
            return Err(PlanError::Tensor {
                tensor: tensor_name(role, layer),
                constraint: format!("{ty} needs K % {} == 0, got {k}", w.block_values()),
            });
        }
        Ok(Gemv {
            weight: w,
            n,
            k,
            bias,
            residual,
            m: 1,
            more_rows: [0, 0],
            rope,
            prologue: None,
            tile: None,
        })
    }
}

pub(super) fn plan(model: &ModelSpec, options: PlanOptions) -> Result<KernelPlan, PlanError> {
    let d = &model.dims;
    let b = &model.behaviour;
    let unsupported = |what: &str| PlanError::Unsupported {
        model: model.name.clone(),
        what: what.to_string(),
    };
    if !b.gated_ffn {
        return Err(unsupported("an ungated FFN"));
    }
    if let Some(cap) = d.final_logit_softcap {
        return Err(unsupported(&format!("a final logit soft-cap ({cap})")));
    }
    let max_ctx = options.max_context.min(d.context).max(1);
    let eps = d.rms_eps;
    let woff = b.norm_weight_offset;
    let (q_dim, kv_dim, h, ffn) = (d.q_dim(), d.kv_dim(), d.hidden, d.ffn);
    let f32_bytes = |n: u32| n as u64 * 4;
    let mut p = Planner {
        model,
        rec: Recorder::new(),
        folded: Vec::new(),
        may_fold: options.folds,
    };

    // Rope tables, one per distinct (theta, scaling) over the layers.
    let mut rope_tables: Vec<RopeTable> = Vec::new();
    let mut layer_table = Vec::new();
    let freq_factors = model
        .weights
        .has_role(Role::RopeFreqs)
        .then_some(Role::RopeFreqs);
    for layer in 0..d.layers {
        let la = d.layer_attention(layer);
        let table = RopeTable {
            theta: la.rope_theta,
            rope_dims: d.rope_dims,
            max_context: max_ctx,
            freq_factors: if la.rope_scaling.is_some() {
                freq_factors
            } else {
                None
            },
        };
        let index = match rope_tables.iter().position(|t| *t == table) {
            Some(i) => i,
            None => {
                rope_tables.push(table);
                rope_tables.len() - 1
            }
        };
        layer_table.push(index);
    }

    // Embedding lookup.
    let emb_ty = p.ty(Role::TokenEmbd, None)?;
    let table = match emb_ty {
        GgmlType::F32 => EmbedTable::F32,
        GgmlType::F16 => EmbedTable::F16,
        GgmlType::Q8_0 => EmbedTable::Q8_0,
        GgmlType::Q4K => EmbedTable::Q4K,
        GgmlType::Q6K => EmbedTable::Q6K,
        other => {
            return Err(PlanError::Tensor {
                tensor: "token_embd".into(),
                constraint: format!(
                    "the embedding lookup reads F32, F16, Q8_0, Q4_K or Q6_K rows, got {other}"
                ),
            })
        }
    };
    let scale = match b.embedding_scale {
        EmbeddingScale::None => 1.0,
        EmbeddingScale::SqrtHidden => (h as f32).sqrt(),
    };
    p.launch(
        KernelSpec::Embed(Embed {
            table,
            vocab: d.vocab,
            hidden: h,
            scale,
            m: 1,
        }),
        None,
        vec![
            ("table", weight(Role::TokenEmbd, None)),
            ("token", buf(Buffer::Token)),
            ("y", buf(Buffer::X)),
        ],
    )?;
    let w0 = p.norm_weight(Role::AttnNorm, Some(0))?;
    let qkv_rows = q_dim + 2 * kv_dim;
    let qkv_role = |model: &ModelSpec| {
        if model.weights.has_role(Role::AttnQkv) {
            Role::AttnQkv
        } else {
            Role::AttnQ
        }
    };
    p.norm_into_xq(Some(0), w0, (qkv_role(model), Some(0), qkv_rows))?;

    let rope_style = match b.rope_style {
        RopeStyle::Norm => KRopeStyle::Norm,
        RopeStyle::Neox => KRopeStyle::Neox,
    };
    let mut chunks = 1;
    for layer in 0..d.layers {
        let l = Some(layer);
        // Q, K, V into one buffer: Q at 0, K at q_dim, V at q_dim + kv_dim.
        let (k_off, v_off) = (f32_bytes(q_dim), f32_bytes(q_dim + kv_dim));
        let bias = |r| b.qkv_bias.then_some(r);
        let (qkv_parts, qkv_bias) = if model.weights.has_role(Role::AttnQkv) {
            // A fused QKV tensor: its rows in three parts, so each lands in its own region
            // (the batched schedule keeps every region [m][part]).
            (
                [
                    (Role::AttnQkv, 0, q_dim, 0),
                    (Role::AttnQkv, q_dim, kv_dim, k_off),
                    (Role::AttnQkv, q_dim + kv_dim, kv_dim, v_off),
                ],
                [None, None, None],
            )
        } else {
            (
                [
                    (Role::AttnQ, 0, q_dim, 0),
                    (Role::AttnK, 0, kv_dim, k_off),
                    (Role::AttnV, 0, kv_dim, v_off),
                ],
                [
                    bias(Role::AttnQBias),
                    bias(Role::AttnKBias),
                    bias(Role::AttnVBias),
                ],
            )
        };
        let parts: Vec<_> = qkv_parts
            .iter()
            .zip(qkv_bias)
            .map(|(&(role, first, n, off), bias)| (role, first, n, buf_at(Buffer::Qkv, off), bias))
            .collect();
        // One launch for Q, K and V; where V has another type (Q4_K_M mixes Q6_K in), one for
        // Q and K and one for V.
        // `separate`: how many of the last matrices still need a launch of their own.
        // Where no QK norm sits between them, RoPE and the KV cache write go into the Q, K, V
        // launch's epilogue (when the three share a type and the tile can pair rows).
        let rope_args = vec![
            ("k_cache", Arg::KCache { layer }),
            ("v_cache", Arg::VCache { layer }),
            (
                "rope_table",
                Arg::RopeTable {
                    index: layer_table[layer as usize],
                },
            ),
            ("pos", buf(Buffer::Pos)),
        ];
        let epilogue = |outputs| GemvRope {
            style: rope_style,
            head_dim: d.head_dim,
            rope_dims: d.rope_dims,
            max_ctx,
            outputs,
        };
        // The epilogue of `outputs` with the arguments its parameters take.
        let rope_for = |outputs: RopeOutputs| {
            let takes = |name: &str| match outputs {
                RopeOutputs::Qkv => true,
                RopeOutputs::Qk => name != "v_cache",
                RopeOutputs::V => name == "v_cache" || name == "pos",
            };
            let args: Vec<_> = rope_args.iter().filter(|a| takes(a.0)).cloned().collect();
            Some((epilogue(outputs), args))
        };
        let can_fuse = b.qk_norm != QkNorm::PerHeadRms;
        let mut fused_rope =
            can_fuse && p.gemv_parts(l, h, Buffer::Xq, &parts, rope_for(RopeOutputs::Qkv))?;
        let separate = if fused_rope || p.gemv_parts(l, h, Buffer::Xq, &parts, None)? {
            0
        } else {
            // Q and K in one launch and V in its own, the epilogue split between them: V's
            // launch is checked first, as Q and K's cannot take its part back.
            let (v_role, _, v_rows, _, v_bias) = &parts[2];
            let v_ok = can_fuse
                && KernelSpec::Gemv(p.gemv_spec(
                    *v_role,
                    l,
                    (*v_rows, h),
                    (v_bias.is_some(), false),
                    Some(epilogue(RopeOutputs::V)),
                )?)
                .validate()
                .is_ok();
            if v_ok && p.gemv_parts(l, h, Buffer::Xq, &parts[..2], rope_for(RopeOutputs::Qk))? {
                let (role, first, n, y, bias) = parts[2].clone();
                let rope = rope_for(RopeOutputs::V);
                p.gemv_rows(role, l, first, n, h, Buffer::Xq, y, bias, None, rope)?;
                fused_rope = true;
                0
            } else if p.gemv_parts(l, h, Buffer::Xq, &parts[..2], None)? {
                1
            } else {
                3
            }
        };
        for (role, first, n, y, bias) in parts.into_iter().rev().take(separate).rev() {
            p.gemv_rows(role, l, first, n, h, Buffer::Xq, y, bias, None, None)?;
        }
        if b.qk_norm == QkNorm::PerHeadRms {
            // The Q heads and the K heads, each with its own gamma, in one launch.
            let spec = HeadRmsNorm {
                n_heads: d.heads,
                head_dim: d.head_dim,
                eps,
                weight_offset: woff,
                k_heads: d.kv_heads,
                m: 1,
            };
            let (wq, wk) = (
                p.norm_weight(Role::AttnQNorm, l)?,
                p.norm_weight(Role::AttnKNorm, l)?,
            );
            p.launch(
                KernelSpec::HeadRmsNorm(spec),
                l,
                vec![
                    ("x", buf(Buffer::Qkv)),
                    ("w", wq),
                    ("x1", buf_at(Buffer::Qkv, k_off)),
                    ("w1", wk),
                ],
            )?;
        }
        if !fused_rope {
            let mut args = vec![
                ("q", buf(Buffer::Qkv)),
                ("k", buf_at(Buffer::Qkv, k_off)),
                ("v", buf_at(Buffer::Qkv, v_off)),
            ];
            args.extend(rope_args);
            p.launch(
                KernelSpec::RopeKv(epilogue(RopeOutputs::Qkv).rope_kv(q_dim, kv_dim, 1)),
                l,
                args,
            )?;
        }
        let la = d.layer_attention(layer);
        let attn = DecodeAttention {
            n_heads: d.heads,
            n_kv_heads: d.kv_heads,
            head_dim: d.head_dim,
            max_ctx,
            scale: d.attention_scale(),
            window: la.window,
            softcap: None,
            m: 1,
        };
        chunks = max_ctx.div_ceil(attn.chunk());
        // The combine quantizes its own output where each warp holds a whole Q8_1 block.
        let fused = d.head_dim % 32 == 0;
        let combine = AttentionCombine {
            out: if fused {
                OutFormat::Q8_1
            } else {
                OutFormat::F32
            },
            ..attn.combine()
        };
        p.launch(
            KernelSpec::Attention(attn),
            l,
            vec![
                ("q", buf(Buffer::Qkv)),
                ("k_cache", Arg::KCache { layer }),
                ("v_cache", Arg::VCache { layer }),
                ("seq_len", buf(Buffer::SeqLen)),
                ("part_o", buf(Buffer::PartO)),
                ("part_ml", buf(Buffer::PartMl)),
            ],
        )?;
        p.launch(
            KernelSpec::AttentionCombine(combine),
            l,
            vec![
                ("part_o", buf(Buffer::PartO)),
                ("part_ml", buf(Buffer::PartMl)),
                ("seq_len", buf(Buffer::SeqLen)),
                (
                    "out",
                    buf(if fused { Buffer::AttnQ8 } else { Buffer::Attn }),
                ),
            ],
        )?;
        if !fused {
            p.launch(
                KernelSpec::QuantizeQ8_1(QuantizeQ8_1 { k: q_dim, m: 1 }),
                l,
                vec![("x", buf(Buffer::Attn)), ("y", buf(Buffer::AttnQ8))],
            )?;
        }
        // O projection; its residual add goes into the GEMV or into the FFN norm.
        let ffn_norm = p.norm_weight(Role::FfnNorm, l)?;
        let gate_role = if model.weights.has_role(Role::FfnGateUp) {
            Role::FfnGateUp
        } else {
            Role::FfnGate
        };
        project_and_norm(
            &mut p,
            (Role::AttnOutput, l, q_dim, Buffer::AttnQ8),
            b.post_attn_norm.then_some(Role::AttnPostNorm),
            ffn_norm,
            (gate_role, l, 2 * ffn),
        )?;

        // FFN: gate and up into one buffer, activation + quantize, down.
        let parts: Vec<_> = if model.weights.has_role(Role::FfnGateUp) {
            vec![
                (Role::FfnGateUp, 0, ffn, buf(Buffer::GateUp), None),
                (
                    Role::FfnGateUp,
                    ffn,
                    ffn,
                    buf_at(Buffer::GateUp, f32_bytes(ffn)),
                    None,
                ),
            ]
        } else {
            vec![
                (Role::FfnGate, 0, ffn, buf(Buffer::GateUp), None),
                (
                    Role::FfnUp,
                    0,
                    ffn,
                    buf_at(Buffer::GateUp, f32_bytes(ffn)),
                    None,
                ),
            ]
        };
        if !p.gemv_parts(l, h, Buffer::Xq, &parts, None)? {
            for (role, first, n, y, bias) in parts {
                p.gemv_rows(role, l, first, n, h, Buffer::Xq, y, bias, None, None)?;
            }
        }
        let act = match b.activation {
            Activation::Silu => GluAct::Swiglu,
            Activation::GeluTanh => GluAct::Geglu,
        };
        // The activation + quantize, or the down GEMV's prologue.
        let glu = GemvPrologue::Glu(act);
        if p.may_fold.glu && p.folds(glu, (Role::FfnDown, l, h), ffn)? {
            p.fold(Folded {
                into: Buffer::ActQ8,
                prologue: glu,
                x: buf(Buffer::GateUp),
                second: buf_at(Buffer::GateUp, f32_bytes(ffn)),
            });
        } else {
            p.written(Buffer::ActQ8);
            p.launch(
                KernelSpec::Glu(Glu {
                    act,
                    ffn,
                    out: OutFormat::Q8_1,
                    m: 1,
                }),
                l,
                vec![
                    ("gate", buf(Buffer::GateUp)),
                    ("up", buf_at(Buffer::GateUp, f32_bytes(ffn))),
                    ("y", buf(Buffer::ActQ8)),
                ],
            )?;
        }
        let (next_norm, reader) = if layer + 1 < d.layers {
            let next = Some(layer + 1);
            (
                p.norm_weight(Role::AttnNorm, next)?,
                (qkv_role(model), next, qkv_rows),
            )
        } else {
            (
                p.norm_weight(Role::OutputNorm, None)?,
                (head_role(model), None, d.vocab),
            )
        };
        project_and_norm(
            &mut p,
            (Role::FfnDown, l, ffn, Buffer::ActQ8),
            b.post_ffn_norm.then_some(Role::FfnPostNorm),
            next_norm,
            reader,
        )?;
    }

    // LM head (the embedding when tied) and argmax.
    let head = head_role(model);
    p.gemv(
        head,
        None,
        d.vocab,
        h,
        Buffer::Xq,
        buf(Buffer::Logits),
        None,
        None,
    )?;
    let partial = Argmax {
        vocab: d.vocab,
        stage: ArgmaxStage::Partial,
        m: 1,
    };
    let partials = partial.partials();
    p.launch(
        KernelSpec::Argmax(partial),
        None,
        vec![
            ("logits", buf(Buffer::Logits)),
            ("partials", buf(Buffer::ArgmaxPartials)),
        ],
    )?;
    p.launch(
        KernelSpec::Argmax(Argmax {
            vocab: d.vocab,
            stage: ArgmaxStage::Final,
            m: 1,
        }),
        None,
        vec![
            ("partials", buf(Buffer::ArgmaxPartials)),
            ("index", buf(Buffer::Token)),
        ],
    )?;

    let (kernels, step) = p.rec.finish();
    Ok(KernelPlan {
        kernels,
        step,
        buffers: workspace(d, chunks, partials),
        rope_tables,
        max_context: max_ctx,
        kv_cache_bytes: d.kv_heads as u64 * max_ctx as u64 * d.head_dim as u64 * 2,
    })
}

/// The LM head's matrix: `output`, or the embedding where they are tied.
fn head_role(model: &ModelSpec) -> Role {
    if model.weights.has_role(Role::Output) {
        Role::Output
    } else {
        Role::TokenEmbd
    }
}

/// A projection (`role` of `layer`, `k` columns, reading `input`) into the hidden size
/// followed by the residual add and the next norm: without a post-norm, the GEMV adds the
/// residual in place and the next norm reads x (folded into its `reader`'s prologue where
/// it can be); with one, the GEMV writes tmp and one launch does
/// `x += post_norm(tmp); xq = norm(x)`.
fn project_and_norm(
    p: &mut Planner<'_>,
    (role, layer, k, input): (Role, Option<u32>, u32, Buffer),
    post_norm: Option<Role>,
    next_norm: Arg,
    reader: (Role, Option<u32>, u32),
) -> Result<(), PlanError> {
    let d = &p.model.dims;
    let (h, eps, woff) = (d.hidden, d.rms_eps, p.model.behaviour.norm_weight_offset);
    match post_norm {
        None => {
            p.gemv(
                role,
                layer,
                h,
                k,
                input,
                buf(Buffer::X),
                None,
                Some(buf(Buffer::X)),
            )?;
            p.norm_into_xq(layer, next_norm, reader)
        }
        Some(norm) => {
            p.gemv(role, layer, h, k, input, buf(Buffer::Tmp), None, None)?;
            let rw = p.norm_weight(norm, layer)?;
            p.written(Buffer::Xq);
            p.launch(
                KernelSpec::ResidualRmsNorm(ResidualRmsNorm {
                    hidden: h,
                    eps,
                    weight_offset: woff,
                    out: OutFormat::Q8_1,
                    post_norm: true,
                    m: 1,
                }),
                layer,
                vec![
                    ("x", buf(Buffer::X)),
                    ("residual", buf(Buffer::Tmp)),
                    ("rw", rw),
                    ("w", next_norm),
                    ("y", buf(Buffer::Xq)),
                ],
            )
        }
    }
}
