//! `ModelInfo`: one model file (or HF directory) opened, whatever its format: the tensor
//! table, the architecture name, and access to metadata and tensor bytes.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::dim_sources::{GgufDims, HfDims};
use super::error::ModelError;
use super::gguf::GgufFile;
use super::safetensors::HfModel;
use crate::contract::{DimSource, Format};
use crate::quant::GgmlType;

/// Element type of a tensor as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum TensorDtype {
    Ggml(GgmlType),
    /// A safetensors dtype with no GGML equivalent here (I64, F8_E4M3, ...).
    Other(String),
}

impl std::fmt::Display for TensorDtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TensorDtype::Ggml(t) => write!(f, "{t}"),
            TensorDtype::Other(s) => f.write_str(s),
        }
    }
}

/// One tensor of a model file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: TensorDtype,
    /// Row-major: outermost first, the row last (GGUF `ne` reversed; safetensors as stored).
    pub shape: Vec<u64>,
    pub bytes: u64,
    /// Which file of the model holds it (always 0 for GGUF).
    pub file: usize,
    /// Byte range inside that file.
    pub range: Range<usize>,
}

#[derive(Debug)]
enum Backing {
    Gguf(GgufFile),
    Hf(HfModel),
}

/// An opened model.
#[derive(Debug)]
pub struct ModelInfo {
    path: PathBuf,
    format: Format,
    architecture: String,
    tensors: Vec<TensorInfo>,
    backing: Backing,
}

impl ModelInfo {
    /// Opens a GGUF file, a `.safetensors` file (with `config.json` beside it) or an HF model
    /// directory. The format is decided by what the path is, not by its extension: a directory
    /// or a `.safetensors` file is HF, anything else must be GGUF.
    pub fn open(path: &Path) -> Result<ModelInfo, ModelError> {
        let is_hf = path.is_dir() || path.extension().is_some_and(|x| x == "safetensors");
        if is_hf {
            let (hf, tensors) = HfModel::open(path)?;
            let architecture = hf.architecture()?;
            Ok(ModelInfo {
                path: path.to_path_buf(),
                format: Format::Hf,
                architecture,
                tensors,
                backing: Backing::Hf(hf),
            })
        } else {
            let gguf = GgufFile::open(path)?;
            let header = gguf.header();
            let architecture = header
                .architecture()
                .ok_or(ModelError::NoArchitecture {
                    path: path.to_path_buf(),
                    what: "no string `general.architecture`",
                })?
                .to_string();
            let tensors = header
                .tensors
                .iter()
                .enumerate()
                .map(|(i, t)| TensorInfo {
                    name: t.name.clone(),
                    dtype: TensorDtype::Ggml(t.ty),
                    shape: t.shape(),
                    bytes: t.size,
                    file: 0,
                    // Checked against the file by the parser.
                    range: header.tensor_range(i).unwrap_or(0..0),
                })
                .collect();
            Ok(ModelInfo {
                path: path.to_path_buf(),
                format: Format::Gguf,
                architecture,
                tensors,
                backing: Backing::Gguf(gguf),
            })
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// The architecture name as the file states it (GGUF `general.architecture`, HF
    /// `architectures[0]`).
    pub fn architecture(&self) -> &str {
        &self.architecture
    }

    /// Every tensor, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Bytes of tensor `i`, borrowed from the memory map.
    pub fn tensor_data(&self, i: usize) -> Option<&[u8]> {
        let t = self.tensors.get(i)?;
        match &self.backing {
            Backing::Gguf(g) => g.bytes().get(t.range.clone()),
            Backing::Hf(h) => h.shards.get(t.file)?.1.get(t.range.clone()),
        }
    }

    /// The GGUF file, for GGUF models.
    pub fn gguf(&self) -> Option<&GgufFile> {
        match &self.backing {
            Backing::Gguf(g) => Some(g),
            Backing::Hf(_) => None,
        }
    }

    /// The HF checkpoint, for HF models.
    pub fn hf(&self) -> Option<&HfModel> {
        match &self.backing {
            Backing::Hf(h) => Some(h),
            Backing::Gguf(_) => None,
        }
    }

    /// Total bytes on disk (every file of the model).
    pub fn file_bytes(&self) -> u64 {
        match &self.backing {
            Backing::Gguf(g) => g.header().file_len,
            Backing::Hf(h) => h.shards.iter().map(|(_, m)| m.len() as u64).sum(),
        }
    }

    /// What dimension derivation reads: GGUF metadata or `config.json`.
    pub(crate) fn dim_source(&self) -> Box<dyn DimSource + '_> {
        match &self.backing {
            Backing::Gguf(g) => Box::new(GgufDims {
                header: g.header(),
                arch: &self.architecture,
                tensor_names: self.tensors.iter().map(|t| t.name.as_str()).collect(),
            }),
            Backing::Hf(h) => Box::new(HfDims { config: &h.config }),
        }
    }

    /// The file metadata and dimension errors should name (GGUF file, or `config.json`).
    pub fn metadata_path(&self) -> &Path {
        match &self.backing {
            Backing::Gguf(g) => g.path(),
            Backing::Hf(h) => &h.config_path,
        }
    }
}
