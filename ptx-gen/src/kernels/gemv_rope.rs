//! RoPE and the KV cache write folded into the epilogue of the GEMV that computes Q, K and V
//! in one launch ([`Gemv::rope`](super::Gemv::rope)): one launch per layer fewer than the
//! GEMV followed by `rope_kv`, with the same bits.
//!
//! The launch's three matrices are Q (`n_heads * head_dim` rows), K and V (`n_kv_heads *
//! head_dim` rows each). The tile's rows go in pairs: a pair's two dot products end up in one
//! thread when the tile gives each group an even number of rows ([`Pairing::InThread`]), or
//! one row each to two groups of one thread block whose sums meet in shared memory anyway
//! ([`Pairing::AcrossGroups`]: the even group's first thread adds the odd group's partial sums
//! too, in the same order as that group would). Tile rows `(2i, 2i + 1)` of a head are its
//! rotation pair i: dims `(2i, 2i + 1)` in the `norm` style; in the `neox` style dims
//! `(i, i + rope_dims / 2)` for `i < rope_dims / 2`, and past the rotated dims the
//! pass-through dims in order ([`physical_row`]). Which thread computes a row does not change
//! how it is computed, so every row has the bits of the plain GEMV.
//!
//! What the writer thread of a pair does with the two rows' values `(x, y)` (dot product plus
//! bias, rounded as the plain GEMV rounds them), per vector:
//! * rotates them exactly as `rope_kv` does (`x' = fma.rn(x, c, -(y * s))`,
//!   `y' = fma.rn(x, s, y * c)`) where the pair is a Q or K pair below `rope_dims` and the
//!   position is inside the cache;
//! * stores the (rotated) pair to the matrix's output, so `y`, `y1` and `y2` hold what
//!   `rope_kv` leaves in `q`, `k` and `v`;
//! * for K and V, and a position inside the cache, writes the pair as two `cvt.rn.f16.f32`
//!   halves into the cache slot `((h * max_ctx) + pos) * head_dim + d`.
//!
//! The position and the angle pair `(cos, sin)` are loaded right after the grid-dependency
//! wait, before the main loop, so their round trips overlap the weight stream.

use serde::{Deserialize, Serialize};

use crate::ast::{StateSpace, Type};
use crate::ir::{Addr, BinOp, CacheHint, Cmp, FMode, KernelBuilder, Param, Reg};

use super::gemv::GemvTile;
use super::rope_kv::{load_f32, rotate, to_f16, RopeKv, RopeStyle};
use super::spec::{Access, FamilySpec, GenError, ParamSpec};

/// The RoPE + KV cache epilogue of a Q, K, V GEMV: the attention dims the `rope_kv` launch
/// it replaces would have (the head counts follow from the matrices' rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GemvRope {
    pub style: RopeStyle,
    pub head_dim: u32,
    /// Rotated dimensions (even, <= head_dim); the rest pass through.
    pub rope_dims: u32,
    /// Positions in the cache and rows of the angle table.
    pub max_ctx: u32,
    /// Which of Q, K and V the launch's matrices are.
    #[serde(default, skip_serializing_if = "RopeOutputs::is_qkv")]
    pub outputs: RopeOutputs,
}

/// The matrices of a launch with the RoPE epilogue, in order: Q, K and V in one launch; Q and
/// K (V has another type, as Q4_K_M mixes in Q6_K); or V alone (its cache write).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RopeOutputs {
    #[default]
    Qkv,
    Qk,
    V,
}

/// What the epilogue does with a matrix's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeRole {
    /// Rotate, store.
    Q,
    /// Rotate, store, write the K cache.
    K,
    /// Store, write the V cache.
    V,
}

impl RopeOutputs {
    fn is_qkv(&self) -> bool {
        *self == RopeOutputs::Qkv
    }

    /// The role of each matrix of the launch, in order.
    pub fn roles(self) -> &'static [RopeRole] {
        match self {
            RopeOutputs::Qkv => &[RopeRole::Q, RopeRole::K, RopeRole::V],
            RopeOutputs::Qk => &[RopeRole::Q, RopeRole::K],
            RopeOutputs::V => &[RopeRole::V],
        }
    }

    fn tag(self) -> &'static str {
        match self {
            RopeOutputs::Qkv => "",
            RopeOutputs::Qk => "_qk",
            RopeOutputs::V => "_v",
        }
    }
}

