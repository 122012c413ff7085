//! Embedding row lookup: `y = dequantize(table[token]) * scale` for one token whose id is
//! read from device memory (so a decode step can be replayed as a CUDA graph).
//!
//! The table is stored exactly as GGUF stores it: `vocab` rows of `hidden` values, each row
//! `hidden / block_values` GGML blocks (F32/F16: plain values). Every thread produces four
//! consecutive values (fewer for F32/F16 rows whose length is not a multiple of 4) and
//! writes them with one vector store. Dequantization mirrors the float operation order of
//! GGML's CPU `dequantize_row_*` with IEEE-rounded `mul.rn`/`sub.rn` (never contracted into
//! an FMA), so the result equals a CPU dequantization bit for bit:
//!
//! - Q8_0 `{f16 d; i8 qs[32]}` (34 bytes): `y = q * d`.
//! - Q4_K `{f16 d; f16 dmin; u8 scales[12]; u8 qs[128]}` (144 bytes): for sub-block `is`
//!   (32 values) with 6-bit `sc, m` unpacked as `get_scale_min_k4`: `y = (d * sc) * q - dmin * m`.
//! - Q6_K `{u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}` (210 bytes):
//!   `y = (d * scales[i / 16]) * (q6 - 32)`.
//! - F16: the exact conversion; F32: a copy.
//!
//! Then, when `scale != 1`, `y = y * scale` (`mul.rn`, Gemma's `sqrt(hidden)` rounded to f32).
//!
//! A token id `>= vocab` reads nothing from the table and writes NaN to every output value,
//! so a bad id is visible downstream instead of silently embedding another token.

use std::fmt;
use std::str::FromStr;

use crate::ast::{StateSpace, Type};
use crate::ir::{Addr, BinOp, CacheHint, Cmp, FMode, KernelBuilder, Module, Reg, Sreg, Value};
use crate::launch::LaunchSpec;
use crate::parity::BatchDecl;
use crate::target::Target;

use super::quantize_q8_1::{
    batch_describe, batch_launch, batch_params, batch_suffix, batch_vector, cli_batch, grid_decl,
    is_one, one, validate_batch, vector_ptr,
};

use super::spec::{cli_dim, cli_max, invalid, Access, FamilySpec, GenError, KernelSpec, ParamSpec};
use super::GeneratedKernel;

/// Longest row the kernel takes (its byte size must fit the 32-bit row-stride immediate).
pub const EMBED_MAX_HIDDEN: u32 = 1 << 20;

/// The bits of the NaN written for an out-of-range token id (the canonical quiet NaN).
pub const EMBED_BAD_TOKEN_BITS: u32 = 0x7fc0_0000;

/// Threads per block.
const THREADS: u32 = 128;

/// How the rows of an embedding table are stored (GGML types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum EmbedTable {
    #[serde(rename = "f32")]
    F32,
    #[serde(rename = "f16")]
    F16,
    #[serde(rename = "q8_0")]
    Q8_0,
    #[serde(rename = "q4_k")]
    Q4K,
    #[serde(rename = "q6_k")]
    Q6K,
}

impl EmbedTable {
    pub const ALL: [EmbedTable; 5] = [
        EmbedTable::F32,
        EmbedTable::F16,
        EmbedTable::Q8_0,
        EmbedTable::Q4K,
        EmbedTable::Q6K,
    ];

    /// Values per block (1 for the float types).
    pub const fn block_values(self) -> u32 {
        match self {
            EmbedTable::F32 | EmbedTable::F16 => 1,
            EmbedTable::Q8_0 => 32,
            EmbedTable::Q4K | EmbedTable::Q6K => 256,
        }
    }

    /// Bytes per block.
    pub const fn block_bytes(self) -> u32 {
        match self {
            EmbedTable::F32 => 4,
            EmbedTable::F16 => 2,
            EmbedTable::Q8_0 => 34,
            EmbedTable::Q4K => 144,
            EmbedTable::Q6K => 210,
        }
    }

    /// Bytes of one row of `hidden` values (`hidden` a multiple of the block).
    pub const fn row_bytes(self, hidden: u32) -> u64 {
        (hidden / self.block_values()) as u64 * self.block_bytes() as u64
    }

