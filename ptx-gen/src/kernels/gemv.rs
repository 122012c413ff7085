//! GEMV `y = W x` with W in a GGML block format (rows of blocks exactly as stored in GGUF)
//! and x in Q8_1, integer dot products with `dp4a`, f32 out, optional fused bias and
//! residual adds: `y[r] = (dot(W[r], x) + bias[r]) + residual[r]`.
//!
//! Batched (`m` > 1): M input vectors `x[m]` and outputs `y[m]`; each weight block is read
//! once and its part dotted with every vector, each vector through exactly the instructions
//! the single-vector kernel (`m` = 1, the same generator) uses.
//!
//! One warp per row, `WARPS` rows per block. A weight block is shared by
//! `threads_per_block` lanes (each a fixed part of it), so one pass of the warp covers
//! `32 / threads_per_block` blocks; passes go along the row, the last one guarded when the
//! block count is not a multiple. Each lane sums its parts in order, then the warp sums
//! the lanes with the fixed butterfly. The per-type math lives in `gemv_<type>.rs`.

use serde::{Deserialize, Serialize};

use crate::ast::{StateSpace, Type};
use crate::ir::{Addr, BinOp, CacheHint, Cmp, FMode, KernelBuilder, Module, Reg, Sreg};
use crate::launch::LaunchSpec;
use crate::target::Target;

use super::quantize_q8_1::{Q8_1_BLOCK_BYTES, Q8_1_BLOCK_VALUES};
use super::reduce::warp_reduce;
use super::spec::{cli_max, invalid, Access, FamilySpec, GenError, KernelSpec, ParamSpec};
use super::{gemv_q4_1, gemv_q4_k, gemv_q5_0, gemv_q6_k, gemv_q8_0, GeneratedKernel};
use crate::parity::BatchDecl;

/// Rows (warps) per thread block.
const WARPS: u32 = 4;

/// The weight formats the GEMV reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightType {
    Q4K,
    Q6K,
    Q5_0,
    Q8_0,
    Q4_1,
}

impl WeightType {
    pub const ALL: [WeightType; 5] = [
        WeightType::Q4K,
        WeightType::Q6K,
        WeightType::Q5_0,
        WeightType::Q8_0,
        WeightType::Q4_1,
    ];

    /// GGML's name: `q4_k`, `q8_0`, ...
    pub fn name(self) -> &'static str {
        match self {
            WeightType::Q4K => "q4_k",
            WeightType::Q6K => "q6_k",
            WeightType::Q5_0 => "q5_0",
            WeightType::Q8_0 => "q8_0",
            WeightType::Q4_1 => "q4_1",
        }
    }

    pub fn from_name(s: &str) -> Option<WeightType> {
        WeightType::ALL
            .into_iter()
            .find(|t| t.name() == s.to_ascii_lowercase())
    }

    /// Values per block.
    pub fn block_values(self) -> u32 {
        match self {
            WeightType::Q4K | WeightType::Q6K => 256,
            _ => 32,
        }
    }

    /// Bytes per block (GGML's `block_*` structs).
    pub fn block_bytes(self) -> u32 {
        match self {
            WeightType::Q4K => 144,
            WeightType::Q6K => 210,
            WeightType::Q5_0 => 22,
            WeightType::Q8_0 => 34,
            WeightType::Q4_1 => 20,
        }
    }

    /// Lanes sharing one block.
    pub fn threads_per_block(self) -> u32 {
        match self {
            WeightType::Q4K => 16,
            WeightType::Q6K => 32,
            WeightType::Q5_0 | WeightType::Q8_0 | WeightType::Q4_1 => 4,
        }
    }

    /// Passes whose weight loads are issued together (see `generate`).
    pub fn prefetch_passes(self) -> u32 {
        match self {
            // Measured on an H100 (docs/performance.md): grouping helps the batched
            // Q6_K, Q5_0 and Q4_1 GEMVs and costs Q4_K and Q8_0.
            WeightType::Q6K | WeightType::Q5_0 | WeightType::Q4_1 => 4,
            WeightType::Q4K | WeightType::Q8_0 => 1,
        }
    }

    /// The alignment every block start has (the largest power of two dividing the size).
    pub fn block_align(self) -> u32 {
        1 << self.block_bytes().trailing_zeros().min(4)
    }
}

