//! Per-head RMSNorm (the QK norm of Qwen3 and Gemma3), in place on `f32[n_heads][head_dim]`
//! with one gamma of `head_dim` shared by every head:
//! `x[h][d] = x[h][d] / sqrt(mean_d(x[h]^2) + eps) * (w[d] + offset)`.
//!
//! One warp per head. Lane l holds chunks l, l + 32, ... of the head (float4 where head_dim
//! allows), sums their squares in that fixed order, and the warp reduces with the butterfly of
//! `reduce.rs`; the scale and the per-value normalization are `rmsnorm`'s IEEE-rounded ones.
//!
//! A second set of `k_heads` heads (the K heads, normalized by their own gamma `w1`, at `x1`)
//! can share the launch: warps past the first set's heads take the second's, each head
//! computed exactly as a launch of its own set computes it.
//!
//! Batched (`m` > 1): M vectors `x[m][n_heads][head_dim]`, vector v = `%ctaid.y` (grid
//! `G x M`); vector v's heads start `v * n_heads * head_dim * 4` after `x` (and
//! `v * k_heads * head_dim * 4` after `x1`), the gammas are shared, and the rest is exactly
//! the single kernel's code.

use crate::ast::{StateSpace, Type};
use crate::ir::{
    Addr, BinOp, CacheHint, Cmp, FMode, KernelBuilder, Module, Reg, Sreg, UnOp, Value,
};
use crate::launch::LaunchSpec;
use crate::target::Target;

use super::quantize_q8_1::{
    batch_describe, batch_launch, batch_params, batch_suffix, batch_vector, cli_batch, grid_decl,
    is_one, one, validate_batch, vector_ptr,
};

fn is_zero(v: &u32) -> bool {
    *v == 0
}
use super::reduce::warp_reduce;
use super::rmsnorm::{add_squares, normalize};
use super::rmsnorm_q8_1::woff_suffix;
use super::spec::{cli_dim, cli_max, invalid, Access, FamilySpec, GenError, KernelSpec, ParamSpec};
use super::GeneratedKernel;

/// Largest head the kernel takes (8 float4 per lane).
pub const HEAD_RMSNORM_MAX_HEAD_DIM: u32 = 1024;

/// Warps (heads) per thread block.
const WARPS: u32 = 4;

/// RMSNorm of each of `n_heads` rows of `head_dim` values, in place.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HeadRmsNorm {
    pub n_heads: u32,
    pub head_dim: u32,
    pub eps: f32,
    /// Added to every weight (1.0 for checkpoints that store `w - 1`).
    pub weight_offset: f32,
    /// Heads of a second set (at `x1`, gamma `w1`) normalized in the same launch; 0: none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub k_heads: u32,
    /// Vectors per launch (1: single; up to 16, one per `%ctaid.y`).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub m: u32,
}

impl FamilySpec for HeadRmsNorm {
    const FAMILY: &'static str = "head_rmsnorm";
    const CLI_DIMS: &'static str =
        "N_HEADS[+K_HEADS] HEAD_DIM [EPS] [WEIGHT_OFFSET] [M]: each head x / rms(x) * (w + offset), in place; +K_HEADS: a second set of heads at x1 with gamma w1 in the same launch; M 1..=16 vectors (default 1)";

    fn from_cli(dims: &[String]) -> Result<Self, String> {
        cli_max(dims, 5)?;
        let heads = dims.first().ok_or("missing N_HEADS")?;
        let (n_heads, k_heads) = match heads.split_once('+') {
            Some((n, k)) => {
                let k = k
                    .parse()
                    .map_err(|_| format!("K_HEADS: expected a number, got `{k}`"))?;
                (n.to_string(), k)
            }
            None => (heads.clone(), 0),
        };
        let mut dims = dims.to_vec();
        dims[0] = n_heads;
        Ok(HeadRmsNorm {
            k_heads,
            n_heads: cli_dim(&dims, 0, "N_HEADS", None)?,
            head_dim: cli_dim(&dims, 1, "HEAD_DIM", None)?,
            eps: cli_dim(&dims, 2, "EPS", Some(1e-6))?,
            weight_offset: cli_dim(&dims, 3, "WEIGHT_OFFSET", Some(0.0))?,
            m: cli_batch(&dims, 4)?,
        })
    }