/// Where the two rows of a rotation pair meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pairing {
    /// Rows `2j` and `2j + 1` of a group's (even) rows.
    InThread,
    /// One row per group: groups `2g` and `2g + 1` of a thread block.
    AcrossGroups,
}

/// How `tile` pairs rows, if it can.
pub(super) fn pairing(tile: GemvTile) -> Option<Pairing> {
    let groups = tile.warps / tile.split.max(1);
    if tile.rows % 2 == 0 {
        Some(Pairing::InThread)
    } else if tile.rows == 1 && tile.split > 1 && groups % 2 == 0 {
        Some(Pairing::AcrossGroups)
    } else {
        None
    }
}

impl GemvRope {
    /// The `rope_kv` launch this epilogue (or, for [`RopeOutputs::Qk`] and [`RopeOutputs::V`],
    /// its part) replaces, for matrices of `q_rows` and `kv_rows` rows and `m` vectors.
    pub fn rope_kv(&self, q_rows: u32, kv_rows: u32, m: u32) -> RopeKv {
        RopeKv {
            style: self.style,
            n_heads: q_rows / self.head_dim.max(1),
            n_kv_heads: kv_rows / self.head_dim.max(1),
            head_dim: self.head_dim,
            rope_dims: self.rope_dims,
            max_ctx: self.max_ctx,
            m,
        }
    }

    /// The kernel name's suffix.
    pub(super) fn suffix(&self) -> String {
        format!(
            "_rope_{}_d{}_r{}_ctx{}{}",
            self.style.tag(),
            self.head_dim,
            self.rope_dims,
            self.max_ctx,
            self.outputs.tag()
        )
    }

    /// Rows of the launch's Q matrix and of a K or V matrix (V alone: both its own).
    pub fn rows(&self, parts: &[u32]) -> (u32, u32) {
        let first = parts.first().copied().unwrap_or(0);
        match self.outputs {
            RopeOutputs::V => (first, first),
            _ => (first, parts.get(1).copied().unwrap_or(0)),
        }
    }

    /// Checks the epilogue against the launch's matrices (`parts`) and tile: what is wrong
    /// as (field, expected, found).
    pub(super) fn check(
        &self,
        parts: &[u32],
        tile: GemvTile,
        m: u32,
    ) -> Result<(), (&'static str, String, String)> {
        let hd = self.head_dim;
        let whole_heads = |r: u32| hd > 0 && r % hd == 0;
        let roles = self.outputs.roles();
        let kv_alike = self.outputs != RopeOutputs::Qkv || parts.get(1) == parts.get(2);
        if parts.len() != roles.len() || !kv_alike || !parts.iter().all(|r| whole_heads(*r)) {
            return Err((
                "more_rows",
                format!(
                    "one matrix per output of {:?}: whole heads of {hd} rows, K and V alike",
                    self.outputs
                ),
                format!("{parts:?}"),
            ));
        }
        let (q_rows, kv_rows) = self.rows(parts);
        self.rope_kv(q_rows, kv_rows, m)
            .validate()
            .map_err(|e| ("rope", "valid rope_kv dims".into(), e.to_string()))?;
        if pairing(tile).is_none() {
            return Err((
                "rope",
                "a tile that puts both rows of a pair in one thread block's sums (even rows per group, or one row per group and an even number of split groups)".into(),
                tile.to_string(),
            ));
        }
        // Every pair's writer stores both rows: no block may reach past a matrix's end.
        let per_block = tile.rows * tile.warps / tile.split.max(1);
        if let Some(r) = parts.iter().find(|r| *r % per_block != 0) {
            return Err((
                "n / more_rows",
                format!("multiples of the tile's {per_block} rows per thread block"),
                r.to_string(),
            ));
        }
        Ok(())
    }

    /// `cache_bytes` of one sequence's layer cache (k or v).
    fn cache_bytes(&self, kv_rows: u32) -> u64 {
        kv_rows as u64 * self.max_ctx as u64 * 2
    }

