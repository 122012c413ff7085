//! Decode attention for one query token over an f16 KV cache, split over the KV length
//! (FlashDecoding). This is the split kernel; `attention_combine` merges its partials.
//!
//! For query head h (kv head `h / G`, G = n_heads / n_kv_heads) and the positions `p` in
//! `[lo, seq_len)`, `lo = seq_len - window` (0 without a window):
//! `logit_p = scale * q_h . k_p`, with a soft-cap `logit_p = cap * tanh(logit_p / cap)`,
//! `out_h = sum_p softmax(logit)_p * v_p`.
//!
//! The grid is fixed, `n_chunks x n_kv_heads` blocks (`n_chunks = ceil(max_ctx / chunk)`),
//! because `seq_len` is read from device memory (a decode step replays as a CUDA graph).
//! Block (c, g) handles the positions of chunk c that are attended, for all G query heads of
//! kv head g, so each K/V row is read from global memory once for the whole GQA group. A
//! block with no attended position writes an empty partial (m = -inf, l = 0) and exits.
//!
//! Inside a block the chunk is walked in tiles of T positions:
//! 1. the K tile is copied to shared memory with coalesced 8-byte loads (rows padded by
//!    8 bytes so that the 8-byte row reads of step 2 are free of bank conflicts);
//! 2. one thread per (position, head subset) computes the logits of its heads from the
//!    prescaled q in shared memory (sequential `fma.rn` over head_dim), masks positions
//!    outside `[lo, seq_len)` to -inf;
//! 3. one warp per head takes the tile's maximum, updates the running maximum `m`, turns the
//!    logits into `2^(logit - m)` in place and updates the running sum `l` (online softmax,
//!    rescaled by `2^(m_old - m_new)`; butterfly reductions in one fixed order);
//! 4. one thread per (pair of dims, row group) rescales its accumulators and adds
//!    `p * v` for its rows of the tile, V read from global with coalesced f16x2 loads —
//!    issued before step 1 where the tune prefetches them ([`AttentionTune`]), so they
//!    arrive during steps 1-3.
//!
//! Logits live in the base-2 domain: log2(e) is folded into the q prescale, so the
//! exponentials are 2^x, computed by `exp2.rs` from IEEE-rounded operations only (within
//! 2 ulp, and reproducible bit for bit on a CPU). The soft-cap uses
//! `tanh(y) = 1 - 2 / (e^(2y) + 1)` computed with that 2^x and IEEE `rcp.rn`, on every
//! target: it saturates correctly for large |y| (e^(2y) -> inf or 0) and its absolute error
//! (~1e-7) stays far below the family's tolerance, where `tanh.approx.f32` (sm_75+, relative
//! error ~2^-11) would not. All other float steps are IEEE-rounded, so the CPU mirror
//! (`ptxforge::reference::mirror::attention`) computes the same bits.
//!
//! Partials (documented in the `ParamSpec`s): `part_o: f32[n_heads][n_chunks][head_dim]`,
//! the unnormalized `sum_p 2^(s_p - m) v_p` of each chunk, and `part_ml:
//! f32[n_heads][n_chunks][2]`, `{m, l}` with `s_p = log2(e) * logit_p`, `m = max s_p` over the
//! chunk's attended positions and `l = sum_p 2^(s_p - m)`. `part_o` of a chunk with no attended
//! position is not written (the combine kernel never reads it).

use serde::{Deserialize, Serialize};

use crate::ast::{StateSpace, Type};
use crate::ir::{
    Addr, BinOp, CacheHint, Cmp, FMode, KernelBuilder, Module, Reg, Sreg, UnOp, Value,
};
use crate::launch::{Extent, LaunchSpec};
use crate::parity::{BatchDecl, GridAxis};
use crate::target::Target;

use super::attention_combine::AttentionCombine;
use super::exp2::emit_exp2;
use super::quantize_q8_1::vector_ptr;
use super::reduce::warp_reduce;
use super::spec::{cli_dim, cli_max, invalid, Access, FamilySpec, GenError, KernelSpec, ParamSpec};
use super::GeneratedKernel;

/// Threads per block of the split kernel (4 warps).
pub const ATTENTION_THREADS: u32 = 128;
/// Largest GQA group (query heads per kv head).
pub const ATTENTION_MAX_GROUP: u32 = 16;
/// Largest `max_ctx`.
pub const ATTENTION_MAX_CTX: u32 = 1 << 20;
/// Head dims: multiples of 16 in this range (64, 80, 96, 128, 256 and the rest).
pub const ATTENTION_HEAD_DIMS: std::ops::RangeInclusive<u32> = 32..=256;

const WARPS: u32 = ATTENTION_THREADS / 32;
/// Shared memory a block may use (leaves room for 5 blocks per SM on Hopper).
const SMEM_BUDGET: u32 = 40 * 1024;
const LOG2_E: f64 = std::f64::consts::LOG2_E;
/// Largest unrolls an [`AttentionTune`] may ask for.
const MAX_K_UNROLL: u32 = 32;
const MAX_V_UNROLL: u32 = 64;

/// How the split kernel streams its chunk (the bench's search; none of it changes the
/// arithmetic except `tile`, which the CPU mirror follows through [`DecodeAttention::tile`]):
/// - `tile`: the largest tile (positions per pass over the chunk) the plan may choose;
/// - `k`: K-tile copy passes (8 bytes each per thread) issued per loop iteration;
/// - `v`: V rows (4 bytes each per thread) issued per loop iteration, without `prefetch`;
/// - `prefetch`: all the V rows a thread takes of a tile are loaded into registers before
///   the tile's K copy (`v` is then unused), so they arrive while the logits and the softmax
///   are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AttentionTune {
    pub tile: u32,
    pub k: u32,
    pub v: u32,
    pub prefetch: bool,
}

impl std::fmt::Display for AttentionTune {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "t{}k{}v{}", self.tile, self.k, self.v)?;
        if self.prefetch {
            write!(f, "p")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for AttentionTune {
    type Err = String;

    /// `t<tile>k<passes>v<rows>[p]`, as [`Display`](std::fmt::Display) writes it.
    fn from_str(s: &str) -> Result<AttentionTune, String> {
        let bad = || format!("expected an attention tune like t128k4v8 or t64k16v32p, got `{s}`");
        let rest = s.strip_prefix('t').ok_or_else(bad)?;
        let (tile, rest) = rest.split_once('k').ok_or_else(bad)?;
        let (k, v) = rest.split_once('v').ok_or_else(bad)?;
        let (v, prefetch) = match v.strip_suffix('p') {
            Some(v) => (v, true),
            None => (v, false),
        };
        Ok(AttentionTune {
            tile: tile.parse().map_err(|_| bad())?,
            k: k.parse().map_err(|_| bad())?,
            v: v.parse().map_err(|_| bad())?,
            prefetch,
        })
    }
}

/// Decode attention over an f16 KV cache, split kernel. Every field is baked into the PTX.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DecodeAttention {
    pub n_heads: u32,
    pub n_kv_heads: u32,
    pub head_dim: u32,
    /// Positions per kv head in the cache (`k_cache: f16[n_kv_heads][max_ctx][head_dim]`).
    pub max_ctx: u32,
    /// Multiplied into `q . k`.
    pub scale: f32,
    /// Attend only the last `window` positions (`p >= seq_len - window`).
    pub window: Option<u32>,
    /// Logit soft-cap: `logit = cap * tanh(logit / cap)` after scaling (Gemma 2).
    pub softcap: Option<f32>,
    /// Sequences per launch (1: single; up to 16, one per `%ctaid.z`): sequence v has its
    /// own q, KV cache, length and partials.
    #[serde(
        default = "super::quantize_q8_1::one",
        skip_serializing_if = "super::quantize_q8_1::is_one"
    )]
    pub m: u32,
}

