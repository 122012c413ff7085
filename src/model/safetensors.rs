//! Hugging Face checkpoints: `config.json` plus one or more `*.safetensors` files, read through
//! the `safetensors` crate (which validates the header, dtypes, shapes and that the tensors
//! tile the data section exactly) over memory maps.

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};

use super::error::{ConfigError, ModelError, SafetensorsError};
use super::info::{TensorDtype, TensorInfo};
use crate::quant::GgmlType;

/// `config.json` larger than this is not a config (real ones are a few KiB).
const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// A loaded HF checkpoint.
pub struct HfModel {
    pub config_path: PathBuf,
    pub config: serde_json::Value,
    pub shards: Vec<(PathBuf, Mmap)>,
}

impl std::fmt::Debug for HfModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shards: Vec<&PathBuf> = self.shards.iter().map(|(p, _)| p).collect();
        f.debug_struct("HfModel")
            .field("config_path", &self.config_path)
            .field("shards", &shards)
            .finish()
    }
}

impl HfModel {
    /// Opens a model directory (every `*.safetensors` in it) or one `.safetensors` file, with
    /// the `config.json` next to it. Returns the model and its tensor table.
    pub fn open(path: &Path) -> Result<(HfModel, Vec<TensorInfo>), ModelError> {
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |source| ModelError::Io { path: p, source }
        };
        let (dir, weight_files) = if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(io(path))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
                .collect();
            files.sort();
            (path.to_path_buf(), files)
        } else {
            (
                path.parent().map(Path::to_path_buf).unwrap_or_default(),
                vec![path.to_path_buf()],
            )
        };
        if weight_files.is_empty() {
            return Err(ModelError::Safetensors {
                path: path.to_path_buf(),
                source: SafetensorsError::NoWeights,
            });
        }
        let config_path = dir.join("config.json");
        let config = read_config(&config_path)?;

        let mut shards = Vec::with_capacity(weight_files.len());
        let mut tensors: Vec<TensorInfo> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (file_index, p) in weight_files.into_iter().enumerate() {
            let file = File::open(&p).map_err(io(&p))?;
            // SAFETY: read-only map kept alive with the model; see `GgufFile::open`.
            let map = unsafe { Mmap::map(&file) }.map_err(io(&p))?;
            let st = SafeTensors::deserialize(&map).map_err(|e| ModelError::Safetensors {
                path: p.clone(),
                source: SafetensorsError::from_crate(e),
            })?;
            let base = map.as_ptr() as usize;
            let mut found: Vec<TensorInfo> = st
                .iter()
                .map(|(name, view)| {
                    // Views borrow from `map`, so their offset from its start is their range.
                    let start = view.data().as_ptr() as usize - base;
                    TensorInfo {
                        name: name.to_string(),
                        dtype: dtype(view.dtype()),
                        shape: view.shape().iter().map(|&d| d as u64).collect(),
                        bytes: view.data().len() as u64,
                        file: file_index,
                        range: start..start + view.data().len(),
                    }
                })
                .collect();
            found.sort_by_key(|t| t.range.start);
            for t in &found {
                if !seen.insert(t.name.clone()) {
                    return Err(ModelError::Safetensors {
                        path: p.clone(),
                        source: SafetensorsError::DuplicateTensor {
                            name: t.name.clone(),
                        },
                    });
                }
            }
            tensors.extend(found);
            shards.push((p, map));
        }
        Ok((
            HfModel {
                config_path,
                config,
                shards,
            },
            tensors,
        ))
    }

    /// `architectures[0]` of `config.json`.
    pub fn architecture(&self) -> Result<String, ModelError> {
        let err = |source| ModelError::Config {
            path: self.config_path.clone(),
            source,
        };
        let archs = self.config.get("architectures").ok_or_else(|| {
            err(ConfigError::MissingKey {
                key: "architectures".to_string(),
            })
        })?;
        archs
            .as_array()
            .and_then(|a| a.first())
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .ok_or_else(|| {
                err(ConfigError::WrongType {
                    key: "architectures".to_string(),
                    expected: "a list of names",
                })
            })
    }
}

fn read_config(path: &Path) -> Result<serde_json::Value, ModelError> {
    let io = |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_CONFIG_BYTES {
        return Err(ModelError::Config {
            path: path.to_path_buf(),
            source: ConfigError::Json(format!(
                "{len} bytes, more than a config can be ({MAX_CONFIG_BYTES})"
            )),
        });
    }
    let text = std::fs::read(path).map_err(io)?;
    let value: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| ModelError::Config {
            path: path.to_path_buf(),
            source: ConfigError::Json(e.to_string()),
        })?;
    if !value.is_object() {
        return Err(ModelError::Config {
            path: path.to_path_buf(),
            source: ConfigError::Json("the top level is not an object".to_string()),
        });
    }
    Ok(value)
}

fn dtype(d: Dtype) -> TensorDtype {
    match d {
        Dtype::F32 => TensorDtype::Ggml(GgmlType::F32),
        Dtype::F16 => TensorDtype::Ggml(GgmlType::F16),
        Dtype::BF16 => TensorDtype::Ggml(GgmlType::BF16),
        other => TensorDtype::Other(format!("{other:?}")),
    }
}
