//! RoPE on Q and K in place, fused with writing K and V into the KV cache slot of the position.
//!
//! The position is a `u32` read from device memory (`pos`), so a decode step can be replayed
//! as a CUDA graph. Angles come from a table `f32[max_ctx][rope_dims / 2][2]` of
//! `(cos, sin)` of `pos * theta^(-2i / rope_dims)` built on the host (`reference::rope::rope_table`),
//! one per distinct theta, so theta is not part of the kernel.
//!
//! Pair i (i < rope_dims / 2) is `(2i, 2i + 1)` in the `norm` style and `(i, i + rope_dims / 2)`
//! in the `neox` style; dimensions past `rope_dims` pass through unchanged. The rotation of a
//! pair `(x, y)` by `(c, s)` is, in this order:
//!   `x' = fma.rn(x, c, -(y * s))`,  `y' = fma.rn(x, s, y * c)`   (`*` is `mul.rn`),
//! so a CPU reference using `mul_add` gets the same bits.
//!
//! KV cache layout, shared with the attention kernel: `f16[n_kv_heads][max_ctx][head_dim]`,
//! element (h, p, d) at `((h * max_ctx) + p) * head_dim + d`; slot `pos` of every kv head gets
//! the rotated k and the v, each converted with `cvt.rn.f16.f32`.
//!
//! When `pos >= max_ctx` the kernel writes nothing at all: q and k stay unrotated and the
//! cache untouched.
//!
//! One warp per row: rows `0..n_heads` are the q heads, then the k heads, then the v heads.
//! A row's kind depends only on the warp index, so the branches below are warp-uniform.

use crate::ast::{StateSpace, Type};
use crate::ir::{Addr, BinOp, CacheHint, Cmp, FMode, KernelBuilder, Module, Reg, Sreg, UnOp};
use crate::launch::LaunchSpec;
use crate::parity::BatchDecl;
use crate::target::Target;

use super::quantize_q8_1::{
    batch_describe, batch_launch, batch_params, batch_suffix, batch_vector, cli_batch, grid_decl,
    is_one, one, validate_batch, vector_ptr,
};

use super::spec::{cli_dim, cli_max, invalid, Access, FamilySpec, GenError, KernelSpec, ParamSpec};
use super::GeneratedKernel;

/// Warps (rows) per thread block.
const WARPS: u32 = 4;

/// Largest head the kernel takes.
pub const ROPE_MAX_HEAD_DIM: u32 = 1024;

/// Which dimensions form a rotation pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RopeStyle {
    /// Adjacent pairs `(2i, 2i + 1)` (GGML's `LLAMA_ROPE_TYPE_NORM`: llama, mistral).
    Norm,
    /// Split halves `(i, i + rope_dims / 2)` (GPT-NeoX style: qwen2, gemma3, phi3).
    Neox,
}

impl RopeStyle {
    pub fn tag(self) -> &'static str {
        match self {
            RopeStyle::Norm => "norm",
            RopeStyle::Neox => "neox",
        }
    }

    /// Parses `norm` or `neox`.
    pub fn parse(s: &str) -> Result<RopeStyle, String> {
        match s {
            "norm" => Ok(RopeStyle::Norm),
            "neox" => Ok(RopeStyle::Neox),
            _ => Err(format!("rope style must be `norm` or `neox`, got `{s}`")),
        }
    }

    /// The two dimensions of rotation pair `i` of a head rotating `rope_dims` dimensions.
    pub fn pair(self, i: u32, rope_dims: u32) -> (u32, u32) {
        match self {
            RopeStyle::Norm => (2 * i, 2 * i + 1),
            RopeStyle::Neox => (i, i + rope_dims / 2),
        }
    }
}

/// RoPE on q and k plus the KV cache write of one position.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RopeKv {
    pub style: RopeStyle,
    pub n_heads: u32,
    pub n_kv_heads: u32,
    pub head_dim: u32,
    /// Rotated dimensions (even, <= head_dim); the rest pass through.
    pub rope_dims: u32,
    /// Positions in the cache and rows of the angle table.
    pub max_ctx: u32,
    /// Sequences per launch (1: single; up to 16, one per `%ctaid.y`): sequence v has its
    /// own q, k, v, position and layer KV cache; the angle table is shared.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub m: u32,
}