impl DecodeAttention {
    /// Query heads per kv head.
    pub fn group(&self) -> u32 {
        self.n_heads / self.n_kv_heads.max(1)
    }

    /// Positions per KV chunk (one block per chunk and kv head): the smallest power of two
    /// from 32 to 256 that splits the cache into at most 64 chunks. Short caches get short
    /// chunks, so a decode at a few hundred positions already spreads over many blocks per
    /// kv head (a block walks its chunk tile after tile, one dependent chain of loads per
    /// tile); long caches keep 256, whose combine would otherwise merge many partials per
    /// head. Measured on an H100 (docs/performance.md): llama3-8b shape at position 512, chunk
    /// 256 -> 128: 3.50 -> 3.11 ms per step; 16384 positions, 256 -> 128: 47.6 -> 58.6 us
    /// with the combine of the time, and 30.84 -> 32.88 us with the warp-parallel combine
    /// (seventh session, same call): long caches keep 256.
    pub fn chunk(&self) -> u32 {
        self.max_ctx.div_ceil(64).next_power_of_two().clamp(32, 256)
    }

    pub fn n_chunks(&self) -> u32 {
        self.max_ctx.div_ceil(self.chunk())
    }

    /// The tune [`generate`](FamilySpec::generate) uses: tiles of at most 64 positions (32
    /// for head_dim past 128), every K-copy pass of a tile in one loop iteration (at most 16)
    /// and the tile's V rows prefetched before the K copy where they and the accumulators
    /// (2 per query head of the group) stay within 40 registers a thread: the tile halves to
    /// 32 for that, and a group still over it (16 heads of 256 dims) loads V as it goes, with
    /// 4 K-copy passes and 8 V rows per iteration.
    /// Measured on an H100 (docs/performance.md), 32 / 8 heads, head_dim 128, 16384 positions,
    /// split + combine: tile 128, 4 K passes and 8 V rows per iteration, no prefetch 47.1 us;
    /// unrolled to 32 / 64: 43.8 us; tile 64 unrolled: 43.5 us; tile 64 with V prefetch:
    /// 38.6 us (tile 128 with prefetch, 64 V registers: 50.5 us; tile 32: 43.1 us).
    pub fn tune(&self) -> AttentionTune {
        let nt = ATTENTION_THREADS;
        let d = self.head_dim.max(4);
        let v_rows = (nt / (d / 2)).max(1);
        let live = |tile: u32| 2 * self.group() + tile / v_rows;
        let mut tile = if d <= 128 { 64 } else { 32 };
        if tile > 32 && live(tile) > 40 {
            tile = 32;
        }
        // Rows a K-copy pass takes (threads / 8-byte units per row) and so passes per tile.
        let stage_rows = (nt / (d / 4)).max(1);
        let passes = tile.min(self.chunk()).div_ceil(stage_rows).clamp(1, 16);
        let prefetch = live(tile) <= 40;
        AttentionTune {
            tile,
            k: if prefetch { passes } else { passes.min(4) },
            v: 8,
            prefetch,
        }
    }

    /// The combine kernel that merges this kernel's partials.
    pub fn combine(&self) -> AttentionCombine {
        AttentionCombine {
            n_heads: self.n_heads,
            head_dim: self.head_dim,
            max_ctx: self.max_ctx,
            chunk: self.chunk(),
            window: self.window,
            m: self.m,
            out: super::rmsnorm_q8_1::OutFormat::F32,
        }
    }

    /// Positions per tile of the split kernel (128, 64 or 32: the largest whose shared memory
    /// fits the budget); `None` where no tile fits. The softmax's per-lane order depends on
    /// it, so a CPU mirror of the kernel needs it.
    pub fn tile(&self) -> Option<u32> {
        Plan::new(self, self.tune()).map(|p| p.tile)
    }

    /// The f32 factor q is multiplied by (`mul.rn`) before the dot products: `scale *
    /// log2(e)`, or with a soft-cap `2 log2(e) scale / cap`.
    pub fn q_prescale(&self) -> f32 {
        q_prescale(self)
    }

    /// With a soft-cap, the f32 factor of the base-2 logit: `cap * log2(e)` (the logit is
    /// `(1 - 2 / (2^dot + 1)) * this`, each step IEEE-rounded).
    pub fn softcap_factor(&self) -> Option<f32> {
        self.softcap.map(|cap| (cap as f64 * LOG2_E) as f32)
    }

    /// Bytes of one kv cache (`k_cache` or `v_cache`) of a layer.
    pub fn cache_bytes(&self) -> u64 {
        self.n_kv_heads as u64 * self.max_ctx as u64 * self.head_dim as u64 * 2
    }

    /// Bytes of `part_o`.
    pub fn partial_o_bytes(&self) -> u64 {
        self.n_heads as u64 * self.n_chunks() as u64 * self.head_dim as u64 * 4
    }

    /// Bytes of `part_ml`.
    pub fn partial_ml_bytes(&self) -> u64 {
        self.n_heads as u64 * self.n_chunks() as u64 * 8
    }
}

/// The tail of a batched description (`%ctaid.z`), nothing for a single kernel.
pub(crate) fn batch_describe_z(m: u32) -> String {
    if m > 1 {
        format!("; batch of {m} sequences, sequence v = %ctaid.z")
    } else {
        String::new()
    }
}

/// The sequence index of a batched kernel, `%ctaid.z`; nothing at all for `m` = 1.
pub(crate) fn batch_sequence(b: &mut KernelBuilder, m: u32) -> Option<Reg> {
    (m > 1).then(|| b.special(Sreg::CtaidZ))
}

/// The batched launch: the single kernel's, with `m` blocks along z.
pub(crate) fn batch_launch_z(mut launch: LaunchSpec, m: u32) -> LaunchSpec {
    if m > 1 {
        launch.grid[2] = Extent::Const(m);
    }
    launch
}

/// The grid batching claim along z: every one of `params` per-vector at its single size.
pub(crate) fn grid_decl_z(m: u32, params: &[(&str, u64)]) -> Option<BatchDecl> {
    if m < 2 {
        return None;
    }
    let mut d = BatchDecl::grid(m, GridAxis::Z);
    for (name, bytes) in params {
        d = d.per_vector(name, *bytes);
    }
    Some(d)
}

impl FamilySpec for DecodeAttention {
    const FAMILY: &'static str = "attention";
    const CLI_DIMS: &'static str = "N_HEADS N_KV_HEADS HEAD_DIM MAX_CTX [SCALE] [WINDOW] [SOFTCAP] [M]: split kernel; SCALE 1/sqrt(HEAD_DIM) by default, WINDOW 0 and SOFTCAP 0 mean none; M 1..=16 sequences (default 1)";

    fn from_cli(dims: &[String]) -> Result<Self, String> {
        cli_max(dims, 8)?;
        let head_dim: u32 = cli_dim(dims, 2, "HEAD_DIM", None)?;
        let window: u32 = cli_dim(dims, 5, "WINDOW", Some(0))?;
        let softcap: f32 = cli_dim(dims, 6, "SOFTCAP", Some(0.0))?;
        Ok(DecodeAttention {
            n_heads: cli_dim(dims, 0, "N_HEADS", None)?,
            n_kv_heads: cli_dim(dims, 1, "N_KV_HEADS", None)?,
            head_dim,
            max_ctx: cli_dim(dims, 3, "MAX_CTX", None)?,
            scale: cli_dim(
                dims,
                4,
                "SCALE",
                Some(1.0 / (head_dim.max(1) as f32).sqrt()),
            )?,
            window: (window != 0).then_some(window),
            softcap: (softcap != 0.0).then_some(softcap),
            m: super::quantize_q8_1::cli_batch(dims, 7)?,
        })
    }

