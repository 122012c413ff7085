//! The named dimensions a contract can source and a formula can refer to.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// How a dimension's value is stored in [`crate::contract::ModelDims`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum DimKind {
    /// A positive integer (`u32`).
    Count,
    /// A real number (`f32`).
    Real,
}

macro_rules! dims {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, $kind:ident; )*) => {
        /// A model dimension that contracts source from metadata and formulas refer to by name.
        #[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Dim {
            $( $(#[$doc])* $variant, )*
        }

        impl Dim {
            /// Every dimension, in the order they are listed in contracts.
            pub const ALL: &'static [Dim] = &[$(Dim::$variant),*];

            /// The name used in contracts, presets and formulas.
            pub const fn name(self) -> &'static str {
                match self { $(Dim::$variant => $name,)* }
            }

            /// Integer or real.
            pub const fn kind(self) -> DimKind {
                match self { $(Dim::$variant => DimKind::$kind,)* }
            }
        }
    };
}

dims! {
    /// Residual stream width.
    Hidden = "hidden", Count;
    /// Transformer blocks.
    Layers = "layers", Count;
    /// Query heads.
    Heads = "heads", Count;
    /// Key/value heads (GQA).
    KvHeads = "kv_heads", Count;
    /// Width of one attention head (K and V).
    HeadDim = "head_dim", Count;
    /// FFN inner width.
    Ffn = "ffn", Count;
    /// Vocabulary rows of the embedding and LM head.
    Vocab = "vocab", Count;
    /// Trained context length.
    Context = "context", Count;
    /// Rope base frequency (of the global layers when some layers are sliding).
    RopeTheta = "rope_theta", Real;
    /// Rope base frequency of sliding-window layers, where it differs (Gemma 3).
    RopeThetaLocal = "rope_theta_local", Real;
    /// Rotated dimensions per head (partial rotary when below head_dim).
    RopeDims = "rope_dims", Count;
    /// Fraction of head_dim that is rotated (HF `partial_rotary_factor`).
    PartialRotaryFactor = "partial_rotary_factor", Real;
    /// RMSNorm epsilon.
    RmsEps = "rms_eps", Real;
    /// Attention window of sliding-window layers, in tokens.
    SlidingWindow = "sliding_window", Count;
    /// With periodic sliding layers: every `sliding_period`-th layer is global.
    SlidingPeriod = "sliding_period", Count;
    /// Attention scores are scaled by 1/sqrt(query_pre_attn_scalar).
    QueryPreAttnScalar = "query_pre_attn_scalar", Real;
    /// Final logits are soft-capped to +-this value (c * tanh(x / c)).
    FinalLogitSoftcap = "final_logit_softcap", Real;
}

impl Dim {
    /// The dimension called `name`.
    pub fn from_name(name: &str) -> Option<Dim> {
        Dim::ALL.iter().copied().find(|d| d.name() == name)
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Dim {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Dim;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a dimension name such as head_dim")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Dim, E> {
                Dim::from_name(v).ok_or_else(|| {
                    let names: Vec<&str> = Dim::ALL.iter().map(|d| d.name()).collect();
                    E::custom(format!(
                        "unknown dimension `{v}` (expected one of {})",
                        names.join(", ")
                    ))
                })
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}
