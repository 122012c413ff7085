//! GEMV `y = W x` with W in a GGML block format (rows of blocks exactly as stored in GGUF)
//! and x in Q8_1, integer dot products with `dp4a`, f32 out, optional fused bias and
//! residual adds: `y[r] = (dot(W[r], x) + bias[r]) + residual[r]`.
//!
//! Batched (`m` > 1): M input vectors `x[m]` and outputs `y[m]`; each weight block is read
//! once and its part dotted with every vector, each vector through exactly the instructions
//! the single-vector kernel (`m` = 1, the same generator) uses.
//!
//! Prologue and epilogues: RMSNorm + quantize (or the gated activation + quantize) of an
//! f32 `x` into shared memory before the dot products (`gemv_prologue`), RoPE + the KV
//! cache write after them (`gemv_rope`).
//!
//! One warp per row, `WARPS` rows per block. A weight block is shared by
//! `threads_per_block` lanes (each a fixed part of it), so one pass of the warp covers
//! `32 / threads_per_block` blocks; passes go along the row, the last one guarded when the
//! block count is not a multiple. Each lane sums its parts in order, then the warp sums
//! the lanes with the fixed butterfly. The per-type math lives in `gemv_<type>.rs`.

use serde::{Deserialize, Serialize};

use crate::ast::{StateSpace, Type};
use crate::ir::{Addr, BinOp, CacheHint, Cmp, FMode, KernelBuilder, Module, Reg, SharedVar, Sreg};
use crate::launch::LaunchSpec;
use crate::target::Target;

use super::gemv_prologue::{self, GemvNorm, GemvPrologue};
use super::gemv_rope::{self, GemvRope, Pairing, RopeOutputs};
use super::glu::GluAct;
use super::q8_1_layout::{q8_1_vector_bytes, Q8Ptr, Q8_1_BLOCK_VALUES, Q8_1_LAYOUT_NAME};
use super::reduce::warp_reduce;
use super::rope_kv::RopeStyle;
use super::spec::{cli_max, invalid, Access, FamilySpec, GenError, KernelSpec, ParamSpec};
use super::{gemv_q4_1, gemv_q4_k, gemv_q5_0, gemv_q6_k, gemv_q8_0, GeneratedKernel};
use crate::parity::{per_vector_shared_name, BatchDecl};

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
            WeightType::Q4K => gemv_q4_k::Format::LANES,
            WeightType::Q6K => gemv_q6_k::Format::LANES,
            WeightType::Q5_0 => gemv_q5_0::Format::LANES,
            WeightType::Q8_0 => gemv_q8_0::Format::LANES,
            WeightType::Q4_1 => gemv_q4_1::Format::LANES,
        }
    }

    /// The alignment every block start has (the largest power of two dividing the size).
    pub fn block_align(self) -> u32 {
        1 << self.block_bytes().trailing_zeros().min(4)
    }
}

/// Implements [`BlockFormat`] for a format module's `Format` from its free functions
/// `lane`, `load`, `load_x` and `dot` (`dot` taking the lane's constants or not).
macro_rules! block_format {
    ($ty:ident, $lanes:expr, lane) => {
        $crate::kernels::gemv::block_format!(@impl $ty, $lanes, |b, l, w, x| dot(b, l, w, x));
    };
    ($ty:ident, $lanes:expr, no_lane) => {
        $crate::kernels::gemv::block_format!(@impl $ty, $lanes, |b, _l, w, x| dot(b, w, x));
    };
    (@impl $ty:ident, $lanes:expr, |$b:ident, $l:ident, $w:ident, $x:ident| $dot:expr) => {
        impl $crate::kernels::gemv::BlockFormat for $ty {
            type Lane = Lane;
            type Part = Part;
            type Inputs = Inputs;
            const LANES: u32 = $lanes;
            fn lane(b: &mut KernelBuilder, part: Reg) -> Lane {
                lane(b, part)
            }
            fn load(b: &mut KernelBuilder, l: &Lane, wblk: Reg) -> Part {
                load(b, l, wblk)
            }
            fn load_x(
                b: &mut KernelBuilder,
                l: &Lane,
                x: &$crate::kernels::q8_1_layout::Q8Ptr,
                space: StateSpace,
            ) -> Inputs {
                load_x(b, l, x, space)
            }
            fn dot($b: &mut KernelBuilder, $l: &Lane, $w: &Part, $x: &Inputs) -> Reg {
                $dot
            }
        }
    };
}
pub(crate) use block_format;

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
    /// Rows of up to two more matrices of the same type and width computed by the same
    /// launch (0: none), each with its own weights `w1`/`w2`, bias `bias1`/`bias2` and output
    /// `y1`/`y2` (Q, K and V, or gate and up, in one launch). Every row is computed exactly
    /// as the GEMV of its own matrix computes it; a thread block's rows all belong to one
    /// matrix, so each matrix's rows must be a multiple of the tile's rows per block. No
    /// residual with more than one matrix.
    #[serde(default, skip_serializing_if = "no_more_rows")]
    pub more_rows: [u32; 2],
    /// RoPE and the KV cache write folded into the epilogue of a Q, K, V launch
    /// (`more_rows` K and V): the outputs hold what `rope_kv` would leave in q, k and v, and
    /// K and V go into the f16 caches at `pos` (see `gemv_rope`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope: Option<GemvRope>,
    /// The kernel before the GEMV folded into its prologue: RMSNorm + quantize (`x` the f32
    /// vector before the norm, `norm_w` its weight) or the gated activation + quantize (`x`
    /// the f32 gate, `up`); every block stages the Q8_1 vector that kernel would have
    /// written in shared memory (see `gemv_prologue`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prologue: Option<GemvPrologue>,
    /// An explicit tile; `None`: [`Gemv::tile`]'s choice. Set on the single-vector twin of a
    /// batched kernel whose tile has more rows per group than the single kernel's (see
    /// [`Gemv::tile`]): the batched kernel's parity is proven against that twin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tile: Option<GemvTile>,
}

fn no_more_rows(r: &[u32; 2]) -> bool {
    *r == [0, 0]
}

/// The largest batch the batched GEMV takes.
pub const GEMV_MAX_BATCH: u32 = 16;

/// How a GEMV kernel spreads its work: `rows` rows per warp group (each lane loads its
/// inputs once per pass and uses them for every row), `warps` warps per thread block,
/// `split` warps sharing each row (they cover consecutive blocks of a pass like one wider
/// warp; their sums meet in shared memory), and `lookahead` passes whose weight loads are
/// issued before the current pass's arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GemvTile {
    pub rows: u32,
    pub warps: u32,
    pub lookahead: u32,
    pub split: u32,
}

impl std::fmt::Display for GemvTile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "r{}w{}l{}", self.rows, self.warps, self.lookahead)?;
        if self.split > 1 {
            write!(f, "s{}", self.split)?;
        }
        Ok(())
    }
}

impl std::str::FromStr for GemvTile {
    type Err = String;

    /// `r<rows>w<warps>l<lookahead>[s<split>]`, as [`Display`](std::fmt::Display) writes it.
    fn from_str(s: &str) -> Result<GemvTile, String> {
        let bad = || format!("expected a GEMV tile like r2w4l0 or r1w8l1s2, got `{s}`");
        let rest = s.strip_prefix('r').ok_or_else(bad)?;
        let (rows, rest) = rest.split_once('w').ok_or_else(bad)?;
        let (warps, rest) = rest.split_once('l').ok_or_else(bad)?;
        let (lookahead, split) = rest.split_once('s').unwrap_or((rest, "1"));
        Ok(GemvTile {
            rows: rows.parse().map_err(|_| bad())?,
            warps: warps.parse().map_err(|_| bad())?,
            lookahead: lookahead.parse().map_err(|_| bad())?,
            split: split.parse().map_err(|_| bad())?,
        })
    }
}

