//! Argmax over f32 logits -> the u32 index of the largest value, in two kernels:
//!
//! 1. `partial`: block `p` reduces values `[2048 p, 2048 p + 2048)` (the last block fewer)
//!    and writes its winner to `partials[p]`;
//! 2. `final`: one block reduces the `ceil(vocab / 2048)` partials and writes the index.
//!
//! Every candidate is one u64 `order_key(x) << 32 | !index`, and each reduction is an
//! unsigned `max` over these: the largest value wins and, among equal values, the lowest
//! index (its complement is largest). `max` over a total order does not depend on the
//! order it is taken in, so the result is deterministic and equals a sequential CPU argmax.
//! No atomics, no counters: both kernels can be replayed in a CUDA graph as they are.
//!
//! `order_key` maps an f32 to a u32 whose unsigned order is the float order: negatives
//! have all bits flipped, the rest get the sign bit set. Both zeros map to the key of +0
//! (they compare equal, so the lower index wins), and every NaN maps to 0xffffffff, above
//! +inf: **a NaN anywhere makes the result the index of the first NaN** (as numpy's and
//! torch's argmax), so a broken forward pass is visible instead of silently ignored.

use std::fmt;
use std::str::FromStr;

use crate::ast::{StateSpace, Type};
use crate::ir::{
    Addr, BinOp, CacheHint, Cmp, FMode, KernelBuilder, Module, Reg, Sreg, UnOp, Value,
};
use crate::launch::LaunchSpec;
use crate::parity::BatchDecl;
use crate::target::Target;

use super::quantize_q8_1::{
    batch_describe, batch_launch, batch_params, batch_suffix, batch_vector, cli_batch, grid_decl,
    is_one, one, validate_batch, vector_ptr,
};

use super::spec::{cli_dim, cli_max, invalid, Access, FamilySpec, GenError, KernelSpec, ParamSpec};
use super::GeneratedKernel;

/// Logits each block of the partial kernel reduces.
pub const ARGMAX_BLOCK_VALUES: u32 = 2048;
/// Largest vocabulary (the final kernel's unrolled loop stays short).
pub const ARGMAX_MAX_VOCAB: u32 = 1 << 24;

/// Threads per block of the partial kernel; at most this many in the final one.
const THREADS: u32 = 256;
/// Lane masks of the butterfly, widest first (the order of `reduce.rs`).
const BUTTERFLY: [u32; 5] = [16, 8, 4, 2, 1];

/// Which of the two kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArgmaxStage {
    /// logits -> one u64 candidate per 2048 logits.
    Partial,
    /// candidates -> the u32 index.
    Final,
}

impl fmt::Display for ArgmaxStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ArgmaxStage::Partial => "partial",
            ArgmaxStage::Final => "final",
        })
    }
}

impl FromStr for ArgmaxStage {
    type Err = String;

    fn from_str(s: &str) -> Result<ArgmaxStage, String> {
        match s {
            "partial" => Ok(ArgmaxStage::Partial),
            "final" => Ok(ArgmaxStage::Final),
            _ => Err(format!("STAGE must be `partial` or `final`, got `{s}`")),
        }
    }
}

/// One stage of the argmax over `vocab` f32 logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Argmax {
    pub vocab: u32,
    pub stage: ArgmaxStage,
    /// Vectors per launch (1: single; up to 16, one per `%ctaid.y`): vector v has its own
    /// logits, partials and index.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub m: u32,
}

impl Argmax {
    /// Candidates between the two stages: the length of the `partials` buffer (u64 each).
    pub fn partials(&self) -> u32 {
        self.vocab.div_ceil(ARGMAX_BLOCK_VALUES)
    }
}

impl FamilySpec for Argmax {
    const FAMILY: &'static str = "argmax";
    const CLI_DIMS: &'static str = "VOCAB [STAGE] [M]: index of the largest of f32[VOCAB] (ties: lowest, NaN wins); STAGE partial (default) or final, M 1..=16 vectors (default 1)";

    fn from_cli(dims: &[String]) -> Result<Self, String> {
        cli_max(dims, 3)?;
        let stage = match dims.get(1) {
            Some(s) => s.parse()?,
            None => ArgmaxStage::Partial,
        };
        Ok(Argmax {
            vocab: cli_dim(dims, 0, "VOCAB", None)?,
            stage,
            m: cli_batch(dims, 2)?,
        })
    }

    fn name(&self) -> String {
        format!(
            "argmax_{}_v{}{}",
            self.stage,
            self.vocab,
            batch_suffix(self.m)
        )
    }