impl RopeKv {
    /// Bytes of one sequence's layer cache (k or v): `n_kv_heads * max_ctx * head_dim` f16.
    pub fn cache_bytes(&self) -> u64 {
        self.n_kv_heads as u64 * self.max_ctx as u64 * self.head_dim as u64 * 2
    }
}

impl FamilySpec for RopeKv {
    const FAMILY: &'static str = "rope_kv";
    const CLI_DIMS: &'static str =
        "STYLE N_HEADS N_KV_HEADS HEAD_DIM ROPE_DIMS MAX_CTX [M]: RoPE on q, k + f16 KV cache write; STYLE norm|neox, M 1..=16 sequences (default 1)";

    fn from_cli(dims: &[String]) -> Result<Self, String> {
        cli_max(dims, 7)?;
        let style = RopeStyle::parse(dims.first().ok_or("missing STYLE (norm or neox)")?)?;
        Ok(RopeKv {
            style,
            n_heads: cli_dim(dims, 1, "N_HEADS", None)?,
            n_kv_heads: cli_dim(dims, 2, "N_KV_HEADS", None)?,
            head_dim: cli_dim(dims, 3, "HEAD_DIM", None)?,
            rope_dims: cli_dim(dims, 4, "ROPE_DIMS", None)?,
            max_ctx: cli_dim(dims, 5, "MAX_CTX", None)?,
            m: cli_batch(dims, 6)?,
        })
    }

    fn name(&self) -> String {
        format!(
            "rope_kv_{}_h{}_kv{}_d{}_r{}_ctx{}{}",
            self.style.tag(),
            self.n_heads,
            self.n_kv_heads,
            self.head_dim,
            self.rope_dims,
            self.max_ctx,
            batch_suffix(self.m)
        )
    }

    fn describe(&self) -> String {
        format!(
            "rope_kv: {} style, q f32[{}][{d}], k/v f32[{}][{d}], {} of {d} dims rotated, cache f16[{}][{}][{d}]{}",
            self.style.tag(),
            self.n_heads,
            self.n_kv_heads,
            self.rope_dims,
            self.n_kv_heads,
            self.max_ctx,
            batch_describe(self.m),
            d = self.head_dim,
        )
    }

    fn validate(&self) -> Result<(), GenError> {
        let f = Self::FAMILY;
        if self.n_heads == 0 || self.n_heads > 4096 {
            return Err(invalid(f, "n_heads", "in 1..=4096", self.n_heads));
        }
        if self.n_kv_heads == 0 || self.n_kv_heads > 4096 {
            return Err(invalid(f, "n_kv_heads", "in 1..=4096", self.n_kv_heads));
        }
        if self.head_dim < 2 || self.head_dim % 2 != 0 || self.head_dim > ROPE_MAX_HEAD_DIM {
            return Err(invalid(
                f,
                "head_dim",
                &format!("even, in 2..={ROPE_MAX_HEAD_DIM}"),
                self.head_dim,
            ));
        }
        if self.rope_dims < 2 || self.rope_dims % 2 != 0 || self.rope_dims > self.head_dim {
            return Err(invalid(
                f,
                "rope_dims",
                &format!("even, in 2..=head_dim ({})", self.head_dim),
                self.rope_dims,
            ));
        }
        // Cache rows (kv head, position) are indexed with 32-bit integers.
        if self.max_ctx == 0 || self.n_kv_heads as u64 * self.max_ctx as u64 > u32::MAX as u64 {
            return Err(invalid(
                f,
                "max_ctx",
                &format!("positive, with n_kv_heads * max_ctx <= {}", u32::MAX),
                self.max_ctx,
            ));
        }
        validate_batch(f, self.m)?;
        // A sequence's cache offset is a 32-bit immediate.
        if self.m > 1 && self.cache_bytes() > u32::MAX as u64 {
            return Err(invalid(
                f,
                "m",
                "1 when one layer cache exceeds 4 GiB",
                self.m,
            ));
        }
        Ok(())
    }

    fn generate(&self, target: Target) -> Result<GeneratedKernel, GenError> {
        generate(self, target)
    }