/// One GGML block format's dot product with Q8_1, split the way the kernel schedules it:
/// what a lane fixes once (`Lane`), what it loads of one weight block (`Part`, used for
/// every vector) and of one vector's Q8_1 blocks (`Inputs`, used for every row).
pub(crate) trait BlockFormat {
    type Lane;
    type Part;
    type Inputs;
    /// Lanes sharing one block.
    const LANES: u32;
    fn lane(b: &mut KernelBuilder, part: Reg) -> Self::Lane;
    fn load(b: &mut KernelBuilder, l: &Self::Lane, wblk: Reg) -> Self::Part;
    /// The lane's inputs in the Q8_1 blocks from `x` on (those of one weight block).
    fn load_x(b: &mut KernelBuilder, l: &Self::Lane, x: &Q8Ptr, space: StateSpace) -> Self::Inputs;
    /// The lane's partial dot product of one weight block with one vector's inputs.
    fn dot(b: &mut KernelBuilder, l: &Self::Lane, w: &Self::Part, x: &Self::Inputs) -> Reg;
}

impl FamilySpec for Gemv {
    const FAMILY: &'static str = "gemv";
    const CLI_DIMS: &'static str =
        "TYPE N K [M] [bias] [residual] [+N1] [+N2] [rope=STYLE:HEAD_DIM:ROPE_DIMS:MAX_CTX[:qk|:v]] [tile=rRwWlLsS]: y[M][N] = W[N x K] x[M], TYPE one of q4_k q6_k q5_0 q8_0 q4_1, M 1..=16 (default 1); +N1, +N2: one launch also computes y1 = W1 x (N1 rows) and y2 = W2 x; rope=...: Q, K, V (N, N1, N2 rows; :qk Q and K; :v V alone) with RoPE and the KV cache write in the epilogue; tile=...: an explicit tile (R rows per warp group, W warps, L passes of lookahead, S warps per row), e.g. a batch's parity twin";

    fn from_cli(dims: &[String]) -> Result<Self, String> {
        cli_max(dims, 12)?;
        let ty = dims.first().ok_or("missing TYPE")?;
        let weight = WeightType::from_name(ty)
            .ok_or_else(|| format!("TYPE must be one of q4_k q6_k q5_0 q8_0 q4_1, got `{ty}`"))?;
        let num = |i: usize, what: &str| -> Result<u32, String> {
            let s = dims.get(i).ok_or_else(|| format!("missing {what}"))?;
            s.parse()
                .map_err(|_| format!("{what} must be a number, got `{s}`"))
        };
        let mut spec = Gemv::plain(weight, num(1, "N")?, num(2, "K")?);
        for flag in dims.iter().skip(3) {
            match flag.as_str() {
                "bias" => spec.bias = true,
                rope if rope.starts_with("rope=") => spec.rope = Some(rope_from_cli(&rope[5..])?),
                norm if norm.starts_with("norm=") => {
                    spec.prologue = Some(GemvPrologue::Norm(norm_from_cli(&norm[5..])?))
                }
                glu if glu.starts_with("glu=") => {
                    spec.prologue = Some(GemvPrologue::Glu(GluAct::parse(&glu[4..])?))
                }
                "residual" => spec.residual = true,
                rows if rows.starts_with('+') => {
                    let n: u32 = rows[1..]
                        .parse()
                        .map_err(|_| format!("`{rows}`: expected +ROWS of another matrix"))?;
                    match spec.more_rows.iter_mut().find(|r| **r == 0) {
                        Some(slot) => *slot = n,
                        None => return Err("at most two more matrices (+N1 +N2)".into()),
                    }
                }
                tile if tile.starts_with("tile=") => spec.tile = Some(tile[5..].parse()?),
                m if m.parse::<u32>().is_ok() => spec.m = m.parse().unwrap_or(1),
                other => {
                    return Err(format!(
                        "unknown option `{other}` (expected M, bias, residual, +ROWS, rope=..., norm=..., glu=... or tile=...)"
                    ))
                }
            }
        }
        Ok(spec)
    }

    fn name(&self) -> String {
        let mut s = format!("gemv_{}_q8_1_n{}_k{}", self.weight.name(), self.n, self.k);
        for r in self.more_rows.iter().filter(|r| **r > 0) {
            s.push_str(&format!("_and{r}"));
        }
        if self.bias {
            s.push_str("_bias");
        }
        if self.residual {
            s.push_str("_res");
        }
        if let Some(r) = &self.rope {
            s.push_str(&r.suffix());
        }
        if let Some(p) = &self.prologue {
            s.push_str(&p.suffix());
        }
        if let Some(t) = self.tile.filter(|t| *t != self.chosen_tile()) {
            s.push_str(&format!("_{t}"));
        }
        if self.m > 1 {
            s.push_str(&format!("_m{}", self.m));
        }
        s
    }