    fn name(&self) -> String {
        format!(
            "head_rmsnorm_h{}_d{}_eps{:08x}{}{}{}",
            self.n_heads,
            self.head_dim,
            self.eps.to_bits(),
            woff_suffix(self.weight_offset),
            if self.k_heads > 0 {
                format!("_and{}", self.k_heads)
            } else {
                String::new()
            },
            batch_suffix(self.m)
        )
    }

    fn describe(&self) -> String {
        let second = if self.k_heads > 0 {
            format!(" and f32[{}][{}] with w1", self.k_heads, self.head_dim)
        } else {
            String::new()
        };
        format!(
            "head_rmsnorm: f32[{}][{}]{second} in place, each head x / rms(x) * (w + {}), eps = {:e} (0x{:08x}){}",
            self.n_heads,
            self.head_dim,
            self.weight_offset,
            self.eps,
            self.eps.to_bits(),
            batch_describe(self.m)
        )
    }

    fn validate(&self) -> Result<(), GenError> {
        if self.n_heads == 0 {
            return Err(invalid(Self::FAMILY, "n_heads", "positive", self.n_heads));
        }
        if self.head_dim == 0 || self.head_dim > HEAD_RMSNORM_MAX_HEAD_DIM {
            return Err(invalid(
                Self::FAMILY,
                "head_dim",
                &format!("in 1..={HEAD_RMSNORM_MAX_HEAD_DIM}"),
                self.head_dim,
            ));
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return Err(invalid(
                Self::FAMILY,
                "eps",
                "a positive finite number",
                self.eps,
            ));
        }
        if !self.weight_offset.is_finite() {
            return Err(invalid(
                Self::FAMILY,
                "weight_offset",
                "a finite number",
                self.weight_offset,
            ));
        }
        for (field, heads) in [("n_heads", self.n_heads), ("k_heads", self.k_heads)] {
            if self.m > 1 && heads as u64 * self.head_dim as u64 * 4 > u32::MAX as u64 {
                return Err(invalid(
                    Self::FAMILY,
                    field,
                    "at most 2^32 - 1 bytes of heads per vector when batched",
                    heads,
                ));
            }
        }
        if self.n_heads.checked_add(self.k_heads).is_none() {
            return Err(invalid(
                Self::FAMILY,
                "k_heads",
                "a count that added to n_heads fits in 32 bits",
                self.k_heads,
            ));
        }
        validate_batch(Self::FAMILY, self.m)
    }

    fn generate(&self, target: Target) -> Result<GeneratedKernel, GenError> {
        generate(self, target)
    }

    fn samples() -> Vec<Self> {
        [
            // Qwen3-0.6B-like: 16 query heads, 8 kv heads, head_dim 128.
            (16, 128, 1e-6, 0.0),
            (8, 128, 1e-6, 0.0),
            // Gemma3-270m: 4 query heads, 1 kv head, head_dim 256.
            (4, 256, 1e-6, 0.0),
            (1, 256, 1e-6, 1.0),
            (32, 128, 1e-6, 0.0),
            (14, 64, 1e-6, 0.0),
            (9, 80, 1e-5, 0.0),
            (7, 96, 1e-6, 0.0),
            (3, 1, 1e-6, 0.0),
            (5, 34, 1e-6, 0.0),
            (2, 1023, 1e-6, 0.0),
            (64, 1024, 1e-5, 0.0),
        ]
        .map(|(n_heads, head_dim, eps, weight_offset)| HeadRmsNorm {
            n_heads,
            head_dim,
            eps,
            weight_offset,
            k_heads: 0,
            m: 1,
        })
        .into_iter()
        .chain(
            [(16, 128, 2), (8, 128, 16), (5, 34, 3)].map(|(n_heads, head_dim, m)| HeadRmsNorm {
                n_heads,
                head_dim,
                eps: 1e-6,
                weight_offset: 0.0,
                k_heads: 0,
                m,
            }),
        )
        // Q and K heads in one launch: Gemma3-270m (4 + 1, head_dim 256), Qwen3-0.6B (16 + 8),
        // a second set that starts inside a block (3 + 2, 5 + 6 heads of 34), batched.
        .chain(
            [
                (4, 1, 256, 1),
                (16, 8, 128, 1),
                (3, 2, 64, 1),
                (5, 6, 34, 1),
                (4, 1, 256, 4),
                (16, 8, 128, 3),
            ]
            .map(|(n_heads, k_heads, head_dim, m)| HeadRmsNorm {
                n_heads,
                head_dim,
                eps: 1e-6,
                weight_offset: 1.0,
                k_heads,
                m,
            }),
        )
        .collect()
    }

