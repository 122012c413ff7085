//! Decode attention, combine kernel: merges the per-chunk partials of the split kernel
//! (`attention`) into the output of each query head.
//!
//! Block h (one per query head), thread d (one per dim) reads `seq_len` from device memory,
//! clamps it to `max_ctx` exactly as the split kernel does, and takes the chunks that hold an
//! attended position, `c` in `[lo / chunk, ceil(seq_len / chunk))`:
//! `M = max m_c`, then, in ascending chunk order, `L = sum 2^(m_c - M) l_c` and
//! `O_d = sum 2^(m_c - M) o_c[d]` (`fma.rn`, 2^x of `exp2.rs`, arguments <= 0, so the merge is
//! numerically stable). Each warp works alone (no shared memory, no barrier):
//! - the max: lane i loads `m` of chunks `c0 + i + 32 j`, 128 chunks per round trip to L2,
//!   then a butterfly (the max is exact in any order);
//! - the sums: groups of 32 chunks; lane k loads chunk `g + k`'s `{m, l}` and computes its
//!   weight `2^(m - M)` once, each thread loads its dim of the 32 chunks' `o` at once, and the
//!   weights and `l`s reach every thread by `shfl.idx`, so the fmas run in chunk order exactly
//!   as a plain walk would. The first group's loads are issued before the max walk.
//!
//! One round trip per 32 chunks where the walk before took one per 8 chunks, twice, and one
//! 2^x per chunk per warp instead of per thread.
//!
//! `out[h][d] = O_d / L` (`div.rn`); a head with no attended position (seq_len = 0, outside
//! the contract) gets 0. The grid is fixed: `n_heads` blocks.
//!
//! With `out: q8_1` (head_dim a multiple of 32) the kernel writes the output as Q8_1 blocks
//! instead of f32, each warp quantizing its 32 dims exactly as `quantize_q8_1` does: one
//! launch instead of combine + quantize before the output projection.

use serde::{Deserialize, Serialize};

use crate::ast::{StateSpace, Type};
use crate::ir::{Addr, BinOp, CacheHint, Cmp, FMode, KernelBuilder, Module, Reg, Sreg};
use crate::launch::LaunchSpec;
use crate::parity::BatchDecl;
use crate::target::Target;

use super::attention::{
    attended_range, batch_describe_z, batch_launch_z, batch_sequence, grid_decl_z,
    ATTENTION_MAX_CTX,
};
use super::exp2::emit_exp2;
use super::q8_1_layout::{Q8Ptr, Q8_1_BLOCK_VALUES};
use super::quantize_q8_1::{
    batch_params, batch_suffix, cli_batch, emit_block, is_one, one, validate_batch, vector_ptr,
};
use super::reduce::warp_reduce;
use super::rmsnorm_q8_1::OutFormat;
use super::spec::{cli_dim, cli_max, invalid, Access, FamilySpec, GenError, KernelSpec, ParamSpec};
use super::GeneratedKernel;

/// Chunks of one group of the merge walk: one per lane, every thread loads its dim of each.
const GROUP: u32 = 32;
/// Chunks a lane's max walk loads at once (32 * MAX_LOADS chunks per round trip to L2).
const MAX_LOADS: u32 = 4;

/// Merges the split kernel's partials. Build it with `DecodeAttention::combine()` so that the
/// chunk size and window match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttentionCombine {
    pub n_heads: u32,
    pub head_dim: u32,
    pub max_ctx: u32,
    /// Positions per chunk of the split kernel.
    pub chunk: u32,
    pub window: Option<u32>,
    /// Sequences per launch (1: single; up to 16, one per `%ctaid.z` as in the split
    /// kernel): sequence v has its own partials, length and output.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub m: u32,
    /// f32 output, or Q8_1 blocks (head_dim a multiple of 32).
    #[serde(default = "f32_out", skip_serializing_if = "is_f32_out")]
    pub out: OutFormat,
}

fn f32_out() -> OutFormat {
    OutFormat::F32
}

fn is_f32_out(o: &OutFormat) -> bool {
    *o == OutFormat::F32
}