    fn name(&self) -> String {
        let mut n = format!(
            "attn_split_h{}_kv{}_d{}_ctx{}_c{}_s{:08x}",
            self.n_heads,
            self.n_kv_heads,
            self.head_dim,
            self.max_ctx,
            self.chunk(),
            self.scale.to_bits()
        );
        if let Some(w) = self.window {
            n.push_str(&format!("_w{w}"));
        }
        if let Some(c) = self.softcap {
            n.push_str(&format!("_cap{:08x}", c.to_bits()));
        }
        n.push_str(&super::quantize_q8_1::batch_suffix(self.m));
        n
    }

    fn describe(&self) -> String {
        format!(
            "attention (split): {} query heads, {} kv heads (group {}), head_dim {}, f16 cache of {} positions, chunk {}, scale = {:e} (0x{:08x}), window {}, soft-cap {}{}",
            self.n_heads,
            self.n_kv_heads,
            self.group(),
            self.head_dim,
            self.max_ctx,
            self.chunk(),
            self.scale,
            self.scale.to_bits(),
            self.window.map_or("none".to_string(), |w| w.to_string()),
            self.softcap.map_or("none".to_string(), |c| format!("{c:e} (0x{:08x})", c.to_bits())),
            batch_describe_z(self.m),
        )
    }

    fn validate(&self) -> Result<(), GenError> {
        let f = Self::FAMILY;
        if self.n_kv_heads == 0 || self.n_kv_heads > 1024 {
            return Err(invalid(f, "n_kv_heads", "in 1..=1024", self.n_kv_heads));
        }
        if self.n_heads == 0 || self.n_heads % self.n_kv_heads != 0 {
            return Err(invalid(
                f,
                "n_heads",
                &format!("a positive multiple of n_kv_heads ({})", self.n_kv_heads),
                self.n_heads,
            ));
        }
        if self.group() > ATTENTION_MAX_GROUP {
            return Err(invalid(
                f,
                "n_heads / n_kv_heads",
                &format!("at most {ATTENTION_MAX_GROUP}"),
                self.group(),
            ));
        }
        if !ATTENTION_HEAD_DIMS.contains(&self.head_dim) || self.head_dim % 16 != 0 {
            return Err(invalid(
                f,
                "head_dim",
                "a multiple of 16 in 32..=256 (64, 80, 96, 128, 256, ...)",
                self.head_dim,
            ));
        }
        if self.max_ctx == 0 || self.max_ctx > ATTENTION_MAX_CTX {
            return Err(invalid(
                f,
                "max_ctx",
                &format!("in 1..={ATTENTION_MAX_CTX}"),
                self.max_ctx,
            ));
        }
        if !(self.scale.is_finite() && self.scale > 0.0) {
            return Err(invalid(f, "scale", "a positive finite number", self.scale));
        }
        if self.window == Some(0) {
            return Err(invalid(f, "window", "at least 1 position (or none)", 0));
        }
        if let Some(c) = self.softcap {
            if !(c.is_finite() && c > 0.0) {
                return Err(invalid(
                    f,
                    "softcap",
                    "a positive finite number (or none)",
                    c,
                ));
            }
        }
        if self.partial_o_bytes() / 4 >= 1 << 31 {
            return Err(invalid(
                f,
                "n_heads * n_chunks * head_dim",
                "below 2^31 partial values",
                self.partial_o_bytes() / 4,
            ));
        }
        if Plan::new(self, self.tune()).is_none() {
            return Err(invalid(
                f,
                "group x head_dim",
                &format!("shared memory within {SMEM_BUDGET} bytes"),
                format!("{} x {}", self.group(), self.head_dim),
            ));
        }
        super::quantize_q8_1::validate_batch(f, self.m)?;
        // A sequence's offsets are 32-bit immediates.
        if self.m > 1 && self.cache_bytes().max(self.partial_o_bytes()) > u32::MAX as u64 {
            return Err(invalid(
                f,
                "m",
                "1 when a layer cache or the partials exceed 4 GiB",
                self.m,
            ));
        }
        Ok(())
    }

    fn generate(&self, target: Target) -> Result<GeneratedKernel, GenError> {
        generate(self, target)
    }

    fn samples() -> Vec<Self> {
        let s = |n_heads, n_kv_heads, head_dim: u32, max_ctx, window, softcap| DecodeAttention {
            n_heads,
            n_kv_heads,
            head_dim,
            max_ctx,
            scale: 1.0 / (head_dim as f32).sqrt(),
            window,
            softcap,
            m: 1,
        };
        let b = |m, s: DecodeAttention| DecodeAttention { m, ..s };
        vec![
            // llama3-8b, qwen2.5-0.5b, gemma3-270m (local layers: window 512), smollm2-135m
            s(32, 8, 128, 8192, None, None),
            s(14, 2, 64, 32768, None, None),
            s(4, 1, 256, 32768, Some(512), None),
            s(4, 1, 256, 32768, None, None),
            s(9, 3, 64, 8192, None, None),
            // gemma2-like: soft-cap 50 and a sliding window
            s(8, 4, 256, 8192, Some(4096), Some(50.0)),
            // edges: group 16, 5, 7; head_dim 80, 96, 32; tiny and odd contexts
            s(16, 1, 256, 1000, None, Some(30.0)),
            s(32, 2, 64, 4097, None, None),
            s(10, 2, 80, 2048, Some(100), None),
            s(28, 4, 96, 4100, None, Some(5.0)),
            s(3, 3, 32, 1, None, None),
            s(7, 1, 128, 257, Some(1), Some(50.0)),
            // batched: llama3-8b (shorter cache), qwen2.5-0.5b, group 7 with window + soft-cap
            b(2, s(32, 8, 128, 4096, None, None)),
            b(16, s(14, 2, 64, 1024, None, None)),
            b(3, s(7, 1, 128, 257, Some(1), Some(50.0))),
        ]
    }

    fn batched(&self, m: u32) -> Option<Self> {
        let b = Self { m, ..*self };
        (self.m == 1 && b.validate().is_ok()).then_some(b)
    }

    /// Sequence v: `q + v * n_heads * head_dim * 4`, `k_cache`/`v_cache + v * cache_bytes()`,
    /// `seq_len + 4 v`, `part_o`/`part_ml + v *` their single sizes.
    fn batch_decl(&self) -> Option<BatchDecl> {
        grid_decl_z(
            self.m,
            &[
                ("q", self.n_heads as u64 * self.head_dim as u64 * 4),
                ("k_cache", self.cache_bytes()),
                ("v_cache", self.cache_bytes()),
                ("seq_len", 4),
                ("part_o", self.partial_o_bytes()),
                ("part_ml", self.partial_ml_bytes()),
            ],
        )
    }
}

/// How the work of one block is laid out: tile size, thread roles, shared-memory offsets.
#[derive(Debug, Clone, Copy)]
struct Plan {
    g: u32,
    d: u32,
    chunk: u32,
    n_chunks: u32,
    /// Positions per tile (T).
    tile: u32,
    /// Head subsets in the logit step (threads per position): NS = threads / T.
    sets: u32,
    /// Heads per subset: ceil(G / NS); q and logits are padded to NS * HS heads.
    heads_per_set: u32,
    heads_padded: u32,
    /// 8-byte K units per iteration of the logit loop: 4, 2 or 1, dividing `units`, at most
    /// 16 q loads (float4) per iteration (4 with V prefetch, whose rows hold registers).
    score_step: u32,
    /// 8-byte K units per row (d / 4) and rows copied per pass (threads / units).
    units: u32,
    stage_rows: u32,
    /// f16 pairs per row (d / 2) and V row groups (threads / pairs).
    pairs: u32,
    v_rows: u32,
    /// Shared-memory byte offsets.
    q_off: u32,
    sc_off: u32,
    alpha_off: u32,
    kt_off: u32,
    smem_bytes: u32,
}

