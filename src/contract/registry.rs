//! The set of known contracts and presets, and lookup by architecture name.
//!
//! The contracts under `contracts/` are compiled into the crate ([`Registry::builtin`]) so the
//! `ptxforge` binary works from any directory; [`Registry::load_dir`] reads a directory of the
//! same layout instead (for trying out a new contract without rebuilding).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::architecture::Contract;
use super::error::{ContractError, SourcePos};
use super::preset::Preset;
use super::spec::ModelSpec;

/// Contracts and presets shipped in `contracts/`, as (path relative to the repository, text).
/// `tests/contracts_registry.rs` checks that this list matches the directory.
pub const BUILTIN_ARCHITECTURES: &[(&str, &str)] = &[
    (
        "contracts/architectures/gemma3.yaml",
        include_str!("../../contracts/architectures/gemma3.yaml"),
    ),
    (
        "contracts/architectures/llama.yaml",
        include_str!("../../contracts/architectures/llama.yaml"),
    ),
    (
        "contracts/architectures/mistral.yaml",
        include_str!("../../contracts/architectures/mistral.yaml"),
    ),
    (
        "contracts/architectures/phi3.yaml",
        include_str!("../../contracts/architectures/phi3.yaml"),
    ),
    (
        "contracts/architectures/qwen2.yaml",
        include_str!("../../contracts/architectures/qwen2.yaml"),
    ),
    (
        "contracts/architectures/qwen3.yaml",
        include_str!("../../contracts/architectures/qwen3.yaml"),
    ),
];

/// See [`BUILTIN_ARCHITECTURES`].
pub const BUILTIN_PRESETS: &[(&str, &str)] = &[
    (
        "contracts/presets/gemma3-1b.yaml",
        include_str!("../../contracts/presets/gemma3-1b.yaml"),
    ),
    (
        "contracts/presets/gemma3-270m.yaml",
        include_str!("../../contracts/presets/gemma3-270m.yaml"),
    ),
    (
        "contracts/presets/llama3-8b.yaml",
        include_str!("../../contracts/presets/llama3-8b.yaml"),
    ),
    (
        "contracts/presets/llama3.2-1b.yaml",
        include_str!("../../contracts/presets/llama3.2-1b.yaml"),
    ),
    (
        "contracts/presets/mistral-7b.yaml",
        include_str!("../../contracts/presets/mistral-7b.yaml"),
    ),
    (
        "contracts/presets/phi3-mini.yaml",
        include_str!("../../contracts/presets/phi3-mini.yaml"),
    ),
    (
        "contracts/presets/qwen2.5-0.5b.yaml",
        include_str!("../../contracts/presets/qwen2.5-0.5b.yaml"),
    ),
    (
        "contracts/presets/qwen2.5-7b.yaml",
        include_str!("../../contracts/presets/qwen2.5-7b.yaml"),
    ),
    (
        "contracts/presets/qwen3-0.6b.yaml",
        include_str!("../../contracts/presets/qwen3-0.6b.yaml"),
    ),
    (
        "contracts/presets/qwen3-8b.yaml",
        include_str!("../../contracts/presets/qwen3-8b.yaml"),
    ),
    (
        "contracts/presets/smollm2-135m.yaml",
        include_str!("../../contracts/presets/smollm2-135m.yaml"),
    ),
];

/// Known contracts and presets.
#[derive(Debug, Clone)]
pub struct Registry {
    contracts: Vec<Arc<Contract>>,
    presets: Vec<Preset>,
}

impl Registry {
    /// The contracts and presets compiled into the crate.
    pub fn builtin() -> Result<Registry, ContractError> {
        Registry::from_sources(BUILTIN_ARCHITECTURES, BUILTIN_PRESETS)
    }