    /// The GGML name (`Q4_K`).
    pub const fn ggml_name(self) -> &'static str {
        match self {
            EmbedTable::F32 => "F32",
            EmbedTable::F16 => "F16",
            EmbedTable::Q8_0 => "Q8_0",
            EmbedTable::Q4K => "Q4_K",
            EmbedTable::Q6K => "Q6_K",
        }
    }

    /// The short form used in kernel names.
    const fn tag(self) -> &'static str {
        match self {
            EmbedTable::F32 => "f32",
            EmbedTable::F16 => "f16",
            EmbedTable::Q8_0 => "q8_0",
            EmbedTable::Q4K => "q4k",
            EmbedTable::Q6K => "q6k",
        }
    }

    /// Alignment in bytes the table pointer needs: the widest load of the row's layout
    /// (quantized blocks of 34 and 210 bytes only allow 16-bit loads; Q4_K loads 32 bits).
    fn align(self, hidden: u32) -> u32 {
        match self {
            EmbedTable::F32 => 4 * float_vec(hidden),
            EmbedTable::F16 => 2 * float_vec(hidden),
            EmbedTable::Q8_0 | EmbedTable::Q6K => 2,
            EmbedTable::Q4K => 4,
        }
    }
}

impl fmt::Display for EmbedTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.ggml_name())
    }
}

impl FromStr for EmbedTable {
    type Err = String;

    /// `F32`, `F16`, `Q8_0`, `Q4_K`, `Q6_K` in any case (`q4k`, `q6k` also).
    fn from_str(s: &str) -> Result<EmbedTable, String> {
        let lower = s.to_ascii_lowercase();
        EmbedTable::ALL
            .into_iter()
            .find(|t| lower == t.ggml_name().to_ascii_lowercase() || lower == t.tag())
            .ok_or_else(|| {
                format!("table type must be one of F32, F16, Q8_0, Q4_K, Q6_K, got `{s}`")
            })
    }
}

/// Values a thread loads of an F32/F16 row: 4, 2 or 1, whichever divides the row (so every
/// row starts aligned for the vector load).
fn float_vec(hidden: u32) -> u32 {
    [4, 2, 1].into_iter().find(|v| hidden % v == 0).unwrap_or(1)
}

/// Embedding row lookup of one token: `y = dequantize(table[token]) * scale`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Embed {
    pub table: EmbedTable,
    pub vocab: u32,
    pub hidden: u32,
    /// Multiplies every value after dequantization (1.0: none; Gemma: `sqrt(hidden)`).
    pub scale: f32,
    /// Vectors per launch (1: single; up to 16, one per `%ctaid.y`): vector v reads
    /// `token[v]` and writes `y[v]`; the table is shared.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub m: u32,
}

impl Embed {
    /// Values each thread produces (and stores with one vector store).
    pub fn values_per_thread(&self) -> u32 {
        match self.table {
            EmbedTable::F32 | EmbedTable::F16 => float_vec(self.hidden),
            // Every quantized block holds a multiple of 4 values.
            _ => 4,
        }
    }
}

impl FamilySpec for Embed {
    const FAMILY: &'static str = "embed";
    const CLI_DIMS: &'static str =
        "TYPE VOCAB HIDDEN [SCALE] [M]: y = dequant(table[token]) * scale; TYPE F32|F16|Q8_0|Q4_K|Q6_K, SCALE 1 by default, M 1..=16 tokens (default 1)";

    fn from_cli(dims: &[String]) -> Result<Self, String> {
        cli_max(dims, 5)?;
        let table = dims.first().ok_or("missing TYPE")?.parse()?;
        Ok(Embed {
            table,
            vocab: cli_dim(dims, 1, "VOCAB", None)?,
            hidden: cli_dim(dims, 2, "HIDDEN", None)?,
            scale: cli_dim(dims, 3, "SCALE", Some(1.0))?,
            m: cli_batch(dims, 4)?,
        })
    }

    fn name(&self) -> String {
        let mut n = format!(
            "embed_{}_v{}_h{}",
            self.table.tag(),
            self.vocab,
            self.hidden
        );
        if self.scale != 1.0 {
            n.push_str(&format!("_s{:08x}", self.scale.to_bits()));
        }
        n.push_str(&batch_suffix(self.m));
        n
    }