    fn samples() -> Vec<Self> {
        use RopeStyle::*;
        [
            // llama3-8b
            (Norm, 32, 8, 128, 128, 8192),
            // qwen2.5-0.5b
            (Neox, 14, 2, 64, 64, 32768),
            // gemma3-270m
            (Neox, 4, 1, 256, 256, 32768),
            // smollm2-135m
            (Norm, 9, 3, 64, 64, 8192),
            // partial rotary (half of the head)
            (Neox, 32, 32, 128, 64, 4096),
            (Norm, 32, 8, 128, 64, 4096),
            // phi3-mini: head_dim 96
            (Neox, 32, 32, 96, 96, 4096),
            // edges: head_dim 80, odd pair counts, tiny heads, one position
            (Neox, 7, 1, 80, 80, 300),
            (Norm, 5, 5, 80, 34, 257),
            (Neox, 3, 1, 2, 2, 1),
            (Norm, 16, 16, 1024, 1024, 128),
        ]
        .map(
            |(style, n_heads, n_kv_heads, head_dim, rope_dims, max_ctx)| RopeKv {
                style,
                n_heads,
                n_kv_heads,
                head_dim,
                rope_dims,
                max_ctx,
                m: 1,
            },
        )
        .into_iter()
        .chain(
            [
                (Norm, 32, 8, 128, 128, 8192, 2),
                (Neox, 14, 2, 64, 64, 4096, 16),
                (Norm, 5, 5, 80, 34, 257, 3),
            ]
            .map(
                |(style, n_heads, n_kv_heads, head_dim, rope_dims, max_ctx, m)| RopeKv {
                    style,
                    n_heads,
                    n_kv_heads,
                    head_dim,
                    rope_dims,
                    max_ctx,
                    m,
                },
            ),
        )
        .collect()
    }

    fn batched(&self, m: u32) -> Option<Self> {
        let b = Self { m, ..*self };
        (self.m == 1 && b.validate().is_ok()).then_some(b)
    }

    /// Sequence v: `q + v * n_heads * head_dim * 4`, `k`/`v + v * n_kv_heads * head_dim * 4`,
    /// `k_cache`/`v_cache + v * cache_bytes()`, `pos + 4 v`; `rope_table` shared.
    fn batch_decl(&self) -> Option<BatchDecl> {
        let d = self.head_dim as u64;
        let kv = self.n_kv_heads as u64 * d * 4;
        grid_decl(
            self.m,
            &[
                ("q", self.n_heads as u64 * d * 4),
                ("k", kv),
                ("v", kv),
                ("k_cache", self.cache_bytes()),
                ("v_cache", self.cache_bytes()),
                (
                    "rope_table",
                    self.max_ctx as u64 * (self.rope_dims / 2) as u64 * 8,
                ),
                ("pos", 4),
            ],
            &["rope_table"],
        )
    }
}

/// Per-warp addresses of one row.
struct Row {
    /// The row's f32 values (q, k or v head).
    src: Reg,
    /// The row's cache slot (k and v rows), f16.
    cache: Option<Reg>,
    /// Whether rotated values are written back to `src` (q and k).
    write_back: bool,
}