impl AttentionCombine {
    pub fn n_chunks(&self) -> u32 {
        self.max_ctx.div_ceil(self.chunk.max(1))
    }

    /// The output of one sequence: its layout and bytes.
    pub fn out_buffer(&self) -> (String, u64) {
        self.out.buffer(self.n_heads * self.head_dim)
    }

    fn threads(&self) -> u32 {
        self.head_dim.next_multiple_of(32)
    }
}

impl FamilySpec for AttentionCombine {
    const FAMILY: &'static str = "attention_combine";
    const CLI_DIMS: &'static str = "N_HEADS HEAD_DIM MAX_CTX CHUNK [WINDOW] [M] [OUT]: merges the split kernel's partials (CHUNK as in its name); WINDOW 0 means none; M 1..=16 sequences (default 1); OUT f32 (default) or q8_1";

    fn from_cli(dims: &[String]) -> Result<Self, String> {
        cli_max(dims, 7)?;
        let window: u32 = cli_dim(dims, 4, "WINDOW", Some(0))?;
        let out = dims
            .get(6)
            .map_or(Ok(OutFormat::F32), |s| OutFormat::parse(s))?;
        Ok(AttentionCombine {
            n_heads: cli_dim(dims, 0, "N_HEADS", None)?,
            head_dim: cli_dim(dims, 1, "HEAD_DIM", None)?,
            max_ctx: cli_dim(dims, 2, "MAX_CTX", None)?,
            chunk: cli_dim(dims, 3, "CHUNK", None)?,
            window: (window != 0).then_some(window),
            m: cli_batch(dims, 5)?,
            out,
        })
    }

    fn name(&self) -> String {
        let mut n = format!(
            "attn_combine_h{}_d{}_ctx{}_c{}",
            self.n_heads, self.head_dim, self.max_ctx, self.chunk
        );
        if let Some(w) = self.window {
            n.push_str(&format!("_w{w}"));
        }
        if self.out == OutFormat::Q8_1 {
            n.push_str("_q8_1");
        }
        n.push_str(&batch_suffix(self.m));
        n
    }

    fn describe(&self) -> String {
        format!(
            "attention (combine): {} heads, head_dim {}, {} chunks of {} positions (max_ctx {}), window {}, {} out{}",
            self.n_heads,
            self.head_dim,
            self.n_chunks(),
            self.chunk,
            self.max_ctx,
            self.window.map_or("none".to_string(), |w| w.to_string()),
            self.out.tag(),
            batch_describe_z(self.m)
        )
    }

    fn validate(&self) -> Result<(), GenError> {
        let f = Self::FAMILY;
        if self.n_heads == 0 || self.n_heads > 1 << 16 {
            return Err(invalid(f, "n_heads", "in 1..=65536", self.n_heads));
        }
        if self.head_dim == 0 || self.head_dim > 1024 {
            return Err(invalid(f, "head_dim", "in 1..=1024", self.head_dim));
        }
        if self.max_ctx == 0 || self.max_ctx > ATTENTION_MAX_CTX {
            return Err(invalid(
                f,
                "max_ctx",
                &format!("in 1..={ATTENTION_MAX_CTX}"),
                self.max_ctx,
            ));
        }
        if !self.chunk.is_power_of_two() || !(16..=4096).contains(&self.chunk) {
            return Err(invalid(
                f,
                "chunk",
                "a power of two in 16..=4096",
                self.chunk,
            ));
        }
        if self.window == Some(0) {
            return Err(invalid(f, "window", "at least 1 position (or none)", 0));
        }
        if self.out == OutFormat::Q8_1 && self.head_dim % Q8_1_BLOCK_VALUES != 0 {
            return Err(invalid(
                f,
                "head_dim",
                "a multiple of 32 for a Q8_1 output (one block per warp)",
                self.head_dim,
            ));
        }
        let values = self.n_heads as u64 * self.n_chunks() as u64 * self.head_dim as u64;
        if values >= 1 << 31 {
            return Err(invalid(
                f,
                "n_heads * n_chunks * head_dim",
                "below 2^31 partial values",
                values,
            ));
        }
        validate_batch(f, self.m)?;
        if self.m > 1 && values * 4 > u32::MAX as u64 {
            return Err(invalid(f, "m", "1 when the partials exceed 4 GiB", self.m));
        }
        Ok(())
    }

