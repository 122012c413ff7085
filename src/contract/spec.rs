//! `ModelSpec`: everything kernel generation needs about one model, with no model file:
//! contract, dimensions, behaviour for the weight format, and the type of every weight.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use super::architecture::Contract;
use super::behaviour::{Behaviour, Format};
use super::dims::ModelDims;
use super::formula::FormulaEvalError;
use super::role::{Role, Scope, TensorKey};
use crate::quant::GgmlType;

/// The GGML type of every weight tensor of a model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WeightTable {
    types: BTreeMap<TensorKey, GgmlType>,
}

impl WeightTable {
    pub fn new() -> WeightTable {
        WeightTable::default()
    }

    /// Sets the type of `key`, returning the previous one.
    pub fn insert(&mut self, key: TensorKey, ty: GgmlType) -> Option<GgmlType> {
        self.types.insert(key, ty)
    }

    /// The type of `role` (in block `layer` for per-layer roles).
    pub fn get(&self, role: Role, layer: Option<u32>) -> Option<GgmlType> {
        self.types.get(&TensorKey { role, layer }).copied()
    }

    /// True when any tensor of `role` is present.
    pub fn has_role(&self, role: Role) -> bool {
        self.types.keys().any(|k| k.role == role)
    }

    /// Every tensor and its type, in role then layer order.
    pub fn iter(&self) -> impl Iterator<Item = (TensorKey, GgmlType)> + '_ {
        self.types.iter().map(|(k, t)| (*k, *t))
    }

    pub fn len(&self) -> usize {
        self.types.len()
    }

    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }

    /// How many tensors have each type.
    pub fn type_counts(&self) -> BTreeMap<GgmlType, usize> {
        let mut out = BTreeMap::new();
        for t in self.types.values() {
            *out.entry(*t).or_insert(0) += 1;
        }
        out
    }

    /// The types `role` has across layers, one per layer in order (a global role gives one).
    pub fn role_types(&self, role: Role) -> Vec<GgmlType> {
        self.types
            .iter()
            .filter(|(k, _)| k.role == role)
            .map(|(_, t)| *t)
            .collect()
    }
}

/// One model as kernel generation sees it.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    /// Preset name, or the model file's name.
    pub name: String,
    pub contract: Arc<Contract>,
    /// The format the weights are in (decides norm offsets and rope style).
    pub format: Format,
    pub dims: ModelDims,
    pub behaviour: Behaviour,
    pub weights: WeightTable,
}

impl ModelSpec {
    /// The expected row-major shape of `role`.
    pub fn shape(&self, role: Role) -> Option<Result<Vec<u64>, FormulaEvalError>> {
        self.dims.shape(&self.contract, role)
    }

    /// The type of `role` in `layer` (ignored for global roles).
    pub fn weight_type(&self, role: Role, layer: u32) -> Option<GgmlType> {
        match role.scope() {
            Scope::Global => self.weights.get(role, None),
            Scope::PerLayer => self.weights.get(role, Some(layer)),
        }
    }

    /// A serializable summary (for `inspect --json` and manifests).
    pub fn summary(&self) -> SpecSummary {
        SpecSummary {
            name: self.name.clone(),
            architecture: self.contract.name().to_string(),
            format: self.format,
            dims: self.dims.clone(),
            behaviour: self.behaviour.clone(),
        }
    }
}

/// Serializable view of a [`ModelSpec`] without the weight table.
#[derive(Debug, Clone, Serialize)]
pub struct SpecSummary {
    pub name: String,
    pub architecture: String,
    pub format: Format,
    pub dims: ModelDims,
    pub behaviour: Behaviour,
}