    /// Whether the launch writes the K cache, the V cache, and reads the angle table.
    fn uses(&self) -> [bool; 3] {
        let roles = self.outputs.roles();
        [
            roles.contains(&RopeRole::K),
            roles.contains(&RopeRole::V),
            roles.contains(&RopeRole::Q),
        ]
    }

    /// The batching claim's extra parameters: each vector its own caches and position.
    pub(super) fn batch_params(&self, kv_rows: u32) -> Vec<(&'static str, Option<u64>)> {
        let cache = self.cache_bytes(kv_rows);
        let all = [
            ("k_cache", Some(cache)),
            ("v_cache", Some(cache)),
            ("rope_table", None),
        ];
        let mut out: Vec<_> = all
            .into_iter()
            .zip(self.uses())
            .filter_map(|(p, used)| used.then_some(p))
            .collect();
        out.push(("pos", Some(4)));
        out
    }

    /// The parameter specs of the epilogue's buffers.
    pub(super) fn param_specs(&self, kv_rows: u32, m: u32) -> Vec<ParamSpec> {
        let rk = self.rope_kv(kv_rows, kv_rows, 1);
        let half = self.rope_dims / 2;
        let layout = format!(
            "f16[{}][{}][{}]",
            rk.n_kv_heads, self.max_ctx, self.head_dim
        );
        let m_dim = if m > 1 {
            format!("[{m}]")
        } else {
            String::new()
        };
        let cache = self.cache_bytes(kv_rows) * m as u64;
        let uses = self.uses();
        let mut specs = vec![
            ParamSpec::buffer(
                "k_cache",
                format!("{m_dim}{layout}"),
                cache,
                4,
                Access::Write,
                "key cache; only slot pos of each kv head is written (rotated k as f16)",
            ),
            ParamSpec::buffer(
                "v_cache",
                format!("{m_dim}{layout}"),
                cache,
                4,
                Access::Write,
                "value cache; only slot pos of each kv head is written (v as f16)",
            ),
            ParamSpec::buffer(
                "rope_table",
                format!("f32[{}][{half}][2]", self.max_ctx),
                self.max_ctx as u64 * half as u64 * 8,
                8,
                Access::Read,
                "(cos, sin) of pos * theta^(-2i / rope_dims), from reference::rope::rope_table",
            ),
            ParamSpec::buffer(
                "pos",
                format!("u32{m_dim}[1]"),
                4 * m as u64,
                4,
                Access::Read,
                "position of this token; q and k stay unrotated and the caches untouched when pos >= max_ctx",
            ),
        ];
        let mut i = 0;
        specs.retain(|_| {
            let keep = uses.get(i).copied().unwrap_or(true);
            i += 1;
            keep
        });
        specs
    }
}

/// The epilogue's kernel parameters, declared after the GEMV's own (those its outputs use).
pub(super) struct RopeParams {
    k_cache: Option<Param>,
    v_cache: Option<Param>,
    table: Option<Param>,
    pos: Param,
}

pub(super) fn declare(b: &mut KernelBuilder, r: &GemvRope) -> RopeParams {
    let [k, v, t] = r.uses();
    RopeParams {
        k_cache: k.then(|| b.param(Type::U64, "k_cache")),
        v_cache: v.then(|| b.param(Type::U64, "v_cache")),
        table: t.then(|| b.param(Type::U64, "rope_table")),
        pos: b.param(Type::U64, "pos"),
    }
}

/// What the prologue loaded, per vector: the position, whether it is inside the cache, and
/// per pair of the thread's rows whether it rotates and its `(cos, sin)` (zeros where not).
pub(super) struct Angles {
    pos: Vec<Reg>,
    ok: Vec<Reg>,
    /// `[vector][pair]`: (rotates, cos, sin).
    cs: Vec<Vec<(Reg, Reg, Reg)>>,
}

