//! Gated activations of the FFN: `y = act(gate) * up` over `ffn` values, written as f32 or as
//! Q8_1 blocks (the input of the down projection's GEMV).
//!
//! * SwiGLU: `act(g) = silu(g) = g / (1 + exp(-g))`.
//! * GeGLU (tanh approximation): `act(g) = 0.5 g (1 + tanh(sqrt(2/pi) (g + 0.044715 g^3)))`,
//!   computed through the identity `0.5 (1 + tanh(u)) = 1 / (1 + exp(-2u))`.
//!
//! Both are `g / (1 + exp(-z))` with `z = g` (SiLU) or `z = 2 sqrt(2/pi) g (1 + 0.044715 g^2)`
//! (GELU), so `y = g u / (1 + exp(-z))`. How it is computed, and its error:
//! 1. In f64 (relative error ~1e-16 per step): `z`, `t = -z log2(e)` clamped to +-1000, and
//!    `t = n + f` with `n` an integer and `|f| <= 1/2` (exact).
//! 2. `2^f = exp2(f32(f)) * (1 + (f - f32(f)) ln 2)`: `exp2` is `exp2.rs`'s f32 2^x, within
//!    2 ulp (relative 2^-22) and built from IEEE-rounded operations only, so a CPU reproduces
//!    it bit for bit; the correction term removes the rounding of `f` to f32. Everything
//!    after is f64: `exp(-z) = 2^f 2^n` (`2^n` from its
//!    bits, exact), `y = (g u) / (1 + exp(-z))` (`div.rn.f64`), rounded once to f32.
//!    Working in f64 keeps `1 + exp(-z)` from overflowing and `act(g)` from underflowing where
//!    `y` itself is a normal f32.
//!
//! So `y` is within 2^-22 relative + half an f32 ulp (< 3.1e-7 relative) of `act(g) * up`
//! computed exactly from the f32 inputs. The Q8_1 output quantizes exactly that `y` with
//! `quantize_q8_1`'s `emit_block`: it equals the `quantize_q8_1` kernel applied to this
//! kernel's f32 output, bit for bit.
//!
//! Batched (`m` > 1): M vectors, vector v = `%ctaid.y` (grid `G x M`); `gate` and `up` of
//! vector v start `v * ffn * 4` and `y` `v * (its single size)` after the pointers, and the
//! rest is exactly the single kernel's code.

use crate::ast::{StateSpace, Type};
use crate::ir::{
    Addr, BinOp, CacheHint, Cmp, FMode, KernelBuilder, Module, Reg, Round, Sreg, Value,
};
use crate::launch::LaunchSpec;
use crate::target::Target;

use super::exp2::emit_exp2;
use super::q8_1_layout::{Q8Ptr, Q8_1_BLOCK_VALUES};
use super::quantize_q8_1::{
    batch_describe, batch_launch, batch_params, batch_suffix, batch_vector, cli_batch, emit_block,
    grid_decl, is_one, one, validate_batch, vector_ptr,
};
use super::rmsnorm_q8_1::OutFormat;
use super::spec::{cli_dim, cli_max, invalid, Access, FamilySpec, GenError, KernelSpec, ParamSpec};
use super::GeneratedKernel;

/// Threads per block of the f32 kernel; warps (Q8_1 blocks) per block of the Q8_1 kernel.
const THREADS: u32 = 256;
const WARPS: u32 = 8;

/// `|t|` bound of `exp(-z) = 2^t`: past it `1 + 2^t` is 1 or `y` rounds to 0 in f32 anyway,
/// and `2^t` stays a normal f64.
const EXP2_LIMIT: f64 = 1000.0;

/// `0.044715`, the cubic coefficient of the tanh approximation of GELU.
pub const GELU_COEF_A: f64 = 0.044715;

/// The activation applied to the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GluAct {
    /// `silu(g) = g / (1 + exp(-g))`.
    Swiglu,
    /// `gelu(g) = 0.5 g (1 + tanh(sqrt(2/pi) (g + 0.044715 g^3)))`.
    Geglu,
}

impl GluAct {
    pub fn tag(self) -> &'static str {
        match self {
            GluAct::Swiglu => "swiglu",
            GluAct::Geglu => "geglu",
        }
    }

    pub fn parse(s: &str) -> Result<GluAct, String> {
        match s {
            "swiglu" => Ok(GluAct::Swiglu),
            "geglu" => Ok(GluAct::Geglu),
            _ => Err(format!("activation must be `swiglu` or `geglu`, got `{s}`")),
        }
    }
}

