//! Presets: the dimensions and per-tensor weight types of well-known models (as llama.cpp's
//! Q4_K_M produces them), so kernels can be generated with no model file.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_saphyr::Spanned;

use super::architecture::{Contract, DimRule};
use super::behaviour::Format;
use super::dim::Dim;
use super::dims::{DimSource, DimsError, ModelDims, RopeScaling};
use super::error::{ContractError, SourcePos};
use super::role::{Role, Scope, TensorKey};
use super::spec::{ModelSpec, WeightTable};
use crate::quant::GgmlType;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPreset {
    preset: Spanned<String>,
    architecture: Spanned<String>,
    description: String,
    /// Where the numbers come from (HF repo, GGUF file, llama.cpp version).
    source: String,
    /// The weight format the types describe.
    format: Format,
    dims: Spanned<BTreeMap<Dim, f64>>,
    tied_embeddings: bool,
    #[serde(default)]
    rope_scaling: Option<RopeScaling>,
    weights: Spanned<BTreeMap<Role, Spanned<WeightSpec>>>,
}

/// The type of one role: the same in every layer, or a default with per-layer exceptions
/// written `{ default: Q4_K, Q6_K: [0, 1, 4] }`.
#[derive(Debug, Clone, PartialEq)]
enum WeightSpec {
    Uniform(GgmlType),
    PerLayer {
        default: GgmlType,
        exceptions: BTreeMap<GgmlType, Vec<u32>>,
    },
}

impl<'de> Deserialize<'de> for WeightSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = WeightSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a GGML type, or `{ default: TYPE, TYPE: [layers] }`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<WeightSpec, E> {
                v.parse().map(WeightSpec::Uniform).map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<WeightSpec, A::Error> {
                let mut default = None;
                let mut exceptions = BTreeMap::new();
                while let Some(key) = map.next_key::<String>()? {
                    if key == "default" {
                        default = Some(map.next_value::<GgmlType>()?);
                    } else {
                        let ty: GgmlType = key.parse().map_err(de::Error::custom)?;
                        exceptions.insert(ty, map.next_value::<Vec<u32>>()?);
                    }
                }
                let default = default.ok_or_else(|| de::Error::missing_field("default"))?;
                Ok(WeightSpec::PerLayer {
                    default,
                    exceptions,
                })
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A validated preset.
#[derive(Debug, Clone)]
pub struct Preset {
    pub name: String,
    pub description: String,
    pub source: String,
    pub file: PathBuf,
    pub spec: ModelSpec,
}

/// Preset dims are given by dimension name.
struct PresetDimValues<'a> {
    raw: &'a RawPreset,
}

impl DimSource for PresetDimValues<'_> {
    fn dim_value(&self, dim: Dim, _rule: &DimRule) -> Result<Option<f64>, DimsError> {
        Ok(self.raw.dims.value.get(&dim).copied())
    }
    fn keys_tried(&self, dim: Dim, _rule: &DimRule) -> Vec<String> {
        vec![format!("dims.{dim}")]
    }
    fn tied_embeddings(&self, _contract: &Contract) -> Result<bool, DimsError> {
        Ok(self.raw.tied_embeddings)
    }
    fn rope_scaling(&self) -> Result<Option<RopeScaling>, DimsError> {
        Ok(self.raw.rope_scaling)
    }
}