    fn describe(&self) -> String {
        format!(
            "embed: {}[{} x {}] row lookup by a device-side u32 token -> f32[{}], scale = {} (0x{:08x}) applied after dequantization; token >= {} writes NaN{}",
            self.table,
            self.vocab,
            self.hidden,
            self.hidden,
            self.scale,
            self.scale.to_bits(),
            self.vocab,
            batch_describe(self.m)
        )
    }

    fn validate(&self) -> Result<(), GenError> {
        let bv = self.table.block_values();
        if self.hidden == 0 || self.hidden % bv != 0 || self.hidden > EMBED_MAX_HIDDEN {
            let expected = if bv == 1 {
                format!("in 1..={EMBED_MAX_HIDDEN}")
            } else {
                format!(
                    "a positive multiple of {bv} (the {} block) up to {EMBED_MAX_HIDDEN}",
                    self.table
                )
            };
            return Err(invalid(Self::FAMILY, "hidden", &expected, self.hidden));
        }
        if self.vocab == 0 {
            return Err(invalid(Self::FAMILY, "vocab", "at least 1", self.vocab));
        }
        if !self.scale.is_finite() {
            return Err(invalid(
                Self::FAMILY,
                "scale",
                "a finite number",
                self.scale,
            ));
        }
        validate_batch(Self::FAMILY, self.m)
    }

    fn generate(&self, target: Target) -> Result<GeneratedKernel, GenError> {
        generate(self, target)
    }

    fn samples() -> Vec<Self> {
        use EmbedTable::*;
        let gemma = (640f32).sqrt();
        [
            // llama3-8b
            (Q4K, 128256, 4096, 1.0),
            (Q6K, 128256, 4096, 1.0),
            (Q8_0, 128256, 4096, 1.0),
            (F16, 128256, 4096, 1.0),
            // qwen2.5-0.5b
            (Q8_0, 151936, 896, 1.0),
            (F16, 151936, 896, 1.0),
            // gemma3-270m: 640 is not a multiple of 256, so no K-quant table
            (Q8_0, 262144, 640, gemma),
            (F16, 262144, 640, gemma),
            (F32, 262144, 640, gemma),
            // smollm2-135m
            (Q8_0, 49152, 576, 1.0),
            (F32, 49152, 576, 1.0),
            // edges: one block, odd float rows, one-row tables
            (Q4K, 1, 256, 1.0),
            (Q6K, 3, 768, 2.5),
            (Q8_0, 7, 32, 1.0),
            (F16, 5, 33, 1.0),
            (F32, 2, 6, 0.5),
            (F32, 1, 1, 1.0),
            (F16, 1000, 4098, 1.0),
        ]
        .map(|(table, vocab, hidden, scale)| Embed {
            table,
            vocab,
            hidden,
            scale,
            m: 1,
        })
        .into_iter()
        .chain(
            [
                (Q4K, 128256, 4096, 1.0, 2),
                (Q8_0, 262144, 640, gemma, 16),
                (F16, 5, 33, 1.0, 3),
            ]
            .map(|(table, vocab, hidden, scale, m)| Embed {
                table,
                vocab,
                hidden,
                scale,
                m,
            }),
        )
        .collect()
    }

    fn batched(&self, m: u32) -> Option<Self> {
        let b = Self { m, ..*self };
        (self.m == 1 && b.validate().is_ok()).then_some(b)
    }

    /// Vector v reads `token + 4 v` and writes `y + v * hidden * 4`; the table is shared.
    fn batch_decl(&self) -> Option<BatchDecl> {
        grid_decl(
            self.m,
            &[
                (
                    "table",
                    self.vocab as u64 * self.table.row_bytes(self.hidden),
                ),
                ("token", 4),
                ("y", self.hidden as u64 * 4),
            ],
            &["table"],
        )
    }
}