/// `y = W x` for an `n x k` weight matrix.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Gemv {
    pub weight: WeightType,
    /// Rows of W (outputs).
    pub n: u32,
    /// Columns of W (inputs); a multiple of the weight block.
    pub k: u32,
    /// Adds `bias[row]` (f32).
    pub bias: bool,
    /// Adds `residual[row]` (f32); `y` may be the same buffer as `residual`.
    pub residual: bool,
    /// Vectors per launch: 1 (single) or a batch of up to [`GEMV_MAX_BATCH`].
    pub m: u32,
}

/// The largest batch the batched GEMV takes.
pub const GEMV_MAX_BATCH: u32 = 16;

/// One lane's part of one weight block, loaded once for every vector.
enum Loaded {
    Q4K(gemv_q4_k::Part),
    Q6K(gemv_q6_k::Part),
    Q5_0(gemv_q5_0::Part),
    Q8_0(gemv_q8_0::Part),
    Q4_1(gemv_q4_1::Part),
}

impl Loaded {
    fn load(b: &mut KernelBuilder, w: WeightType, wblk: Reg, part: Reg) -> Loaded {
        match w {
            WeightType::Q4K => Loaded::Q4K(gemv_q4_k::load(b, wblk, part)),
            WeightType::Q6K => Loaded::Q6K(gemv_q6_k::load(b, wblk, part)),
            WeightType::Q5_0 => Loaded::Q5_0(gemv_q5_0::load(b, wblk, part)),
            WeightType::Q8_0 => Loaded::Q8_0(gemv_q8_0::load(b, wblk, part)),
            WeightType::Q4_1 => Loaded::Q4_1(gemv_q4_1::load(b, wblk, part)),
        }
    }

    /// The lane's partial dot product with the Q8_1 blocks at `xblk`.
    fn dot(&self, b: &mut KernelBuilder, xblk: Reg) -> Reg {
        match self {
            Loaded::Q4K(p) => gemv_q4_k::dot(b, p, xblk),
            Loaded::Q6K(p) => gemv_q6_k::dot(b, p, xblk),
            Loaded::Q5_0(p) => gemv_q5_0::dot(b, p, xblk),
            Loaded::Q8_0(p) => gemv_q8_0::dot(b, p, xblk),
            Loaded::Q4_1(p) => gemv_q4_1::dot(b, p, xblk),
        }
    }
}

/// Address of Q8_1 block `index` after `xblk`.
pub(crate) fn q8_1_addr(b: &mut KernelBuilder, xblk: Reg, index: Reg) -> Reg {
    let off = b.mul_wide(Type::U32, index, Q8_1_BLOCK_BYTES);
    b.add(Type::U64, xblk, off)
}

impl FamilySpec for Gemv {
    const FAMILY: &'static str = "gemv";
    const CLI_DIMS: &'static str =
        "TYPE N K [M] [bias] [residual]: y[M][N] = W[N x K] x[M], TYPE one of q4_k q6_k q5_0 q8_0 q4_1, M 1..=16 (default 1)";

    fn from_cli(dims: &[String]) -> Result<Self, String> {
        cli_max(dims, 6)?;
        let ty = dims.first().ok_or("missing TYPE")?;
        let weight = WeightType::from_name(ty)
            .ok_or_else(|| format!("TYPE must be one of q4_k q6_k q5_0 q8_0 q4_1, got `{ty}`"))?;
        let num = |i: usize, what: &str| -> Result<u32, String> {
            let s = dims.get(i).ok_or_else(|| format!("missing {what}"))?;
            s.parse()
                .map_err(|_| format!("{what} must be a number, got `{s}`"))
        };
        let mut spec = Gemv {
            weight,
            n: num(1, "N")?,
            k: num(2, "K")?,
            bias: false,
            residual: false,
            m: 1,
        };
        for flag in dims.iter().skip(3) {
            match flag.as_str() {
                m if m.parse::<u32>().is_ok() => spec.m = m.parse().unwrap_or(1),
                "bias" => spec.bias = true,
                "residual" => spec.residual = true,
                other => {
                    return Err(format!(
                        "unknown option `{other}` (expected bias or residual)"
                    ))
                }
            }
        }
        Ok(spec)
    }