fn generate(s: &RopeKv, target: Target) -> Result<GeneratedKernel, GenError> {
    let spec = KernelSpec::RopeKv(*s);
    let name = spec.name();
    let rows = s.n_heads + 2 * s.n_kv_heads;
    let warps = WARPS.min(rows);
    let grid = rows.div_ceil(warps);
    let half = s.rope_dims / 2;
    let mut b = KernelBuilder::new(&name, target);
    b.header_comment(&spec.describe());
    b.header_comment(&format!(
        "launch: grid {grid} x {} x 1, block {} x 1 x 1 (one warp per q, k and v head)",
        s.m,
        warps * 32
    ));
    b.max_threads(warps * 32);
    let q = b.param(Type::U64, "q");
    let k = b.param(Type::U64, "k");
    let v = b.param(Type::U64, "v");
    let k_cache = b.param(Type::U64, "k_cache");
    let v_cache = b.param(Type::U64, "v_cache");
    let table = b.param(Type::U64, "rope_table");
    let pos_p = b.param(Type::U64, "pos");

    let tid = b.special(Sreg::TidX);
    let cta = b.special(Sreg::CtaidX);
    let lane = b.and(Type::B32, tid, 31u32);
    let warp = b.shr(Type::U32, tid, 5u32);
    let row = b.mad(Type::U32, FMode::NONE, cta, warps, warp);
    if rows % warps != 0 {
        let past = b.setp(Cmp::Ge, Type::U32, row, rows);
        b.return_if(past);
    }
    let vi = batch_vector(&mut b, s.m);
    let posa = vector_ptr(&mut b, &pos_p, vi, 4);
    let pos = b.ld_global(Type::U32, Addr::reg(posa));
    // Out-of-range positions write nothing (q and k stay unrotated).
    let bad = b.setp(Cmp::Ge, Type::U32, pos, s.max_ctx);
    b.return_if(bad);

    let tp = b.global_ptr(&table);
    let toff = b.mul_wide(Type::U32, pos, half * 8);
    let tab = b.add(Type::U64, tp, toff);
    let row_bytes = s.head_dim * 4;
    let slot_bytes = s.head_dim * 2;
    let kv_stride = s.n_kv_heads as u64 * s.head_dim as u64 * 4;

    let is_q = b.setp(Cmp::Lt, Type::U32, row, s.n_heads);
    b.if_else(
        is_q,
        |b| {
            b.comment("q head: rotate in place");
            let qp = vector_ptr(b, &q, vi, s.n_heads as u64 * s.head_dim as u64 * 4);
            let off = b.mul_wide(Type::U32, row, row_bytes);
            let src = b.add(Type::U64, qp, off);
            let r = Row {
                src,
                cache: None,
                write_back: true,
            };
            rotate_row(b, s, &r, tab, lane);
        },
        |b| {
            let kv_row = b.sub(Type::U32, row, s.n_heads);
            let is_k = b.setp(Cmp::Lt, Type::U32, kv_row, s.n_kv_heads);
            b.if_else(
                is_k,
                |b| {
                    b.comment("k head: rotate in place, write the cache slot");
                    let kp = vector_ptr(b, &k, vi, kv_stride);
                    let cp = vector_ptr(b, &k_cache, vi, s.cache_bytes());
                    let r = kv_addrs(b, s, kp, cp, kv_row, pos, row_bytes, slot_bytes, true);
                    rotate_row(b, s, &r, tab, lane);
                    copy_pairs(b, s, &r, half, lane);
                },
                |b| {
                    b.comment("v head: write the cache slot");
                    let h = b.sub(Type::U32, kv_row, s.n_kv_heads);
                    let vp = vector_ptr(b, &v, vi, kv_stride);
                    let cp = vector_ptr(b, &v_cache, vi, s.cache_bytes());
                    let r = kv_addrs(b, s, vp, cp, h, pos, row_bytes, slot_bytes, false);
                    copy_pairs(b, s, &r, 0, lane);
                },
            );
        },
    );

    let kernel = b.finish()?;
    let ptx = crate::emit::emit_module(&Module::single(kernel));
    let d = s.head_dim as u64;
    let cache_layout = format!("f16[{}][{}][{}]", s.n_kv_heads, s.max_ctx, s.head_dim);
    let cache_bytes = s.n_kv_heads as u64 * s.max_ctx as u64 * d * 2;
    let kv_layout = format!("f32[{}][{}]", s.n_kv_heads, s.head_dim);
    let kv_bytes = s.n_kv_heads as u64 * d * 4;
    let mut params = vec![
        ParamSpec::buffer(
            "q",
            format!("f32[{}][{}]", s.n_heads, s.head_dim),
            s.n_heads as u64 * d * 4,
            8,
            Access::ReadWrite,
            "query heads, rotated in place",
        ),
        ParamSpec::buffer(
            "k",
            kv_layout.clone(),
            kv_bytes,
            8,
            Access::ReadWrite,
            "key heads, rotated in place",
        ),
        ParamSpec::buffer("v", kv_layout, kv_bytes, 8, Access::Read, "value heads"),
        ParamSpec::buffer(
            "k_cache",
            cache_layout.clone(),
            cache_bytes,
            4,
            Access::Write,
            "key cache; only slot pos of each kv head is written (rotated k as f16)",
        ),
        ParamSpec::buffer(
            "v_cache",
            cache_layout,
            cache_bytes,
            4,
            Access::Write,
            "value cache; only slot pos of each kv head is written (v as f16)",
        ),
        ParamSpec::buffer(
            "rope_table",
            format!("f32[{}][{}][2]", s.max_ctx, half),
            s.max_ctx as u64 * half as u64 * 8,
            8,
            Access::Read,
            "(cos, sin) of pos * theta^(-2i / rope_dims), from reference::rope::rope_table",
        ),
        ParamSpec::buffer(
            "pos",
            "u32[1]".into(),
            4,
            4,
            Access::Read,
            "position of this token; nothing is written when pos >= max_ctx",
        ),
    ];
    batch_params(&mut params, s.m, &["rope_table"]);
    Ok(GeneratedKernel {
        name,
        ptx,
        launch: batch_launch(LaunchSpec::fixed(grid, 1, warps * 32), s.m),
        params,
        spec,
        target,
    })
}

