//! Residual add fused with RMSNorm: `x += residual` (in place, `add.rn`), then
//! `y = x / sqrt(mean(x^2) + eps) * (w + offset)` written as f32 or as Q8_1 blocks.
//!
//! With `post_norm` (Gemma's norms after attention and after the MLP) the residual is first
//! normalized with its own weight: `x += rmsnorm(residual) * (rw + offset)`, computed by the
//! `rmsnorm` kernel's own code (same layout, per-thread order, reduction and normalization),
//! so one launch does what `rmsnorm` into a temporary plus this kernel did, bit for bit.
//!
//! The row layout, the per-thread order of the sum of squares, the block reduction and the
//! per-value normalization are the `rmsnorm` kernel's own code, so `y` is bit-identical to the
//! `rmsnorm` kernel run on the updated `x` (and, for Q8_1 output, to `rmsnorm_q8_1` on it).
//! The updated `x` is written during pass 1; for f32 output every thread re-reads only its own
//! values, for Q8_1 output the warps read other threads' values after a `bar.sync`.
//!
//! Batched (`m` > 1): M vectors, one block per vector along `%ctaid.y`; `x` and `residual`
//! of vector v start `v * hidden * 4` and `y` `v * (its single size)` after the pointers, the
//! weight is shared, and the rest is exactly the single kernel's code.

use crate::ast::{StateSpace, Type};
use crate::ir::{Addr, BinOp, FMode, KernelBuilder, Module, Reg, Value};
use crate::launch::LaunchSpec;
use crate::target::Target;

use super::quantize_q8_1::{
    batch_describe, batch_launch, batch_params, batch_suffix, batch_vector, cli_batch, grid_decl,
    is_one, one, validate_batch, vector_ptr,
};
use super::rmsnorm::{
    add_squares, chunk_guards, load_chunk, normalize, row_scale, row_scale_in, RowLayout,
};
use super::rmsnorm::{row_kernel_start, RowStart};
use super::rmsnorm_q8_1::{
    emit_normalize_quantize, validate_norm, woff_suffix, NormRows, OutFormat,
};
use super::spec::{cli_dim, cli_max, Access, FamilySpec, GenError, KernelSpec, ParamSpec};
use super::GeneratedKernel;

/// `x += residual; y = rmsnorm(x)` over `hidden` values, `y` in `out` format.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ResidualRmsNorm {
    pub hidden: u32,
    pub eps: f32,
    /// Added to every weight (1.0 for checkpoints that store `w - 1`).
    pub weight_offset: f32,
    pub out: OutFormat,
    /// The residual is normalized first, with its own weight `rw` (same eps and offset).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub post_norm: bool,
    /// Vectors per launch (1: single; up to 16, one per `%ctaid.y`).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub m: u32,
}

impl FamilySpec for ResidualRmsNorm {
    const FAMILY: &'static str = "residual_rmsnorm";
    const CLI_DIMS: &'static str =
        "OUT HIDDEN [EPS] [WEIGHT_OFFSET] [M]: x += r; y = x / rms(x) * (w + offset); OUT f32|q8_1, or post-f32|post-q8_1 for x += rmsnorm(r) * (rw + offset) first; M 1..=16 vectors (default 1)";

    fn from_cli(dims: &[String]) -> Result<Self, String> {
        cli_max(dims, 5)?;
        let out = dims.first().ok_or("missing OUT (f32 or q8_1)")?;
        let (post_norm, out) = match out.strip_prefix("post-") {
            Some(rest) => (true, rest),
            None => (false, out.as_str()),
        };
        let out = OutFormat::parse(out)?;
        Ok(ResidualRmsNorm {
            post_norm,
            hidden: cli_dim(dims, 1, "HIDDEN", None)?,
            eps: cli_dim(dims, 2, "EPS", Some(1e-5))?,
            weight_offset: cli_dim(dims, 3, "WEIGHT_OFFSET", Some(0.0))?,
            out,
            m: cli_batch(dims, 4)?,
        })
    }

    fn name(&self) -> String {
        format!(
            "residual_rmsnorm_{}{}_n{}_eps{:08x}{}{}",
            if self.post_norm { "post_" } else { "" },
            self.out.tag(),
            self.hidden,
            self.eps.to_bits(),
            woff_suffix(self.weight_offset),
            batch_suffix(self.m)
        )
    }