    fn describe(&self) -> String {
        let p = self.partials();
        let d = match self.stage {
            ArgmaxStage::Partial => format!(
                "argmax partial: f32[{}] -> {p} candidates u64 (order_key(x) << 32 | !index), {ARGMAX_BLOCK_VALUES} logits per block; NaN ranks above +inf",
                self.vocab
            ),
            ArgmaxStage::Final => format!(
                "argmax final: {p} candidates of f32[{}] -> u32 index (ties: lowest index; any NaN: the first NaN)",
                self.vocab
            ),
        };
        d + &batch_describe(self.m)
    }

    fn validate(&self) -> Result<(), GenError> {
        if self.vocab == 0 || self.vocab > ARGMAX_MAX_VOCAB {
            return Err(invalid(
                Self::FAMILY,
                "vocab",
                &format!("in 1..={ARGMAX_MAX_VOCAB}"),
                self.vocab,
            ));
        }
        validate_batch(Self::FAMILY, self.m)
    }

    fn generate(&self, target: Target) -> Result<GeneratedKernel, GenError> {
        match self.stage {
            ArgmaxStage::Partial => generate_partial(self, target),
            ArgmaxStage::Final => generate_final(self, target),
        }
    }

    fn samples() -> Vec<Self> {
        let vocabs = [
            1,
            3,
            31,
            2048,
            2049,
            32000,
            49152,
            100003,
            128256,
            151936,
            262144,
            1 << 24,
        ];
        [ArgmaxStage::Partial, ArgmaxStage::Final]
            .into_iter()
            .flat_map(|stage| vocabs.map(|vocab| Argmax { vocab, stage, m: 1 }))
            .chain(
                [ArgmaxStage::Partial, ArgmaxStage::Final]
                    .into_iter()
                    .flat_map(|stage| {
                        [(128256, 2), (151936, 16), (2049, 5)].map(|(vocab, m)| Argmax {
                            vocab,
                            stage,
                            m,
                        })
                    }),
            )
            .collect()
    }

    fn batched(&self, m: u32) -> Option<Self> {
        let b = Self { m, ..*self };
        (self.m == 1 && b.validate().is_ok()).then_some(b)
    }

    /// Partial: vector v reads `logits + v * vocab * 4` and writes `partials + v * P * 8`;
    /// final: reads `partials + v * P * 8` and writes `index + 4 v`.
    fn batch_decl(&self) -> Option<BatchDecl> {
        let partials = self.partials() as u64 * 8;
        match self.stage {
            ArgmaxStage::Partial => grid_decl(
                self.m,
                &[("logits", self.vocab as u64 * 4), ("partials", partials)],
                &[],
            ),
            ArgmaxStage::Final => grid_decl(self.m, &[("partials", partials), ("index", 4)], &[]),
        }
    }
}

fn partials_param(s: &Argmax, access: Access) -> ParamSpec {
    ParamSpec::buffer(
        "partials",
        format!("u64[{}]", s.partials()),
        s.partials() as u64 * 8,
        8,
        access,
        "one candidate per 2048 logits: order_key(value) << 32 | !index (workspace between the two stages)",
    )
}