/// `y = act(gate) * up` over `ffn` values, `y` in `out` format.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Glu {
    pub act: GluAct,
    pub ffn: u32,
    pub out: OutFormat,
    /// Vectors per launch (1: single; up to 16, one per `%ctaid.y`).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub m: u32,
}

impl FamilySpec for Glu {
    const FAMILY: &'static str = "glu";
    const CLI_DIMS: &'static str =
        "ACT OUT FFN [M]: y = act(gate) * up; ACT swiglu|geglu, OUT f32|q8_1 (q8_1: FFN % 32 == 0), M 1..=16 vectors (default 1)";

    fn from_cli(dims: &[String]) -> Result<Self, String> {
        cli_max(dims, 4)?;
        let act = GluAct::parse(dims.first().ok_or("missing ACT (swiglu or geglu)")?)?;
        let out = OutFormat::parse(dims.get(1).ok_or("missing OUT (f32 or q8_1)")?)?;
        Ok(Glu {
            act,
            ffn: cli_dim(dims, 2, "FFN", None)?,
            out,
            m: cli_batch(dims, 3)?,
        })
    }

    fn name(&self) -> String {
        format!(
            "glu_{}_{}_n{}{}",
            self.act.tag(),
            self.out.tag(),
            self.ffn,
            batch_suffix(self.m)
        )
    }

    fn describe(&self) -> String {
        let act = match self.act {
            GluAct::Swiglu => "silu(g) = g / (1 + exp(-g))",
            GluAct::Geglu => "gelu(g) = 0.5 g (1 + tanh(sqrt(2/pi) (g + 0.044715 g^3)))",
        };
        format!(
            "glu: y = {act} * up over f32[{}] -> {}{}",
            self.ffn,
            self.out.buffer(self.ffn).0,
            batch_describe(self.m)
        )
    }

    fn validate(&self) -> Result<(), GenError> {
        if self.ffn == 0 {
            return Err(invalid(Self::FAMILY, "ffn", "positive", self.ffn));
        }
        if self.out == OutFormat::Q8_1 && self.ffn % Q8_1_BLOCK_VALUES != 0 {
            return Err(invalid(
                Self::FAMILY,
                "ffn",
                "a multiple of 32 (the Q8_1 block) for Q8_1 output",
                self.ffn,
            ));
        }
        if self.m > 1 && self.ffn as u64 * 4 > u32::MAX as u64 {
            return Err(invalid(
                Self::FAMILY,
                "ffn",
                "below 2^30 when batched (a 32-bit per-vector stride)",
                self.ffn,
            ));
        }
        validate_batch(Self::FAMILY, self.m)
    }

    fn generate(&self, target: Target) -> Result<GeneratedKernel, GenError> {
        generate(self, target)
    }

    fn samples() -> Vec<Self> {
        let mut all = Vec::new();
        for (act, ffn) in [
            (GluAct::Swiglu, 14336),
            (GluAct::Swiglu, 4864),
            (GluAct::Swiglu, 1536),
            (GluAct::Geglu, 2048),
            (GluAct::Swiglu, 32),
            (GluAct::Geglu, 96),
            (GluAct::Swiglu, 8192 + 32),
        ] {
            for out in [OutFormat::F32, OutFormat::Q8_1] {
                all.push(Glu {
                    act,
                    ffn,
                    out,
                    m: 1,
                });
            }
        }
        // f32 output takes any length.
        all.push(Glu {
            act: GluAct::Swiglu,
            ffn: 1,
            out: OutFormat::F32,
            m: 1,
        });
        all.push(Glu {
            act: GluAct::Geglu,
            ffn: 1001,
            out: OutFormat::F32,
            m: 1,
        });
        all.push(Glu {
            act: GluAct::Geglu,
            ffn: 4098,
            out: OutFormat::F32,
            m: 1,
        });
        for (act, ffn, out, m) in [
            (GluAct::Swiglu, 14336, OutFormat::Q8_1, 2),
            (GluAct::Swiglu, 14336, OutFormat::F32, 16),
            (GluAct::Geglu, 2048, OutFormat::Q8_1, 16),
            (GluAct::Geglu, 1001, OutFormat::F32, 3),
        ] {
            all.push(Glu { act, ffn, out, m });
        }
        all
    }

    fn batched(&self, m: u32) -> Option<Self> {
        let b = Self { m, ..*self };
        (self.m == 1 && b.validate().is_ok()).then_some(b)
    }