    fn batched(&self, m: u32) -> Option<Self> {
        let b = Self { m, ..*self };
        (self.m == 1 && b.validate().is_ok()).then_some(b)
    }

    /// Vector v normalizes `x + v * n_heads * head_dim * 4` (and `x1 + v * k_heads *
    /// head_dim * 4`) in place; the gammas are shared.
    fn batch_decl(&self) -> Option<crate::parity::BatchDecl> {
        let bytes = |heads: u32| heads as u64 * self.head_dim as u64 * 4;
        let gamma = bytes(1);
        let mut params = vec![("x", bytes(self.n_heads)), ("w", gamma)];
        if self.k_heads > 0 {
            params.extend([("x1", bytes(self.k_heads)), ("w1", gamma)]);
        }
        grid_decl(self.m, &params, &["w", "w1"])
    }
}

impl HeadRmsNorm {
    /// Each set of heads as a launch of its own would normalize it (`k_heads` 0): the first
    /// set, then the second where there is one. Each head's values are the same either way.
    pub fn sets(&self) -> Vec<HeadRmsNorm> {
        let own = |n_heads| HeadRmsNorm {
            n_heads,
            k_heads: 0,
            ..*self
        };
        let mut sets = vec![own(self.n_heads)];
        if self.k_heads > 0 {
            sets.push(own(self.k_heads));
        }
        sets
    }
}

fn generate(s: &HeadRmsNorm, target: Target) -> Result<GeneratedKernel, GenError> {
    let spec = KernelSpec::HeadRmsNorm(*s);
    let name = spec.name();
    let vec = [4, 2, 1]
        .into_iter()
        .find(|v| s.head_dim % v == 0)
        .unwrap_or(1);
    let chunks = s.head_dim / vec;
    let per_lane = chunks.div_ceil(32);
    let all = s.n_heads + s.k_heads;
    let warps = WARPS.min(all);
    let grid = all.div_ceil(warps);
    let mut b = KernelBuilder::new(&name, target);
    b.header_comment(&spec.describe());
    b.header_comment(&format!(
        "launch: grid {grid} x {} x 1, block {} x 1 x 1",
        s.m,
        warps * 32
    ));
    b.max_threads(warps * 32);
    let x = b.param(Type::U64, "x");
    let w = b.param(Type::U64, "w");
    let second = (s.k_heads > 0).then(|| (b.param(Type::U64, "x1"), b.param(Type::U64, "w1")));

    let tid = b.special(Sreg::TidX);
    let cta = b.special(Sreg::CtaidX);
    let lane = b.and(Type::B32, tid, 31u32);
    let warp = b.shr(Type::U32, tid, 5u32);
    let head = b.mad(Type::U32, FMode::NONE, cta, warps, warp);
    // Whole warps past the last head leave together: the shuffles below see full warps.
    if all % warps != 0 {
        let past = b.setp(Cmp::Ge, Type::U32, head, all);
        b.return_if(past);
    }
    let vi = batch_vector(&mut b, s.m);
    let head_bytes = |heads: u32| heads as u64 * s.head_dim as u64 * 4;
    let xp = vector_ptr(&mut b, &x, vi, head_bytes(s.n_heads));
    let wp = b.global_ptr(&w);
    // A head of the second set: its own pointers, and its index within that set.
    let (xp, wp, head) = match &second {
        None => (xp, wp, head),
        Some((x1, w1)) => {
            let x1p = vector_ptr(&mut b, x1, vi, head_bytes(s.k_heads));
            let w1p = b.global_ptr(w1);
            let is_k = b.setp(Cmp::Ge, Type::U32, head, s.n_heads);
            let k_head = b.sub(Type::U32, head, s.n_heads);
            (
                b.selp(Type::U64, x1p, xp, is_k),
                b.selp(Type::U64, w1p, wp, is_k),
                b.selp(Type::U32, k_head, head, is_k),
            )
        }
    };
    let hoff = b.mul_wide(Type::U32, head, s.head_dim * 4);
    let xh = b.add(Type::U64, xp, hoff);
    let loff = b.mul_wide(Type::U32, lane, vec * 4);
    let xa = b.add(Type::U64, xh, loff);
    let wa = b.add(Type::U64, wp, loff);

    // Chunk k of the lane is chunk lane + 32k of the head; only the last can be partial.
    let guards: Vec<Option<Reg>> = (0..per_lane)
        .map(|k| {
            ((k + 1) * 32 > chunks).then(|| {
                let c = b.add(Type::U32, lane, k * 32);
                b.setp(Cmp::Lt, Type::U32, c, chunks)
            })
        })
        .collect();
    let off = |k: usize| (k as u32 * 32 * vec * 4) as i64;
    // The gamma first, before the wait for the previous kernel (no kernel writes it: under a
    // programmatic launch it arrives during that kernel's tail, not after the reduction).
    let gammas: Vec<Vec<Reg>> = guards
        .iter()
        .enumerate()
        .map(|(k, guard)| load(&mut b, vec, wa, off(k), *guard, &[CacheHint::NonCoherent]))
        .collect();
    b.grid_dependency_wait();
    let acc = b.mov(Type::F32, 0.0f32);
    let mut values: Vec<Vec<Reg>> = Vec::new();
    for (k, guard) in guards.iter().enumerate() {
        // x is written below, so it is read through the coherent path; zeros past the end.
        let v = load(&mut b, vec, xa, off(k), *guard, &[]);
        add_squares(&mut b, acc, &v);
        values.push(v);
    }
    let total = warp_reduce(&mut b, BinOp::Add, Type::F32, acc);
    let mean = b.bin(BinOp::Div, Type::F32, FMode::rn(), total, s.head_dim as f32);
    let var = b.bin(BinOp::Add, Type::F32, FMode::rn(), mean, s.eps);
    let root = b.un(UnOp::Sqrt, Type::F32, FMode::rn(), var);
    let scale = b.un(UnOp::Rcp, Type::F32, FMode::rn(), root);
    for (k, (guard, ws)) in guards.iter().zip(&gammas).enumerate() {
        let out: Vec<Value> = values[k]
            .iter()
            .zip(ws)
            .map(|(v, wv)| Value::Reg(normalize(&mut b, *v, scale, *wv, s.weight_offset)))
            .collect();
        if let Some(g) = guard {
            b.when(*g);
        }
        b.store(
            StateSpace::Global,
            Type::F32,
            Addr::reg_off(xa, off(k)),
            &out,
            &[],
            None,
        );
    }

    let kernel = b.finish()?;
    let ptx = crate::emit::emit_module(&Module::single(kernel));
    let mut params = Vec::from(head_set(
        ["x", "w"],
        s.n_heads,
        s.head_dim,
        vec,
        [
            "heads, normalized in place",
            "norm weight (gamma), shared by every head",
        ],
    ));
    if s.k_heads > 0 {
        params.extend(head_set(
            ["x1", "w1"],
            s.k_heads,
            s.head_dim,
            vec,
            [
                "second set of heads (K), normalized in place",
                "the second set's norm weight (gamma)",
            ],
        ));
    }
    batch_params(&mut params, s.m, &["w", "w1"]);
    Ok(GeneratedKernel {
        name,
        ptx,
        launch: batch_launch(LaunchSpec::fixed(grid, 1, warps * 32), s.m),
        params,
        spec,
        target,
    })
}

