//! The activation workspace of one decode step: every buffer the schedule binds, with its
//! layout and size for one model.

use serde::{Deserialize, Serialize};

use crate::contract::ModelDims;

/// A workspace buffer (all live on the device for the whole step).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Buffer {
    /// `u32[1]`: the token fed to this step; the step's argmax writes the next token here.
    Token,
    /// `u32[1]`: the position this step writes into the KV cache.
    Pos,
    /// `u32[1]`: positions attention reads (pos + 1).
    SeqLen,
    /// `f32[hidden]`: the residual stream.
    X,
    /// `block_q8_1_planar[hidden / 32]` (Q8_1, the kernels' planar layout): the normalized residual stream, quantized for the GEMVs.
    Xq,
    /// `f32[q_dim + 2 * kv_dim]`: Q, then K, then V.
    Qkv,
    /// `f32[q_dim]`: attention output.
    Attn,
    /// `block_q8_1_planar[q_dim / 32]`.
    AttnQ8,
    /// Attention split partials: `f32[heads][chunks][head_dim]`.
    PartO,
    /// Attention split partials: `f32[heads][chunks][2]`.
    PartMl,
    /// `f32[hidden]`: a projection's output before its post-norm.
    Tmp,
    /// `f32[2 * ffn]`: gate, then up.
    GateUp,
    /// `block_q8_1_planar[ffn / 32]`: the activation's output.
    ActQ8,
    /// `f32[vocab]`.
    Logits,
    /// `u64[ceil(vocab / 2048)]`: argmax partials.
    ArgmaxPartials,
}

impl Buffer {
    pub const ALL: [Buffer; 15] = [
        Buffer::Token,
        Buffer::Pos,
        Buffer::SeqLen,
        Buffer::X,
        Buffer::Xq,
        Buffer::Qkv,
        Buffer::Attn,
        Buffer::AttnQ8,
        Buffer::PartO,
        Buffer::PartMl,
        Buffer::Tmp,
        Buffer::GateUp,
        Buffer::ActQ8,
        Buffer::Logits,
        Buffer::ArgmaxPartials,
    ];

    /// The snake_case name used in the manifest.
    pub fn name(self) -> &'static str {
        match self {
            Buffer::Token => "token",
            Buffer::Pos => "pos",
            Buffer::SeqLen => "seq_len",
            Buffer::X => "x",
            Buffer::Xq => "xq",
            Buffer::Qkv => "qkv",
            Buffer::Attn => "attn",
            Buffer::AttnQ8 => "attn_q8",
            Buffer::PartO => "part_o",
            Buffer::PartMl => "part_ml",
            Buffer::Tmp => "tmp",
            Buffer::GateUp => "gate_up",
            Buffer::ActQ8 => "act_q8",
            Buffer::Logits => "logits",
            Buffer::ArgmaxPartials => "argmax_partials",
        }
    }
}

/// Bytes of a Q8_1 vector of `n` values, in the kernels' planar layout (padded to 16).
pub fn q8_1_bytes(n: u32) -> u64 {
    ptx_gen::kernels::q8_1_vector_bytes(n) as u64
}

/// Layout and byte size of every buffer for one model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BufferDecl {
    pub name: Buffer,
    pub layout: String,
    pub bytes: u64,
    pub meaning: String,
}

/// The workspace for `dims`, with attention split into `chunks` chunks.
pub fn workspace(dims: &ModelDims, chunks: u32, argmax_partials: u32) -> Vec<BufferDecl> {
    let (h, q, kv, f, v) = (
        dims.hidden,
        dims.q_dim(),
        dims.kv_dim(),
        dims.ffn,
        dims.vocab,
    );
    let heads = dims.heads;
    let hd = dims.head_dim;
    let d = |name, layout: String, bytes: u64, meaning: &str| BufferDecl {
        name,
        layout,
        bytes,
        meaning: meaning.to_string(),
    };
    vec![
        d(
            Buffer::Token,
            "u32[1]".into(),
            4,
            "token fed to the step; the step's argmax overwrites it with the next token",
        ),
        d(
            Buffer::Pos,
            "u32[1]".into(),
            4,
            "KV-cache slot this step writes (0-based position of the token)",
        ),
        d(
            Buffer::SeqLen,
            "u32[1]".into(),
            4,
            "positions attention reads: pos + 1",
        ),
        d(
            Buffer::X,
            format!("f32[{h}]"),
            h as u64 * 4,
            "residual stream",
        ),
        d(
            Buffer::Xq,
            ptx_gen::kernels::q8_1_layout(h / 32),
            q8_1_bytes(h),
            "normalized residual stream, Q8_1",
        ),
        d(
            Buffer::Qkv,
            format!("f32[{}]", q + 2 * kv),
            (q + 2 * kv) as u64 * 4,
            "Q (q_dim), then K (kv_dim), then V (kv_dim)",
        ),
        d(
            Buffer::Attn,
            format!("f32[{q}]"),
            q as u64 * 4,
            "attention output (used only where head_dim is not a multiple of 32; otherwise the combine kernel writes attn_q8 directly)",
        ),
        d(
            Buffer::AttnQ8,
            ptx_gen::kernels::q8_1_layout(q / 32),
            q8_1_bytes(q),
            "attention output, Q8_1",
        ),
        d(
            Buffer::PartO,
            format!("f32[{heads}][{chunks}][{hd}]"),
            heads as u64 * chunks as u64 * hd as u64 * 4,
            "attention split partials (weighted V sums)",
        ),
        d(
            Buffer::PartMl,
            format!("f32[{heads}][{chunks}][2]"),
            heads as u64 * chunks as u64 * 8,
            "attention split partials (max, sum) in base 2",
        ),
        d(
            Buffer::Tmp,
            format!("f32[{h}]"),
            h as u64 * 4,
            "projection output before its post-norm",
        ),
        d(
            Buffer::GateUp,
            format!("f32[{}]", 2 * f),
            2 * f as u64 * 4,
            "FFN gate (ffn), then up (ffn)",
        ),
        d(
            Buffer::ActQ8,
            ptx_gen::kernels::q8_1_layout(f / 32),
            q8_1_bytes(f),
            "act(gate) * up, Q8_1",
        ),
        d(Buffer::Logits, format!("f32[{v}]"), v as u64 * 4, "logits"),
        d(
            Buffer::ArgmaxPartials,
            format!("u64[{argmax_partials}]"),
            argmax_partials as u64 * 8,
            "argmax partials",
        ),
    ]
}