/// The addresses of kv head `h`: its f32 row in `src_base` and its f16 slot `pos` in the cache.
#[allow(clippy::too_many_arguments)]
fn kv_addrs(
    b: &mut KernelBuilder,
    s: &RopeKv,
    src_base: Reg,
    cache_base: Reg,
    h: Reg,
    pos: Reg,
    row_bytes: u32,
    slot_bytes: u32,
    write_back: bool,
) -> Row {
    let off = b.mul_wide(Type::U32, h, row_bytes);
    let src = b.add(Type::U64, src_base, off);
    let slot = b.mad(Type::U32, FMode::NONE, h, s.max_ctx, pos);
    let coff = b.mul_wide(Type::U32, slot, slot_bytes);
    let cache = b.add(Type::U64, cache_base, coff);
    Row {
        src,
        cache: Some(cache),
        write_back,
    }
}

/// The guard of step `k` of a lane loop over `count` items (item `lane + 32k`), or `None`
/// when every lane has an item in that step.
fn step_guard(b: &mut KernelBuilder, lane: Reg, k: u32, count: u32) -> Option<Reg> {
    ((k + 1) * 32 > count).then(|| {
        let i = if k == 0 {
            lane
        } else {
            b.add(Type::U32, lane, k * 32)
        };
        b.setp(Cmp::Lt, Type::U32, i, count)
    })
}

/// Guards the next instruction when `g` is set.
fn guarded(b: &mut KernelBuilder, g: Option<Reg>) -> &mut KernelBuilder {
    if let Some(p) = g {
        b.when(p);
    }
    b
}

/// Loads into fresh registers that hold zeros where the guard is false.
pub(super) fn load_f32(
    b: &mut KernelBuilder,
    width: usize,
    addr: Addr,
    hints: &[CacheHint],
    g: Option<Reg>,
) -> Vec<Reg> {
    match g {
        None => b.load(StateSpace::Global, Type::F32, width, addr, hints, None),
        Some(p) => {
            let regs: Vec<Reg> = (0..width).map(|_| b.mov(Type::F32, 0.0f32)).collect();
            b.when(p);
            b.load_to(StateSpace::Global, Type::F32, &regs, addr, hints, None);
            regs
        }
    }
}

/// `(x', y') = (x c - y s, x s + y c)` in the documented order.
pub(super) fn rotate(b: &mut KernelBuilder, x: Reg, y: Reg, c: Reg, sn: Reg) -> (Reg, Reg) {
    let ys = b.bin(BinOp::Mul, Type::F32, FMode::rn(), y, sn);
    let nys = b.un(UnOp::Neg, Type::F32, FMode::NONE, ys);
    let xr = b.fma(x, c, nys);
    let yc = b.bin(BinOp::Mul, Type::F32, FMode::rn(), y, c);
    let yr = b.fma(x, sn, yc);
    (xr, yr)
}

pub(super) fn to_f16(b: &mut KernelBuilder, v: Reg) -> Reg {
    b.cvt(Type::F16, Type::F32, FMode::rn(), v)
}