impl Plan {
    /// Bytes of a padded K row in shared memory: head_dim halves plus 4 (8 bytes), so rows
    /// start 8 bytes apart modulo 128 and a half-warp's 8-byte row reads hit 16 distinct bank
    /// pairs (d % 8 == 0).
    fn k_stride(d: u32) -> u32 {
        (d + 4) * 2
    }

    /// The largest tile (128, 64 or 32 positions, at most a chunk and `max_tile`) whose shared
    /// memory fits the budget.
    fn new(s: &DecodeAttention, tune: AttentionTune) -> Option<Plan> {
        let max_tile = tune.tile;
        // q float4 loads per logit-loop iteration: fewer where the prefetched V rows already
        // hold registers across the logits (the order of the fma chain is the same).
        let q_loads = if tune.prefetch { 4 } else { 16 };
        let (g, d) = (s.group(), s.head_dim);
        let nt = ATTENTION_THREADS;
        if d == 0 || d % 4 != 0 || d / 2 > nt || g == 0 {
            return None;
        }
        let pairs = d / 2;
        let v_rows = nt / pairs;
        let units = d / 4;
        for tile in [128u32, 64, 32]
            .into_iter()
            .filter(|t| *t <= s.chunk() && *t <= max_tile)
        {
            let sets = nt / tile;
            let heads_per_set = g.div_ceil(sets);
            let heads_padded = sets * heads_per_set;
            let q_off = 0;
            let sc_off = q_off + heads_padded * d * 4;
            let alpha_off = sc_off + heads_padded * tile * 4;
            let kt_off = alpha_off + (heads_padded * 4).next_multiple_of(16);
            let kt_bytes = (tile * Self::k_stride(d)).max((v_rows - 1) * g * d * 4);
            let smem_bytes = kt_off + kt_bytes;
            if smem_bytes <= SMEM_BUDGET {
                return Some(Plan {
                    g,
                    d,
                    chunk: s.chunk(),
                    n_chunks: s.n_chunks(),
                    tile,
                    sets,
                    heads_per_set,
                    heads_padded,
                    score_step: [4, 2, 1]
                        .into_iter()
                        .find(|u| units % u == 0 && u * heads_per_set <= q_loads)
                        .unwrap_or(1),
                    units,
                    stage_rows: nt / units,
                    pairs,
                    v_rows,
                    q_off,
                    sc_off,
                    alpha_off,
                    kt_off,
                    smem_bytes,
                });
            }
        }
        None
    }
}