    fn generate(&self, target: Target) -> Result<GeneratedKernel, GenError> {
        generate(self, target)
    }

    fn samples() -> Vec<Self> {
        let mut v: Vec<Self> = super::attention::DecodeAttention::samples()
            .iter()
            .map(|s| s.combine())
            .collect();
        v.dedup();
        let quantized: Vec<Self> = v
            .iter()
            .filter(|c| c.head_dim % Q8_1_BLOCK_VALUES == 0)
            .map(|c| AttentionCombine {
                out: OutFormat::Q8_1,
                ..*c
            })
            .collect();
        v.extend(quantized);
        v
    }

    fn batched(&self, m: u32) -> Option<Self> {
        let b = Self { m, ..*self };
        (self.m == 1 && b.validate().is_ok()).then_some(b)
    }

    /// Sequence v: `part_o`, `part_ml`, `seq_len`, `out + v *` their single sizes.
    fn batch_decl(&self) -> Option<BatchDecl> {
        let (h, nc, d) = (
            self.n_heads as u64,
            self.n_chunks() as u64,
            self.head_dim as u64,
        );
        grid_decl_z(
            self.m,
            &[
                ("part_o", h * nc * d * 4),
                ("part_ml", h * nc * 8),
                ("seq_len", 4),
                ("out", self.out_buffer().1),
            ],
        )
    }
}