    fn describe(&self) -> String {
        format!(
            "gemv: y[{m}][{n}] = W[{n} x {k}] ({w}, {bpr} blocks of {bv} per row) * {x}{}{}{}{}",
            if self.bias { " + bias" } else { "" },
            if self.residual { " + residual" } else { "" },
            self.more_rows
                .iter()
                .enumerate()
                .filter(|(_, r)| **r > 0)
                .map(|(i, r)| {
                    let j = i + 1;
                    let bias = if self.bias { format!(" + bias{j}") } else { String::new() };
                    format!(
                        "; in the same launch y{j}[{m}][{r}] = W{j}[{r} x {k}] * x{bias}",
                        m = self.m,
                        k = self.k
                    )
                })
                .collect::<String>(),
            self.rope
                .map(|r| {
                    let what = match r.outputs {
                        RopeOutputs::Qkv => "RoPE on y (Q) and y1 (K), y1 and y2 written to the f16 K and V caches",
                        RopeOutputs::Qk => "RoPE on y (Q) and y1 (K), y1 written to the f16 K cache",
                        RopeOutputs::V => "y (V) written to the f16 V cache",
                    };
                    format!(
                        "; {what} at pos ({} style, {} of {} dims rotated)",
                        r.style.tag(),
                        r.rope_dims,
                        r.head_dim
                    )
                })
                .unwrap_or_default(),
            x = match &self.prologue {
                Some(GemvPrologue::Glu(a)) => format!(
                    "Q8_1({}(x[{m}][{k}] (f32 gate)) * up[{m}][{k}])",
                    a.tag(),
                    m = self.m,
                    k = self.k
                ),
                Some(GemvPrologue::Norm(nm)) => format!(
                    "Q8_1(rmsnorm(x[{m}][{k}] (f32), norm_w, eps = {:e} (0x{:08x}), weight offset {}))",
                    nm.eps,
                    nm.eps.to_bits(),
                    nm.weight_offset,
                    m = self.m,
                    k = self.k
                ),
                None => format!("x[{}][{}] (Q8_1)", self.m, self.k),
            },
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
        if self.more_rows[0] == 0 && self.more_rows[1] > 0 {
            return Err(invalid(
                Self::FAMILY,
                "more_rows",
                "the second matrix only after a first",
                format!("{:?}", self.more_rows),
            ));
        }
        if self.more_rows.iter().any(|r| *r > 1 << 24) {
            return Err(invalid(
                Self::FAMILY,
                "more_rows",
                "at most 16777216 rows each",
                format!("{:?}", self.more_rows),
            ));
        }
        if self.parts().len() > 1 {
            if self.residual {
                return Err(invalid(
                    Self::FAMILY,
                    "residual",
                    "none when the launch computes more than one matrix",
                    true,
                ));
            }
            let t = self.tile();
            let per_block = t.rows * t.warps / t.split;
            if let Some(r) = self.parts().into_iter().find(|r| r % per_block != 0) {
                return Err(invalid(
                    Self::FAMILY,
                    "n / more_rows",
                    &format!(
                        "multiples of the tile's {per_block} rows per thread block when the launch computes several matrices"
                    ),
                    r,
                ));
            }
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
        if let Some(r) = &self.rope {
            r.check(&self.parts(), self.tile(), self.m)
                .map_err(gemv_rope::invalid_rope)?;
        }
        if let Some(p) = &self.prologue {
            p.check(self.k, self.m, self.tile().warps * 32)?;
        }
        Ok(())
    }

    fn generate(&self, target: Target) -> Result<GeneratedKernel, GenError> {
        generate(self, target)
    }

    fn batched(&self, m: u32) -> Option<Self> {
        (self.m == 1 && self.tile.is_none()).then_some(Gemv { m, ..*self })
    }

    fn twin_source(&self) -> Option<Self> {
        self.tile.map(|_| Gemv {
            tile: None,
            ..*self
        })
    }

    /// The single kernel with the batched kernel's tile, where that has more rows per group.
    fn parity_twin(&self, batched: &Self) -> Option<Self> {
        let tile = batched.tile();
        (tile != self.tile()).then_some(Gemv {
            tile: Some(tile),
            ..*self
        })
    }

    /// Vector v reads `x + v * x_bytes` and `residual + v * n * 4`, writes `y + v * n * 4`
    /// (and `y1 + v * n1 * 4`, `y2 + v * n2 * 4`); the weights and biases are shared, every
    /// step unrolled.
    fn batch_decl(&self) -> Option<BatchDecl> {
        if self.m < 2 {
            return None;
        }
        let x_bytes = self.x_bytes() as u64;
        let y_bytes = self.n as u64 * 4;
        let parts = self.parts();
        let mut d = BatchDecl::unrolled(self.m);
        for i in 0..parts.len() {
            d = d.shared(&part_param("w", i));
        }
        d = d.per_vector("x", x_bytes);
        match self.prologue {
            Some(GemvPrologue::Norm(_)) => {
                d = d
                    .shared("norm_w")
                    .shared_per_vector(gemv_prologue::NORM_PARTIALS)
                    .shared_per_vector(gemv_prologue::STAGED_X);
            }
            Some(GemvPrologue::Glu(_)) => {
                d = d
                    .per_vector("up", x_bytes)
                    .shared_per_vector(gemv_prologue::STAGED_X);
            }
            None => {}
        }
        if self.tile().split > 1 {
            d = d.shared_per_vector(PARTIALS);
        }
        if self.bias {
            for i in 0..parts.len() {
                d = d.shared(&part_param("bias", i));
            }
        }
        if self.residual {
            d = d.per_vector("residual", y_bytes);
        }
        for (i, rows) in parts.iter().enumerate() {
            d = d.per_vector(&part_param("y", i), *rows as u64 * 4);
        }
        if let Some(r) = &self.rope {
            for (name, stride) in r.batch_params(r.rows(&parts).1) {
                d = match stride {
                    Some(s) => d.per_vector(name, s),
                    None => d.shared(name),
                };
            }
        }
        Some(d)
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
                    out.push(Gemv::plain(weight, n, k));
                }
            }
            out.push(Gemv {
                weight,
                n: 1000,
                k: 7 * weight.block_values(),
                bias: true,
                residual: true,
                m: 1,
                more_rows: [0, 0],
                rope: None,
                prologue: None,
                tile: None,
            });
            for m in [2, 8, 16] {
                out.push(Gemv {
                    weight,
                    n: 4096,
                    k: 14336 / 256 * weight.block_values(),
                    bias: false,
                    residual: m == 8,
                    m,
                    more_rows: [0, 0],
                    rope: None,
                    prologue: None,
                    tile: None,
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
            more_rows: [0, 0],
            rope: None,
            prologue: None,
            tile: None,
        });
        // One launch for several matrices: Q, K, V (with biases, as qwen2) and gate + up.
        for (weight, n, more, k, bias, m) in [
            (WeightType::Q4K, 4096, [1024, 1024], 4096, false, 1),
            (WeightType::Q8_0, 896, [128, 128], 896, true, 1),
            (WeightType::Q4_1, 576, [192, 192], 576, false, 1),
            (WeightType::Q6K, 2048, [2048, 0], 1024, false, 1),
            (WeightType::Q5_0, 14336, [14336, 0], 4096, false, 1),
            (WeightType::Q8_0, 896, [128, 128], 896, true, 4),
            (WeightType::Q4K, 4096, [1024, 1024], 4096, false, 8),
        ] {
            out.push(Gemv {
                weight,
                n,
                k,
                bias,
                residual: false,
                m,
                more_rows: more,
                rope: None,
                prologue: None,
                tile: None,
            });
        }
        // Q, K, V with RoPE + KV write in the epilogue: SmolLM2's (pairs within a thread),
        // llama3-8b's (pairs across two groups' shared sums), qwen2.5's (neox, biases),
        // partial neox rotary, and batched.
        let r = |style, head_dim, rope_dims| GemvRope {
            style,
            head_dim,
            rope_dims,
            max_ctx: 4096,
            outputs: RopeOutputs::Qkv,
        };
        let (norm, neox) = (RopeStyle::Norm, RopeStyle::Neox);
        for (weight, n, more, k, bias, m, rope) in [
            (
                WeightType::Q4_1,
                576,
                [192, 192],
                576,
                false,
                1,
                r(norm, 64, 64),
            ),
            (
                WeightType::Q4K,
                4096,
                [1024, 1024],
                4096,
                false,
                1,
                r(norm, 128, 128),
            ),
            (
                WeightType::Q8_0,
                896,
                [128, 128],
                896,
                true,
                1,
                r(norm, 64, 64),
            ),
            (
                WeightType::Q5_0,
                896,
                [128, 128],
                896,
                true,
                1,
                r(neox, 64, 64),
            ),
            (
                WeightType::Q4K,
                4096,
                [1024, 1024],
                4096,
                false,
                1,
                r(neox, 128, 64),
            ),
            (
                WeightType::Q4_1,
                576,
                [192, 192],
                576,
                false,
                4,
                r(norm, 64, 64),
            ),
            (
                WeightType::Q4K,
                4096,
                [1024, 1024],
                4096,
                false,
                2,
                r(norm, 128, 128),
            ),
            (
                WeightType::Q5_0,
                896,
                [128, 128],
                896,
                true,
                3,
                r(neox, 64, 64),
            ),
        ] {
            out.push(Gemv {
                weight,
                n,
                k,
                bias,
                residual: false,
                m,
                more_rows: more,
                rope: Some(rope),
                prologue: None,
                tile: None,
            });
        }
        // Q and K in one launch, V in its own (llama3-8b's layers with a Q6_K V), single and
        // batched.
        for (weight, n, more, outputs, m) in [
            (WeightType::Q4K, 4096, [1024, 0], RopeOutputs::Qk, 1),
            (WeightType::Q6K, 1024, [0, 0], RopeOutputs::V, 1),
            (WeightType::Q4K, 4096, [1024, 0], RopeOutputs::Qk, 3),
            (WeightType::Q6K, 1024, [0, 0], RopeOutputs::V, 3),
        ] {
            out.push(Gemv {
                weight,
                n,
                k: 4096,
                bias: false,
                residual: false,
                m,
                more_rows: more,
                rope: Some(GemvRope {
                    outputs,
                    ..r(norm, 128, 128)
                }),
                prologue: None,
                tile: None,
            });
        }
        // RMSNorm + quantize in the prologue: SmolLM2's Q, K, V (with RoPE) and gate + up,
        // Q6_K and Q4_K at 4096 (split 4), a weight offset (Gemma-style), a batch of 4 at
        // 2048 (at 8 and 16, ptxas takes 48 registers on sm_86 and spills 16 bytes).
        let rms = |eps: f32, weight_offset: f32| GemvNorm { eps, weight_offset };
        for (weight, n, more, k, m, rope, nm) in [
            (
                WeightType::Q4_1,
                576,
                [192, 192],
                576,
                1,
                Some(r(RopeStyle::Norm, 64, 64)),
                rms(1e-5, 0.0),
            ),
            (
                WeightType::Q4_1,
                576,
                [192, 192],
                576,
                3,
                Some(r(RopeStyle::Norm, 64, 64)),
                rms(1e-5, 0.0),
            ),
            (
                WeightType::Q4_1,
                1536,
                [1536, 0],
                576,
                1,
                None,
                rms(1e-5, 0.0),
            ),
            (
                WeightType::Q8_0,
                1536,
                [1536, 0],
                576,
                2,
                None,
                rms(1e-5, 0.0),
            ),
            (WeightType::Q6K, 1024, [0, 0], 4096, 1, None, rms(1e-5, 0.0)),
            (WeightType::Q4K, 1024, [0, 0], 4096, 2, None, rms(1e-6, 0.0)),
            (WeightType::Q5_0, 640, [0, 0], 640, 1, None, rms(1e-6, 1.0)),
            (
                WeightType::Q8_0,
                2048,
                [0, 0],
                2048,
                4,
                None,
                rms(1e-5, 0.0),
            ),
        ] {
            out.push(Gemv {
                weight,
                n,
                k,
                bias: false,
                residual: false,
                m,
                more_rows: more,
                rope,
                prologue: Some(GemvPrologue::Norm(nm)),
                tile: None,
            });
        }
        // The gated activation + quantize in the prologue: SmolLM2's down (with its
        // residual), Gemma3's (GeGLU), batches.
        for (weight, n, k, m, act) in [
            (WeightType::Q8_0, 576, 1536, 1, GluAct::Swiglu),
            (WeightType::Q4_1, 576, 1536, 4, GluAct::Swiglu),
            (WeightType::Q6K, 640, 2048, 1, GluAct::Geglu),
            (WeightType::Q6K, 640, 2048, 3, GluAct::Geglu),
        ] {
            out.push(Gemv {
                weight,
                n,
                k,
                bias: false,
                residual: true,
                m,
                more_rows: [0, 0],
                rope: None,
                prologue: Some(GemvPrologue::Glu(act)),
                tile: None,
            });
        }
        out
    }
}

/// `STYLE:HEAD_DIM:ROPE_DIMS:MAX_CTX[:qk|:v]`, the CLI's `rope=` option.
fn rope_from_cli(s: &str) -> Result<GemvRope, String> {
    let bad = || format!("rope=STYLE:HEAD_DIM:ROPE_DIMS:MAX_CTX[:qk|:v] expected, got `rope={s}`");
    let f: Vec<&str> = s.split(':').collect();
    let (style, hd, rd, ctx, outputs) = match f[..] {
        [style, hd, rd, ctx] => (style, hd, rd, ctx, RopeOutputs::Qkv),
        [style, hd, rd, ctx, "qk"] => (style, hd, rd, ctx, RopeOutputs::Qk),
        [style, hd, rd, ctx, "v"] => (style, hd, rd, ctx, RopeOutputs::V),
        _ => return Err(bad()),
    };
    let num = |v: &str| v.parse::<u32>().map_err(|_| bad());
    Ok(GemvRope {
        style: RopeStyle::parse(style)?,
        head_dim: num(hd)?,
        rope_dims: num(rd)?,
        max_ctx: num(ctx)?,
        outputs,
    })
}

/// The tile of a single-vector GEMV, chosen per weight type and shape by measurement
/// (docs/performance.md records the search). A batch takes the same tile with more rows per
/// group ([`Gemv::tile`], [`batch_rows`]).
pub fn default_tile(weight: WeightType, n: u32, k: u32) -> GemvTile {
    let _ = n;
    // The tile search (H100, 10 shapes from 576x1536 to 49152x576, docs/performance.md):
    // four warps per row (one row per warp group, 8 warps) was within 10% of the best tile
    // wherever a row has a pass's worth of blocks for them; rows shorter than that waste
    // lanes, so they get fewer warps per row and more rows per group.
    let blocks = k / weight.block_values();
    let per_pass = |split: u32| 32 * split / weight.threads_per_block();
    // Third search (H100, 9 shapes, docs/performance.md): rows of 4864 values or more with
    // at least 1.5 passes of 8 warps get 8 warps per row (one row per block): 4096x14336 7-12%
    // faster for every format, 896x4864 up to 18% (Q6_K); at 4096 values the split of 8 was
    // as often slower as faster, so shorter rows keep 4.
    if k >= 4864 && 2 * blocks >= 3 * per_pass(8) {
        let lookahead = match weight {
            WeightType::Q6K | WeightType::Q4_1 => 3,
            WeightType::Q5_0 => 2,
            _ => 1,
        };
        // Seventh session: 7 warps for Q4_K at 14336 values (2 whole passes each instead of
        // 1.75 for 8) was slower, 13.83 -> 15.59 us (M = 8: 61.85 -> 64.78 us): 8 stays.
        return GemvTile {
            rows: 1,
            warps: 8,
            lookahead,
            split: 8,
        };
    }
    let (rows, warps, split) = if blocks >= per_pass(4) {
        (1, 8, 4)
    } else if blocks >= per_pass(2) {
        (2, 8, 2)
    } else {
        (2, 4, 1)
    };
    // Lookahead (second search, same page): Q6_K and Q4_1 keep three passes of weight loads
    // in flight (Q6_K 4096x14336 63.7% -> 71.5% of copy, Q4_1 86.2% -> 89.3%); the other
    // formats gained nothing past one.
    let lookahead = match weight {
        WeightType::Q6K | WeightType::Q4_1 => 3,
        _ => 1,
    };
    GemvTile {
        rows,
        warps,
        lookahead,
        split,
    }
}

/// Rows per group of a batched GEMV of `m` vectors of `weight` whose single kernel has
/// `rows`: each lane's inputs of a pass, loaded once per vector, serve that many rows, and
/// the inputs' L1 load instructions are what a batch is short of (ncu, fifth session: M = 8
/// is bound by them, not by DRAM). The sweep (ninth session, H100, 4096x14336 and
/// 14336x4096, every format, rows 1, 2, 4 at M = 2, 4, 8, 16; docs/performance.md): twice
/// the rows at M = 2, four times from M = 3 (Q4_K M = 8: 62.5 -> 36.4 us), except Q6_K,
/// whose 4 rows lose at M = 3..=4 and from M = 9 (M = 16: 130.9 us with 2, 181.3 with 4);
/// never more than 4 (8 rows at M = 8 take 255 registers).
pub fn batch_rows(weight: WeightType, rows: u32, m: u32) -> u32 {
    let factor = match (weight, m) {
        (_, 0 | 1) => 1,
        (_, 2) | (WeightType::Q6K, 3..=4) | (WeightType::Q6K, 9..) => 2,
        _ => 4,
    };
    (rows * factor).clamp(rows, 4.max(rows))
}

/// The fewest thread blocks a batched GEMV's rows per group may leave (two per SM of an
/// H100): more rows per group must not cost the parallelism a short matrix needs.
pub const FILL_BLOCKS: u32 = 264;

/// The name of matrix `i`'s parameter: `w`, `w1`, `w2` (likewise `bias`, `y`).
pub fn part_param(base: &str, i: usize) -> String {
    if i == 0 {
        base.to_string()
    } else {
        format!("{base}{i}")
    }
}

impl Gemv {
    /// `y = W x` of one vector, nothing else in the launch: the base that specs with more
    /// (`Gemv { m: 8, residual: true, ..Gemv::plain(w, n, k) }`) start from.
    pub fn plain(weight: WeightType, n: u32, k: u32) -> Gemv {
        Gemv {
            weight,
            n,
            k,
            bias: false,
            residual: false,
            m: 1,
            more_rows: [0, 0],
            rope: None,
            prologue: None,
            tile: None,
        }
    }

