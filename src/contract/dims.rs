//! `ModelDims`: one model's dimensions, derived through its contract from whatever describes
//! the model (GGUF metadata, HF `config.json`, a preset) and validated before anything is
//! generated from them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::architecture::{Contract, DimRule};
use super::behaviour::SlidingLayers;
use super::dim::{Dim, DimKind};
use super::formula::{as_count, FormulaEvalError};
use super::role::Role;

/// Largest GQA ratio (query heads per KV head) the attention kernels are written for.
pub const MAX_GQA_RATIO: u32 = 16;

/// Rope frequency scaling beyond plain `theta^(-2i/d)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RopeScaling {
    /// Positions divided by `factor`.
    Linear { factor: f32 },
    /// Llama 3.1's frequency-dependent scaling (HF `rope_type: llama3`; GGUF files carry the
    /// resulting per-dimension factors as the `rope_freqs` tensor instead).
    Llama3 {
        factor: f32,
        low_freq_factor: f32,
        high_freq_factor: f32,
        original_context: u32,
    },
}

/// Attention of one layer, as the decode schedule runs it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LayerAttention {
    /// `Some(w)`: the layer attends to the last `w` positions only.
    pub window: Option<u32>,
    pub rope_theta: f32,
    pub rope_scaling: Option<RopeScaling>,
}

/// The dimensions of one model, validated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelDims {
    pub hidden: u32,
    pub layers: u32,
    pub heads: u32,
    pub kv_heads: u32,
    pub head_dim: u32,
    pub ffn: u32,
    pub vocab: u32,
    pub context: u32,
    pub rope_theta: f32,
    pub rope_dims: u32,
    pub rms_eps: f32,
    /// Attention scores are scaled by 1/sqrt(this).
    pub query_pre_attn_scalar: f32,
    pub sliding_window: Option<u32>,
    pub sliding_period: Option<u32>,
    pub rope_theta_local: Option<f32>,
    pub final_logit_softcap: Option<f32>,
    pub rope_scaling: Option<RopeScaling>,
    /// The LM head is the token embedding.
    pub tied_embeddings: bool,
    /// Which layers slide (from the contract), so that [`ModelDims::layer_attention`] needs
    /// nothing else.
    pub sliding_layers: SlidingLayers,
}

/// Error of deriving or validating dimensions.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DimsError {
    #[error("dimension `{dim}` not found (tried {})", tried.join(", "))]
    Missing { dim: Dim, tried: Vec<String> },
    #[error("`{key}` (for `{dim}`) should be {expected}, found {found}")]
    WrongType {
        dim: Dim,
        key: String,
        expected: &'static str,
        found: String,
    },
    #[error("`{key}` (for `{dim}`) = {value}, expected a whole number in 1..=4294967295")]
    NotACount { dim: Dim, key: String, value: f64 },
    #[error("default of `{dim}`: {source}")]
    Formula { dim: Dim, source: FormulaEvalError },
    #[error("{0}")]
    Invalid(String),
    #[error("rope scaling: {0}")]
    RopeScaling(String),
    #[error("layer_types: {0}")]
    LayerTypes(String),
}

impl DimsError {
    /// A stable identifier of the error kind.
    pub fn code(&self) -> &'static str {
        match self {
            DimsError::Missing { .. } => "dims.missing",
            DimsError::WrongType { .. } => "dims.wrong_type",
            DimsError::NotACount { .. } => "dims.not_a_count",
            DimsError::Formula { .. } => "dims.formula",
            DimsError::Invalid(_) => "dims.invalid",
            DimsError::RopeScaling(_) => "dims.rope_scaling",
            DimsError::LayerTypes(_) => "dims.layer_types",
        }
    }
}

/// What a model description gives dimension derivation. GGUF metadata, HF `config.json` and
/// presets implement it; the contract says which keys to ask for.
pub trait DimSource {
    /// The value of `dim` from the description, following `rule`'s keys; `Ok(None)` when no
    /// key is present (the contract's default then applies).
    fn dim_value(&self, dim: Dim, rule: &DimRule) -> Result<Option<f64>, DimsError>;

    /// Keys tried for `dim`, for the "not found" message.
    fn keys_tried(&self, dim: Dim, rule: &DimRule) -> Vec<String>;

    /// Whether the LM head is the token embedding.
    fn tied_embeddings(&self, contract: &Contract) -> Result<bool, DimsError>;

    /// Rope scaling, if the description has any.
    fn rope_scaling(&self) -> Result<Option<RopeScaling>, DimsError>;

    /// Per-layer attention kinds if the description lists them (HF `layer_types`), to be
    /// checked against the contract's pattern.
    fn layer_types(&self) -> Option<Vec<String>> {
        None
    }
}