    fn describe(&self) -> String {
        let added = if self.post_norm {
            format!("residual / rms(residual) * (rw + {})", self.weight_offset)
        } else {
            "residual".to_string()
        };
        format!(
            "residual_rmsnorm: x += {added}, y = x / rms(x) * (w + {}) over f32[{}] -> {}, eps = {:e} (0x{:08x}){}",
            self.weight_offset,
            self.hidden,
            self.out.buffer(self.hidden).0,
            self.eps,
            self.eps.to_bits(),
            batch_describe(self.m)
        )
    }

    fn validate(&self) -> Result<(), GenError> {
        validate_norm(
            Self::FAMILY,
            self.hidden,
            self.eps,
            self.weight_offset,
            self.out,
        )?;
        validate_batch(Self::FAMILY, self.m)
    }

    fn generate(&self, target: Target) -> Result<GeneratedKernel, GenError> {
        generate(self, target)
    }

    fn samples() -> Vec<Self> {
        let f32_rows = [
            (64, 1e-5, 0.0),
            (99, 1e-6, 0.0),
            (130, 1e-5, 1.0),
            (576, 1e-5, 0.0),
            (640, 1e-6, 0.0),
            (896, 1e-6, 0.0),
            (4096, 1e-5, 0.0),
            (16384, 1e-6, 0.0),
            (65536, 1e-5, 0.0),
        ]
        .map(|(hidden, eps, weight_offset)| ResidualRmsNorm {
            hidden,
            eps,
            weight_offset,
            out: OutFormat::F32,
            post_norm: false,
            m: 1,
        });
        let q8_rows = [
            (32, 1e-5, 0.0),
            (576, 1e-5, 0.0),
            (640, 1e-6, 1.0),
            (896, 1e-6, 0.0),
            (4096, 1e-5, 0.0),
            (65536, 1e-5, 0.0),
        ]
        .map(|(hidden, eps, weight_offset)| ResidualRmsNorm {
            hidden,
            eps,
            weight_offset,
            out: OutFormat::Q8_1,
            post_norm: false,
            m: 1,
        });
        let batched = [
            (4096, OutFormat::F32, 2),
            (4096, OutFormat::Q8_1, 16),
            (99, OutFormat::F32, 3),
            (896, OutFormat::Q8_1, 2),
        ]
        .map(|(hidden, out, m)| ResidualRmsNorm {
            hidden,
            eps: 1e-5,
            weight_offset: 0.0,
            out,
            post_norm: false,
            m,
        });
        // Post-norms: Gemma 3's widths (640, 1152), a partial chunk (99), rows too long to
        // stay in registers (16384), single and batched.
        let post = [
            (640, OutFormat::Q8_1, 1.0, 1),
            (1152, OutFormat::Q8_1, 0.0, 1),
            (99, OutFormat::F32, 1.0, 1),
            (16384, OutFormat::F32, 0.0, 1),
            (640, OutFormat::Q8_1, 1.0, 4),
            (16384, OutFormat::Q8_1, 0.0, 2),
        ]
        .map(|(hidden, out, weight_offset, m)| ResidualRmsNorm {
            hidden,
            eps: 1e-6,
            weight_offset,
            out,
            post_norm: true,
            m,
        });
        f32_rows
            .into_iter()
            .chain(q8_rows)
            .chain(batched)
            .chain(post)
            .collect()
    }

    fn batched(&self, m: u32) -> Option<Self> {
        let b = Self { m, ..*self };
        (self.m == 1 && b.validate().is_ok()).then_some(b)
    }

    /// Vector v updates `x + v * hidden * 4`, reads `residual + v * hidden * 4`, writes
    /// `y + v * (y's single size)`; the weights (`w`, and `rw` with a post-norm) are shared.
    fn batch_decl(&self) -> Option<crate::parity::BatchDecl> {
        let row = self.hidden as u64 * 4;
        let y = self.out.buffer(self.hidden).1;
        let mut params = vec![("x", row), ("residual", row)];
        if self.post_norm {
            params.push(("rw", row));
        }
        params.extend([("w", row), ("y", y)]);
        grid_decl(self.m, &params, &["w", "rw"])
    }
}

