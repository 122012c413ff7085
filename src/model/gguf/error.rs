//! Errors of parsing a GGUF file. None of them carries the path; [`crate::model::ModelError`]
//! adds it.

/// A GGUF structure that cannot be read, or is read but is not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GgufError {
    #[error("truncated: {what} needs {needed} bytes at offset {offset}, only {available} left")]
    Truncated {
        what: String,
        offset: u64,
        needed: u64,
        available: u64,
    },

    #[error("not a GGUF file: magic is {found:02x?}, expected \"GGUF\"")]
    BadMagic { found: Vec<u8> },

    #[error("unsupported GGUF version {version} (supported: 2, 3)")]
    UnsupportedVersion { version: u32 },

    #[error("big-endian GGUF (version {version} byte-swapped) is not supported")]
    BigEndian { version: u32 },

    #[error(
        "{what} count {count} is impossible: the remaining {available} bytes hold at most {max}"
    )]
    CountTooLarge {
        what: String,
        count: u64,
        max: u64,
        available: u64,
    },

    #[error("{what}: length {len} runs past the end of the file ({available} bytes left at offset {offset})")]
    StringTooLong {
        what: String,
        len: u64,
        offset: u64,
        available: u64,
    },

    #[error("{what} is not valid UTF-8")]
    InvalidUtf8 { what: String },

    #[error("metadata `{key}`: unknown value type {type_id}")]
    UnknownValueType { key: String, type_id: u32 },

    #[error("metadata `{key}`: arrays nested deeper than {max}")]
    NestingTooDeep { key: String, max: usize },

    #[error("metadata key `{key}` appears twice")]
    DuplicateKey { key: String },

    #[error("metadata `{key}` should be {expected}, found {found}")]
    WrongMetaType {
        key: String,
        expected: &'static str,
        found: String,
    },

    #[error("general.alignment = {alignment}, expected a power of two")]
    BadAlignment { alignment: u64 },

    #[error("tensor `{name}` appears twice")]
    DuplicateTensor { name: String },

    #[error("tensor `{name}`: {n_dims} dimensions, expected 1..={max}")]
    BadDimCount { name: String, n_dims: u32, max: u32 },

    #[error("tensor `{name}`: dimension {index} is {value}, expected 1..=2^63-1")]
    BadDim {
        name: String,
        index: usize,
        value: u64,
    },

    #[error("tensor `{name}`: unknown GGML type id {type_id}")]
    UnknownTensorType { name: String, type_id: u32 },

    #[error("tensor `{name}`: GGML type {type_name} (id {type_id}) is not supported")]
    UnsupportedTensorType {
        name: String,
        type_id: u32,
        type_name: &'static str,
    },

    #[error("tensor `{name}`: {ty} needs rows that are a multiple of {block} elements, got {row}")]
    RowNotBlockAligned {
        name: String,
        ty: crate::quant::GgmlType,
        block: u32,
        row: u64,
    },

    #[error("tensor `{name}`: byte size of shape {shape:?} overflows u64")]
    ShapeOverflow { name: String, shape: Vec<u64> },

    #[error("tensor `{name}`: offset {offset} is not a multiple of the alignment {alignment}")]
    MisalignedOffset {
        name: String,
        offset: u64,
        alignment: u64,
    },

    #[error("tensor `{name}`: data [{start}, {end}) lies outside the file ({file_len} bytes)")]
    DataOutOfRange {
        name: String,
        start: u64,
        end: u64,
        file_len: u64,
    },

    #[error("tensors `{first}` and `{second}` overlap")]
    Overlap { first: String, second: String },
}

impl GgufError {
    /// A stable identifier of the error kind.
    pub fn code(&self) -> &'static str {
        match self {
            GgufError::Truncated { .. } => "gguf.truncated",
            GgufError::BadMagic { .. } => "gguf.bad_magic",
            GgufError::UnsupportedVersion { .. } => "gguf.unsupported_version",
            GgufError::BigEndian { .. } => "gguf.big_endian",
            GgufError::CountTooLarge { .. } => "gguf.count_too_large",
            GgufError::StringTooLong { .. } => "gguf.string_too_long",
            GgufError::InvalidUtf8 { .. } => "gguf.invalid_utf8",
            GgufError::UnknownValueType { .. } => "gguf.unknown_value_type",
            GgufError::NestingTooDeep { .. } => "gguf.nesting_too_deep",
            GgufError::DuplicateKey { .. } => "gguf.duplicate_key",
            GgufError::WrongMetaType { .. } => "gguf.wrong_meta_type",
            GgufError::BadAlignment { .. } => "gguf.bad_alignment",
            GgufError::DuplicateTensor { .. } => "gguf.duplicate_tensor",
            GgufError::BadDimCount { .. } => "gguf.bad_dim_count",
            GgufError::BadDim { .. } => "gguf.bad_dim",
            GgufError::UnknownTensorType { .. } => "gguf.unknown_tensor_type",
            GgufError::UnsupportedTensorType { .. } => "gguf.unsupported_tensor_type",
            GgufError::RowNotBlockAligned { .. } => "gguf.row_not_block_aligned",
            GgufError::ShapeOverflow { .. } => "gguf.shape_overflow",
            GgufError::MisalignedOffset { .. } => "gguf.misaligned_offset",
            GgufError::DataOutOfRange { .. } => "gguf.data_out_of_range",
            GgufError::Overlap { .. } => "gguf.overlap",
        }
    }
}