impl ModelDims {
    /// Derives dimensions through `contract` from `source` and validates them.
    pub fn derive(contract: &Contract, source: &dyn DimSource) -> Result<ModelDims, DimsError> {
        let mut values: BTreeMap<Dim, f64> = BTreeMap::new();
        for (dim, rule) in contract.dim_rules() {
            let found = source.dim_value(*dim, rule)?;
            let value = match (found, &rule.default) {
                (Some(v), _) => Some(v),
                (None, Some(default)) => match default.eval(&|d| values.get(&d).copied()) {
                    Ok(v) => Some(v),
                    // An optional dimension whose default needs an absent one is absent too.
                    Err(FormulaEvalError::Unset { .. }) if rule.optional => None,
                    Err(source) => return Err(DimsError::Formula { dim: *dim, source }),
                },
                (None, None) => None,
            };
            match value {
                Some(v) => {
                    if dim.kind() == DimKind::Count
                        && as_count(v).is_none_or(|c| c == 0 || c > u64::from(u32::MAX))
                    {
                        return Err(DimsError::NotACount {
                            dim: *dim,
                            key: dim.name().to_string(),
                            value: v,
                        });
                    }
                    values.insert(*dim, v);
                }
                None if rule.optional => {}
                None => {
                    return Err(DimsError::Missing {
                        dim: *dim,
                        tried: source.keys_tried(*dim, rule),
                    })
                }
            }
        }
        let count = |d: Dim| values.get(&d).map(|v| *v as u32);
        let real = |d: Dim| values.get(&d).map(|v| *v as f32);
        // Required dimensions are guaranteed by contract validation and the loop above.
        let need = |d: Dim| {
            count(d).ok_or(DimsError::Missing {
                dim: d,
                tried: vec![],
            })
        };
        let need_real = |d: Dim| {
            real(d).ok_or(DimsError::Missing {
                dim: d,
                tried: vec![],
            })
        };
        let dims = ModelDims {
            hidden: need(Dim::Hidden)?,
            layers: need(Dim::Layers)?,
            heads: need(Dim::Heads)?,
            kv_heads: need(Dim::KvHeads)?,
            head_dim: need(Dim::HeadDim)?,
            ffn: need(Dim::Ffn)?,
            vocab: need(Dim::Vocab)?,
            context: need(Dim::Context)?,
            rope_theta: need_real(Dim::RopeTheta)?,
            rope_dims: need(Dim::RopeDims)?,
            rms_eps: need_real(Dim::RmsEps)?,
            query_pre_attn_scalar: need_real(Dim::QueryPreAttnScalar)?,
            sliding_window: count(Dim::SlidingWindow),
            sliding_period: count(Dim::SlidingPeriod),
            rope_theta_local: real(Dim::RopeThetaLocal),
            final_logit_softcap: real(Dim::FinalLogitSoftcap),
            rope_scaling: source.rope_scaling()?,
            tied_embeddings: source.tied_embeddings(contract)?,
            sliding_layers: contract.behaviour_rules().sliding_layers,
        };
        dims.validate()?;
        if let Some(types) = source.layer_types() {
            dims.check_layer_types(&types)?;
        }
        Ok(dims)
    }