fn generate_partial(s: &Argmax, target: Target) -> Result<GeneratedKernel, GenError> {
    let spec = KernelSpec::Argmax(*s);
    let name = spec.name();
    let vec = [4, 2, 1]
        .into_iter()
        .find(|v| s.vocab % v == 0)
        .unwrap_or(1);
    let chunks = s.vocab / vec;
    let block_chunks = ARGMAX_BLOCK_VALUES / vec;
    let loads = block_chunks / THREADS;
    let grid = s.partials();
    let mut b = KernelBuilder::new(&name, target);
    b.header_comment(&spec.describe());
    b.header_comment(&format!(
        "launch: grid {grid} x {} x 1, block {THREADS} x 1 x 1",
        s.m
    ));
    b.max_threads(THREADS);
    let logits = b.param(Type::U64, "logits");
    let partials = b.param(Type::U64, "partials");
    let tid = b.special(Sreg::TidX);
    let cta = b.special(Sreg::CtaidX);
    let lane = b.and(Type::B32, tid, 31u32);
    let warp = b.shr(Type::U32, tid, 5u32);
    let vi = batch_vector(&mut b, s.m);
    let xp = vector_ptr(&mut b, &logits, vi, s.vocab as u64 * 4);
    let pp = vector_ptr(&mut b, &partials, vi, s.partials() as u64 * 8);
    let first = b.mad(Type::U32, FMode::NONE, cta, block_chunks, tid);
    let xa = b.mad_wide(Type::U32, first, vec * 4, xp);
    // Only the last block can run past the end; every chunk is wholly in or out.
    let ragged = s.vocab % ARGMAX_BLOCK_VALUES != 0;
    let acc = b.mov(Type::U64, 0u64);
    for j in 0..loads {
        let chunk = plus(&mut b, first, j * THREADS);
        let addr = Addr::reg_off(xa, (j * THREADS * vec * 4) as i64);
        let valid = ragged.then(|| b.setp(Cmp::Lt, Type::U32, chunk, chunks));
        let xs: Vec<Reg> = match valid {
            None => b.load(
                StateSpace::Global,
                Type::F32,
                vec as usize,
                addr,
                &[CacheHint::NonCoherent],
                None,
            ),
            // Past the end the registers stay 0.0 and the max below is skipped.
            Some(v) => {
                let xs: Vec<Reg> = (0..vec).map(|_| b.mov(Type::F32, 0.0f32)).collect();
                b.when(v).load_to(
                    StateSpace::Global,
                    Type::F32,
                    &xs,
                    addr,
                    &[CacheHint::NonCoherent],
                    None,
                );
                xs
            }
        };
        let base = if vec == 1 {
            chunk
        } else {
            b.mul(Type::U32, chunk, vec)
        };
        for (e, x) in xs.iter().enumerate() {
            let idx = plus(&mut b, base, e as u32);
            let cand = candidate(&mut b, *x, idx);
            if let Some(v) = valid {
                b.when(v);
            }
            b.to(acc).max(Type::U64, acc, cand);
        }
    }
    let best = block_max_u64(&mut b, acc, THREADS, lane, warp);
    let t0 = b.setp(Cmp::Eq, Type::U32, tid, 0u32);
    let pa = b.mad_wide(Type::U32, cta, 8u32, pp);
    b.when(t0).st_global(Type::U64, Addr::reg(pa), best);
    let kernel = b.finish()?;
    let ptx = crate::emit::emit_module(&Module::single(kernel));
    let mut params = vec![
        ParamSpec::buffer(
            "logits",
            format!("f32[{}]", s.vocab),
            s.vocab as u64 * 4,
            vec * 4,
            Access::Read,
            "logits",
        ),
        partials_param(s, Access::Write),
    ];
    batch_params(&mut params, s.m, &[]);
    Ok(GeneratedKernel {
        name,
        ptx,
        launch: batch_launch(LaunchSpec::fixed(grid, 1, THREADS), s.m),
        params,
        spec,
        target,
    })
}

fn generate_final(s: &Argmax, target: Target) -> Result<GeneratedKernel, GenError> {
    let spec = KernelSpec::Argmax(*s);
    let name = spec.name();
    let p = s.partials();
    let threads = (p.div_ceil(32) * 32).min(THREADS);
    let per_thread = p.div_ceil(threads);
    let mut b = KernelBuilder::new(&name, target);
    b.header_comment(&spec.describe());
    b.header_comment(&format!(
        "launch: grid 1 x {} x 1, block {threads} x 1 x 1",
        s.m
    ));
    b.max_threads(threads);
    let partials = b.param(Type::U64, "partials");
    let out = b.param(Type::U64, "index");
    let tid = b.special(Sreg::TidX);
    let lane = b.and(Type::B32, tid, 31u32);
    let warp = b.shr(Type::U32, tid, 5u32);
    let vi = batch_vector(&mut b, s.m);
    let pp = vector_ptr(&mut b, &partials, vi, p as u64 * 8);
    let op = vector_ptr(&mut b, &out, vi, 4);
    let pa = b.mad_wide(Type::U32, tid, 8u32, pp);
    let acc = b.mov(Type::U64, 0u64);
    for j in 0..per_thread {
        let addr = Addr::reg_off(pa, (j * threads * 8) as i64);
        let valid = ((j + 1) * threads > p).then(|| {
            let i = plus(&mut b, tid, j * threads);
            b.setp(Cmp::Lt, Type::U32, i, p)
        });
        let v = b.mov(Type::U64, 0u64);
        if let Some(g) = valid {
            b.when(g);
        }
        b.load_to(StateSpace::Global, Type::U64, &[v], addr, &[], None);
        b.to(acc).max(Type::U64, acc, v);
    }
    let best = block_max_u64(&mut b, acc, threads, lane, warp);
    let parts = b.unpack(Type::B64, best, Type::B32);
    let idx = b.un(UnOp::Not, Type::B32, FMode::NONE, parts[0]);
    let t0 = b.setp(Cmp::Eq, Type::U32, tid, 0u32);
    b.when(t0).st_global(Type::U32, Addr::reg(op), idx);
    let kernel = b.finish()?;
    let ptx = crate::emit::emit_module(&Module::single(kernel));
    let mut params = vec![
        partials_param(s, Access::Read),
        ParamSpec::buffer(
            "index",
            "u32[1]".to_string(),
            4,
            4,
            Access::Write,
            "index of the largest logit (lowest on ties; the first NaN if any)",
        ),
    ];
    batch_params(&mut params, s.m, &[]);
    Ok(GeneratedKernel {
        name,
        ptx,
        launch: batch_launch(LaunchSpec::fixed(1, 1, threads), s.m),
        params,
        spec,
        target,
    })
}