fn generate(s: &ResidualRmsNorm, target: Target) -> Result<GeneratedKernel, GenError> {
    let spec = KernelSpec::ResidualRmsNorm(*s);
    let name = spec.name();
    let layout = RowLayout::new(s.hidden);
    let RowStart {
        mut b,
        params,
        tid,
        lane,
        warp,
    } = row_kernel_start(&spec, &layout, (1, s.m), target, &param_names(s));
    if s.post_norm && layout.threads == 1024 {
        // A row per block and a few rows per launch: a second block per SM buys nothing,
        // and asking for one lets ptxas use 64 registers (it held a batched 16384-wide
        // post-norm at 32, for two blocks per SM, and spilled on sm_80).
        b.min_blocks_per_sm(1);
    }
    let mut params = params.into_iter();
    let mut next = || params.next().expect("one param per name");
    let (x, r) = (next(), next());
    let rw = s.post_norm.then(&mut next);
    let (w, y) = (next(), next());
    let row_bytes = s.hidden as u64 * 4;
    let vi = batch_vector(&mut b, s.m);
    let xp = vector_ptr(&mut b, &x, vi, row_bytes);
    let rp = vector_ptr(&mut b, &r, vi, row_bytes);
    let wp = b.global_ptr(&w);
    let yp = vector_ptr(&mut b, &y, vi, s.out.buffer(s.hidden).1);
    let stride = layout.vec * 4;
    let toff = b.mul_wide(Type::U32, tid, stride);
    let xa = b.add(Type::U64, xp, toff);
    let ra = b.add(Type::U64, rp, toff);

    // Pass 1: h = x + residual, stored back into x, squared and summed in rmsnorm's order.
    // x is written by this kernel, so it is never read through the non-coherent path.
    let guards = chunk_guards(&mut b, &layout, tid);
    let offset = |j: usize| (j as u32 * layout.threads * stride) as i64;
    // The post-norm first: the `rmsnorm` kernel's pass 1 over the residual (its own shared
    // slots for the reduction); its values are normalized chunk by chunk below.
    // A resident row's post-norm weights are loaded before the wait for the previous kernel
    // (no kernel writes them: under a programmatic launch they arrive during its tail), and
    // its x with the residual, so neither waits for the residual's reduction.
    let mut early_x: Vec<Vec<Reg>> = Vec::new();
    let post = rw.map(|rw| {
        let rwp = b.global_ptr(&rw);
        let rwa = b.add(Type::U64, rwp, toff);
        let weights: Vec<Vec<Reg>> = if layout.resident {
            let ws = guards
                .iter()
                .enumerate()
                .map(|(j, guard)| load_chunk(&mut b, &layout, rwa, offset(j), *guard))
                .collect();
            b.grid_dependency_wait();
            ws
        } else {
            Vec::new()
        };
        let acc = b.mov(Type::F32, 0.0f32);
        let mut kept: Vec<Vec<Reg>> = Vec::new();
        for (j, guard) in guards.iter().enumerate() {
            let v = load_chunk(&mut b, &layout, ra, offset(j), *guard);
            if layout.resident {
                early_x.push(load_coherent(&mut b, &layout, xa, offset(j), *guard));
            }
            add_squares(&mut b, acc, &v);
            if layout.resident {
                kept.push(v);
            }
        }
        let scale = row_scale_in(
            &mut b,
            "post_partials",
            acc,
            s.hidden,
            s.eps,
            (layout.threads, lane, warp),
        );
        (rwa, weights, kept, scale)
    });
    let acc = b.mov(Type::F32, 0.0f32);
    let mut resident: Vec<Vec<Reg>> = Vec::new();
    for (j, guard) in guards.iter().enumerate() {
        let xs = match early_x.get(j) {
            Some(v) => v.clone(),
            None => load_coherent(&mut b, &layout, xa, offset(j), *guard),
        };
        let rs = match &post {
            None => load_chunk(&mut b, &layout, ra, offset(j), *guard),
            Some((rwa, weights, kept, scale)) => {
                let v = match kept.get(j) {
                    Some(v) => v.clone(),
                    None => load_chunk(&mut b, &layout, ra, offset(j), *guard),
                };
                let ws = match weights.get(j) {
                    Some(w) => w.clone(),
                    None => load_chunk(&mut b, &layout, *rwa, offset(j), *guard),
                };
                v.iter()
                    .zip(&ws)
                    .map(|(v, wv)| normalize(&mut b, *v, *scale, *wv, s.weight_offset))
                    .collect()
            }
        };
        let hs: Vec<Reg> = xs
            .iter()
            .zip(&rs)
            .map(|(xv, rv)| b.bin(BinOp::Add, Type::F32, FMode::rn(), *xv, *rv))
            .collect();
        store_chunk(&mut b, xa, offset(j), &hs, *guard);
        add_squares(&mut b, acc, &hs);
        if layout.resident {
            resident.push(hs);
        }
    }
    let scale = row_scale(&mut b, acc, s.hidden, s.eps, layout.threads, lane, warp);

    match s.out {
        OutFormat::F32 => {
            let ya = b.add(Type::U64, yp, toff);
            let wa = b.add(Type::U64, wp, toff);
            for (j, guard) in guards.iter().enumerate() {
                // Re-reads (when the row is not resident) see this thread's own stores.
                let hs = match resident.get(j) {
                    Some(v) => v.clone(),
                    None => load_coherent(&mut b, &layout, xa, offset(j), *guard),
                };
                let ws = load_chunk(&mut b, &layout, wa, offset(j), *guard);
                let out: Vec<Reg> = hs
                    .iter()
                    .zip(&ws)
                    .map(|(h, wv)| normalize(&mut b, *h, scale, *wv, s.weight_offset))
                    .collect();
                store_chunk(&mut b, ya, offset(j), &out, *guard);
            }
        }
        OutFormat::Q8_1 => {
            // Pass 2 reads values other threads stored in pass 1: a CTA barrier orders them
            // (row_scale has one too when there are several warps; this one does not rely on it).
            b.bar_sync(0);
            let rows = NormRows {
                hidden: s.hidden,
                x: xp,
                x_hints: &[],
                w: wp,
                weight_offset: s.weight_offset,
                scale,
            };
            emit_normalize_quantize(&mut b, &rows, yp, layout.threads / 32, lane, warp, None);
        }
    }

    let kernel = b.finish()?;
    let ptx = crate::emit::emit_module(&Module::single(kernel));
    let row = format!("f32[{}]", s.hidden);
    let bytes = s.hidden as u64 * 4;
    let (y_layout, y_bytes) = s.out.buffer(s.hidden);
    let (w_align, y_align, y_meaning) = match s.out {
        OutFormat::F32 => (stride, stride, "normalized vector"),
        OutFormat::Q8_1 => (4, 16, super::rmsnorm_q8_1::Q8_1_NORMALIZED),
    };
    let mut params = vec![
        ParamSpec::buffer(
            "x",
            row.clone(),
            bytes,
            stride,
            Access::ReadWrite,
            "residual stream; x + residual is written back in place",
        ),
        ParamSpec::buffer(
            "residual",
            row.clone(),
            bytes,
            stride,
            Access::Read,
            if s.post_norm {
                "value normalized (with rw) and added to x"
            } else {
                "value added to x"
            },
        ),
    ];
    if s.post_norm {
        params.push(ParamSpec::buffer(
            "rw",
            row.clone(),
            bytes,
            stride,
            Access::Read,
            "the residual's norm weight (post-norm gamma)",
        ));
    }
    params.extend([
        ParamSpec::buffer(
            "w",
            row,
            bytes,
            w_align,
            Access::Read,
            "norm weight (gamma)",
        ),
        ParamSpec::buffer("y", y_layout, y_bytes, y_align, Access::Write, y_meaning),
    ]);
    batch_params(&mut params, s.m, &["w", "rw"]);
    Ok(GeneratedKernel {
        name,
        ptx,
        launch: batch_launch(LaunchSpec::fixed(1, 1, layout.threads), s.m),
        params,
        spec,
        target,
    })
}