    /// Rows of every matrix the launch computes: `n`, then the nonzero `more_rows`.
    pub fn parts(&self) -> Vec<u32> {
        std::iter::once(self.n)
            .chain(self.more_rows.iter().copied().filter(|r| *r > 0))
            .collect()
    }

    /// The GEMV of matrix `i` alone (same type, width, bias and batch).
    pub fn part(&self, i: usize) -> Gemv {
        Gemv {
            n: self.parts()[i],
            more_rows: [0, 0],
            rope: None,
            ..*self
        }
    }

    /// The tile [`generate`](FamilySpec::generate) uses: the explicit `tile`, else
    /// [`default_tile`], with more rows per group when batched ([`batch_rows`]) where the
    /// launch's matrices and epilogue take them and the grid keeps [`FILL_BLOCKS`] blocks.
    /// Rows per group change only which rows a group computes: each row's sum depends on
    /// the tile through its warps per row and lanes per block alone (the mirror's
    /// `gemv_tiled` computes it so), so a batched kernel computes every row's bits as the
    /// single kernel does, while each lane's inputs serve more rows.
    pub fn tile(&self) -> GemvTile {
        self.tile.unwrap_or_else(|| self.chosen_tile())
    }

    fn chosen_tile(&self) -> GemvTile {
        let base = default_tile(self.weight, self.n, self.k);
        let parts = self.parts();
        let fits = |t: &GemvTile| {
            let per_block = t.rows * t.warps / t.split;
            let grid: u32 = parts.iter().map(|r| r.div_ceil(per_block)).sum();
            (parts.len() == 1 || parts.iter().all(|r| r % per_block == 0))
                && (t.rows == base.rows || grid >= FILL_BLOCKS)
                && self
                    .rope
                    .is_none_or(|r| r.check(&parts, *t, self.m).is_ok())
        };
        (base.rows..=batch_rows(self.weight, base.rows, self.m))
            .rev()
            .map(|rows| GemvTile { rows, ..base })
            .find(fits)
            .unwrap_or(base)
    }

