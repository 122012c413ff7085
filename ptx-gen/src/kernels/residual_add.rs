//! Residual add of f32 vectors in place: `y = y + x` or, with a scale, `y = y + x * scale`
//! (`mul.rn` then `add.rn`, never fused, so the result is bit-identical to the CPU).
//!
//! Thread `i < n / 4` adds one float4 (values `4i..4i+4`); the `n % 4` tail values are
//! added one each by the next threads. `x` and `y` need 16-byte alignment when `n >= 4`.
//!
//! Batched (`m` > 1): M vectors `x[m][n]`, `y[m][n]`, vector v = `%ctaid.y` (grid `G x M`);
//! vector v's `x` and `y` start `v * n * 4` after the pointers, and the rest is exactly the
//! single kernel's code. Every vector keeps the 16-byte alignment, so a batched `n >= 4` is
//! a multiple of 4.

use crate::ast::{StateSpace, Type};
use crate::ir::{Addr, BinOp, CacheHint, Cmp, FMode, KernelBuilder, Module, Reg, Sreg, Value};
use crate::launch::LaunchSpec;
use crate::target::Target;

use super::quantize_q8_1::{
    batch_describe, batch_launch, batch_params, batch_suffix, batch_vector, cli_batch, grid_decl,
    is_one, one, validate_batch, vector_ptr,
};
use super::spec::{cli_dim, cli_max, invalid, Access, FamilySpec, GenError, KernelSpec, ParamSpec};
use super::GeneratedKernel;

/// Longest vector the kernel takes.
pub const RESIDUAL_ADD_MAX_N: u32 = 1 << 28;

/// Threads per block.
const THREADS: u32 = 256;

/// `y += x * scale` over f32[n].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ResidualAdd {
    pub n: u32,
    /// Multiplies `x` before the add (1.0: none).
    pub scale: f32,
    /// Vectors per launch (1: single; up to 16, one per `%ctaid.y`).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub m: u32,
}

impl FamilySpec for ResidualAdd {
    const FAMILY: &'static str = "residual_add";
    const CLI_DIMS: &'static str =
        "N [SCALE] [M]: y += x * scale over f32[M][N]; SCALE 1, M 1 (1..=16 vectors) by default";

    fn from_cli(dims: &[String]) -> Result<Self, String> {
        cli_max(dims, 3)?;
        Ok(ResidualAdd {
            n: cli_dim(dims, 0, "N", None)?,
            scale: cli_dim(dims, 1, "SCALE", Some(1.0))?,
            m: cli_batch(dims, 2)?,
        })
    }

    fn name(&self) -> String {
        let mut n = format!("residual_add_f32_n{}", self.n);
        if self.scale != 1.0 {
            n.push_str(&format!("_s{:08x}", self.scale.to_bits()));
        }
        n.push_str(&batch_suffix(self.m));
        n
    }

    fn describe(&self) -> String {
        if self.scale == 1.0 {
            format!(
                "residual_add: y += x over f32[{}] (add.rn){}",
                self.n,
                batch_describe(self.m)
            )
        } else {
            format!(
                "residual_add: y += x * {} (0x{:08x}) over f32[{}] (mul.rn then add.rn){}",
                self.scale,
                self.scale.to_bits(),
                self.n,
                batch_describe(self.m)
            )
        }
    }

    fn validate(&self) -> Result<(), GenError> {
        if self.n == 0 || self.n > RESIDUAL_ADD_MAX_N {
            return Err(invalid(
                Self::FAMILY,
                "n",
                &format!("in 1..={RESIDUAL_ADD_MAX_N}"),
                self.n,
            ));
        }
        if !self.scale.is_finite() {
            return Err(invalid(
                Self::FAMILY,
                "scale",
                "a finite number",
                self.scale,
            ));
        }
        if self.m > 1 && self.n >= 4 && self.n % 4 != 0 {
            return Err(invalid(
                Self::FAMILY,
                "n",
                "below 4 or a multiple of 4 when batched (every vector 16-byte aligned)",
                self.n,
            ));
        }
        validate_batch(Self::FAMILY, self.m)
    }

    fn generate(&self, target: Target) -> Result<GeneratedKernel, GenError> {
        generate(self, target)
    }

    fn samples() -> Vec<Self> {
        [
            (1, 1.0),
            (3, 1.0),
            (7, 0.5),
            (576, 1.0),
            (640, 1.0),
            (896, 1.0),
            (1030, 1.0),
            (2048, 0.22),
            (4096, 1.0),
            (4097, 1.0),
            (14336, 1.0),
        ]
        .map(|(n, scale)| ResidualAdd { n, scale, m: 1 })
        .into_iter()
        .chain(
            [
                (4096, 1.0, 2),
                (4096, 1.0, 16),
                (3, 1.0, 3),
                (2048, 0.22, 5),
            ]
            .map(|(n, scale, m)| ResidualAdd { n, scale, m }),
        )
        .collect()
    }

    fn batched(&self, m: u32) -> Option<Self> {
        let b = Self { m, ..*self };
        (self.m == 1 && b.validate().is_ok()).then_some(b)
    }

    /// Vector v reads `x + v * n * 4` and updates `y + v * n * 4`.
    fn batch_decl(&self) -> Option<crate::parity::BatchDecl> {
        let row = self.n as u64 * 4;
        grid_decl(self.m, &[("x", row), ("y", row)], &[])
    }
}