impl Preset {
    /// Parses and validates a preset against the contracts in `contracts`.
    pub fn from_yaml(
        file: &Path,
        text: &str,
        contracts: &[Arc<Contract>],
    ) -> Result<Preset, ContractError> {
        let raw: RawPreset =
            serde_saphyr::from_str(text).map_err(|e| ContractError::from_yaml(file, &e))?;
        let name = raw.preset.value.clone();
        let contract = contracts
            .iter()
            .find(|c| c.name() == raw.architecture.value)
            .ok_or_else(|| ContractError::UnknownArchitecture {
                pos: SourcePos::of(file, &raw.architecture),
                preset: name.clone(),
                architecture: raw.architecture.value.clone(),
            })?;
        for dim in raw.dims.value.keys() {
            if contract.dim_rule(*dim).is_none() {
                return Err(ContractError::BadDimRule {
                    pos: SourcePos::of(file, &raw.dims),
                    message: format!(
                        "preset `{name}` sets `{dim}`, which contract `{}` does not have",
                        contract.name()
                    ),
                });
            }
        }
        let dims =
            ModelDims::derive(contract, &PresetDimValues { raw: &raw }).map_err(|source| {
                ContractError::PresetDims {
                    pos: SourcePos::of(file, &raw.dims),
                    preset: name.clone(),
                    source: Box::new(source),
                }
            })?;
        let weights = weight_table(file, &raw, contract, &dims)?;
        let spec = ModelSpec {
            name: name.clone(),
            contract: Arc::clone(contract),
            format: raw.format,
            behaviour: contract.behaviour(raw.format),
            dims,
            weights,
        };
        Ok(Preset {
            name,
            description: raw.description,
            source: raw.source,
            file: file.to_path_buf(),
            spec,
        })
    }
}

fn weight_table(
    file: &Path,
    raw: &RawPreset,
    contract: &Contract,
    dims: &ModelDims,
) -> Result<WeightTable, ContractError> {
    let name = &raw.preset.value;
    let all_pos = SourcePos::of(file, &raw.weights);
    let bad = |pos: SourcePos, message: String| ContractError::BadPresetWeights { pos, message };
    for rule in contract.tensors() {
        let needed = rule.required && !(rule.role == super::Role::Output && dims.tied_embeddings);
        if needed && !raw.weights.value.contains_key(&rule.role) {
            return Err(bad(
                all_pos.clone(),
                format!(
                    "preset `{name}` has no type for required tensor `{}`",
                    rule.role
                ),
            ));
        }
    }
    if dims.tied_embeddings && raw.weights.value.contains_key(&Role::Output) {
        return Err(bad(
            all_pos.clone(),
            format!("preset `{name}` ties embeddings but gives `output` a type"),
        ));
    }
    let mut table = WeightTable::new();
    for (&role, spec) in &raw.weights.value {
        let pos = SourcePos::of(file, spec);
        let shape = match dims.shape(contract, role) {
            Some(Ok(shape)) => shape,
            Some(Err(e)) => return Err(bad(pos, format!("shape of `{role}`: {e}"))),
            None => {
                return Err(bad(
                    pos,
                    format!("`{role}` is not a tensor of contract `{}`", contract.name()),
                ))
            }
        };
        let row = shape.last().copied().unwrap_or(0);
        let layers: Vec<Option<u32>> = match role.scope() {
            Scope::Global => vec![None],
            Scope::PerLayer => (0..dims.layers).map(Some).collect(),
        };
        let (default, exceptions) = match &spec.value {
            WeightSpec::Uniform(t) => (*t, BTreeMap::new()),
            WeightSpec::PerLayer { .. } if role.scope() == Scope::Global => {
                return Err(bad(
                    pos,
                    format!("`{role}` is global and can't have per-layer types"),
                ))
            }
            WeightSpec::PerLayer {
                default,
                exceptions,
            } => {
                let mut by_layer = BTreeMap::new();
                for (ty, list) in exceptions {
                    for &l in list {
                        if l >= dims.layers {
                            return Err(bad(
                                pos,
                                format!(
                                    "`{role}`: layer {l} is out of range (layers = {})",
                                    dims.layers
                                ),
                            ));
                        }
                        if by_layer.insert(l, *ty).is_some() {
                            return Err(bad(
                                pos,
                                format!("`{role}`: layer {l} is given two types"),
                            ));
                        }
                    }
                }
                (*default, by_layer)
            }
        };
        for layer in layers {
            let ty = layer
                .and_then(|l| exceptions.get(&l).copied())
                .unwrap_or(default);
            if ty.row_bytes(row).is_none() {
                return Err(bad(
                    pos,
                    format!(
                        "`{role}`: {ty} needs rows that are a multiple of {}, got {row}",
                        ty.block_size()
                    ),
                ));
            }
            table.insert(TensorKey { role, layer }, ty);
        }
    }
    Ok(table)
}
