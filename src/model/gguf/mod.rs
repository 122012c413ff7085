//! GGUF files (versions 2 and 3): the header parsed with nom from a memory map, and
//! zero-copy views of tensor data.

mod cursor;
mod error;
mod header;
mod value;

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

pub use error::GgufError;
pub use header::{parse, GgufHeader, GgufTensorInfo, DEFAULT_ALIGNMENT, MAX_DIMS, MAX_NESTING};
pub use value::{MetaArray, MetaValue, ValueType};

use super::error::ModelError;

/// An open GGUF file: its parsed header and the mapped bytes tensor views borrow from.
pub struct GgufFile {
    path: PathBuf,
    map: Mmap,
    header: GgufHeader,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

impl GgufFile {
    /// Maps and parses the file at `path`.
    pub fn open(path: &Path) -> Result<GgufFile, ModelError> {
        let io = |source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len == 0 {
            // Mapping an empty file fails on some platforms; it is just a truncated GGUF.
            let e = GgufError::Truncated {
                what: "magic".to_string(),
                offset: 0,
                needed: 4,
                available: 0,
            };
            return Err(ModelError::Gguf {
                path: path.to_path_buf(),
                source: e,
            });
        }
        // SAFETY: the map is read-only and lives as long as `self`. Another process truncating
        // or rewriting the file while it is mapped is outside what a reader can defend against
        // (the same caveat as every mmap-based model loader); we never write through it.
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        let header = header::parse(&map).map_err(|source| ModelError::Gguf {
            path: path.to_path_buf(),
            source,
        })?;
        tracing::debug!(
            path = %path.display(),
            version = header.version,
            tensors = header.tensors.len(),
            metadata = header.metadata.len(),
            "parsed GGUF header"
        );
        Ok(GgufFile {
            path: path.to_path_buf(),
            map,
            header,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn header(&self) -> &GgufHeader {
        &self.header
    }

    /// The bytes of the whole file.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// The data of tensor `i` (in header order), borrowed from the map.
    pub fn tensor_data(&self, i: usize) -> Option<&[u8]> {
        self.map.get(self.header.tensor_range(i)?)
    }

    /// The data of the tensor called `name`.
    pub fn tensor_data_by_name(&self, name: &str) -> Option<&[u8]> {
        let i = self.header.tensors.iter().position(|t| t.name == name)?;
        self.tensor_data(i)
    }
}