fn generate(s: &Embed, target: Target) -> Result<GeneratedKernel, GenError> {
    let spec = KernelSpec::Embed(*s);
    let name = spec.name();
    let vec = s.values_per_thread();
    let chunks = s.hidden / vec;
    let threads = (chunks.div_ceil(32) * 32).min(THREADS);
    let grid = chunks.div_ceil(threads);
    let row_bytes = s.table.row_bytes(s.hidden);
    let mut b = KernelBuilder::new(&name, target);
    b.header_comment(&spec.describe());
    b.header_comment(&format!(
        "launch: grid {grid} x {} x 1, block {threads} x 1 x 1; each thread writes {vec} value(s)",
        s.m
    ));
    b.max_threads(threads);
    let table = b.param(Type::U64, "table");
    let token = b.param(Type::U64, "token");
    let y = b.param(Type::U64, "y");

    let tid = b.special(Sreg::TidX);
    let cta = b.special(Sreg::CtaidX);
    // The thread's chunk: values [c * vec, c * vec + vec) of the row.
    let c = b.mad(Type::U32, FMode::NONE, cta, threads, tid);
    if chunks % threads != 0 {
        let past = b.setp(Cmp::Ge, Type::U32, c, chunks);
        b.return_if(past);
    }
    let vi = batch_vector(&mut b, s.m);
    let tp = vector_ptr(&mut b, &token, vi, 4);
    let yp = vector_ptr(&mut b, &y, vi, s.hidden as u64 * 4);
    let ya = b.mad_wide(Type::U32, c, vec * 4, yp);
    let tok = b.ld_global(Type::U32, Addr::reg(tp));
    let bad = b.setp(Cmp::Ge, Type::U32, tok, s.vocab);
    b.if_then(bad, |b| {
        let nan = vec![Value::F32(EMBED_BAD_TOKEN_BITS); vec as usize];
        b.store(
            StateSpace::Global,
            Type::F32,
            Addr::reg(ya),
            &nan,
            &[],
            None,
        );
        b.ret();
    });
    let tab = b.global_ptr(&table);
    // row_bytes <= 4 * EMBED_MAX_HIDDEN fits the 32-bit immediate of mad.wide.u32.
    let rowp = b.mad_wide(Type::U32, tok, row_bytes as u32, tab);
    let values = match s.table {
        EmbedTable::F32 => {
            let a = b.mad_wide(Type::U32, c, vec * 4, rowp);
            load_nc(&mut b, Type::F32, vec as usize, Addr::reg(a))
        }
        EmbedTable::F16 => {
            let a = b.mad_wide(Type::U32, c, vec * 2, rowp);
            let h = load_nc(&mut b, Type::B16, vec as usize, Addr::reg(a));
            h.iter()
                .map(|r| b.cvt(Type::F32, Type::F16, FMode::NONE, *r))
                .collect()
        }
        EmbedTable::Q8_0 => dequant_q8_0(&mut b, rowp, c),
        EmbedTable::Q4K => dequant_q4_k(&mut b, rowp, c),
        EmbedTable::Q6K => dequant_q6_k(&mut b, rowp, c),
    };
    let out: Vec<Value> = values
        .into_iter()
        .map(|v| {
            if s.scale == 1.0 {
                Value::Reg(v)
            } else {
                Value::Reg(b.bin(BinOp::Mul, Type::F32, FMode::rn(), v, s.scale))
            }
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
    let kernel = b.finish()?;
    let ptx = crate::emit::emit_module(&Module::single(kernel));
    let table_layout = match s.table {
        EmbedTable::F32 | EmbedTable::F16 => {
            format!("{}[{} x {}]", s.table.tag(), s.vocab, s.hidden)
        }
        t => format!(
            "block_{}[{} x {}] ({}-byte GGML blocks, row r at byte r * {row_bytes})",
            t.ggml_name(),
            s.vocab,
            s.hidden / t.block_values(),
            t.block_bytes()
        ),
    };
    let params = embed_params(s, table_layout, row_bytes, vec);
    Ok(GeneratedKernel {
        name,
        ptx,
        launch: batch_launch(LaunchSpec::fixed(grid, 1, threads), s.m),
        params,
        spec,
        target,
    })
}

fn embed_params(s: &Embed, table_layout: String, row_bytes: u64, vec: u32) -> Vec<ParamSpec> {
    let mut params = vec![
        ParamSpec::buffer(
            "table",
            table_layout,
            s.vocab as u64 * row_bytes,
            s.table.align(s.hidden),
            Access::Read,
            "embedding table as stored in GGUF (token_embd.weight)",
        ),
        ParamSpec::buffer(
            "token",
            "u32[1]".to_string(),
            4,
            4,
            Access::Read,
            "token id, read on the device; an id >= vocab makes every output NaN",
        ),
        ParamSpec::buffer(
            "y",
            format!("f32[{}]", s.hidden),
            s.hidden as u64 * 4,
            vec * 4,
            Access::Write,
            "the token's embedding, dequantized and scaled",
        ),
    ];
    batch_params(&mut params, s.m, &["table"]);
    params
}

/// A read-only (`.nc`) global load of `width` elements of `ty`.
fn load_nc(b: &mut KernelBuilder, ty: Type, width: usize, addr: Addr) -> Vec<Reg> {
    b.load(
        StateSpace::Global,
        ty,
        width,
        addr,
        &[CacheHint::NonCoherent],
        None,
    )
}

/// A read-only load of one `ty` value into a fresh 32-bit register of `reg_ty`
/// (zero- or sign-extended as `ty` says).
fn load_nc32(b: &mut KernelBuilder, ty: Type, reg_ty: Type, addr: Addr) -> Reg {
    let r = b.reg(reg_ty);
    b.load_to(
        StateSpace::Global,
        ty,
        &[r],
        addr,
        &[CacheHint::NonCoherent],
        None,
    );
    r
}

/// The four bytes at `addr` (2-byte aligned) as one word, lowest byte first: two 16-bit
/// loads, since 34- and 210-byte blocks leave only 2-byte alignment.
fn load_word_2aligned(b: &mut KernelBuilder, addr: Addr) -> Reg {
    let lo = load_nc32(b, Type::U16, Type::U32, addr.clone());
    let hi = load_nc32(b, Type::U16, Type::U32, addr.plus(2));
    b.bfi(Type::B32, hi, lo, 16u32, 16u32)
}

/// The f16 at `addr` as f32 (exact).
fn load_f16(b: &mut KernelBuilder, addr: Addr) -> Reg {
    let h = load_nc(b, Type::B16, 1, addr)[0];
    b.cvt(Type::F32, Type::F16, FMode::NONE, h)
}

/// `base + off` for a 32-bit byte offset.
fn offset(b: &mut KernelBuilder, base: Reg, off: Reg) -> Reg {
    let wide = b.cvt(Type::U64, Type::U32, FMode::NONE, off);
    b.add(Type::U64, base, wide)
}

/// `shift + byte_bits` (just `shift` for the first byte).
fn bit_pos(b: &mut KernelBuilder, shift: Reg, byte_bits: u32) -> Value {
    if byte_bits == 0 {
        Value::Reg(shift)
    } else {
        Value::Reg(b.add(Type::U32, shift, byte_bits))
    }
}

fn mul_rn(b: &mut KernelBuilder, x: Reg, y: Reg) -> Reg {
    b.bin(BinOp::Mul, Type::F32, FMode::rn(), x, y)
}

/// Q8_0, values 4c..4c+4 of the row: block c / 8, quants 4 * (c % 8).. of it.
/// `y = q * d` (`dequantize_row_q8_0`).
fn dequant_q8_0(b: &mut KernelBuilder, rowp: Reg, c: Reg) -> Vec<Reg> {
    let blk = b.shr(Type::U32, c, 3u32);
    let bp = b.mad_wide(Type::U32, blk, 34u32, rowp);
    let d = load_f16(b, Addr::reg(bp));
    let sub = b.and(Type::B32, c, 7u32);
    let qa = b.mad_wide(Type::U32, sub, 4u32, bp);
    let w = load_word_2aligned(b, Addr::reg_off(qa, 2));
    (0..4u32)
        .map(|k| {
            let q = b.bfe(Type::S32, w, 8 * k, 8u32);
            let qf = b.cvt(Type::F32, Type::S32, FMode::rn(), q);
            mul_rn(b, qf, d)
        })
        .collect()
}

/// Q4_K, values 4c..4c+4 of the row: block c / 64; sub-block `is = (c / 8) % 8` of 32
/// values; its quants are the low (even `is`) or high (odd `is`) nibbles of
/// `qs[32 * (is / 2) + 4 * (c % 8)..]`. `y = (d * sc) * q - dmin * m` (`dequantize_row_q4_K`).
fn dequant_q4_k(b: &mut KernelBuilder, rowp: Reg, c: Reg) -> Vec<Reg> {
    let blk = b.shr(Type::U32, c, 6u32);
    let bp = b.mad_wide(Type::U32, blk, 144u32, rowp);
    let dm = load_nc(b, Type::B16, 2, Addr::reg(bp));
    let d = b.cvt(Type::F32, Type::F16, FMode::NONE, dm[0]);
    let dmin = b.cvt(Type::F32, Type::F16, FMode::NONE, dm[1]);

    // get_scale_min_k4(is): with k = is % 4 and bytes b0 = scales[k], b1 = scales[k + 4],
    // b2 = scales[k + 8]: is < 4: sc = b0 & 63, m = b1 & 63;
    // is >= 4: sc = (b2 & 15) | (b0 >> 6) << 4, m = (b2 >> 4) | (b1 >> 6) << 4.
    let is = b.bfe(Type::U32, c, 3u32, 3u32);
    let k = b.and(Type::B32, is, 3u32);
    let sa = offset(b, bp, k);
    let b0 = load_nc32(b, Type::U8, Type::U32, Addr::reg_off(sa, 4));
    let b1 = load_nc32(b, Type::U8, Type::U32, Addr::reg_off(sa, 8));
    let b2 = load_nc32(b, Type::U8, Type::U32, Addr::reg_off(sa, 12));
    let sc_lo = b.and(Type::B32, b0, 63u32);
    let m_lo = b.and(Type::B32, b1, 63u32);
    let b0_hi = b.shr(Type::U32, b0, 6u32);
    let b1_hi = b.shr(Type::U32, b1, 6u32);
    let b2_lo = b.and(Type::B32, b2, 15u32);
    let b2_hi = b.shr(Type::U32, b2, 4u32);
    let sc_hi = b.bfi(Type::B32, b0_hi, b2_lo, 4u32, 2u32);
    let m_hi = b.bfi(Type::B32, b1_hi, b2_hi, 4u32, 2u32);
    let upper = b.setp(Cmp::Ge, Type::U32, is, 4u32);
    let sc = b.selp(Type::U32, sc_hi, sc_lo, upper);
    let m = b.selp(Type::U32, m_hi, m_lo, upper);
    let scf = b.cvt(Type::F32, Type::U32, FMode::rn(), sc);
    let mf = b.cvt(Type::F32, Type::U32, FMode::rn(), m);
    let d1 = mul_rn(b, d, scf);
    let m1 = mul_rn(b, dmin, mf);

    // qs starts at byte 16 of the block.
    let pair = b.bfe(Type::U32, c, 4u32, 2u32);
    let l = b.and(Type::B32, c, 7u32);
    let l4 = b.shl(Type::B32, l, 2u32);
    let qoff = b.mad(Type::U32, FMode::NONE, pair, 32u32, l4);
    let qa = offset(b, bp, qoff);
    let w = load_nc32(b, Type::U32, Type::U32, Addr::reg_off(qa, 16));
    let odd = b.bfe(Type::U32, c, 3u32, 1u32);
    let shift = b.shl(Type::B32, odd, 2u32);
    (0..4u32)
        .map(|k| {
            let pos = bit_pos(b, shift, 8 * k);
            let q = b.bfe(Type::U32, w, pos, 4u32);
            let qf = b.cvt(Type::F32, Type::U32, FMode::rn(), q);
            let dq = mul_rn(b, d1, qf);
            b.bin(BinOp::Sub, Type::F32, FMode::rn(), dq, m1)
        })
        .collect()
}

/// Q6_K, values 4c..4c+4 of the row: block c / 64; within it value v = 4 * (c % 64) is in
/// half n = v / 128, group g = (v % 128) / 32, position l = v % 32: its low 4 bits are
/// nibble g / 2 of `ql[64n + 32 (g % 2) + l]`, its high 2 bits are bits 2g.. of
/// `qh[32n + l]`, its scale is `scales[v / 16]`. `y = (d * scale) * (q6 - 32)`
/// (`dequantize_row_q6_K`).
fn dequant_q6_k(b: &mut KernelBuilder, rowp: Reg, c: Reg) -> Vec<Reg> {
    let blk = b.shr(Type::U32, c, 6u32);
    let bp = b.mad_wide(Type::U32, blk, 210u32, rowp);
    let d = load_f16(b, Addr::reg_off(bp, 208));
    let si = b.bfe(Type::U32, c, 2u32, 4u32);
    let sa = offset(b, bp, si);
    let sc = load_nc32(b, Type::S8, Type::S32, Addr::reg_off(sa, 192));
    let scf = b.cvt(Type::F32, Type::S32, FMode::rn(), sc);
    let ds = mul_rn(b, d, scf);

    let n = b.bfe(Type::U32, c, 5u32, 1u32);
    let g = b.bfe(Type::U32, c, 3u32, 2u32);
    let l = b.and(Type::B32, c, 7u32);
    let l4 = b.shl(Type::B32, l, 2u32);
    let g_odd = b.and(Type::B32, g, 1u32);
    let ql_off = b.mad(Type::U32, FMode::NONE, n, 64u32, l4);
    let ql_off = b.mad(Type::U32, FMode::NONE, g_odd, 32u32, ql_off);
    let qh_off = b.mad(Type::U32, FMode::NONE, n, 32u32, l4);
    let qla = offset(b, bp, ql_off);
    let qha = offset(b, bp, qh_off);
    let wl = load_word_2aligned(b, Addr::reg(qla));
    let wh = load_word_2aligned(b, Addr::reg_off(qha, 128));
    let g_hi = b.shr(Type::U32, g, 1u32);
    let ql_shift = b.shl(Type::B32, g_hi, 2u32);
    let qh_shift = b.shl(Type::B32, g, 1u32);
    (0..4u32)
        .map(|k| {
            let lp = bit_pos(b, ql_shift, 8 * k);
            let hp = bit_pos(b, qh_shift, 8 * k);
            let lo = b.bfe(Type::U32, wl, lp, 4u32);
            let hi = b.bfe(Type::U32, wh, hp, 2u32);
            let q = b.bfi(Type::B32, hi, lo, 4u32, 2u32);
            let qs = b.sub(Type::S32, q, 32);
            let qf = b.cvt(Type::F32, Type::S32, FMode::rn(), qs);
            mul_rn(b, ds, qf)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_must_be_a_multiple_of_the_block() {
        let e = Embed {
            table: EmbedTable::Q4K,
            vocab: 10,
            hidden: 640,
            scale: 1.0,
            m: 1,
        }
        .validate()
        .unwrap_err();
        assert!(
            matches!(
                e,
                GenError::InvalidSpec {
                    field: "hidden",
                    ..
                }
            ),
            "{e}"
        );
        assert!(
            e.to_string().contains("multiple of 256 (the Q4_K block)"),
            "{e}"
        );
        let e = Embed {
            table: EmbedTable::F32,
            vocab: 0,
            hidden: 64,
            scale: 1.0,
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
    fn names_encode_the_spec_and_the_cli_parses_types() {
        let s = Embed::from_cli(&["Q4_K".into(), "128256".into(), "4096".into()]).unwrap();
        assert_eq!(s.name(), "embed_q4k_v128256_h4096");
        let s =
            Embed::from_cli(&["q8_0".into(), "262144".into(), "640".into(), "2".into()]).unwrap();
        assert_eq!(s.name(), "embed_q8_0_v262144_h640_s40000000");
        assert!(Embed::from_cli(&["q5_0".into(), "1".into(), "32".into()]).is_err());
    }

    #[test]
    fn sample_kernels_pass_the_static_checks() {
        for s in Embed::samples() {
            let k = crate::generate(&KernelSpec::Embed(s), Target::sm(90)).unwrap();
            let m = crate::parse::parse_module(&k.ptx).unwrap();
            let findings = crate::check::check_module(&m);
            assert!(findings.is_empty(), "{}: {findings:?}", k.name);
            assert!(!k.ptx.contains("fma"), "{}: no fused multiply-add", k.name);
        }
    }
}