/// Rotates the `rope_dims / 2` pairs of a row: lane l takes pairs l, l + 32, ...
fn rotate_row(b: &mut KernelBuilder, s: &RopeKv, r: &Row, tab: Reg, lane: Reg) {
    let half = s.rope_dims / 2;
    let l8 = b.mul_wide(Type::U32, lane, 8u32);
    let ta = b.add(Type::U64, tab, l8);
    let (sa, ca) = match s.style {
        RopeStyle::Norm => {
            let sa = b.add(Type::U64, r.src, l8);
            let ca = r.cache.map(|c| {
                let l4 = b.mul_wide(Type::U32, lane, 4u32);
                b.add(Type::U64, c, l4)
            });
            (sa, ca)
        }
        RopeStyle::Neox => {
            let l4 = b.mul_wide(Type::U32, lane, 4u32);
            let sa = b.add(Type::U64, r.src, l4);
            let ca = r.cache.map(|c| {
                let l2 = b.mul_wide(Type::U32, lane, 2u32);
                b.add(Type::U64, c, l2)
            });
            (sa, ca)
        }
    };
    for k in 0..half.div_ceil(32) {
        let g = step_guard(b, lane, k, half);
        let step = (k * 32) as i64;
        let cs = load_f32(
            b,
            2,
            Addr::reg_off(ta, step * 8),
            &[CacheHint::NonCoherent],
            g,
        );
        match s.style {
            RopeStyle::Norm => {
                let xy = load_f32(b, 2, Addr::reg_off(sa, step * 8), &[], g);
                let (xr, yr) = rotate(b, xy[0], xy[1], cs[0], cs[1]);
                if r.write_back {
                    guarded(b, g).store(
                        StateSpace::Global,
                        Type::F32,
                        Addr::reg_off(sa, step * 8),
                        &[xr.into(), yr.into()],
                        &[],
                        None,
                    );
                }
                if let Some(ca) = ca {
                    let hx = to_f16(b, xr);
                    let hy = to_f16(b, yr);
                    let word = b.pack(Type::B32, &[hx, hy]);
                    guarded(b, g).st_global(Type::B32, Addr::reg_off(ca, step * 4), word);
                }
            }
            RopeStyle::Neox => {
                let xa = Addr::reg_off(sa, step * 4);
                let ya = Addr::reg_off(sa, (step + half as i64) * 4);
                let x = load_f32(b, 1, xa.clone(), &[], g)[0];
                let y = load_f32(b, 1, ya.clone(), &[], g)[0];
                let (xr, yr) = rotate(b, x, y, cs[0], cs[1]);
                if r.write_back {
                    guarded(b, g).st_global(Type::F32, xa, xr);
                    guarded(b, g).st_global(Type::F32, ya, yr);
                }
                if let Some(ca) = ca {
                    let hx = to_f16(b, xr);
                    let hy = to_f16(b, yr);
                    guarded(b, g).st_global(Type::B16, Addr::reg_off(ca, step * 2), hx);
                    guarded(b, g).st_global(
                        Type::B16,
                        Addr::reg_off(ca, (step + half as i64) * 2),
                        hy,
                    );
                }
            }
        }
    }
}

/// Copies adjacent pairs `(2j, 2j + 1)` for `j` in `first..head_dim / 2` of the row into its
/// cache slot as f16 (the pass-through dims of k, or all of v).
fn copy_pairs(b: &mut KernelBuilder, s: &RopeKv, r: &Row, first: u32, lane: Reg) {
    let Some(cache) = r.cache else { return };
    let count = s.head_dim / 2 - first;
    if count == 0 {
        return;
    }
    let l8 = b.mul_wide(Type::U32, lane, 8u32);
    let sa = b.add(Type::U64, r.src, l8);
    let l4 = b.mul_wide(Type::U32, lane, 4u32);
    let ca = b.add(Type::U64, cache, l4);
    // v is read-only here; k was written by this same lane above (coherent path).
    let hints: &[CacheHint] = if r.write_back {
        &[]
    } else {
        &[CacheHint::NonCoherent]
    };
    for k in 0..count.div_ceil(32) {
        let g = step_guard(b, lane, k, count);
        let j = (first + k * 32) as i64;
        let xy = load_f32(b, 2, Addr::reg_off(sa, j * 8), hints, g);
        let h0 = to_f16(b, xy[0]);
        let h1 = to_f16(b, xy[1]);
        let word = b.pack(Type::B32, &[h0, h1]);
        guarded(b, g).st_global(Type::B32, Addr::reg_off(ca, j * 4), word);
    }
}