fn generate(s: &ResidualAdd, target: Target) -> Result<GeneratedKernel, GenError> {
    let spec = KernelSpec::ResidualAdd(*s);
    let name = spec.name();
    let quads = s.n / 4;
    let tail = s.n % 4;
    let items = quads + tail;
    let threads = (items.div_ceil(32) * 32).min(THREADS);
    let grid = items.div_ceil(threads);
    let mut b = KernelBuilder::new(&name, target);
    b.header_comment(&spec.describe());
    b.header_comment(&format!(
        "launch: grid {grid} x {} x 1, block {threads} x 1 x 1",
        s.m
    ));
    b.max_threads(threads);
    let x = b.param(Type::U64, "x");
    let y = b.param(Type::U64, "y");
    let tid = b.special(Sreg::TidX);
    let cta = b.special(Sreg::CtaidX);
    let i = b.mad(Type::U32, FMode::NONE, cta, threads, tid);
    if items % threads != 0 {
        let past = b.setp(Cmp::Ge, Type::U32, i, items);
        b.return_if(past);
    }
    let vi = batch_vector(&mut b, s.m);
    let xp = vector_ptr(&mut b, &x, vi, s.n as u64 * 4);
    let yp = vector_ptr(&mut b, &y, vi, s.n as u64 * 4);
    // Thread i < quads: float4 i. Thread quads + t: value 4 * quads + t = i + 3 * quads.
    let quad = |b: &mut KernelBuilder| {
        let off = b.mul_wide(Type::U32, i, 16u32);
        add_at(b, s.scale, xp, yp, off, 4);
    };
    let single = |b: &mut KernelBuilder| {
        let e = b.add(Type::U32, i, 3 * quads);
        let off = b.mul_wide(Type::U32, e, 4u32);
        add_at(b, s.scale, xp, yp, off, 1);
    };
    match (quads, tail) {
        (0, _) => single(&mut b),
        (_, 0) => quad(&mut b),
        _ => {
            let is_quad = b.setp(Cmp::Lt, Type::U32, i, quads);
            b.if_else(is_quad, quad, single);
        }
    }
    let kernel = b.finish()?;
    let ptx = crate::emit::emit_module(&Module::single(kernel));
    let align = if quads > 0 { 16 } else { 4 };
    let layout = format!("f32[{}]", s.n);
    let bytes = s.n as u64 * 4;
    let mut params = vec![
        ParamSpec::buffer(
            "x",
            layout.clone(),
            bytes,
            align,
            Access::Read,
            "the vector added (a sublayer's output); must not overlap y",
        ),
        ParamSpec::buffer(
            "y",
            layout,
            bytes,
            align,
            Access::ReadWrite,
            "the residual stream, updated in place",
        ),
    ];
    batch_params(&mut params, s.m, &[]);
    Ok(GeneratedKernel {
        name,
        ptx,
        launch: batch_launch(LaunchSpec::fixed(grid, 1, threads), s.m),
        params,
        spec,
        target,
    })
}

/// `y[off..] += x[off..] * scale` for `width` floats at byte offset `off`.
fn add_at(b: &mut KernelBuilder, scale: f32, xp: Reg, yp: Reg, off: Reg, width: usize) {
    let xa = b.add(Type::U64, xp, off);
    let ya = b.add(Type::U64, yp, off);
    let xs = b.load(
        StateSpace::Global,
        Type::F32,
        width,
        Addr::reg(xa),
        &[CacheHint::NonCoherent],
        None,
    );
    let ys = b.load(
        StateSpace::Global,
        Type::F32,
        width,
        Addr::reg(ya),
        &[],
        None,
    );
    let out: Vec<Value> = xs
        .iter()
        .zip(&ys)
        .map(|(xv, yv)| {
            let t = if scale == 1.0 {
                *xv
            } else {
                b.bin(BinOp::Mul, Type::F32, FMode::rn(), *xv, scale)
            };
            Value::Reg(b.bin(BinOp::Add, Type::F32, FMode::rn(), *yv, t))
        })
        .collect();
    b.store(
        StateSpace::Global,
        Type::F32,
        Addr::reg(ya),
        &out,
        &[],
        None,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_validation() {
        assert_eq!(
            ResidualAdd {
                n: 4096,
                scale: 1.0,
                m: 1
            }
            .name(),
            "residual_add_f32_n4096"
        );
        assert_eq!(
            ResidualAdd {
                n: 7,
                scale: 0.5,
                m: 1
            }
            .name(),
            "residual_add_f32_n7_s3f000000"
        );
        let e = ResidualAdd {
            n: 0,
            scale: 1.0,
            m: 1,
        }
        .validate()
        .unwrap_err();
        assert!(matches!(e, GenError::InvalidSpec { field: "n", .. }), "{e}");
    }

    #[test]
    fn sample_kernels_pass_the_static_checks() {
        for s in ResidualAdd::samples() {
            let k = crate::generate(&KernelSpec::ResidualAdd(s), Target::sm(90)).unwrap();
            let m = crate::parse::parse_module(&k.ptx).unwrap();
            let findings = crate::check::check_module(&m);
            assert!(findings.is_empty(), "{}: {findings:?}", k.name);
            assert!(!k.ptx.contains("fma"), "{}", k.name);
        }
    }
}