/// Loads the positions and the angle pairs of the rows `pair_rows` (each the even row of a
/// pair, within its matrix). `rotating`: this thread block computes Q or K rows (`None`:
/// every block does). A launch of V alone loads positions only.
pub(super) fn prologue(
    b: &mut KernelBuilder,
    r: &GemvRope,
    p: &RopeParams,
    m: u32,
    pair_rows: &[Reg],
    rotating: Option<Reg>,
) -> Angles {
    b.comment("rope: position and angles of this thread's pairs");
    let half = r.rope_dims / 2;
    let pos_base = b.global_ptr(&p.pos);
    let table = p.table.as_ref().map(|t| b.global_ptr(t));
    // Per pair: its index in the head, and whether it is a rotated pair of Q or K.
    let pairs: Vec<(Reg, Reg)> = match table {
        None => Vec::new(),
        Some(_) => pair_rows
            .iter()
            .map(|row| {
                let d = b.bin(BinOp::Rem, Type::U32, FMode::NONE, *row, r.head_dim);
                let i = b.shr(Type::U32, d, 1u32);
                let below = b.setp(Cmp::Lt, Type::U32, i, half);
                let rot = match rotating {
                    Some(q_or_k) => b.and(Type::Pred, below, q_or_k),
                    None => below,
                };
                (i, rot)
            })
            .collect(),
    };
    let mut angles = Angles {
        pos: Vec::new(),
        ok: Vec::new(),
        cs: Vec::new(),
    };
    for v in 0..m {
        let pos = b.ld_global(Type::U32, Addr::reg_off(pos_base, 4 * v as i64));
        let ok = b.setp(Cmp::Lt, Type::U32, pos, r.max_ctx);
        let cs = pairs
            .iter()
            .map(|(i, rot)| {
                let rot = b.and(Type::Pred, *rot, ok);
                let at = b.mad(Type::U32, FMode::NONE, pos, half, *i);
                let addr = b.mad_wide(Type::U32, at, 8u32, table.expect("pairs need the table"));
                let c = load_f32(b, 2, Addr::reg(addr), &[CacheHint::NonCoherent], Some(rot));
                (rot, c[0], c[1])
            })
            .collect();
        angles.pos.push(pos);
        angles.ok.push(ok);
        angles.cs.push(cs);
    }
    angles
}

/// The matrix row the tile computes as its row `row` (within its matrix): the same row in the
/// `norm` style; in the `neox` style, of head dim d = 2j + o, dim `j + o * rope_dims / 2` where
/// `j < rope_dims / 2`, else d itself.
pub(super) fn physical_row(b: &mut KernelBuilder, r: &GemvRope, row: Reg) -> Reg {
    if r.style == RopeStyle::Norm {
        return row;
    }
    let half = r.rope_dims / 2;
    let d = b.bin(BinOp::Rem, Type::U32, FMode::NONE, row, r.head_dim);
    let j = b.shr(Type::U32, d, 1u32);
    let o = b.and(Type::B32, d, 1u32);
    let rotated = b.setp(Cmp::Lt, Type::U32, j, half);
    let pair_dim = b.mad(Type::U32, FMode::NONE, o, half, j);
    let dim = b.selp(Type::U32, pair_dim, d, rotated);
    let head_start = b.sub(Type::U32, row, d);
    b.add(Type::U32, head_start, dim)
}

/// One pair of rows as the writer thread holds it.
pub(super) struct Pair<'a> {
    /// The pair's index among the thread's pairs (its angles).
    pub index: usize,
    /// Its two rows within their matrix ([`physical_row`] of the tile's rows `2i`, `2i + 1`).
    pub rows: [Reg; 2],
    /// Per vector, the two rows' values (dot product plus bias).
    pub x: &'a [Reg],
    pub y: &'a [Reg],
}

/// The launch's three outputs: rows, output parameter, and whether this block computes it.
pub(super) struct Outputs<'a> {
    pub rows: &'a [u32],
    pub ptrs: &'a [Param],
    /// Whether this block computes the matrix (`None`: a launch of one matrix).
    pub mine: &'a [Option<Reg>],
}