/// `a && b` where either may be absent (always true).
fn both(b: &mut KernelBuilder, x: Option<Reg>, y: Option<Reg>) -> Option<Reg> {
    match (x, y) {
        (Some(x), Some(y)) => Some(b.and(Type::Pred, x, y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// The clamped sequence length and the first attended position, computed the same way by
/// the split and combine kernels: `seq = min(*seq_len, max_ctx)`, `lo = max(seq - window, 0)`.
pub(crate) fn attended_range(
    b: &mut KernelBuilder,
    seq_len: Reg,
    max_ctx: u32,
    window: Option<u32>,
) -> (Reg, Reg) {
    let raw = b.ld_global(Type::U32, Addr::reg(seq_len));
    let seq = b.min(Type::U32, raw, max_ctx);
    let lo = match window {
        // seq <= max_ctx <= 2^20, so the difference fits an s32. A window of max_ctx or more
        // never excludes a position.
        Some(w) if w < max_ctx => {
            let t = b.sub(Type::S32, seq, w);
            b.max(Type::S32, t, 0i32)
        }
        _ => b.mov(Type::U32, 0u32),
    };
    (seq, lo)
}

fn generate(s: &DecodeAttention, target: Target) -> Result<GeneratedKernel, GenError> {
    generate_tuned(s, s.tune(), target)
}

/// The split kernel with an explicit tune (the bench's search); a tune other than
/// [`DecodeAttention::tune`] is named in the kernel's name.
pub fn generate_tuned(
    s: &DecodeAttention,
    tune: AttentionTune,
    target: Target,
) -> Result<GeneratedKernel, GenError> {
    s.validate()?;
    let f = DecodeAttention::FAMILY;
    if tune.k == 0 || tune.k > MAX_K_UNROLL {
        return Err(invalid(
            f,
            "tune.k",
            &format!("in 1..={MAX_K_UNROLL}"),
            tune.k,
        ));
    }
    if tune.v == 0 || tune.v > MAX_V_UNROLL {
        return Err(invalid(
            f,
            "tune.v",
            &format!("in 1..={MAX_V_UNROLL}"),
            tune.v,
        ));
    }
    let spec = KernelSpec::Attention(*s);
    let name = if tune == s.tune() {
        spec.name()
    } else {
        format!("{}_{tune}", spec.name())
    };
    let p = Plan::new(s, tune).ok_or_else(|| {
        invalid(
            DecodeAttention::FAMILY,
            "group x head_dim",
            "a shared-memory plan",
            s.group(),
        )
    })?;
    let nt = ATTENTION_THREADS;
    let (g, d, t_len) = (p.g, p.d, p.tile);
    let ks = Plan::k_stride(d);
    let mut b = KernelBuilder::new(&name, target);
    b.header_comment(&spec.describe());
    b.header_comment(&format!(
        "launch: grid {} x {} x {} (chunks x kv heads{}, fixed), block {nt} x 1 x 1; tile {t_len} positions, {} bytes shared",
        p.n_chunks, s.n_kv_heads, s.m, if s.m > 1 { " x sequences" } else { "" }, p.smem_bytes
    ));
    b.required_threads(nt);
    let q = b.param(Type::U64, "q");
    let k_cache = b.param(Type::U64, "k_cache");
    let v_cache = b.param(Type::U64, "v_cache");
    let seq_len = b.param(Type::U64, "seq_len");
    let part_o = b.param(Type::U64, "part_o");
    let part_ml = b.param(Type::U64, "part_ml");
    let smem = b.shared("smem", Type::B8, p.smem_bytes, 16);

    let tid = b.special(Sreg::TidX);
    let chunk_idx = b.special(Sreg::CtaidX);
    let kvh = b.special(Sreg::CtaidY);
    let vi = batch_sequence(&mut b, s.m);
    let seqp = vector_ptr(&mut b, &seq_len, vi, 4);
    let (seq, lo) = attended_range(&mut b, seqp, s.max_ctx, s.window);
    let cstart = b.mul(Type::U32, chunk_idx, p.chunk);
    let cend = b.add(Type::U32, cstart, p.chunk);
    // This block's attended positions: [pb, pe).
    let pb = b.max(Type::U32, cstart, lo);
    let pe = b.min(Type::U32, cend, seq);
    let head0 = b.mul(Type::U32, kvh, g);
    let mlp = vector_ptr(&mut b, &part_ml, vi, s.partial_ml_bytes());
    let neg_inf = b.mov(Type::F32, f32::NEG_INFINITY);
    let zero = b.mov(Type::F32, 0.0f32);

    b.comment("no attended position in this chunk: empty partials {m = -inf, l = 0}, exit");
    let empty = b.setp(Cmp::Ge, Type::U32, pb, pe);
    b.if_then(empty, |b| {
        let has = b.setp(Cmp::Lt, Type::U32, tid, g);
        b.if_then(has, |b| {
            let h = b.add(Type::U32, head0, tid);
            let idx = b.mad(Type::U32, FMode::NONE, h, p.n_chunks, chunk_idx);
            let a = b.mad_wide(Type::U32, idx, 8u32, mlp);
            b.store(
                StateSpace::Global,
                Type::F32,
                Addr::reg(a),
                &[neg_inf.into(), zero.into()],
                &[],
                None,
            );
        });
        b.ret();
    });

    let sbase = b.shared_base(&smem);
    stage_q(&mut b, s, &p, &q, vi, kvh, tid, sbase, zero);

    // Thread roles. K copy: column unit `kcol` of rows kr0, kr0 + RP, ... Threads past the
    // last full row group get kr0 = 2^20: their rows are never in range.
    let kcol = b.bin(BinOp::Rem, Type::U32, FMode::NONE, tid, p.units);
    let kr0_raw = b.bin(BinOp::Div, Type::U32, FMode::NONE, tid, p.units);
    let kr0 = if p.stage_rows * p.units < nt {
        let active = b.setp(Cmp::Lt, Type::U32, kr0_raw, p.stage_rows);
        b.selp(Type::U32, kr0_raw, 1u32 << 20, active)
    } else {
        kr0_raw
    };
    let head_bytes = s.max_ctx * d * 2;
    let kp = vector_ptr(&mut b, &k_cache, vi, s.cache_bytes());
    let kg = b.mad_wide(Type::U32, kvh, head_bytes, kp);
    let kthr = b.mad_wide(Type::U32, kcol, 8u32, kg);
    let kt_base = b.add(Type::U32, sbase, p.kt_off);
    let kst0 = b.mad(Type::U32, FMode::NONE, kr0, ks, kt_base);
    let kst = b.mad(Type::U32, FMode::NONE, kcol, 8u32, kst0);
    // Logits: position `st` of the tile, heads ss, ss + NS, ...
    let st = b.and(Type::B32, tid, t_len - 1);
    let ss = b.shr(Type::U32, tid, t_len.trailing_zeros());
    let sk = b.mad(Type::U32, FMode::NONE, st, ks, kt_base);
    let q_base = b.add(Type::U32, sbase, p.q_off);
    let sq = b.mad(Type::U32, FMode::NONE, ss, d * 4, q_base);
    let sc_base = b.add(Type::U32, sbase, p.sc_off);
    let ssc0 = b.mad(Type::U32, FMode::NONE, ss, t_len * 4, sc_base);
    let ssc = b.mad(Type::U32, FMode::NONE, st, 4u32, ssc0);
    // Softmax: warp w owns heads w, w + 4, ...
    let lane = b.and(Type::B32, tid, 31u32);
    let warp = b.shr(Type::U32, tid, 5u32);
    let srow0 = b.mad(Type::U32, FMode::NONE, warp, t_len * 4, sc_base);
    let srow = b.mad(Type::U32, FMode::NONE, lane, 4u32, srow0);
    let alpha_base = b.add(Type::U32, sbase, p.alpha_off);
    let salpha = b.mad(Type::U32, FMode::NONE, warp, 4u32, alpha_base);
    let lane0 = b.setp(Cmp::Eq, Type::U32, lane, 0u32);
    let owned = g.div_ceil(WARPS);
    // A warp's k-th head exists where warp + 4k < G (always, when 4k + 3 < G).
    let owns: Vec<Option<Reg>> = (0..owned)
        .map(|k| (WARPS * k + WARPS > g).then(|| b.setp(Cmp::Lt, Type::U32, warp, g - WARPS * k)))
        .collect();
    let run_max: Vec<Reg> = (0..owned)
        .map(|_| b.mov(Type::F32, f32::NEG_INFINITY))
        .collect();
    let run_sum: Vec<Reg> = (0..owned).map(|_| b.mov(Type::F32, 0.0f32)).collect();
    // V: pair `vdp` of rows vr, vr + R, ...
    let vdp = b.bin(BinOp::Rem, Type::U32, FMode::NONE, tid, p.pairs);
    let vr = b.bin(BinOp::Div, Type::U32, FMode::NONE, tid, p.pairs);
    let v_active = (p.v_rows * p.pairs < nt).then(|| b.setp(Cmp::Lt, Type::U32, vr, p.v_rows));
    let vp = vector_ptr(&mut b, &v_cache, vi, s.cache_bytes());
    let vg = b.mad_wide(Type::U32, kvh, head_bytes, vp);
    let vthr = b.mad_wide(Type::U32, vdp, 4u32, vg);
    let svp = b.mad(Type::U32, FMode::NONE, vr, 4u32, sc_base);
    let acc: Vec<[Reg; 2]> = (0..g)
        .map(|_| [b.mov(Type::F32, 0.0f32), b.mov(Type::F32, 0.0f32)])
        .collect();

    // V rows per thread and tile when they are prefetched.
    let prefetch_rows = tune.prefetch.then(|| t_len.div_ceil(p.v_rows));
    // Tiles from the one holding pb to the one holding pe - 1 (block-uniform bounds).
    let off = b.sub(Type::U32, pb, cstart);
    let off_t = b.and(
        Type::B32,
        off,
        Value::Hex(!(t_len as u64 - 1) & 0xffff_ffff),
    );
    let t0 = b.add(Type::U32, cstart, off_t);
    b.for_range(Type::U32, t0, pe, t_len as i64, |b, ts| {
        // Rows [tlo, thi) of this tile are attended: row r is iff (r - tlo) <u (thi - tlo),
        // one unsigned compare that also rejects rows past the tile (thi <= T).
        let first = b.max(Type::U32, pb, ts);
        let tlo = b.sub(Type::U32, first, ts);
        let tend = b.add(Type::U32, ts, t_len);
        let last = b.min(Type::U32, pe, tend);
        let thi = b.sub(Type::U32, last, ts);
        let len = b.sub(Type::U32, thi, tlo);

        // With `prefetch`, every V row this thread takes of the tile is loaded now (one f16
        // pair each, 0 for rows outside [tlo, thi)), to arrive while K is used.
        let v_pre: Option<Vec<(Reg, Reg)>> = prefetch_rows.map(|rows| {
            b.comment("load this thread's V rows of the tile (used after the softmax)");
            let vrel = b.sub(Type::U32, vr, tlo);
            let vpos0 = b.add(Type::U32, ts, vr);
            let vrow = b.mad_wide(Type::U32, vpos0, d * 2, vthr);
            (0..rows)
                .map(|u| {
                    let r = if u == 0 {
                        vrel
                    } else {
                        b.add(Type::U32, vrel, p.v_rows * u)
                    };
                    let ok = b.setp(Cmp::Lo, Type::U32, r, len);
                    let ok = both(b, Some(ok), v_active).unwrap_or(ok);
                    let w = b.mov(Type::B32, 0u32);
                    b.when(ok).load_to(
                        StateSpace::Global,
                        Type::B32,
                        &[w],
                        Addr::reg_off(vrow, (u * p.v_rows * d * 2) as i64),
                        &[CacheHint::NonCoherent],
                        None,
                    );
                    (ok, w)
                })
                .collect()
        });

        b.comment("copy the attended rows of the K tile to shared memory");
        let krel = b.sub(Type::U32, kr0, tlo);
        let kpos0 = b.add(Type::U32, ts, kr0);
        let krow = b.mad_wide(Type::U32, kpos0, d * 2, kthr);
        let passes = t_len.div_ceil(p.stage_rows).next_multiple_of(tune.k);
        b.for_range(Type::U32, 0u32, passes, tune.k as i64, |b, kb| {
            let rel = b.mad(Type::U32, FMode::NONE, kb, p.stage_rows, krel);
            let ga = b.mad_wide(Type::U32, kb, p.stage_rows * d * 2, krow);
            let sa = b.mad(Type::U32, FMode::NONE, kb, p.stage_rows * ks, kst);
            for u in 0..tune.k {
                let r = if u == 0 {
                    rel
                } else {
                    b.add(Type::U32, rel, p.stage_rows * u)
                };
                let ok = b.setp(Cmp::Lo, Type::U32, r, len);
                let w = [b.reg(Type::B32), b.reg(Type::B32)];
                let goff = (u * p.stage_rows * d * 2) as i64;
                b.when(ok).load_to(
                    StateSpace::Global,
                    Type::B32,
                    &w,
                    Addr::reg_off(ga, goff),
                    &[CacheHint::NonCoherent],
                    None,
                );
                let soff = (u * p.stage_rows * ks) as i64;
                b.when(ok).store(
                    StateSpace::Shared,
                    Type::B32,
                    Addr::reg_off(sa, soff),
                    &[w[0].into(), w[1].into()],
                    &[],
                    None,
                );
            }
        });
        b.bar_sync(0);

        b.comment("logits of position st for heads ss, ss + NS, ...");
        let dots: Vec<Reg> = (0..p.heads_per_set)
            .map(|_| b.mov(Type::F32, 0.0f32))
            .collect();
        let step = p.score_step;
        b.for_range(Type::U32, 0u32, p.units, step as i64, |b, j| {
            let ka = b.mad(Type::U32, FMode::NONE, j, 8u32, sk);
            let qa = b.mad(Type::U32, FMode::NONE, j, 16u32, sq);
            for u in 0..step {
                let kh = b.load(
                    StateSpace::Shared,
                    Type::B16,
                    4,
                    Addr::reg_off(ka, (u * 8) as i64),
                    &[],
                    None,
                );
                let kf: Vec<Reg> = kh
                    .iter()
                    .map(|h| b.cvt(Type::F32, Type::F16, FMode::NONE, *h))
                    .collect();
                for (kk, dot) in dots.iter().enumerate() {
                    let qoff = (kk as u32 * p.sets * d * 4 + u * 16) as i64;
                    let qv = b.load(
                        StateSpace::Shared,
                        Type::F32,
                        4,
                        Addr::reg_off(qa, qoff),
                        &[],
                        None,
                    );
                    for e in 0..4 {
                        b.to(*dot).fma(qv[e], kf[e], *dot);
                    }
                }
            }
        });
        let srel = b.sub(Type::U32, st, tlo);
        let valid = b.setp(Cmp::Lo, Type::U32, srel, len);
        for (kk, dot) in dots.iter().enumerate() {
            let logit = logit2(b, s, *dot);
            let masked = b.selp(Type::F32, logit, f32::NEG_INFINITY, valid);
            let soff = (kk as u32 * p.sets * t_len * 4) as i64;
            b.st_shared(Type::F32, Addr::reg_off(ssc, soff), masked);
        }
        b.bar_sync(0);

        b.comment("online softmax: one warp per head");
        for k in 0..owned {
            let body = |b: &mut KernelBuilder| {
                let row = (WARPS * k * t_len * 4) as i64;
                let vals: Vec<Reg> = (0..t_len / 32)
                    .map(|j| b.ld_shared(Type::F32, Addr::reg_off(srow, row + (j * 128) as i64)))
                    .collect();
                let mut local = vals[0];
                for v in &vals[1..] {
                    local = b.max(Type::F32, local, *v);
                }
                let tile_max = warp_reduce(b, BinOp::Max, Type::F32, local);
                let m_old = run_max[k as usize];
                let m_new = b.max(Type::F32, m_old, tile_max);
                let shift = b.bin(BinOp::Sub, Type::F32, FMode::rn(), m_old, m_new);
                let alpha = emit_exp2(b, shift);
                let mut sum: Option<Reg> = None;
                for (j, v) in vals.iter().enumerate() {
                    let x = b.bin(BinOp::Sub, Type::F32, FMode::rn(), *v, m_new);
                    let e = emit_exp2(b, x);
                    b.st_shared(
                        Type::F32,
                        Addr::reg_off(srow, row + (j as u32 * 128) as i64),
                        e,
                    );
                    sum = Some(match sum {
                        None => e,
                        Some(acc) => b.bin(BinOp::Add, Type::F32, FMode::rn(), acc, e),
                    });
                }
                let tile_sum = warp_reduce(b, BinOp::Add, Type::F32, sum.unwrap_or(zero));
                let l = run_sum[k as usize];
                b.to(l).fma(l, alpha, tile_sum);
                b.to(m_old).mov(Type::F32, m_new);
                b.when(lane0).st_shared(
                    Type::F32,
                    Addr::reg_off(salpha, (WARPS * k * 4) as i64),
                    alpha,
                );
            };
            match owns[k as usize] {
                Some(pred) => b.if_then(pred, body),
                None => body(b),
            }
        }
        b.bar_sync(0);

        b.comment("o = o * alpha + p v over this thread's rows of the tile");
        let body = |b: &mut KernelBuilder| {
            for (h, a) in acc.iter().enumerate() {
                let alpha = b.ld_shared(Type::F32, Addr::reg_off(alpha_base, (h * 4) as i64));
                for r in a {
                    b.to(*r).bin(BinOp::Mul, Type::F32, FMode::rn(), *r, alpha);
                }
            }
            if let Some(pre) = &v_pre {
                for (u, (ok, w)) in pre.iter().enumerate() {
                    let vh = b.unpack(Type::B32, *w, Type::B16);
                    let v0 = b.cvt(Type::F32, Type::F16, FMode::NONE, vh[0]);
                    let v1 = b.cvt(Type::F32, Type::F16, FMode::NONE, vh[1]);
                    for (h, a) in acc.iter().enumerate() {
                        let pr = b.mov(Type::F32, 0.0f32);
                        let poff = ((h as u32 * t_len + u as u32 * p.v_rows) * 4) as i64;
                        b.when(*ok)
                            .to(pr)
                            .ld_shared(Type::F32, Addr::reg_off(svp, poff));
                        b.to(a[0]).fma(pr, v0, a[0]);
                        b.to(a[1]).fma(pr, v1, a[1]);
                    }
                }
                return;
            }
            let vrel = b.sub(Type::U32, vr, tlo);
            let vpos0 = b.add(Type::U32, ts, vr);
            let vrow = b.mad_wide(Type::U32, vpos0, d * 2, vthr);
            let rows = t_len.div_ceil(p.v_rows).next_multiple_of(tune.v);
            b.for_range(Type::U32, 0u32, rows, tune.v as i64, |b, kb| {
                let rel = b.mad(Type::U32, FMode::NONE, kb, p.v_rows, vrel);
                let ga = b.mad_wide(Type::U32, kb, p.v_rows * d * 2, vrow);
                let pa = b.mad(Type::U32, FMode::NONE, kb, p.v_rows * 4, svp);
                for u in 0..tune.v {
                    let r = if u == 0 {
                        rel
                    } else {
                        b.add(Type::U32, rel, p.v_rows * u)
                    };
                    let ok = b.setp(Cmp::Lo, Type::U32, r, len);
                    let vh = [b.mov(Type::B16, 0u32), b.mov(Type::B16, 0u32)];
                    let goff = (u * p.v_rows * d * 2) as i64;
                    b.when(ok).load_to(
                        StateSpace::Global,
                        Type::B16,
                        &vh,
                        Addr::reg_off(ga, goff),
                        &[CacheHint::NonCoherent],
                        None,
                    );
                    let v0 = b.cvt(Type::F32, Type::F16, FMode::NONE, vh[0]);
                    let v1 = b.cvt(Type::F32, Type::F16, FMode::NONE, vh[1]);
                    for (h, a) in acc.iter().enumerate() {
                        let pr = b.mov(Type::F32, 0.0f32);
                        let poff = ((h as u32 * t_len + u * p.v_rows) * 4) as i64;
                        b.when(ok)
                            .to(pr)
                            .ld_shared(Type::F32, Addr::reg_off(pa, poff));
                        b.to(a[0]).fma(pr, v0, a[0]);
                        b.to(a[1]).fma(pr, v1, a[1]);
                    }
                }
            });
        };
        match v_active {
            Some(pred) => b.if_then(pred, body),
            None => body(b),
        }
    });

    b.comment("partials: {m, l} from the softmax warps");
    for k in 0..owned {
        let write = match owns[k as usize] {
            Some(o) => b.and(Type::Pred, o, lane0),
            None => lane0,
        };
        let h = b.add(Type::U32, head0, warp);
        let h = b.add(Type::U32, h, WARPS * k);
        let idx = b.mad(Type::U32, FMode::NONE, h, p.n_chunks, chunk_idx);
        let a = b.mad_wide(Type::U32, idx, 8u32, mlp);
        b.when(write).store(
            StateSpace::Global,
            Type::F32,
            Addr::reg(a),
            &[run_max[k as usize].into(), run_sum[k as usize].into()],
            &[],
            None,
        );
    }

    if p.v_rows > 1 {
        b.comment("sum the V row groups in order 0, 1, ..., R-1 (shared buffer over the K tile)");
        let upper = b.setp(Cmp::Ge, Type::U32, vr, 1u32);
        let writes = both(&mut b, Some(upper), v_active).unwrap_or(upper);
        // red[(vr - 1)][h][d]: vr >= 1 here, so the base is (vr - 1) * G * D floats.
        let rbase0 = b.mad(Type::U32, FMode::NONE, vr, g * d * 4, kt_base);
        let rbase = b.mad(Type::U32, FMode::NONE, vdp, 8u32, rbase0);
        let stride = (g * d * 4) as i64;
        b.if_then(writes, |b| {
            for (h, a) in acc.iter().enumerate() {
                let off = (h as u32 * d * 4) as i64 - stride;
                b.store(
                    StateSpace::Shared,
                    Type::F32,
                    Addr::reg_off(rbase, off),
                    &[a[0].into(), a[1].into()],
                    &[],
                    None,
                );
            }
        });
        b.bar_sync(0);
        let first_group = b.setp(Cmp::Eq, Type::U32, vr, 0u32);
        b.if_then(first_group, |b| {
            for r in 1..p.v_rows {
                for (h, a) in acc.iter().enumerate() {
                    let off = ((r - 1) * g * d * 4 + h as u32 * d * 4) as i64;
                    let o = b.load(
                        StateSpace::Shared,
                        Type::F32,
                        2,
                        Addr::reg_off(rbase, off),
                        &[],
                        None,
                    );
                    b.to(a[0])
                        .bin(BinOp::Add, Type::F32, FMode::rn(), a[0], o[0]);
                    b.to(a[1])
                        .bin(BinOp::Add, Type::F32, FMode::rn(), a[1], o[1]);
                }
            }
        });
    }

    b.comment("partials: o of each head, from row group 0");
    let first_group = b.setp(Cmp::Eq, Type::U32, vr, 0u32);
    let op = vector_ptr(&mut b, &part_o, vi, s.partial_o_bytes());
    let oidx = b.mad(Type::U32, FMode::NONE, head0, p.n_chunks, chunk_idx);
    let oel0 = b.mul(Type::U32, oidx, d);
    let oel = b.mad(Type::U32, FMode::NONE, vdp, 2u32, oel0);
    let oa = b.mad_wide(Type::U32, oel, 4u32, op);
    b.if_then(first_group, |b| {
        for (h, a) in acc.iter().enumerate() {
            let off = (h as u64 * p.n_chunks as u64 * d as u64 * 4) as i64;
            b.store(
                StateSpace::Global,
                Type::F32,
                Addr::reg_off(oa, off),
                &[a[0].into(), a[1].into()],
                &[],
                None,
            );
        }
    });

    let kernel = b.finish()?;
    let ptx = crate::emit::emit_module(&Module::single(kernel));
    Ok(GeneratedKernel {
        name,
        ptx,
        launch: batch_launch_z(LaunchSpec::fixed(p.n_chunks, s.n_kv_heads, nt), s.m),
        params: {
            let mut params = split_params(s, &p);
            super::quantize_q8_1::batch_params(&mut params, s.m, &[]);
            params
        },
        spec,
        target,
    })
}

/// The factor q is multiplied by before the dot products: `scale * log2(e)`, or with a
/// soft-cap `2 * log2(e) * scale / cap` (the dot product is then the exponent of
/// `e^(2 logit / cap)` in base 2).
fn q_prescale(s: &DecodeAttention) -> f32 {
    match s.softcap {
        None => (s.scale as f64 * LOG2_E) as f32,
        Some(cap) => (2.0 * LOG2_E * s.scale as f64 / cap as f64) as f32,
    }
}

/// The base-2 logit `log2(e) * logit` from the prescaled dot product.
fn logit2(b: &mut KernelBuilder, s: &DecodeAttention, dot: Reg) -> Reg {
    match s.softcap {
        None => dot,
        Some(cap) => {
            // cap * tanh(y) with tanh(y) = 1 - 2 / (e^(2y) + 1) and dot = log2(e^(2y)).
            let e = emit_exp2(b, dot);
            let den = b.bin(BinOp::Add, Type::F32, FMode::rn(), e, 1.0f32);
            let r = b.un(UnOp::Rcp, Type::F32, FMode::rn(), den);
            let t = b.mad(Type::F32, FMode::rn(), r, -2.0f32, 1.0f32);
            let factor = s.softcap_factor().unwrap_or(cap);
            b.bin(BinOp::Mul, Type::F32, FMode::rn(), t, factor)
        }
    }
}

/// Copies the group's G query heads to shared memory (float4 per thread and pass), prescaled,
/// and zeroes the padding heads up to NS * HS.
#[allow(clippy::too_many_arguments)]
fn stage_q(
    b: &mut KernelBuilder,
    s: &DecodeAttention,
    p: &Plan,
    q: &crate::ir::Param,
    vi: Option<Reg>,
    kvh: Reg,
    tid: Reg,
    sbase: Reg,
    zero: Reg,
) {
    let nt = ATTENTION_THREADS;
    let real = p.g * p.d / 4;
    let all = p.heads_padded * p.d / 4;
    b.comment("q of the group, prescaled, to shared memory");
    let qp = vector_ptr(b, q, vi, s.n_heads as u64 * p.d as u64 * 4);
    let qg = b.mad_wide(Type::U32, kvh, p.g * p.d * 4, qp);
    let qthr = b.mad_wide(Type::U32, tid, 16u32, qg);
    let q_base = b.add(Type::U32, sbase, p.q_off);
    let sq = b.mad(Type::U32, FMode::NONE, tid, 16u32, q_base);
    let factor = q_prescale(s);
    for k in 0..all.div_ceil(nt) {
        let first = k * nt;
        let vals: Vec<Reg> = if first >= real {
            vec![zero; 4]
        } else {
            let regs = if first + nt > real {
                let regs: Vec<Reg> = (0..4).map(|_| b.mov(Type::F32, 0.0f32)).collect();
                let has = b.setp(Cmp::Lt, Type::U32, tid, real - first);
                b.when(has).load_to(
                    StateSpace::Global,
                    Type::F32,
                    &regs,
                    Addr::reg_off(qthr, (first * 16) as i64),
                    &[CacheHint::NonCoherent],
                    None,
                );
                regs
            } else {
                b.load(
                    StateSpace::Global,
                    Type::F32,
                    4,
                    Addr::reg_off(qthr, (first * 16) as i64),
                    &[CacheHint::NonCoherent],
                    None,
                )
            };
            regs.iter()
                .map(|r| b.bin(BinOp::Mul, Type::F32, FMode::rn(), *r, factor))
                .collect()
        };
        if first + nt > all {
            let inside = b.setp(Cmp::Lt, Type::U32, tid, all - first);
            b.when(inside);
        }
        let src: Vec<Value> = vals.iter().map(|r| Value::Reg(*r)).collect();
        b.store(
            StateSpace::Shared,
            Type::F32,
            Addr::reg_off(sq, (first * 16) as i64),
            &src,
            &[],
            None,
        );
    }
}

fn split_params(s: &DecodeAttention, p: &Plan) -> Vec<ParamSpec> {
    let (h, kv, d, ctx, nc) = (s.n_heads, s.n_kv_heads, s.head_dim, s.max_ctx, p.n_chunks);
    vec![
        ParamSpec::buffer("q", format!("f32[{h}][{d}]"), h as u64 * d as u64 * 4, 16, Access::Read, "query of the token (RoPE applied)"),
        ParamSpec::buffer(
            "k_cache",
            format!("f16[{kv}][{ctx}][{d}]"),
            s.cache_bytes(),
            8,
            Access::Read,
            "K cache of the layer; only positions [lo, seq_len) are read",
        ),
        ParamSpec::buffer(
            "v_cache",
            format!("f16[{kv}][{ctx}][{d}]"),
            s.cache_bytes(),
            4,
            Access::Read,
            "V cache of the layer; only positions [lo, seq_len) are read",
        ),
        ParamSpec::buffer(
            "seq_len",
            "u32[1]".to_string(),
            4,
            4,
            Access::Read,
            "number of valid positions (1..=max_ctx; larger values are clamped to max_ctx)",
        ),
        ParamSpec::buffer(
            "part_o",
            format!("f32[{h}][{nc}][{d}]"),
            s.partial_o_bytes(),
            8,
            Access::Write,
            "per head and chunk: sum over the chunk's attended p of 2^(s_p - m) * v_p; not written for chunks with no attended position",
        ),
        ParamSpec::buffer(
            "part_ml",
            format!("f32[{h}][{nc}][2]"),
            s.partial_ml_bytes(),
            8,
            Access::Write,
            "per head and chunk: {m, l}, m = max s_p, l = sum 2^(s_p - m), s_p = log2(e) * logit_p; {-inf, 0} for chunks with no attended position",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn llama() -> DecodeAttention {
        DecodeAttention::samples()[0]
    }

    #[test]
    fn every_sample_is_valid_and_generates() {
        for s in DecodeAttention::samples() {
            s.validate().unwrap();
            let k = generate(&s, Target::sm(61)).unwrap_or_else(|e| panic!("{s:?}: {e}"));
            assert!(
                k.ptx.contains(&format!(".entry {}(", s.name())),
                "{}",
                k.name
            );
        }
    }

    #[test]
    fn names_encode_every_field() {
        let s = llama();
        // 8192 positions: 128-position chunks (256 only past 8192).
        assert_eq!(s.name(), "attn_split_h32_kv8_d128_ctx8192_c128_s3db504f3");
        let w = DecodeAttention {
            window: Some(4096),
            softcap: Some(50.0),
            n_kv_heads: 2,
            n_heads: 8,
            ..s
        };
        assert_eq!(
            w.name(),
            "attn_split_h8_kv2_d128_ctx8192_c128_s3db504f3_w4096_cap42480000"
        );
    }

    #[test]
    fn bad_specs_are_typed_errors() {
        let s = llama();
        let field = |e: GenError| match e {
            GenError::InvalidSpec { field, .. } => field,
            other => panic!("{other}"),
        };
        let bad = |t: DecodeAttention| field(t.validate().unwrap_err());
        assert_eq!(bad(DecodeAttention { head_dim: 72, ..s }), "head_dim");
        assert_eq!(bad(DecodeAttention { head_dim: 512, ..s }), "head_dim");
        assert_eq!(bad(DecodeAttention { n_heads: 30, ..s }), "n_heads");
        assert_eq!(
            bad(DecodeAttention {
                n_heads: 34,
                n_kv_heads: 2,
                ..s
            }),
            "n_heads / n_kv_heads"
        );
        assert_eq!(bad(DecodeAttention { max_ctx: 0, ..s }), "max_ctx");
        assert_eq!(
            bad(DecodeAttention {
                scale: f32::NAN,
                ..s
            }),
            "scale"
        );
        assert_eq!(
            bad(DecodeAttention {
                window: Some(0),
                ..s
            }),
            "window"
        );
        assert_eq!(
            bad(DecodeAttention {
                softcap: Some(-1.0),
                ..s
            }),
            "softcap"
        );
    }

    #[test]
    fn every_allowed_shape_has_a_plan_within_static_shared_memory() {
        for g in 1..=ATTENTION_MAX_GROUP {
            for d in (32..=256).step_by(16) {
                let s = DecodeAttention {
                    n_heads: g * 2,
                    n_kv_heads: 2,
                    head_dim: d,
                    ..llama()
                };
                let p = Plan::new(&s, s.tune()).unwrap_or_else(|| panic!("g {g} d {d}"));
                assert!(p.smem_bytes <= SMEM_BUDGET);
                assert!(p.tile >= 32 && p.tile * p.sets == ATTENTION_THREADS);
                assert!(p.heads_padded >= g && p.v_rows >= 1 && p.stage_rows >= 1);
                assert_eq!(p.units % p.score_step, 0, "g {g} d {d}");
            }
        }
    }

    #[test]
    fn the_grid_is_fixed_and_covers_every_chunk() {
        let s = DecodeAttention {
            max_ctx: 4097,
            ..llama()
        };
        let k = generate(&s, Target::sm(80)).unwrap();
        // 4097 positions in chunks of 128: 33 chunks, the last holding one position.
        assert_eq!(k.launch, LaunchSpec::fixed(33, 8, ATTENTION_THREADS));
        assert_eq!(s.combine().n_chunks(), 33);
        // Past 8192 positions, chunks of 256.
        let long = DecodeAttention {
            max_ctx: 8193,
            ..llama()
        };
        assert_eq!(long.chunk(), 256);
        assert_eq!(long.n_chunks(), 33);
        // Short caches: at most 64 chunks, of at least 32 positions.
        let chunk_of = |max_ctx| DecodeAttention { max_ctx, ..llama() }.chunk();
        assert_eq!(
            [1, 513, 2048, 2049, 4096, 1 << 20].map(chunk_of),
            [32, 32, 32, 64, 64, 256]
        );
    }

    #[test]
    fn static_checks_find_nothing() {
        // In particular: every bar.sync is in block-uniform control flow.
        for s in DecodeAttention::samples() {
            for spec in [
                KernelSpec::Attention(s),
                KernelSpec::AttentionCombine(s.combine()),
            ] {
                let k = crate::kernels::generate(&spec, Target::sm(61)).unwrap();
                let m = crate::parse::parse_module(&k.ptx).unwrap();
                let findings = crate::check::check_module(&m);
                assert!(findings.is_empty(), "{}: {findings:?}", k.name);
            }
        }
    }

    #[test]
    fn output_is_deterministic() {
        for s in DecodeAttention::samples() {
            assert_eq!(
                generate(&s, Target::sm(90)).unwrap().ptx,
                generate(&s, Target::sm(90)).unwrap().ptx
            );
        }
    }
}