/// Loads `vec` floats at `base + offset`; where `guard` is false the registers hold zeros.
fn load(
    b: &mut KernelBuilder,
    vec: u32,
    base: Reg,
    offset: i64,
    guard: Option<Reg>,
    hints: &[CacheHint],
) -> Vec<Reg> {
    let addr = Addr::reg_off(base, offset);
    match guard {
        None => b.load(
            StateSpace::Global,
            Type::F32,
            vec as usize,
            addr,
            hints,
            None,
        ),
        Some(g) => {
            let regs: Vec<Reg> = (0..vec).map(|_| b.mov(Type::F32, 0.0f32)).collect();
            b.when(g);
            b.load_to(StateSpace::Global, Type::F32, &regs, addr, hints, None);
            regs
        }
    }
}

/// The parameters of one set of heads: the heads (normalized in place) and their gamma.
fn head_set(
    [x, w]: [&str; 2],
    heads: u32,
    head_dim: u32,
    vec: u32,
    [x_doc, w_doc]: [&str; 2],
) -> [ParamSpec; 2] {
    [
        ParamSpec::buffer(
            x,
            format!("f32[{heads}][{head_dim}]"),
            heads as u64 * head_dim as u64 * 4,
            vec * 4,
            Access::ReadWrite,
            x_doc,
        ),
        ParamSpec::buffer(
            w,
            format!("f32[{head_dim}]"),
            head_dim as u64 * 4,
            vec * 4,
            Access::Read,
            w_doc,
        ),
    ]
}