    fn name(&self) -> String {
        let mut s = format!("gemv_{}_q8_1_n{}_k{}", self.weight.name(), self.n, self.k);
        if self.bias {
            s.push_str("_bias");
        }
        if self.residual {
            s.push_str("_res");
        }
        if self.m > 1 {
            s.push_str(&format!("_m{}", self.m));
        }
        s
    }

    fn describe(&self) -> String {
        format!(
            "gemv: y[{m}][{n}] = W[{n} x {k}] ({w}, {bpr} blocks of {bv} per row) * x[{m}][{k}] (Q8_1){}{}",
            if self.bias { " + bias" } else { "" },
            if self.residual { " + residual" } else { "" },
            m = self.m,
            n = self.n,
            k = self.k,
            w = self.weight.name(),
            bpr = self.k / self.weight.block_values(),
            bv = self.weight.block_values(),
        )
    }

    fn validate(&self) -> Result<(), GenError> {
        if self.n == 0 || self.n > 1 << 24 {
            return Err(invalid(Self::FAMILY, "n", "in 1..=16777216", self.n));
        }
        if self.m == 0 || self.m > GEMV_MAX_BATCH {
            return Err(invalid(
                Self::FAMILY,
                "m",
                &format!("in 1..={GEMV_MAX_BATCH}"),
                self.m,
            ));
        }
        let bv = self.weight.block_values();
        if self.k == 0 || self.k % bv != 0 || self.k > 1 << 20 {
            let expected = format!(
                "a positive multiple of {bv} (the {} block) up to 1048576",
                self.weight.name()
            );
            return Err(invalid(Self::FAMILY, "k", &expected, self.k));
        }
        Ok(())
    }

    fn generate(&self, target: Target) -> Result<GeneratedKernel, GenError> {
        generate(self, target)
    }

    fn batched(&self, m: u32) -> Option<Self> {
        (self.m == 1).then_some(Gemv { m, ..*self })
    }

    /// Vector v reads `x + v * x_bytes` and `residual + v * n * 4`, writes `y + v * n * 4`;
    /// the weights and the bias are shared, every step unrolled.
    fn batch_decl(&self) -> Option<BatchDecl> {
        if self.m < 2 {
            return None;
        }
        let x_bytes = (self.k / Q8_1_BLOCK_VALUES * Q8_1_BLOCK_BYTES) as u64;
        let y_bytes = self.n as u64 * 4;
        let mut d = BatchDecl::unrolled(self.m)
            .shared("w")
            .per_vector("x", x_bytes);
        if self.bias {
            d = d.shared("bias");
        }
        if self.residual {
            d = d.per_vector("residual", y_bytes);
        }
        Some(d.per_vector("y", y_bytes))
    }

    fn samples() -> Vec<Self> {
        let shapes: [(u32, u32); 9] = [
            (4096, 4096),
            (14336, 4096),
            (4096, 14336),
            (4864, 896),
            (896, 4864),
            (640, 2048),
            (2048, 640),
            (576, 1536),
            (1536, 576),
        ];
        let mut out = Vec::new();
        for weight in WeightType::ALL {
            for (n, k) in shapes {
                if k % weight.block_values() == 0 {
                    out.push(Gemv {
                        weight,
                        n,
                        k,
                        bias: false,
                        residual: false,
                        m: 1,
                    });
                }
            }
            out.push(Gemv {
                weight,
                n: 1000,
                k: 7 * weight.block_values(),
                bias: true,
                residual: true,
                m: 1,
            });
            for m in [2, 8, 16] {
                out.push(Gemv {
                    weight,
                    n: 4096,
                    k: 14336 / 256 * weight.block_values(),
                    bias: false,
                    residual: m == 8,
                    m,
                });
            }
        }
        out.push(Gemv {
            weight: WeightType::Q8_0,
            n: 896,
            k: 896,
            bias: true,
            residual: false,
            m: 1,
        });
        out
    }
}