    /// Vector v reads `gate` and `up` at `+ v * ffn * 4`, writes `y + v * (y's single size)`.
    fn batch_decl(&self) -> Option<crate::parity::BatchDecl> {
        let row = self.ffn as u64 * 4;
        let y = self.out.buffer(self.ffn).1;
        grid_decl(self.m, &[("gate", row), ("up", row), ("y", y)], &[])
    }
}

fn generate(s: &Glu, target: Target) -> Result<GeneratedKernel, GenError> {
    let spec = KernelSpec::Glu(*s);
    let name = spec.name();
    let mut b = KernelBuilder::new(&name, target);
    b.header_comment(&spec.describe());
    let gate = b.param(Type::U64, "gate");
    let up = b.param(Type::U64, "up");
    let y = b.param(Type::U64, "y");
    let tid = b.special(Sreg::TidX);
    let cta = b.special(Sreg::CtaidX);
    let row_bytes = s.ffn as u64 * 4;
    let y_bytes = s.out.buffer(s.ffn).1;
    let (launch, align) = match s.out {
        OutFormat::F32 => {
            let vec = [4, 2, 1].into_iter().find(|v| s.ffn % v == 0).unwrap_or(1);
            let chunks = s.ffn / vec;
            let threads = THREADS.min(chunks.div_ceil(32) * 32);
            let grid = chunks.div_ceil(threads);
            b.header_comment(&format!(
                "launch: grid {grid} x {} x 1, block {threads} x 1 x 1",
                s.m
            ));
            b.max_threads(threads);
            let chunk = b.mad(Type::U32, FMode::NONE, cta, threads, tid);
            if chunks % threads != 0 {
                let past = b.setp(Cmp::Ge, Type::U32, chunk, chunks);
                b.return_if(past);
            }
            let off = b.mul_wide(Type::U32, chunk, vec * 4);
            let vi = batch_vector(&mut b, s.m);
            let [ga, ua, ya] =
                [(gate, row_bytes), (up, row_bytes), (y, y_bytes)].map(|(p, bytes)| {
                    let base = vector_ptr(&mut b, &p, vi, bytes);
                    b.add(Type::U64, base, off)
                });
            let nc = [CacheHint::NonCoherent];
            let gs = b.load(
                StateSpace::Global,
                Type::F32,
                vec as usize,
                Addr::reg(ga),
                &nc,
                None,
            );
            let us = b.load(
                StateSpace::Global,
                Type::F32,
                vec as usize,
                Addr::reg(ua),
                &nc,
                None,
            );
            let out: Vec<Value> = gs
                .iter()
                .zip(&us)
                .map(|(g, u)| Value::Reg(emit_glu(&mut b, s.act, *g, *u)))
                .collect();
            b.store(
                StateSpace::Global,
                Type::F32,
                Addr::reg(ya),
                &out,
                &[],
                None,
            );
            (LaunchSpec::fixed(grid, 1, threads), vec * 4)
        }
        OutFormat::Q8_1 => {
            let nblocks = s.ffn / Q8_1_BLOCK_VALUES;
            let warps = WARPS.min(nblocks);
            let grid = nblocks.div_ceil(warps);
            b.header_comment(&format!(
                "launch: grid {grid} x {} x 1, block {} x 1 x 1",
                s.m,
                warps * 32
            ));
            b.max_threads(warps * 32);
            let lane = b.and(Type::B32, tid, 31u32);
            let warp = b.shr(Type::U32, tid, 5u32);
            let blk = b.mad(Type::U32, FMode::NONE, cta, warps, warp);
            // Whole warps past the last block leave together: the shuffles see full warps.
            if nblocks % warps != 0 {
                let past = b.setp(Cmp::Ge, Type::U32, blk, nblocks);
                b.return_if(past);
            }
            let idx = b.mad(Type::U32, FMode::NONE, blk, Q8_1_BLOCK_VALUES, lane);
            let off = b.mul_wide(Type::U32, idx, 4u32);
            let vi = batch_vector(&mut b, s.m);
            let [ga, ua] = [gate, up].map(|p| {
                let base = vector_ptr(&mut b, &p, vi, row_bytes);
                b.add(Type::U64, base, off)
            });
            let g = b.load(
                StateSpace::Global,
                Type::F32,
                1,
                Addr::reg(ga),
                &[CacheHint::NonCoherent],
                None,
            )[0];
            let u = b.load(
                StateSpace::Global,
                Type::F32,
                1,
                Addr::reg(ua),
                &[CacheHint::NonCoherent],
                None,
            )[0];
            let v = emit_glu(&mut b, s.act, g, u);
            let yp = vector_ptr(&mut b, &y, vi, y_bytes);
            let ya = Q8Ptr::vector(&mut b, yp, s.ffn).at(&mut b, blk);
            emit_block(&mut b, v, lane, ya);
            (LaunchSpec::fixed(grid, 1, warps * 32), 4)
        }
    };

    let kernel = b.finish()?;
    let ptx = crate::emit::emit_module(&Module::single(kernel));
    let row = format!("f32[{}]", s.ffn);
    let bytes = s.ffn as u64 * 4;
    let (y_layout, y_bytes) = s.out.buffer(s.ffn);
    let (y_meaning, y_align) = match s.out {
        OutFormat::F32 => ("act(gate) * up", align),
        OutFormat::Q8_1 => (
            super::q8_1_layout::q8_1_meaning!("act(gate) * up, quantized: "),
            16,
        ),
    };
    let mut params = vec![
        ParamSpec::buffer(
            "gate",
            row.clone(),
            bytes,
            align,
            Access::Read,
            "gate projection",
        ),
        ParamSpec::buffer("up", row, bytes, align, Access::Read, "up projection"),
        ParamSpec::buffer("y", y_layout, y_bytes, y_align, Access::Write, y_meaning),
    ];
    batch_params(&mut params, s.m, &[]);
    Ok(GeneratedKernel {
        name,
        ptx,
        launch: batch_launch(launch, s.m),
        params,
        spec,
        target,
    })
}

