//! The YAML shape of architecture contracts, as serde reads it. Unknown fields and duplicate
//! keys are rejected; nodes that validation may complain about carry their position
//! (`Spanned`). [`super::architecture`] turns this into a validated [`super::Contract`].

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_saphyr::Spanned;

use super::behaviour::{
    Activation, EmbeddingScale, NormKind, PerFormat, QkNorm, QueryScale, RopeStyle, SlidingLayers,
};
use super::dim::Dim;
use super::formula::Formula;
use super::role::Role;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawContract {
    pub architecture: Spanned<String>,
    pub answers_to: Spanned<RawAnswersTo>,
    pub dims: Spanned<BTreeMap<Dim, Spanned<RawDimRule>>>,
    pub behaviour: RawBehaviour,
    pub tensors: Spanned<BTreeMap<Role, Spanned<RawTensorRule>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAnswersTo {
    /// `general.architecture` values of GGUF files.
    #[serde(default)]
    pub gguf: Vec<Spanned<String>>,
    /// `architectures[]` values of HF `config.json`.
    #[serde(default)]
    pub hf: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDimRule {
    /// GGUF metadata keys tried in order; `{arch}` is the file's `general.architecture`.
    #[serde(default)]
    pub gguf: OneOrMany,
    /// A GGUF array whose length is the value (the vocabulary: `tokenizer.ggml.tokens`).
    #[serde(default)]
    pub gguf_array_len: Option<String>,
    /// `config.json` keys tried in order; dots descend into objects (`text_config.hidden_size`).
    #[serde(default)]
    pub hf: OneOrMany,
    /// Used when no key is present.
    #[serde(default)]
    pub default: Option<Formula>,
    /// The dimension may be absent (sliding_window, final_logit_softcap).
    #[serde(default)]
    pub optional: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBehaviour {
    pub norm: RawNorm,
    pub rope: RawRope,
    pub qk_norm: Spanned<QkNorm>,
    pub qkv_bias: Spanned<bool>,
    pub query_scale: PerFormat<QueryScale>,
    pub sliding_window: Spanned<SlidingLayers>,
    pub post_attn_norm: Spanned<bool>,
    pub post_ffn_norm: Spanned<bool>,
    pub ffn: Spanned<RawFfn>,
    pub embedding_scale: EmbeddingScale,
    pub tied_embeddings: RawTied,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNorm {
    pub kind: NormKind,
    pub weight_offset: PerFormat<f32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRope {
    pub style: PerFormat<RopeStyle>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFfn {
    pub activation: Activation,
    pub gated: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTied {
    /// `config.json` key saying whether the LM head reuses the embedding.
    #[serde(default)]
    pub hf: Option<String>,
    /// Value when the key is absent.
    pub default: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTensorRule {
    #[serde(default)]
    pub gguf: Option<Spanned<String>>,
    #[serde(default)]
    pub hf: Option<Spanned<String>>,
    /// Row-major: outermost first, the row (reduction) dimension last.
    pub shape: Spanned<Vec<Formula>>,
    #[serde(default = "yes")]
    pub required: bool,
    /// For fused tensors: the roles its rows hold, in order.
    #[serde(default)]
    pub split: Vec<RawSplit>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSplit {
    pub role: Role,
    pub rows: Formula,
}

/// A string or a list of strings.
#[derive(Debug, Default, Clone)]
pub(crate) struct OneOrMany(pub Vec<String>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key or a list of keys")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![v.to_string()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(OneOrMany(out))
            }
        }
        deserializer.deserialize_any(V)
    }
}