    /// Checks the relations kernels rely on.
    pub fn validate(&self) -> Result<(), DimsError> {
        let bad = |m: String| Err(DimsError::Invalid(m));
        if self.heads % self.kv_heads != 0 {
            return bad(format!(
                "heads ({}) is not a multiple of kv_heads ({})",
                self.heads, self.kv_heads
            ));
        }
        if self.heads / self.kv_heads > MAX_GQA_RATIO {
            return bad(format!(
                "heads / kv_heads = {} exceeds the supported GQA ratio {MAX_GQA_RATIO}",
                self.heads / self.kv_heads
            ));
        }
        if self.rope_dims % 2 != 0 || self.rope_dims > self.head_dim {
            return bad(format!(
                "rope_dims ({}) must be even and <= head_dim ({})",
                self.rope_dims, self.head_dim
            ));
        }
        for (name, v) in [
            ("rope_theta", Some(self.rope_theta)),
            ("rms_eps", Some(self.rms_eps)),
            ("query_pre_attn_scalar", Some(self.query_pre_attn_scalar)),
            ("rope_theta_local", self.rope_theta_local),
            ("final_logit_softcap", self.final_logit_softcap),
        ] {
            if let Some(v) = v {
                if !(v.is_finite() && v > 0.0) {
                    return bad(format!("{name} ({v}) must be finite and > 0"));
                }
            }
        }
        let periodic =
            self.sliding_layers == SlidingLayers::PeriodicGlobal && self.sliding_window.is_some();
        if periodic && (self.sliding_period.is_none() || self.rope_theta_local.is_none()) {
            return bad(
                "periodic sliding layers need sliding_period and rope_theta_local".to_string(),
            );
        }
        match self.rope_scaling {
            Some(RopeScaling::Linear { factor }) if !(factor.is_finite() && factor > 0.0) => {
                return Err(DimsError::RopeScaling(format!(
                    "linear factor {factor} must be finite and > 0"
                )))
            }
            Some(RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_context,
            }) => {
                let ok = [factor, low_freq_factor, high_freq_factor]
                    .iter()
                    .all(|v| v.is_finite() && *v > 0.0);
                if !ok || high_freq_factor <= low_freq_factor || original_context == 0 {
                    return Err(DimsError::RopeScaling(format!(
                        "llama3 needs finite factors > 0 with high_freq_factor > low_freq_factor and an \
                         original context > 0, got factor {factor}, low {low_freq_factor}, high {high_freq_factor}, \
                         original context {original_context}"
                    )));
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Query width (`heads * head_dim`).
    pub fn q_dim(&self) -> u32 {
        self.heads * self.head_dim
    }

    /// Key/value width (`kv_heads * head_dim`).
    pub fn kv_dim(&self) -> u32 {
        self.kv_heads * self.head_dim
    }

    /// Query heads per KV head.
    pub fn gqa_ratio(&self) -> u32 {
        self.heads / self.kv_heads
    }

    /// The attention scale 1/sqrt(query_pre_attn_scalar).
    pub fn attention_scale(&self) -> f32 {
        1.0 / self.query_pre_attn_scalar.sqrt()
    }

    /// How layer `layer` attends: window and rope parameters.
    pub fn layer_attention(&self, layer: u32) -> LayerAttention {
        let global = LayerAttention {
            window: None,
            rope_theta: self.rope_theta,
            rope_scaling: self.rope_scaling,
        };
        match (self.sliding_layers, self.sliding_window) {
            (SlidingLayers::None, _) | (_, None) => global,
            (SlidingLayers::All, Some(w)) => LayerAttention {
                window: Some(w),
                ..global
            },
            (SlidingLayers::PeriodicGlobal, Some(w)) => {
                let period = self.sliding_period.unwrap_or(1);
                if (layer + 1) % period == 0 {
                    global
                } else {
                    // Local layers use their own base frequency and no scaling (HF Gemma 3's
                    // `rotary_emb_local`; llama.cpp `rope_freq_scale_train_swa = 1`).
                    LayerAttention {
                        window: Some(w),
                        rope_theta: self.rope_theta_local.unwrap_or(self.rope_theta),
                        rope_scaling: None,
                    }
                }
            }
        }
    }

    /// The value of `dim` for formulas.
    pub fn value(&self, dim: Dim) -> Option<f64> {
        let c = |v: u32| Some(f64::from(v));
        match dim {
            Dim::Hidden => c(self.hidden),
            Dim::Layers => c(self.layers),
            Dim::Heads => c(self.heads),
            Dim::KvHeads => c(self.kv_heads),
            Dim::HeadDim => c(self.head_dim),
            Dim::Ffn => c(self.ffn),
            Dim::Vocab => c(self.vocab),
            Dim::Context => c(self.context),
            Dim::RopeTheta => Some(f64::from(self.rope_theta)),
            Dim::RopeThetaLocal => self.rope_theta_local.map(f64::from),
            Dim::RopeDims => c(self.rope_dims),
            Dim::PartialRotaryFactor => Some(f64::from(self.rope_dims) / f64::from(self.head_dim)),
            Dim::RmsEps => Some(f64::from(self.rms_eps)),
            Dim::SlidingWindow => self.sliding_window.map(f64::from),
            Dim::SlidingPeriod => self.sliding_period.map(f64::from),
            Dim::QueryPreAttnScalar => Some(f64::from(self.query_pre_attn_scalar)),
            Dim::FinalLogitSoftcap => self.final_logit_softcap.map(f64::from),
        }
    }

    /// The expected row-major shape of `role` under `contract`.
    pub fn shape(
        &self,
        contract: &Contract,
        role: Role,
    ) -> Option<Result<Vec<u64>, FormulaEvalError>> {
        let rule = contract.tensor(role)?;
        Some(
            rule.shape
                .iter()
                .map(|f| f.eval_count(&|d| self.value(d)))
                .collect(),
        )
    }

    fn check_layer_types(&self, types: &[String]) -> Result<(), DimsError> {
        if types.len() != self.layers as usize {
            return Err(DimsError::LayerTypes(format!(
                "{} entries for {} layers",
                types.len(),
                self.layers
            )));
        }
        for (i, t) in types.iter().enumerate() {
            let expect_sliding = self.layer_attention(i as u32).window.is_some();
            let sliding = match t.as_str() {
                "sliding_attention" => true,
                "full_attention" => false,
                other => {
                    return Err(DimsError::LayerTypes(format!(
                        "layer {i}: unknown kind `{other}`"
                    )))
                }
            };
            if sliding != expect_sliding {
                return Err(DimsError::LayerTypes(format!(
                    "layer {i} is `{t}` but the contract's pattern makes it {}",
                    if expect_sliding { "sliding" } else { "global" }
                )));
            }
        }
        Ok(())
    }
}
