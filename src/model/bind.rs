//! Binding an opened model to its contract: which contract serves it, its dimensions, and
//! which tensor plays which role.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::error::ModelError;
use super::gate::{self, GateReport, SupportedTypes};
use super::info::{ModelInfo, TensorDtype};
use crate::contract::{
    Contract, Format, ModelDims, ModelSpec, Registry, Scope, TensorKey, WeightTable,
};

/// A model with its contract, dimensions and tensor roles. Whether every required tensor is
/// there is the completeness gate's question ([`BoundModel::gate`]).
#[derive(Debug)]
pub struct BoundModel {
    pub info: ModelInfo,
    pub spec: ModelSpec,
    /// Index into `info.tensors()` of every role instance the file has.
    pub tensors: BTreeMap<TensorKey, usize>,
    /// Indices of tensors no role of the contract claims (or in a block past `layers`).
    pub unrecognised: Vec<usize>,
}

impl BoundModel {
    /// Finds the contract serving `info`, derives and validates its dimensions, and assigns
    /// tensors to roles. A model whose architecture no contract names is an error: there is no
    /// fallback contract.
    pub fn bind(info: ModelInfo, registry: &Registry) -> Result<BoundModel, ModelError> {
        let format = info.format();
        let arch = info.architecture().to_string();
        let contract = match format {
            Format::Gguf => registry.for_gguf(&arch),
            Format::Hf => registry.for_hf(&arch),
        }
        .cloned()
        .ok_or_else(|| ModelError::UnknownArchitecture {
            path: info.path().to_path_buf(),
            format,
            name: arch.clone(),
            known: known_names(registry, format),
        })?;

        let dims = derive_dims(&info, &contract).map_err(|source| ModelError::Dims {
            path: info.metadata_path().to_path_buf(),
            contract: contract.name().to_string(),
            source: Box::new(source),
        })?;

        let mut tensors = BTreeMap::new();
        let mut unrecognised = Vec::new();
        let mut weights = WeightTable::new();
        for (i, t) in info.tensors().iter().enumerate() {
            let key = match contract.role_of(format, &t.name) {
                Some((role, layer)) if layer.is_none_or(|l| l < dims.layers) => {
                    TensorKey { role, layer }
                }
                _ => {
                    unrecognised.push(i);
                    continue;
                }
            };
            if let TensorDtype::Ggml(ty) = t.dtype {
                weights.insert(key, ty);
            }
            tensors.insert(key, i);
        }
        if !unrecognised.is_empty() {
            tracing::debug!(
                count = unrecognised.len(),
                "tensors without a contract role"
            );
        }
        let name = info
            .path()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| info.path().display().to_string());
        let spec = ModelSpec {
            name,
            behaviour: contract.behaviour(format),
            contract: Arc::clone(&contract),
            format,
            dims,
            weights,
        };
        Ok(BoundModel {
            info,
            spec,
            tensors,
            unrecognised,
        })
    }

    /// Runs the completeness gate: every required tensor present, with the expected shape and
    /// a type in `supported`.
    pub fn gate(&self, supported: &SupportedTypes) -> GateReport {
        gate::check(self, supported)
    }

    /// The contract.
    pub fn contract(&self) -> &Contract {
        &self.spec.contract
    }

    /// The data of the tensor playing `key`, borrowed from the file.
    pub fn tensor_data(&self, key: TensorKey) -> Option<&[u8]> {
        self.info.tensor_data(*self.tensors.get(&key)?)
    }

    /// The keys every role instance of the contract would have for these dims: global roles
    /// first, then block by block (the order llama.cpp writes them), roles in graph order.
    pub fn expected_keys(&self) -> Vec<TensorKey> {
        let mut keys: Vec<TensorKey> = self
            .contract()
            .tensors()
            .flat_map(|rule| -> Vec<TensorKey> {
                match rule.role.scope() {
                    Scope::Global => vec![TensorKey::global(rule.role)],
                    Scope::PerLayer => (0..self.spec.dims.layers)
                        .map(|l| TensorKey::layer(rule.role, l))
                        .collect(),
                }
            })
            .collect();
        keys.sort_by_key(|k| (k.layer, k.role));
        keys
    }
}

/// Opens `path`, binds it and runs the gate: the whole check that must pass before any GPU
/// work.
pub fn open_checked(
    path: &Path,
    registry: &Registry,
    supported: &SupportedTypes,
) -> Result<BoundModel, ModelError> {
    let bound = BoundModel::bind(ModelInfo::open(path)?, registry)?;
    bound
        .gate(supported)
        .into_result()
        .map_err(|source| ModelError::Gate {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(bound)
}

fn derive_dims(
    info: &ModelInfo,
    contract: &Contract,
) -> Result<ModelDims, crate::contract::DimsError> {
    ModelDims::derive(contract, info.dim_source().as_ref())
}

fn known_names(registry: &Registry, format: Format) -> String {
    let mut names: Vec<&str> = registry
        .contracts()
        .iter()
        .flat_map(|c| match format {
            Format::Gguf => c.gguf_names(),
            Format::Hf => c.hf_names(),
        })
        .map(String::as_str)
        .collect();
    names.sort_unstable();
    names.join(", ")
}