/// `r + k` (`r` itself for 0).
fn plus(b: &mut KernelBuilder, r: Reg, k: u32) -> Reg {
    if k == 0 {
        r
    } else {
        b.add(Type::U32, r, k)
    }
}

/// `order_key(x) << 32 | !idx`: see the module documentation.
fn candidate(b: &mut KernelBuilder, x: Reg, idx: Reg) -> Reg {
    let raw = b.mov(Type::B32, x);
    // -0 and +0 compare equal: give both the key of +0.
    let zero = b.setp(Cmp::Eq, Type::F32, x, 0.0f32);
    let bits = b.selp(Type::B32, 0u32, raw, zero);
    // Negatives: flip every bit; the rest: set the sign bit.
    let sign = b.bin(BinOp::Shr, Type::S32, FMode::NONE, bits, 31u32);
    let mask = b.or(Type::B32, sign, Value::Hex(0x8000_0000));
    let key = b.bin(BinOp::Xor, Type::B32, FMode::NONE, bits, mask);
    let nan = b.setp(Cmp::Nan, Type::F32, x, x);
    let key = b.selp(Type::B32, Value::Hex(0xffff_ffff), key, nan);
    let not_idx = b.un(UnOp::Not, Type::B32, FMode::NONE, idx);
    b.pack(Type::B64, &[not_idx, key])
}

/// Unsigned max of a u64 over the block (`threads` a multiple of 32); every thread gets
/// it. A butterfly in each warp, the warps' results through shared memory, a butterfly
/// again. One `bar.sync`, reached by every thread.
fn block_max_u64(b: &mut KernelBuilder, v: Reg, threads: u32, lane: Reg, warp: Reg) -> Reg {
    let partial = warp_max_u64(b, v);
    let warps = threads / 32;
    if warps == 1 {
        return partial;
    }
    let smem = b.shared("warp_best", Type::U64, warps, 8);
    let base = b.shared_base(&smem);
    let lane0 = b.setp(Cmp::Eq, Type::U32, lane, 0u32);
    let slot = b.mad(Type::U32, FMode::NONE, warp, 8u32, base);
    b.when(lane0).st_shared(Type::U64, Addr::reg(slot), partial);
    b.bar_sync(0);
    let acc = b.mov(Type::U64, 0u64);
    let has = b.setp(Cmp::Lt, Type::U32, lane, warps);
    let src = b.mad(Type::U32, FMode::NONE, lane, 8u32, base);
    b.when(has).to(acc).ld_shared(Type::U64, Addr::reg(src));
    warp_max_u64(b, acc)
}

/// Unsigned max of a u64 over the warp (two 32-bit shuffles per step); every lane gets it.
fn warp_max_u64(b: &mut KernelBuilder, v: Reg) -> Reg {
    let mut acc = v;
    for m in BUTTERFLY {
        let halves = b.unpack(Type::B64, acc, Type::B32);
        let lo = b.shfl_xor(halves[0], m);
        let hi = b.shfl_xor(halves[1], m);
        let other = b.pack(Type::B64, &[lo, hi]);
        acc = b.max(Type::U64, acc, other);
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_partials() {
        let s = Argmax {
            vocab: 151936,
            stage: ArgmaxStage::Final,
            m: 1,
        };
        assert_eq!(s.name(), "argmax_final_v151936");
        assert_eq!(s.partials(), 75);
        let s = Argmax::from_cli(&["262144".into()]).unwrap();
        assert_eq!(
            (s.name().as_str(), s.partials()),
            ("argmax_partial_v262144", 128)
        );
        assert!(Argmax::from_cli(&["5".into(), "both".into()]).is_err());
        let e = Argmax {
            vocab: 0,
            stage: ArgmaxStage::Partial,
            m: 1,
        }
        .validate()
        .unwrap_err();
        assert!(
            matches!(e, GenError::InvalidSpec { field: "vocab", .. }),
            "{e}"
        );
    }

    #[test]
    fn sample_kernels_pass_the_static_checks() {
        for s in Argmax::samples() {
            let k = crate::generate(&KernelSpec::Argmax(s), Target::sm(90)).unwrap();
            let m = crate::parse::parse_module(&k.ptx).unwrap();
            let findings = crate::check::check_module(&m);
            assert!(findings.is_empty(), "{}: {findings:?}", k.name);
        }
    }
}