/// `act(g) * u` for one value, as described in the module documentation.
pub(crate) fn emit_glu(b: &mut KernelBuilder, act: GluAct, g: Reg, u: Reg) -> Reg {
    let rn = FMode::rn();
    let f64_of = |b: &mut KernelBuilder, v: Reg| b.cvt(Type::F64, Type::F32, FMode::NONE, v);
    let g64 = f64_of(b, g);
    let u64 = f64_of(b, u);
    let z = match act {
        GluAct::Swiglu => g64,
        GluAct::Geglu => {
            let g2 = b.bin(BinOp::Mul, Type::F64, rn, g64, g64);
            let p = b.mad(Type::F64, rn, g2, GELU_COEF_A, 1.0f64);
            let gp = b.bin(BinOp::Mul, Type::F64, rn, g64, p);
            let c = 2.0 * (2.0 / std::f64::consts::PI).sqrt();
            b.bin(BinOp::Mul, Type::F64, rn, gp, c)
        }
    };
    // exp(-z) = 2^t = 2^n * 2^f, n an integer, |f| <= 1/2.
    let t = b.bin(BinOp::Mul, Type::F64, rn, z, -std::f64::consts::LOG2_E);
    let t = b.bin(BinOp::Min, Type::F64, FMode::NONE, t, EXP2_LIMIT);
    let t = b.bin(BinOp::Max, Type::F64, FMode::NONE, t, -EXP2_LIMIT);
    let rni = FMode {
        round: Some(Round::Rni),
        ..FMode::NONE
    };
    let n = b.cvt(Type::F64, Type::F64, rni, t);
    let f = b.bin(BinOp::Sub, Type::F64, rn, t, n);
    let f_hi = b.cvt(Type::F32, Type::F64, rn, f);
    let f_hi64 = f64_of(b, f_hi);
    let f_lo = b.bin(BinOp::Sub, Type::F64, rn, f, f_hi64);
    let p = emit_exp2(b, f_hi);
    let p64 = f64_of(b, p);
    let corr = b.mad(Type::F64, rn, f_lo, std::f64::consts::LN_2, 1.0f64);
    let two_f = b.bin(BinOp::Mul, Type::F64, rn, p64, corr);
    // 2^n from its bits: biased exponent n + 1023 in 23..=2023.
    let rzi = FMode {
        round: Some(Round::Rzi),
        ..FMode::NONE
    };
    let ni = b.cvt(Type::S32, Type::F64, rzi, n);
    let biased = b.add(Type::S32, ni, 1023i32);
    let biased64 = b.cvt(Type::U64, Type::U32, FMode::NONE, biased);
    let bits = b.shl(Type::B64, biased64, 52u32);
    let two_n = b.mov(Type::F64, bits);
    let e = b.bin(BinOp::Mul, Type::F64, rn, two_f, two_n);
    let den = b.bin(BinOp::Add, Type::F64, rn, e, 1.0f64);
    // g * u is exact in f64 (two 24-bit significands).
    let gu = b.bin(BinOp::Mul, Type::F64, rn, g64, u64);
    let y = b.bin(BinOp::Div, Type::F64, rn, gu, den);
    b.cvt(Type::F32, Type::F64, rn, y)
}
