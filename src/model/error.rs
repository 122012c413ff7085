//! The error of opening, binding and checking a model. Every variant names the file; its
//! `Display` is one line.

use std::path::PathBuf;

use super::gate::GateError;
use super::gguf::GgufError;
use crate::contract::{ContractError, DimsError, Format};

/// A safetensors file that can't be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SafetensorsError {
    /// Header length, UTF-8 or JSON is wrong.
    #[error("bad header: {0}")]
    Header(String),
    /// Tensor offsets, sizes or coverage of the data section are wrong.
    #[error("bad tensor offsets: {0}")]
    Offsets(String),
    #[error("no *.safetensors file in the model directory")]
    NoWeights,
    #[error("tensor `{name}` appears in two files")]
    DuplicateTensor { name: String },
}

impl SafetensorsError {
    pub fn code(&self) -> &'static str {
        match self {
            SafetensorsError::Header(_) => "safetensors.header",
            SafetensorsError::Offsets(_) => "safetensors.offsets",
            SafetensorsError::NoWeights => "safetensors.no_weights",
            SafetensorsError::DuplicateTensor { .. } => "safetensors.duplicate_tensor",
        }
    }

    pub(crate) fn from_crate(e: safetensors::SafeTensorError) -> SafetensorsError {
        use safetensors::SafeTensorError as E;
        match e {
            E::InvalidOffset(_)
            | E::TensorInvalidInfo
            | E::MetadataIncompleteBuffer
            | E::ValidationOverflow
            | E::MisalignedSlice
            | E::InvalidTensorView(..) => SafetensorsError::Offsets(e.to_string()),
            _ => SafetensorsError::Header(e.to_string()),
        }
    }
}

/// A `config.json` that can't be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("missing `{key}`")]
    MissingKey { key: String },
    #[error("`{key}` should be {expected}")]
    WrongType { key: String, expected: &'static str },
}

impl ConfigError {
    pub fn code(&self) -> &'static str {
        match self {
            ConfigError::Json(_) => "config.json",
            ConfigError::MissingKey { .. } => "config.missing_key",
            ConfigError::WrongType { .. } => "config.wrong_type",
        }
    }
}

/// Error of opening, binding or checking a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("{}: {source}", path.display())]
    Gguf { path: PathBuf, source: GgufError },

    #[error("{}: {source}", path.display())]
    Safetensors {
        path: PathBuf,
        source: SafetensorsError,
    },

    #[error("{}: {source}", path.display())]
    Config { path: PathBuf, source: ConfigError },

    #[error("{}: no architecture name ({what})", path.display())]
    NoArchitecture { path: PathBuf, what: &'static str },

    /// No contract serves the model's architecture; there is deliberately no fallback.
    #[error("{}: no contract for {format} architecture `{name}` (contracts serve: {known})", path.display())]
    UnknownArchitecture {
        path: PathBuf,
        format: Format,
        name: String,
        known: String,
    },

    #[error("{0}")]
    Contract(Box<ContractError>),

    #[error("{}: contract `{contract}`: {source}", path.display())]
    Dims {
        path: PathBuf,
        contract: String,
        source: Box<DimsError>,
    },

    #[error("{}: {source}", path.display())]
    Gate { path: PathBuf, source: GateError },
}

impl From<ContractError> for ModelError {
    fn from(e: ContractError) -> ModelError {
        ModelError::Contract(Box::new(e))
    }
}

impl ModelError {
    /// A stable identifier of the error kind, for tests and tools.
    pub fn code(&self) -> &'static str {
        match self {
            ModelError::Io { .. } => "model.io",
            ModelError::Gguf { source, .. } => source.code(),
            ModelError::Safetensors { source, .. } => source.code(),
            ModelError::Config { source, .. } => source.code(),
            ModelError::NoArchitecture { .. } => "model.no_architecture",
            ModelError::UnknownArchitecture { .. } => "model.unknown_architecture",
            ModelError::Contract(e) => e.code(),
            ModelError::Dims { source, .. } => source.code(),
            ModelError::Gate { .. } => "model.gate",
        }
    }
}
