//! Tensor roles: what a weight *is* in the decode graph, independent of how any file names it.
//! Every component talks about weights through these, never through tensor-name strings.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Whether a role exists once per model or once per transformer block.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    Global,
    PerLayer,
}

macro_rules! roles {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, $scope:ident; )*) => {
        /// The role of one weight tensor in the decode graph.
        #[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Role {
            $( $(#[$doc])* $variant, )*
        }

        impl Role {
            /// Every role, in graph order.
            pub const ALL: &'static [Role] = &[$(Role::$variant),*];

            /// The snake_case name contracts and presets use.
            pub const fn name(self) -> &'static str {
                match self { $(Role::$variant => $name,)* }
            }

            /// Global or per transformer block.
            pub const fn scope(self) -> Scope {
                match self { $(Role::$variant => Scope::$scope,)* }
            }
        }
    };
}

roles! {
    /// Token embedding table `[vocab, hidden]`.
    TokenEmbd = "token_embd", Global;
    /// Per-dimension rope frequency factors (Llama 3.1+ GGUFs store their rope scaling so).
    RopeFreqs = "rope_freqs", Global;
    /// Norm before attention.
    AttnNorm = "attn_norm", PerLayer;
    AttnQ = "attn_q", PerLayer;
    AttnK = "attn_k", PerLayer;
    AttnV = "attn_v", PerLayer;
    /// Fused Q, K and V projection (Phi-3); the contract says how to split its rows.
    AttnQkv = "attn_qkv", PerLayer;
    AttnQBias = "attn_q_bias", PerLayer;
    AttnKBias = "attn_k_bias", PerLayer;
    AttnVBias = "attn_v_bias", PerLayer;
    /// Per-head RMS norm of Q (Qwen3, Gemma3), over head_dim.
    AttnQNorm = "attn_q_norm", PerLayer;
    /// Per-head RMS norm of K.
    AttnKNorm = "attn_k_norm", PerLayer;
    AttnOutput = "attn_output", PerLayer;
    /// Norm of the attention output before the residual add (Gemma).
    AttnPostNorm = "attn_post_norm", PerLayer;
    /// Norm before the FFN.
    FfnNorm = "ffn_norm", PerLayer;
    FfnGate = "ffn_gate", PerLayer;
    FfnUp = "ffn_up", PerLayer;
    /// Fused gate and up projection (Phi-3); the contract says how to split its rows.
    FfnGateUp = "ffn_gate_up", PerLayer;
    FfnDown = "ffn_down", PerLayer;
    /// Norm of the FFN output before the residual add (Gemma).
    FfnPostNorm = "ffn_post_norm", PerLayer;
    /// Final norm.
    OutputNorm = "output_norm", Global;
    /// LM head `[vocab, hidden]`; when a model has none it reuses the token embedding.
    Output = "output", Global;
}

impl Role {
    /// The role called `name`.
    pub fn from_name(name: &str) -> Option<Role> {
        Role::ALL.iter().copied().find(|r| r.name() == name)
    }

    /// True for the roles that hold matrix weights a GEMV multiplies by (as opposed to norm
    /// and bias vectors that elementwise kernels read).
    pub const fn is_matrix(self) -> bool {
        matches!(
            self,
            Role::TokenEmbd
                | Role::AttnQ
                | Role::AttnK
                | Role::AttnV
                | Role::AttnQkv
                | Role::AttnOutput
                | Role::FfnGate
                | Role::FfnUp
                | Role::FfnGateUp
                | Role::FfnDown
                | Role::Output
        )
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Error of [`Role::from_str`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown tensor role `{0}`")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::from_name(s).ok_or_else(|| UnknownRole(s.to_string()))
    }
}

impl Serialize for Role {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Role;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a tensor role such as attn_q")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Role, E> {
                Role::from_str(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// One concrete tensor of a model: a role, and the block it belongs to for per-layer roles.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorKey {
    pub role: Role,
    /// `Some(block)` for per-layer roles, `None` for global ones.
    pub layer: Option<u32>,
}

impl TensorKey {
    pub const fn global(role: Role) -> TensorKey {
        TensorKey { role, layer: None }
    }

    pub const fn layer(role: Role, layer: u32) -> TensorKey {
        TensorKey {
            role,
            layer: Some(layer),
        }
    }
}

impl fmt::Display for TensorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.layer {
            Some(l) => write!(f, "{}[{l}]", self.role),
            None => write!(f, "{}", self.role),
        }
    }
}