/// The kernel's parameters, in order.
fn param_names(s: &ResidualRmsNorm) -> Vec<&'static str> {
    if s.post_norm {
        vec!["x", "residual", "rw", "w", "y"]
    } else {
        vec!["x", "residual", "w", "y"]
    }
}

/// Like `rmsnorm`'s `load_chunk` (zeros past the end of the row) but through the coherent
/// path, for a buffer this kernel writes.
fn load_coherent(
    b: &mut KernelBuilder,
    layout: &RowLayout,
    base: Reg,
    offset: i64,
    guard: Option<Reg>,
) -> Vec<Reg> {
    let addr = Addr::reg_off(base, offset);
    match guard {
        None => b.load(
            StateSpace::Global,
            Type::F32,
            layout.vec as usize,
            addr,
            &[],
            None,
        ),
        Some(g) => {
            let regs: Vec<Reg> = (0..layout.vec).map(|_| b.mov(Type::F32, 0.0f32)).collect();
            b.when(g);
            b.load_to(StateSpace::Global, Type::F32, &regs, addr, &[], None);
            regs
        }
    }
}

/// Stores one chunk of a thread (guarded where it can pass the end of the row).
fn store_chunk(b: &mut KernelBuilder, base: Reg, offset: i64, values: &[Reg], guard: Option<Reg>) {
    let src: Vec<Value> = values.iter().map(|v| Value::Reg(*v)).collect();
    if let Some(g) = guard {
        b.when(g);
    }
    b.store(
        StateSpace::Global,
        Type::F32,
        Addr::reg_off(base, offset),
        &src,
        &[],
        None,
    );
}