/// Rotates and stores one pair for every vector: to matrix `i`'s output where this block
/// computes matrix i (Q, K, V), and for K and V into their caches.
pub(super) fn store_pair(
    b: &mut KernelBuilder,
    (r, p): (&GemvRope, &RopeParams),
    a: &Angles,
    outs: &Outputs<'_>,
    pair: &Pair<'_>,
) {
    let hd = r.head_dim;
    let out: Vec<(Reg, Reg)> = (0..a.pos.len())
        .map(|v| {
            let (x, y) = (pair.x[v], pair.y[v]);
            // A launch of V alone rotates nothing.
            let Some(&(rot, c, s)) = a.cs[v].get(pair.index) else {
                return (x, y);
            };
            let (xr, yr) = rotate(b, x, y, c, s);
            (b.selp(Type::F32, xr, x, rot), b.selp(Type::F32, yr, y, rot))
        })
        .collect();
    let norm = r.style == RopeStyle::Norm;
    let [rx, ry] = pair.rows;
    // Byte offsets of the rows in a vector's output, and their dims in the head (the norm
    // style's adjacent rows take one 8-byte output store and one 4-byte cache store).
    let stored = if norm {
        &pair.rows[..1]
    } else {
        &pair.rows[..]
    };
    let off: Vec<Reg> = stored
        .iter()
        .map(|r| b.mul_wide(Type::U32, *r, 4u32))
        .collect();
    let head = b.bin(BinOp::Div, Type::U32, FMode::NONE, rx, hd);
    let d = b.bin(BinOp::Rem, Type::U32, FMode::NONE, rx, hd);
    let dy = (!norm).then(|| b.bin(BinOp::Rem, Type::U32, FMode::NONE, ry, hd));
    for (i, (yp, rows)) in outs.ptrs.iter().zip(outs.rows).enumerate() {
        let store = |b: &mut KernelBuilder| {
            let base = b.global_ptr(yp);
            let at: Vec<Reg> = off.iter().map(|o| b.add(Type::U64, base, *o)).collect();
            for (v, (xo, yo)) in out.iter().enumerate() {
                let vec_off = v as i64 * *rows as i64 * 4;
                if norm {
                    b.store(
                        StateSpace::Global,
                        Type::F32,
                        Addr::reg_off(at[0], vec_off),
                        &[(*xo).into(), (*yo).into()],
                        &[],
                        None,
                    );
                } else {
                    b.st_global(Type::F32, Addr::reg_off(at[0], vec_off), *xo);
                    b.st_global(Type::F32, Addr::reg_off(at[1], vec_off), *yo);
                }
            }
            let cache = match r.outputs.roles()[i] {
                RopeRole::Q => return,
                RopeRole::K => p.k_cache.as_ref(),
                RopeRole::V => p.v_cache.as_ref(),
            };
            let cache = cache.expect("declared for the launch's roles");
            let cache_bytes = r.cache_bytes(*rows) as i64;
            let base = b.global_ptr(cache);
            for (v, (xo, yo)) in out.iter().enumerate() {
                let slot = b.mad(Type::U32, FMode::NONE, head, r.max_ctx, a.pos[v]);
                let elem = b.mad(Type::U32, FMode::NONE, slot, hd, d);
                let addr = b.mad_wide(Type::U32, elem, 2u32, base);
                let hx = to_f16(b, *xo);
                let hy = to_f16(b, *yo);
                let vec_off = v as i64 * cache_bytes;
                match dy {
                    None => {
                        let word = b.pack(Type::B32, &[hx, hy]);
                        b.when(a.ok[v])
                            .st_global(Type::B32, Addr::reg_off(addr, vec_off), word);
                    }
                    Some(dy) => {
                        let elem_y = b.mad(Type::U32, FMode::NONE, slot, hd, dy);
                        let addr_y = b.mad_wide(Type::U32, elem_y, 2u32, base);
                        b.when(a.ok[v])
                            .st_global(Type::B16, Addr::reg_off(addr, vec_off), hx);
                        b.when(a.ok[v])
                            .st_global(Type::B16, Addr::reg_off(addr_y, vec_off), hy);
                    }
                }
            }
        };
        match outs.mine[i] {
            Some(mine) => b.if_then(mine, store),
            None => store(b),
        }
    }
}

/// The spec error for a rope epilogue the launch cannot have.
pub(super) fn invalid_rope(e: (&'static str, String, String)) -> GenError {
    super::spec::invalid(super::Gemv::FAMILY, e.0, &e.1, e.2)
}