fn generate(s: &AttentionCombine, target: Target) -> Result<GeneratedKernel, GenError> {
    let spec = KernelSpec::AttentionCombine(*s);
    let name = spec.name();
    let (d, nc, threads) = (s.head_dim, s.n_chunks(), s.threads());
    let mut b = KernelBuilder::new(&name, target);
    b.header_comment(&spec.describe());
    b.header_comment(&format!(
        "launch: grid {} x 1 x {} (fixed), block {threads} x 1 x 1",
        s.n_heads, s.m
    ));
    b.required_threads(threads);
    let part_o = b.param(Type::U64, "part_o");
    let part_ml = b.param(Type::U64, "part_ml");
    let seq_len = b.param(Type::U64, "seq_len");
    let out = b.param(Type::U64, "out");

    let tid = b.special(Sreg::TidX);
    let head = b.special(Sreg::CtaidX);
    let lane = b.and(Type::B32, tid, 31u32);
    // Padding threads (head_dim not a multiple of 32) stay for the shuffles; they load no
    // partial and store nothing.
    let dim_ok = (threads > d).then(|| b.setp(Cmp::Lt, Type::U32, tid, d));
    let vi = batch_sequence(&mut b, s.m);
    let seqp = vector_ptr(&mut b, &seq_len, vi, 4);
    let (seq, lo) = attended_range(&mut b, seqp, s.max_ctx, s.window);
    let shift = s.chunk.trailing_zeros();
    let c0 = b.shr(Type::U32, lo, shift);
    let seq_up = b.add(Type::U32, seq, s.chunk - 1);
    let c1 = b.shr(Type::U32, seq_up, shift);
    let mlp = vector_ptr(&mut b, &part_ml, vi, s.n_heads as u64 * nc as u64 * 8);
    let first = b.mul(Type::U32, head, nc);
    let mlh = b.mad_wide(Type::U32, first, 8u32, mlp);
    let op = vector_ptr(
        &mut b,
        &part_o,
        vi,
        s.n_heads as u64 * nc as u64 * d as u64 * 4,
    );
    let oel0 = b.mul(Type::U32, first, d);
    let oel = b.add(Type::U32, oel0, tid);
    let oh = b.mad_wide(Type::U32, oel, 4u32, op);

    // A group is GROUP consecutive chunks from g: lane k holds chunk g + k's {m, l}, every
    // thread its dim of each chunk's o. Chunks past c1 load nothing ({-inf, 0} and 0).
    let ml_lane = [b.reg(Type::F32), b.reg(Type::F32)];
    let o_k: Vec<Reg> = (0..GROUP).map(|_| b.reg(Type::F32)).collect();
    let load_group = |b: &mut KernelBuilder, g: Reg| {
        let cl = b.add(Type::U32, g, lane);
        let pl = b.setp(Cmp::Lt, Type::U32, cl, c1);
        b.to(ml_lane[0]).mov(Type::F32, f32::NEG_INFINITY);
        b.to(ml_lane[1]).mov(Type::F32, 0.0f32);
        let a = b.mad_wide(Type::U32, cl, 8u32, mlh);
        b.when(pl).load_to(
            StateSpace::Global,
            Type::F32,
            &ml_lane,
            Addr::reg(a),
            &[CacheHint::NonCoherent],
            None,
        );
        let oa = b.mad_wide(Type::U32, g, d * 4, oh);
        for (k, o) in o_k.iter().enumerate() {
            b.to(*o).mov(Type::F32, 0.0f32);
            let ck = b.add(Type::U32, g, k as u32);
            let mut pk = b.setp(Cmp::Lt, Type::U32, ck, c1);
            if let Some(ok) = dim_ok {
                pk = b.and(Type::Pred, pk, ok);
            }
            b.when(pk).load_to(
                StateSpace::Global,
                Type::F32,
                &[*o],
                Addr::reg_off(oa, (k as u32 * d * 4) as i64),
                &[CacheHint::NonCoherent],
                None,
            );
        }
    };
    b.comment("the first group's partials, in flight with the max walk's loads");
    load_group(&mut b, c0);

    b.comment("M = max over the attended chunks of m_c: lanes take chunks 32 apart, MAX_LOADS at once, then a butterfly (max is exact in any order)");
    let m_lane = b.mov(Type::F32, f32::NEG_INFINITY);
    b.for_range(Type::U32, c0, c1, (32 * MAX_LOADS) as i64, |b, c| {
        let cl = b.add(Type::U32, c, lane);
        let ms: Vec<Reg> = (0..MAX_LOADS)
            .map(|j| {
                let cj = b.add(Type::U32, cl, 32 * j);
                let pj = b.setp(Cmp::Lt, Type::U32, cj, c1);
                let m = b.mov(Type::F32, f32::NEG_INFINITY);
                let a = b.mad_wide(Type::U32, cj, 8u32, mlh);
                b.when(pj)
                    .load_to(StateSpace::Global, Type::F32, &[m], Addr::reg(a), &[], None);
                m
            })
            .collect();
        for m in ms {
            b.to(m_lane).max(Type::F32, m_lane, m);
        }
    });
    let m_all = warp_reduce(&mut b, BinOp::Max, Type::F32, m_lane);

    b.comment("L = sum 2^(m_c - M) l_c, O = sum 2^(m_c - M) o_c, in chunk order: lane k computes chunk g + k's weight, every thread takes it by shuffle");
    let l_all = b.mov(Type::F32, 0.0f32);
    let o_all = b.mov(Type::F32, 0.0f32);
    b.for_range(Type::U32, c0, c1, GROUP as i64, |b, g| {
        let x = b.bin(BinOp::Sub, Type::F32, FMode::rn(), ml_lane[0], m_all);
        let w = emit_exp2(b, x);
        let left = b.sub(Type::U32, c1, g);
        for (k, o) in o_k.iter().enumerate() {
            let wk = b.shfl_idx(w, k as u32);
            let lk = b.shfl_idx(ml_lane[1], k as u32);
            if k == 0 {
                // The group's first chunk is attended (g < c1).
                b.to(l_all).fma(wk, lk, l_all);
                b.to(o_all).fma(wk, *o, o_all);
            } else {
                let pk = b.setp(Cmp::Gt, Type::U32, left, k as u32);
                b.when(pk).to(l_all).fma(wk, lk, l_all);
                b.when(pk).to(o_all).fma(wk, *o, o_all);
            }
        }
        let next = b.add(Type::U32, g, GROUP);
        load_group(b, next);
    });
    let q = b.bin(BinOp::Div, Type::F32, FMode::rn(), o_all, l_all);
    let some = b.setp(Cmp::Gt, Type::F32, l_all, 0.0f32);
    let res = b.selp(Type::F32, q, 0.0f32, some);
    let outp = vector_ptr(&mut b, &out, vi, s.out_buffer().1);
    let hd = b.mad(Type::U32, FMode::NONE, head, d, tid);
    match s.out {
        OutFormat::F32 => {
            let oa = b.mad_wide(Type::U32, hd, 4u32, outp);
            if let Some(ok) = dim_ok {
                b.when(ok);
            }
            b.st_global(Type::F32, Addr::reg(oa), res);
        }
        OutFormat::Q8_1 => {
            // Warp w of head h holds values h * d + 32 w ..: one whole Q8_1 block.
            let blk = b.shr(Type::U32, hd, Q8_1_BLOCK_VALUES.trailing_zeros());
            let ya = Q8Ptr::vector(&mut b, outp, s.n_heads * d).at(&mut b, blk);
            emit_block(&mut b, res, lane, ya);
        }
    }

    let kernel = b.finish()?;
    let ptx = crate::emit::emit_module(&Module::single(kernel));
    let (o_bytes, ml_bytes) = (
        s.n_heads as u64 * nc as u64 * d as u64 * 4,
        s.n_heads as u64 * nc as u64 * 8,
    );
    let mut params = vec![
        ParamSpec::buffer(
            "part_o",
            format!("f32[{}][{nc}][{d}]", s.n_heads),
            o_bytes,
            4,
            Access::Read,
            "split kernel's unnormalized per-chunk outputs; only attended chunks are read",
        ),
        ParamSpec::buffer(
            "part_ml",
            format!("f32[{}][{nc}][2]", s.n_heads),
            ml_bytes,
            8,
            Access::Read,
            "split kernel's per-chunk {m, l} (base-2 max and sum); only attended chunks are read",
        ),
        ParamSpec::buffer(
            "seq_len",
            "u32[1]".to_string(),
            4,
            4,
            Access::Read,
            "number of valid positions, as given to the split kernel",
        ),
        ParamSpec::buffer(
            "out",
            s.out_buffer().0,
            s.out_buffer().1,
            match s.out {
                OutFormat::F32 => 4,
                OutFormat::Q8_1 => 16,
            },
            Access::Write,
            match s.out {
                OutFormat::F32 => "attention output of each query head, f32[n_heads][head_dim]",
                OutFormat::Q8_1 => {
                    super::q8_1_layout::q8_1_meaning!(
                        "attention output of each query head (values h * head_dim + d), quantized: "
                    )
                }
            },
        ),
    ];
    batch_params(&mut params, s.m, &[]);
    Ok(GeneratedKernel {
        name,
        ptx,
        launch: batch_launch_z(LaunchSpec::fixed(s.n_heads, 1, threads), s.m),
        params,
        spec,
        target,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::attention::DecodeAttention;

    #[test]
    fn samples_generate_and_match_their_split_kernels() {
        for split in DecodeAttention::samples() {
            let c = split.combine();
            c.validate().unwrap();
            assert_eq!(c.n_chunks(), split.n_chunks());
            let k = generate(&c, Target::sm(61)).unwrap();
            assert_eq!(
                k.launch,
                batch_launch_z(
                    LaunchSpec::fixed(split.n_heads, 1, split.head_dim.next_multiple_of(32)),
                    split.m
                )
            );
        }
        assert_eq!(
            DecodeAttention::samples()[2].combine().name(),
            "attn_combine_h4_d256_ctx32768_c256_w512"
        );
    }

    #[test]
    fn bad_chunks_are_typed_errors() {
        let c = DecodeAttention::samples()[0].combine();
        assert!(matches!(
            AttentionCombine { chunk: 100, ..c }.validate(),
            Err(GenError::InvalidSpec { field: "chunk", .. })
        ));
    }
}