    /// Reads `dir/architectures/*.yaml` and `dir/presets/*.yaml`.
    pub fn load_dir(dir: &Path) -> Result<Registry, ContractError> {
        let read = |sub: &str| -> Result<Vec<(PathBuf, String)>, ContractError> {
            let d = dir.join(sub);
            let io = |source| ContractError::Io {
                file: d.clone(),
                source,
            };
            let mut files: Vec<PathBuf> = std::fs::read_dir(&d)
                .map_err(io)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
                .collect();
            files.sort();
            files
                .into_iter()
                .map(|p| {
                    let text = std::fs::read_to_string(&p).map_err(|source| ContractError::Io {
                        file: p.clone(),
                        source,
                    })?;
                    Ok((p, text))
                })
                .collect()
        };
        let archs = read("architectures")?;
        let presets = read("presets")?;
        let as_refs = |v: &[(PathBuf, String)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(p, t)| (p.display().to_string(), t.clone()))
                .collect()
        };
        let a = as_refs(&archs);
        let p = as_refs(&presets);
        let a: Vec<(&str, &str)> = a.iter().map(|(p, t)| (p.as_str(), t.as_str())).collect();
        let p: Vec<(&str, &str)> = p.iter().map(|(p, t)| (p.as_str(), t.as_str())).collect();
        Registry::from_sources(&a, &p)
    }

    /// Parses and validates contracts and presets given as (file name, text).
    pub fn from_sources(
        architectures: &[(&str, &str)],
        presets: &[(&str, &str)],
    ) -> Result<Registry, ContractError> {
        let mut contracts: Vec<Arc<Contract>> = Vec::new();
        for (file, text) in architectures {
            let c = Contract::from_yaml(Path::new(file), text)?;
            let pos = SourcePos::new(Path::new(file), 0, 0);
            for other in &contracts {
                let clash = |name: &String| ContractError::DuplicateName {
                    pos: pos.clone(),
                    name: name.clone(),
                    other: other.name().to_string(),
                };
                if other.name() == c.name() {
                    return Err(clash(&c.name().to_string()));
                }
                if let Some(n) = c
                    .gguf_names()
                    .iter()
                    .find(|n| other.gguf_names().contains(n))
                {
                    return Err(clash(n));
                }
                if let Some(n) = c.hf_names().iter().find(|n| other.hf_names().contains(n)) {
                    return Err(clash(n));
                }
            }
            contracts.push(Arc::new(c));
        }
        let mut loaded: Vec<Preset> = Vec::new();
        for (file, text) in presets {
            let p = Preset::from_yaml(Path::new(file), text, &contracts)?;
            if loaded.iter().any(|q| q.name == p.name) {
                return Err(ContractError::DuplicateName {
                    pos: SourcePos::new(Path::new(file), 0, 0),
                    name: p.name.clone(),
                    other: "another preset".to_string(),
                });
            }
            loaded.push(p);
        }
        Ok(Registry {
            contracts,
            presets: loaded,
        })
    }

    /// Every contract.
    pub fn contracts(&self) -> &[Arc<Contract>] {
        &self.contracts
    }

    /// The contract called `name` (`llama`, `gemma3`, ...).
    pub fn contract(&self, name: &str) -> Option<&Arc<Contract>> {
        self.contracts.iter().find(|c| c.name() == name)
    }

    /// The contract serving GGUF `general.architecture` = `arch`.
    pub fn for_gguf(&self, arch: &str) -> Option<&Arc<Contract>> {
        self.contracts
            .iter()
            .find(|c| c.gguf_names().iter().any(|n| n == arch))
    }

    /// The contract serving HF `architectures[]` entry `arch`.
    pub fn for_hf(&self, arch: &str) -> Option<&Arc<Contract>> {
        self.contracts
            .iter()
            .find(|c| c.hf_names().iter().any(|n| n == arch))
    }

    /// Every preset.
    pub fn presets(&self) -> &[Preset] {
        &self.presets
    }

    /// The preset called `name`.
    pub fn preset(&self, name: &str) -> Result<&Preset, ContractError> {
        self.presets
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| ContractError::UnknownPreset {
                name: name.to_string(),
                known: self
                    .presets
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// The model spec of preset `name`: dims, behaviour and weight types, no file needed.
    pub fn preset_spec(&self, name: &str) -> Result<&ModelSpec, ContractError> {
        self.preset(name).map(|p| &p.spec)
    }
}