fn generate(s: &Gemv, target: Target) -> Result<GeneratedKernel, GenError> {
    let spec = KernelSpec::Gemv(*s);
    let name = spec.name();
    let w = s.weight;
    let blocks = s.k / w.block_values();
    let tpb = w.threads_per_block();
    let per_pass = 32 / tpb;
    let passes = blocks.div_ceil(per_pass);
    let grid = s.n.div_ceil(WARPS);
    let mut b = KernelBuilder::new(&name, target);
    b.header_comment(&spec.describe());
    b.header_comment(&format!(
        "launch: grid {grid} x 1 x 1, block {} x 1 x 1; one warp per row",
        WARPS * 32
    ));
    b.max_threads(WARPS * 32);
    let wp = b.param(Type::U64, "w");
    let xp = b.param(Type::U64, "x");
    let bias = s.bias.then(|| b.param(Type::U64, "bias"));
    let residual = s.residual.then(|| b.param(Type::U64, "residual"));
    let yp = b.param(Type::U64, "y");

    let tid = b.special(Sreg::TidX);
    let cta = b.special(Sreg::CtaidX);
    let lane = b.and(Type::B32, tid, 31u32);
    let warp = b.shr(Type::U32, tid, 5u32);
    let row = b.mad(Type::U32, FMode::NONE, cta, WARPS, warp);
    if s.n % WARPS != 0 {
        let past = b.setp(Cmp::Ge, Type::U32, row, s.n);
        b.return_if(past);
    }
    let w_base = b.global_ptr(&wp);
    let x_base = b.global_ptr(&xp);
    let row_bytes = blocks * w.block_bytes();
    let row_addr = b.mad_wide(Type::U32, row, row_bytes, w_base);
    // Lane -> (block within the pass, part of that block).
    let slot = b.shr(Type::U32, lane, tpb.trailing_zeros());
    let part = b.and(Type::B32, lane, tpb - 1);
    let w_lane = b.mad_wide(Type::U32, slot, w.block_bytes(), row_addr);
    let x_per_block = w.block_values() / Q8_1_BLOCK_VALUES;
    let x_lane = b.mad_wide(Type::U32, slot, x_per_block * Q8_1_BLOCK_BYTES, x_base);

    let x_bytes = s.k / Q8_1_BLOCK_VALUES * Q8_1_BLOCK_BYTES;
    let accs: Vec<Reg> = (0..s.m).map(|_| b.mov(Type::F32, 0.0f32)).collect();
    let x_of = |pass: u32| (pass * per_pass * x_per_block * Q8_1_BLOCK_BYTES) as i64;
    let w_of = |pass: u32| (pass * per_pass * w.block_bytes()) as i64;
    // Passes whose blocks all exist, in groups of `prefetch`: every weight load of a group
    // is issued before the group's arithmetic, so each lane keeps that many loads in flight
    // (DRAM latency is hidden by bytes in flight, not by warps alone). The sums still run
    // in pass order, vector by vector.
    let full = blocks / per_pass;
    let prefetch = w.prefetch_passes();
    let mut pass = 0;
    while pass < full {
        let end = (pass + prefetch).min(full);
        let parts: Vec<(u32, Loaded)> = (pass..end)
            .map(|p| {
                let wblk = b.add(Type::U64, w_lane, w_of(p));
                (p, Loaded::load(&mut b, w, wblk, part))
            })
            .collect();
        for (p, loaded) in &parts {
            for (v, acc) in accs.iter().enumerate() {
                let xblk = b.add(Type::U64, x_lane, x_of(*p) + (v as u32 * x_bytes) as i64);
                let partial = loaded.dot(&mut b, xblk);
                b.to(*acc)
                    .bin(BinOp::Add, Type::F32, FMode::rn(), *acc, partial);
            }
        }
        pass = end;
    }
    if passes > full {
        // The last pass: lanes whose block is past the row's end add nothing.
        let last = full;
        let valid = b.setp(Cmp::Lt, Type::U32, slot, blocks - last * per_pass);
        b.if_then(valid, |b| {
            let wblk = b.add(Type::U64, w_lane, w_of(last));
            let loaded = Loaded::load(b, w, wblk, part);
            for (v, acc) in accs.iter().enumerate() {
                let xblk = b.add(Type::U64, x_lane, x_of(last) + (v as u32 * x_bytes) as i64);
                let partial = loaded.dot(b, xblk);
                b.to(*acc)
                    .bin(BinOp::Add, Type::F32, FMode::rn(), *acc, partial);
            }
        });
    }
    let totals: Vec<Reg> = accs
        .iter()
        .map(|acc| warp_reduce(&mut b, BinOp::Add, Type::F32, *acc))
        .collect();
    let lane0 = b.setp(Cmp::Eq, Type::U32, lane, 0u32);
    b.if_then(lane0, |b| {
        let off = b.mul_wide(Type::U32, row, 4u32);
        let bias_v = bias.as_ref().map(|p| {
            let base = b.global_ptr(p);
            let a = b.add(Type::U64, base, off);
            b.load(
                StateSpace::Global,
                Type::F32,
                1,
                Addr::reg(a),
                &[CacheHint::NonCoherent],
                None,
            )[0]
        });
        let res_row = residual.as_ref().map(|p| {
            let base = b.global_ptr(p);
            b.add(Type::U64, base, off)
        });
        let y_base = b.global_ptr(&yp);
        let y_row = b.add(Type::U64, y_base, off);
        for (v, total) in totals.iter().enumerate() {
            let vec_off = (v as u64 * s.n as u64 * 4) as i64;
            let mut y = *total;
            if let Some(bv) = bias_v {
                y = b.bin(BinOp::Add, Type::F32, FMode::rn(), y, bv);
            }
            if let Some(r) = res_row {
                // A plain load: the residual may be the output buffer itself.
                let rv = b.ld_global(Type::F32, Addr::reg_off(r, vec_off));
                y = b.bin(BinOp::Add, Type::F32, FMode::rn(), y, rv);
            }
            b.st_global(Type::F32, Addr::reg_off(y_row, vec_off), y);
        }
    });
    let kernel = b.finish()?;
    let ptx = crate::emit::emit_module(&Module::single(kernel));
    let vec_bytes = s.n as u64 * 4 * s.m as u64;
    let m_dim = if s.m > 1 {
        format!("[{}]", s.m)
    } else {
        String::new()
    };
    let mut params = vec![
        ParamSpec::buffer(
            "w",
            format!("block_{}[{}][{}]", w.name(), s.n, blocks),
            s.n as u64 * row_bytes as u64,
            w.block_align(),
            Access::Read,
            "weight matrix, rows of GGML blocks as stored in GGUF",
        ),
        ParamSpec::buffer(
            "x",
            format!("block_q8_1{m_dim}[{}]", s.k / Q8_1_BLOCK_VALUES),
            x_bytes as u64 * s.m as u64,
            4,
            Access::Read,
            "input vector, Q8_1",
        ),
    ];
    if s.bias {
        params.push(ParamSpec::buffer(
            "bias",
            format!("f32[{}]", s.n),
            s.n as u64 * 4,
            4,
            Access::Read,
            "bias added to every output",
        ));
    }
    if s.residual {
        params.push(ParamSpec::buffer(
            "residual",
            format!("f32{m_dim}[{}]", s.n),
            vec_bytes,
            4,
            Access::Read,
            "residual added last; may be y itself",
        ));
    }
    params.push(ParamSpec::buffer(
        "y",
        format!("f32{m_dim}[{}]", s.n),
        vec_bytes,
        4,
        Access::Write,
        "output vectors",
    ));
    Ok(GeneratedKernel {
        name,
        ptx,
        launch: LaunchSpec::fixed(grid, 1, WARPS * 32),
        params,
        spec,
        target,
    })
}
