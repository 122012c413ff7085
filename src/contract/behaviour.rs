//! Behaviour flags: what the kernels and the decode schedule do differently per architecture.
//! A contract states them per weight format where the formats differ (HF Gemma stores norm
//! weights as w-1, its GGUF conversion as w; llama.cpp permutes Llama's Q/K rows so that GGUF
//! Llama ropes adjacent pairs while HF Llama ropes split halves); [`Behaviour`] is the
//! resolved set for one format.

use std::fmt;

use serde::de::{self, IntoDeserializer, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// The weight formats a contract names tensors and metadata for.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// A GGUF file (llama.cpp conventions).
    Gguf,
    /// A Hugging Face checkpoint: safetensors plus `config.json`.
    Hf,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Gguf => "gguf",
            Format::Hf => "hf",
        })
    }
}

/// A value that may differ between formats: written either as one value for both, or as
/// `{ gguf: ..., hf: ... }`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PerFormat<T> {
    pub gguf: T,
    pub hf: T,
}

impl<T: Copy> PerFormat<T> {
    pub fn get(&self, format: Format) -> T {
        match format {
            Format::Gguf => self.gguf,
            Format::Hf => self.hf,
        }
    }
}

impl<'de, T: Deserialize<'de> + Copy> Deserialize<'de> for PerFormat<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<T> V<T> {
            fn both<'de, E: de::Error, X: IntoDeserializer<'de, E>>(x: X) -> Result<PerFormat<T>, E>
            where
                T: Deserialize<'de> + Copy,
            {
                let v = T::deserialize(x.into_deserializer())?;
                Ok(PerFormat { gguf: v, hf: v })
            }
        }
        impl<'de, T: Deserialize<'de> + Copy> Visitor<'de> for V<T> {
            type Value = PerFormat<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("one value for both formats, or a map `{ gguf: ..., hf: ... }`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Self::both(v)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Self::both(v)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Self::both(v)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Self::both(v)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Self::both(v)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let (mut gguf, mut hf) = (None, None);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "gguf" if gguf.is_none() => gguf = Some(map.next_value()?),
                        "hf" if hf.is_none() => hf = Some(map.next_value()?),
                        "gguf" | "hf" => return Err(de::Error::duplicate_field("gguf/hf")),
                        other => return Err(de::Error::unknown_field(other, &["gguf", "hf"])),
                    }
                }
                Ok(PerFormat {
                    gguf: gguf.ok_or_else(|| de::Error::missing_field("gguf"))?,
                    hf: hf.ok_or_else(|| de::Error::missing_field("hf"))?,
                })
            }
        }
        deserializer.deserialize_any(V(std::marker::PhantomData))
    }
}

/// Normalisation of the residual stream.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NormKind {
    /// x / sqrt(mean(x^2) + eps) * (w + offset).
    Rms,
}

/// How rope pairs up the dimensions of a head.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RopeStyle {
    /// Adjacent pairs (2i, 2i+1): GGML's `LLAMA_ROPE_TYPE_NORM`.
    Norm,
    /// Split halves (i, i + rope_dims/2): GGML's `LLAMA_ROPE_TYPE_NEOX`, HF `rotate_half`.
    Neox,
}

/// Normalisation of Q and K before rope.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QkNorm {
    None,
    /// RMSNorm of each head over head_dim, one weight vector shared by all heads.
    PerHeadRms,
}

/// Where the 1/sqrt(query_pre_attn_scalar) attention scale is applied. The two are equal in
/// exact arithmetic; kernels that must match a reference closely need to know which (llama.cpp
/// scales Gemma's Q, HF scales Gemma's scores).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueryScale {
    /// Scores QK^T are scaled (llama.cpp's `kq_scale`).
    Scores,
    /// Q is scaled before the dot products (Gemma: `ggml_scale(Qcur, f_attention_scale)`).
    Query,
}

/// Which layers use sliding-window attention.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlidingLayers {
    /// No layer; a sliding_window dim, if any, is ignored.
    None,
    /// Every layer, when the model has a sliding_window (Mistral v0.1, Phi-3).
    All,
    /// Layer i is global when (i + 1) % sliding_period == 0, sliding otherwise; sliding
    /// layers use rope_theta_local (Gemma 3).
    PeriodicGlobal,
}

/// FFN activation.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// x * sigmoid(x).
    Silu,
    /// GELU, tanh approximation (HF `gelu_pytorch_tanh`, GGML `gelu`).
    GeluTanh,
}

/// Scale applied to embedding rows after lookup.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmbeddingScale {
    None,
    /// sqrt(hidden) (Gemma).
    SqrtHidden,
}

/// Behaviour flags resolved for one weight format: what kernels and the decode schedule read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Behaviour {
    pub norm: NormKind,
    /// Added to every norm weight (including Q/K norms) before multiplying.
    pub norm_weight_offset: f32,
    pub rope_style: RopeStyle,
    pub qk_norm: QkNorm,
    /// Q, K and V projections have biases.
    pub qkv_bias: bool,
    pub query_scale: QueryScale,
    pub sliding_layers: SlidingLayers,
    /// An RMSNorm on the attention output before the residual add.
    pub post_attn_norm: bool,
    /// An RMSNorm on the FFN output before the residual add.
    pub post_ffn_norm: bool,
    pub activation: Activation,
    /// down(act(gate(x)) * up(x)) rather than down(act(up(x))).
    pub gated_ffn: bool,
    pub embedding_scale: EmbeddingScale,
}