    /// Bytes of one vector's `x`: Q8_1 blocks, or f32 values where the prologue normalizes.
    pub fn x_bytes(&self) -> u32 {
        match self.prologue {
            Some(_) => self.k * 4,
            None => q8_1_vector_bytes(self.k),
        }
    }
}

/// The shared array where a row's split warps add their sums (one per vector when batched).
const PARTIALS: &str = "gemv_partial";

fn norm_from_cli(s: &str) -> Result<GemvNorm, String> {
    let bad = || format!("norm=EPS[:WEIGHT_OFFSET] expected, got `norm={s}`");
    let f: Vec<&str> = s.split(':').collect();
    let num = |v: &str| v.parse::<f32>().map_err(|_| bad());
    match f[..] {
        [eps] => Ok(GemvNorm {
            eps: num(eps)?,
            weight_offset: 0.0,
        }),
        [eps, woff] => Ok(GemvNorm {
            eps: num(eps)?,
            weight_offset: num(woff)?,
        }),
        _ => Err(bad()),
    }
}

/// The largest rows per warp, warps per block and lookahead a tile may have.
pub const GEMV_MAX_TILE: GemvTile = GemvTile {
    rows: 8,
    warps: 16,
    lookahead: 4,
    split: 8,
};

fn generate(s: &Gemv, target: Target) -> Result<GeneratedKernel, GenError> {
    generate_tiled(s, s.tile(), target)
}

/// The GEMV with an explicit tile (the bench's tile search); a tile other than
/// [`Gemv::tile`] is named in the kernel's name.
pub fn generate_tiled(
    s: &Gemv,
    tile: GemvTile,
    target: Target,
) -> Result<GeneratedKernel, GenError> {
    s.validate()?;
    let max = GEMV_MAX_TILE;
    if tile.rows == 0 || tile.rows > max.rows {
        return Err(invalid(Gemv::FAMILY, "tile.rows", "in 1..=8", tile.rows));
    }
    if tile.warps == 0 || tile.warps > max.warps {
        return Err(invalid(Gemv::FAMILY, "tile.warps", "in 1..=16", tile.warps));
    }
    if tile.split == 0 || tile.split > max.split || tile.warps % tile.split != 0 {
        return Err(invalid(
            Gemv::FAMILY,
            "tile.split",
            "in 1..=8, dividing tile.warps",
            tile.split,
        ));
    }
    if tile.lookahead > max.lookahead {
        return Err(invalid(
            Gemv::FAMILY,
            "tile.lookahead",
            "in 0..=4",
            tile.lookahead,
        ));
    }
    if let Some(r) = &s.rope {
        r.check(&s.parts(), tile, s.m)
            .map_err(gemv_rope::invalid_rope)?;
    }
    if let Some(p) = &s.prologue {
        p.check(s.k, s.m, tile.warps * 32)?;
    }
    match s.weight {
        WeightType::Q4K => build::<gemv_q4_k::Format>(s, tile, target),
        WeightType::Q6K => build::<gemv_q6_k::Format>(s, tile, target),
        WeightType::Q5_0 => build::<gemv_q5_0::Format>(s, tile, target),
        WeightType::Q8_0 => build::<gemv_q8_0::Format>(s, tile, target),
        WeightType::Q4_1 => build::<gemv_q4_1::Format>(s, tile, target),
    }
}

fn build<F: BlockFormat>(
    s: &Gemv,
    tile: GemvTile,
    target: Target,
) -> Result<GeneratedKernel, GenError> {
    let spec = KernelSpec::Gemv(*s);
    let name = if tile == s.tile() {
        spec.name()
    } else {
        format!("{}_{tile}", spec.name())
    };
    let w = s.weight;
    let blocks = s.k / w.block_values();
    let split = tile.split;
    // A pass: the `split` warps of a group, lane by lane, over consecutive blocks.
    let per_pass = 32 * split / F::LANES;
    let full = blocks / per_pass;
    let rem = blocks % per_pass;
    let groups = tile.warps / split;
    let rows_per_cta = tile.rows * groups;
    let threads = tile.warps * 32;
    let grid: u32 = s.parts().iter().map(|r| r.div_ceil(rows_per_cta)).sum();
    let mut b = KernelBuilder::new(&name, target);
    b.header_comment(&spec.describe());
    b.header_comment(&format!(
        "launch: grid {grid} x 1 x 1, block {threads} x 1 x 1; {} rows per group of {split} warps, {} lanes per weight block, weight loads {} passes ahead",
        tile.rows, F::LANES, tile.lookahead
    ));
    b.max_threads(threads);
    let parts = s.parts();
    let wps: Vec<_> = (0..parts.len())
        .map(|i| b.param(Type::U64, &part_param("w", i)))
        .collect();
    let xp = b.param(Type::U64, "x");
    let second = s.prologue.map(|p| b.param(Type::U64, p.second_input()));
    let biases: Vec<_> = if s.bias {
        (0..parts.len())
            .map(|i| b.param(Type::U64, &part_param("bias", i)))
            .collect()
    } else {
        Vec::new()
    };
    let residual = s.residual.then(|| b.param(Type::U64, "residual"));
    let yps: Vec<_> = (0..parts.len())
        .map(|i| b.param(Type::U64, &part_param("y", i)))
        .collect();
    // RoPE + KV epilogue: its parameters, and how the tile pairs rows (checked above).
    let rope = match s.rope {
        Some(r) => match gemv_rope::pairing(tile) {
            Some(pairing) => Some((r, gemv_rope::declare(&mut b, &r), pairing)),
            None => {
                return Err(gemv_rope::invalid_rope((
                    "rope",
                    "a pairing tile".into(),
                    tile.to_string(),
                )))
            }
        },
        None => None,
    };

    let tid = b.special(Sreg::TidX);
    let cta_all = b.special(Sreg::CtaidX);
    // Several matrices: blocks [starts[i], starts[i + 1]) compute matrix i; `at[i]` (i >= 1)
    // says this block's matrix is i or later, `cta` is the block's index within its matrix.
    let starts: Vec<u32> = parts
        .iter()
        .scan(0u32, |acc, r| {
            let start = *acc;
            *acc += r / rows_per_cta;
            Some(start)
        })
        .collect();
    let at: Vec<Reg> = starts[1..]
        .iter()
        .map(|c| b.setp(Cmp::Ge, Type::U32, cta_all, *c))
        .collect();
    let select = |b: &mut KernelBuilder, ty: Type, values: &[Reg]| -> Reg {
        let mut v = values[0];
        for (later, p) in values[1..].iter().zip(&at) {
            v = b.selp(ty, *later, v, *p);
        }
        v
    };
    let cta = if parts.len() > 1 {
        let firsts: Vec<Reg> = starts.iter().map(|c| b.mov(Type::U32, *c)).collect();
        let first = select(&mut b, Type::U32, &firsts);
        b.sub(Type::U32, cta_all, first)
    } else {
        cta_all
    };
    let lane = b.and(Type::B32, tid, 31u32);
    let warp = b.shr(Type::U32, tid, 5u32);
    // Thread -> (group, index in the group's `32 * split` lanes).
    let (group, glane) = if split > 1 {
        if split.is_power_of_two() {
            let group = b.shr(Type::U32, warp, split.trailing_zeros());
            let glane = b.and(Type::B32, tid, 32 * split - 1);
            (group, glane)
        } else {
            let group = b.bin(BinOp::Div, Type::U32, FMode::NONE, warp, split);
            let glane = b.bin(BinOp::Rem, Type::U32, FMode::NONE, tid, 32 * split);
            (group, glane)
        }
    } else {
        (warp, lane)
    };
    let group_id = b.mad(Type::U32, FMode::NONE, cta, groups, group);
    let row0 = b.mul(Type::U32, group_id, tile.rows);
    let ragged = s.n % rows_per_cta != 0;
    // With one warp per group, a group past the last row returns; split groups meet at a
    // barrier, so there every row past the last reads the last row and stores nothing.
    let clamp = ragged && split > 1;
    if ragged && split == 1 {
        let past = b.setp(Cmp::Ge, Type::U32, row0, s.n);
        b.return_if(past);
    }
    let w_bases: Vec<Reg> = wps.iter().map(|p| b.global_ptr(p)).collect();
    let w_base = select(&mut b, Type::U64, &w_bases);
    // Where the prologue normalizes, x is f32 and the Q8_1 inputs are staged per vector
    // in shared memory (addresses known after the prologue).
    let x_global = s.prologue.is_none().then(|| b.global_ptr(&xp));
    let row_bytes = blocks * w.block_bytes();
    // Lane -> (block within the pass, part of that block).
    let slot = b.shr(Type::U32, glane, F::LANES.trailing_zeros());
    let part = b.and(Type::B32, glane, F::LANES - 1);
    let l = F::lane(&mut b, part);
    let w_lane: Vec<Reg> = (0..tile.rows)
        .map(|r| {
            let row = if r == 0 && !clamp {
                row0
            } else {
                let row = if r == 0 {
                    row0
                } else {
                    b.add(Type::U32, row0, r)
                };
                if ragged {
                    b.min(Type::U32, row, s.n - 1)
                } else {
                    row
                }
            };
            // A neox RoPE launch computes its rows in pair order (see `gemv_rope`).
            let row = match &rope {
                Some((r, ..)) => gemv_rope::physical_row(&mut b, r, row),
                None => row,
            };
            let row_addr = b.mad_wide(Type::U32, row, row_bytes, w_base);
            b.mad_wide(Type::U32, slot, w.block_bytes(), row_addr)
        })
        .collect();
    // The slot's first Q8_1 block (planar layout: quants and scales apart).
    let x_per_block = w.block_values() / Q8_1_BLOCK_VALUES;
    let x_slot = if x_per_block > 1 {
        b.mul(Type::U32, slot, x_per_block)
    } else {
        slot
    };
    let x_lane_of = |b: &mut KernelBuilder, base: Reg| Q8Ptr::vector(b, base, s.k).at(b, x_slot);
    let x_global = x_global.map(|base| x_lane_of(&mut b, base));

    let x_bytes = q8_1_vector_bytes(s.k);
    // accs[v][r]: vector v, row r.
    let accs: Vec<Vec<Reg>> = (0..s.m)
        .map(|_| (0..tile.rows).map(|_| b.mov(Type::F32, 0.0f32)).collect())
        .collect();
    let x_of = |pass: u32| pass * per_pass * x_per_block;
    let w_of = |pass: u32| (pass * per_pass * w.block_bytes()) as i64;
    let load = |b: &mut KernelBuilder, pass: u32| -> Vec<F::Part> {
        w_lane
            .iter()
            .map(|wl| {
                let wblk = b.add(Type::U64, *wl, w_of(pass));
                F::load(b, &l, wblk)
            })
            .collect()
    };
    // Each lane sums its parts pass by pass; in a pass, each vector's inputs are loaded
    // once and dotted with every row's part.
    let compute = |b: &mut KernelBuilder, pass: u32, parts: &[F::Part], staged: &[SharedVar]| {
        for (v, acc_v) in accs.iter().enumerate() {
            let (xblk, space) = match x_global {
                Some(x_lane) => (
                    x_lane.plus(x_of(pass)).bytes_on(v as i64 * x_bytes as i64),
                    StateSpace::Global,
                ),
                None => {
                    let base = gemv_prologue::staged_address(b, &staged[v]);
                    let x_lane = x_lane_of(b, base);
                    (x_lane.plus(x_of(pass)), StateSpace::Shared)
                }
            };
            let inputs = F::load_x(b, &l, &xblk, space);
            for (part, acc) in parts.iter().zip(acc_v) {
                let partial = F::dot(b, &l, part, &inputs);
                b.to(*acc)
                    .bin(BinOp::Add, Type::F32, FMode::rn(), *acc, partial);
            }
        }
    };
    // Passes whose blocks all exist; the weight loads of `lookahead` later passes are
    // issued before a pass's arithmetic (bytes in flight hide DRAM latency).
    // The first passes' weight loads are issued before the wait for the previous kernel
    // (which writes x): under a programmatic launch they overlap its tail.
    // The RoPE epilogue's rows: each pair's even row (within its matrix); Q and K rotate.
    let pair_rows: Vec<Reg> = match rope.as_ref().map(|r| r.2) {
        Some(Pairing::InThread) => (0..tile.rows / 2)
            .map(|j| {
                if j == 0 {
                    row0
                } else {
                    b.add(Type::U32, row0, 2 * j)
                }
            })
            .collect(),
        Some(Pairing::AcrossGroups) => vec![row0],
        None => Vec::new(),
    };
    // Of Q, K and V in one launch, the blocks before V's rotate.
    let rotating = match rope.as_ref().map(|r| r.0.outputs) {
        Some(RopeOutputs::Qkv) => Some(b.setp(Cmp::Lt, Type::U32, cta_all, starts[2])),
        _ => None,
    };
    let rope_prologue = |b: &mut KernelBuilder| {
        rope.as_ref()
            .map(|(r, p, _)| gemv_rope::prologue(b, r, p, s.m, &pair_rows, rotating))
    };
    // The input prologue (`gemv_prologue`): each vector's staged Q8_1 input.
    let thread = gemv_prologue::Thread {
        tid,
        lane,
        warp,
        threads,
    };
    let input_prologue = |b: &mut KernelBuilder| -> Vec<SharedVar> {
        match (&s.prologue, &second) {
            (Some(p), Some(second)) => {
                gemv_prologue::prologue(b, p, (s.k, s.m), &thread, &xp, second)
            }
            _ => Vec::new(),
        }
    };
    let mut angles = None;
    let mut staged = Vec::new();
    // With a prologue, the weight loads start after it: held across it, they would take the
    // registers its M vectors' work needs (ptxas spilled).
    let waited = s.prologue.is_some();
    if waited {
        b.grid_dependency_wait();
        angles = rope_prologue(&mut b);
        staged = input_prologue(&mut b);
    }
    let mut queue = std::collections::VecDeque::new();
    let mut next = 0;
    for pass in 0..full {
        while next < full && next <= pass + tile.lookahead {
            queue.push_back(load(&mut b, next));
            next += 1;
        }
        if pass == 0 && !waited {
            b.grid_dependency_wait();
            angles = rope_prologue(&mut b);
        }
        if let Some(parts) = queue.pop_front() {
            compute(&mut b, pass, &parts, &staged);
        }
    }
    if full == 0 && !waited {
        b.grid_dependency_wait();
        angles = rope_prologue(&mut b);
    }
    if rem > 0 {
        // The last pass: lanes whose block is past the row's end add nothing.
        let valid = b.setp(Cmp::Lt, Type::U32, slot, rem);
        b.if_then(valid, |b| {
            let parts = load(b, full);
            compute(b, full, &parts, &staged);
        });
    }
    let mut totals: Vec<Vec<Reg>> = accs
        .iter()
        .map(|acc_v| {
            acc_v
                .iter()
                .map(|acc| warp_reduce(&mut b, BinOp::Add, Type::F32, *acc))
                .collect()
        })
        .collect();
    // With pairs across groups, the even group's writer also adds up the odd group's slots.
    let across = matches!(rope.as_ref().map(|r| r.2), Some(Pairing::AcrossGroups));
    let mut partner: Vec<Reg> = Vec::new();
    let first_warp = if split > 1 {
        // Each warp's sums meet in shared memory, [group][warp in group][row]; the group's
        // first warp adds them in warp order. Batched: each vector has its own copy of the
        // slots (per-vector shared variables), all stored before the single kernel's one
        // barrier.
        let per_warp = tile.rows * 4;
        let bases: Vec<Reg> = (0..s.m)
            .map(|v| {
                let name = per_vector_shared_name(PARTIALS, v);
                let smem = b.shared(&name, Type::F32, tile.warps * tile.rows, 4);
                b.shared_base(&smem)
            })
            .collect();
        let mines: Vec<Reg> = bases
            .iter()
            .map(|base| b.mad(Type::U32, FMode::NONE, warp, per_warp, *base))
            .collect();
        let lane0 = b.setp(Cmp::Eq, Type::U32, lane, 0u32);
        let in_group = if split.is_power_of_two() {
            b.and(Type::B32, warp, split - 1)
        } else {
            b.bin(BinOp::Rem, Type::U32, FMode::NONE, warp, split)
        };
        let first = b.setp(Cmp::Eq, Type::U32, in_group, 0u32);
        let group_bases: Vec<Reg> = bases
            .iter()
            .map(|base| b.mad(Type::U32, FMode::NONE, group, split * per_warp, *base))
            .collect();
        b.if_then(lane0, |b| {
            for (mine, totals_v) in mines.iter().zip(&totals) {
                for (r, t) in totals_v.iter().enumerate() {
                    b.st_shared(Type::F32, Addr::reg_off(*mine, (r * 4) as i64), *t);
                }
            }
        });
        b.bar_sync(0);
        for (v, totals_v) in totals.iter_mut().enumerate() {
            let (base, group_base) = (bases[v], group_bases[v]);
            for (r, t) in totals_v.iter_mut().enumerate() {
                let off = (r * 4) as i64;
                let mut sum = b.ld_shared(Type::F32, Addr::reg_off(group_base, off));
                for k in 1..split {
                    let o = off + (k * per_warp) as i64;
                    let p = b.ld_shared(Type::F32, Addr::reg_off(group_base, o));
                    sum = b.bin(BinOp::Add, Type::F32, FMode::rn(), sum, p);
                }
                *t = sum;
            }
            if across {
                let other = b.bin(BinOp::Xor, Type::B32, FMode::NONE, group, 1u32);
                let other_base = b.mad(Type::U32, FMode::NONE, other, split * per_warp, base);
                let mut sum = b.ld_shared(Type::F32, Addr::reg(other_base));
                for k in 1..split {
                    let o = (k * per_warp) as i64;
                    let p = b.ld_shared(Type::F32, Addr::reg_off(other_base, o));
                    sum = b.bin(BinOp::Add, Type::F32, FMode::rn(), sum, p);
                }
                partner.push(sum);
            }
        }
        Some(first)
    } else {
        None
    };
    let mut writer = b.setp(Cmp::Eq, Type::U32, lane, 0u32);
    if let Some(first) = first_warp {
        writer = b.bin(BinOp::And, Type::Pred, FMode::NONE, writer, first);
    }
    if across {
        let odd = b.and(Type::B32, group, 1u32);
        let even = b.setp(Cmp::Eq, Type::U32, odd, 0u32);
        writer = b.and(Type::Pred, writer, even);
    }
    // The bias of the row at byte offset `off`, where the GEMV has biases.
    let load_bias = |b: &mut KernelBuilder, off: Reg| -> Option<Reg> {
        (!biases.is_empty()).then(|| {
            let bases: Vec<Reg> = biases.iter().map(|p| b.global_ptr(p)).collect();
            let base = select(b, Type::U64, &bases);
            let a = b.add(Type::U64, base, off);
            b.load(
                StateSpace::Global,
                Type::F32,
                1,
                Addr::reg(a),
                &[CacheHint::NonCoherent],
                None,
            )[0]
        })
    };
    // Whether this block computes matrix `i` (several matrices only).
    let mine_of = |b: &mut KernelBuilder, i: usize| -> Reg {
        if i == 0 {
            b.setp(Cmp::Lt, Type::U32, cta_all, starts[1])
        } else if i + 1 == parts.len() {
            at[i - 1]
        } else {
            let before_next = b.setp(Cmp::Lt, Type::U32, cta_all, starts[i + 1]);
            b.and(Type::Pred, at[i - 1], before_next)
        }
    };
    if let (Some((r, p, pairing)), Some(angles)) = (rope.as_ref(), angles.as_ref()) {
        b.if_then(writer, |b| {
            let mine: Vec<Option<Reg>> = (0..parts.len())
                .map(|i| (parts.len() > 1).then(|| mine_of(b, i)))
                .collect();
            for (j, row) in pair_rows.iter().enumerate() {
                // The pair's two rows, per vector: dot product plus bias.
                let sums = |b: &mut KernelBuilder, row: Reg, tot: Vec<Reg>| -> Vec<Reg> {
                    let off = b.mul_wide(Type::U32, row, 4u32);
                    match load_bias(b, off) {
                        Some(bv) => tot
                            .iter()
                            .map(|t| b.bin(BinOp::Add, Type::F32, FMode::rn(), *t, bv))
                            .collect(),
                        None => tot,
                    }
                };
                let (even, odd): (Vec<Reg>, Vec<Reg>) = match pairing {
                    Pairing::InThread => (
                        totals.iter().map(|t| t[2 * j]).collect(),
                        totals.iter().map(|t| t[2 * j + 1]).collect(),
                    ),
                    Pairing::AcrossGroups => {
                        (totals.iter().map(|t| t[0]).collect(), partner.clone())
                    }
                };
                let odd_row = b.add(Type::U32, *row, 1u32);
                let rows = [*row, odd_row].map(|l| gemv_rope::physical_row(b, r, l));
                let x = sums(b, rows[0], even);
                let y = sums(b, rows[1], odd);
                let pair = gemv_rope::Pair {
                    index: j,
                    rows,
                    x: &x,
                    y: &y,
                };
                let outs = gemv_rope::Outputs {
                    rows: &parts,
                    ptrs: &yps,
                    mine: &mine,
                };
                gemv_rope::store_pair(b, (r, p), angles, &outs, &pair);
            }
        });
    } else {
        b.if_then(writer, |b| {
            // Every row's outputs first (bias and residual loaded for all rows at once; a
            // ragged block reads the last row again for rows past it), then the stores:
            // the residual may be `y` itself, and a store before a later row's residual
            // load would keep that load from being issued early.
            let rows: Vec<(Reg, Option<Reg>)> = (0..tile.rows)
                .map(|r| {
                    let row = if r == 0 {
                        row0
                    } else {
                        b.add(Type::U32, row0, r)
                    };
                    if !ragged || (r == 0 && !clamp) {
                        return (row, None);
                    }
                    let inside = b.setp(Cmp::Lt, Type::U32, row, s.n);
                    (b.min(Type::U32, row, s.n - 1), Some(inside))
                })
                .collect();
            let outputs: Vec<(Reg, Vec<Reg>)> = rows
                .iter()
                .enumerate()
                .map(|(r, (row, _))| {
                    let off = b.mul_wide(Type::U32, *row, 4u32);
                    let bias_v = load_bias(b, off);
                    let res_row = residual.as_ref().map(|p| {
                        let base = b.global_ptr(p);
                        b.add(Type::U64, base, off)
                    });
                    let ys = totals
                        .iter()
                        .enumerate()
                        .map(|(v, totals_v)| {
                            let vec_off = (v as u64 * s.n as u64 * 4) as i64;
                            let mut y = totals_v[r];
                            if let Some(bv) = bias_v {
                                y = b.bin(BinOp::Add, Type::F32, FMode::rn(), y, bv);
                            }
                            if let Some(r) = res_row {
                                // A plain load: the residual may be the output buffer itself.
                                let rv = b.ld_global(Type::F32, Addr::reg_off(r, vec_off));
                                y = b.bin(BinOp::Add, Type::F32, FMode::rn(), y, rv);
                            }
                            y
                        })
                        .collect();
                    (off, ys)
                })
                .collect();
            for ((_, inside), (off, ys)) in rows.iter().zip(&outputs) {
                let store_row = |b: &mut KernelBuilder| {
                    // Each matrix's output has its own vector stride: one store per matrix,
                    // under the predicate that this block computes it.
                    for (i, (yp, rows)) in yps.iter().zip(&parts).enumerate() {
                        let store = |b: &mut KernelBuilder| {
                            let y_base = b.global_ptr(yp);
                            let y_row = b.add(Type::U64, y_base, *off);
                            for (v, y) in ys.iter().enumerate() {
                                let vec_off = (v as u64 * *rows as u64 * 4) as i64;
                                b.st_global(Type::F32, Addr::reg_off(y_row, vec_off), *y);
                            }
                        };
                        if parts.len() == 1 {
                            store(b);
                            continue;
                        }
                        let mine = mine_of(b, i);
                        b.if_then(mine, store);
                    }
                };
                match inside {
                    Some(inside) => b.if_then(*inside, store_row),
                    None => store_row(b),
                }
            }
        });
    }
    let kernel = b.finish()?;
    let ptx = crate::emit::emit_module(&Module::single(kernel));
    let vec_bytes = s.n as u64 * 4 * s.m as u64;
    let m_dim = if s.m > 1 {
        format!("[{}]", s.m)
    } else {
        String::new()
    };
    let mut params: Vec<ParamSpec> = parts
        .iter()
        .enumerate()
        .map(|(i, rows)| {
            ParamSpec::buffer(
                &part_param("w", i),
                format!("block_{}[{}][{}]", w.name(), rows, blocks),
                *rows as u64 * row_bytes as u64,
                w.block_align(),
                Access::Read,
                "weight matrix, rows of GGML blocks as stored in GGUF",
            )
        })
        .collect();
    match s.prologue {
        None => params.push(ParamSpec::buffer(
            "x",
            format!("{Q8_1_LAYOUT_NAME}{m_dim}[{}]", s.k / Q8_1_BLOCK_VALUES),
            x_bytes as u64 * s.m as u64,
            16,
            Access::Read,
            super::q8_1_layout::q8_1_meaning!("input vector, "),
        )),
        Some(GemvPrologue::Glu(_)) => {
            for (name, what) in [("x", "gate (f32)"), ("up", "up (f32)")] {
                params.push(ParamSpec::buffer(
                    name,
                    format!("f32{m_dim}[{}]", s.k),
                    s.k as u64 * 4 * s.m as u64,
                    4,
                    Access::Read,
                    what,
                ));
            }
        }
        Some(GemvPrologue::Norm(_)) => {
            let align = gemv_prologue::x_align(s.k);
            params.push(ParamSpec::buffer(
                "x",
                format!("f32{m_dim}[{}]", s.k),
                s.k as u64 * 4 * s.m as u64,
                align,
                Access::Read,
                "input vector before the norm, f32",
            ));
            params.push(ParamSpec::buffer(
                "norm_w",
                format!("f32[{}]", s.k),
                s.k as u64 * 4,
                4,
                Access::Read,
                "norm weight (gamma)",
            ));
        }
    }
    if s.bias {
        for (i, rows) in parts.iter().enumerate() {
            params.push(ParamSpec::buffer(
                &part_param("bias", i),
                format!("f32[{rows}]"),
                *rows as u64 * 4,
                4,
                Access::Read,
                "bias added to every output",
            ));
        }
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
    for (i, rows) in parts.iter().enumerate() {
        params.push(ParamSpec::buffer(
            &part_param("y", i),
            format!("f32{m_dim}[{rows}]"),
            *rows as u64 * 4 * s.m as u64,
            4,
            Access::Write,
            "output vectors",
        ));
    }
    if let Some(r) = &s.rope {
        params.extend(r.param_specs(r.rows(&parts).1, s.m));
    }
    Ok(GeneratedKernel {
        name,
        ptx,
        launch: LaunchSpec::fixed(grid, 1, threads),
        params,
        spec,
        target,
    })
}
