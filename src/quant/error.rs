//! The error of every (de)quantization entry point: bad input is reported with the type, what
//! was expected and what was found, never a panic.

use super::GgmlType;

/// What went wrong converting between f32 values and GGML blocks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantError {
    /// The value count is not a multiple of the type's block size.
    #[error("{ty}: {values} values is not a whole number of {block}-value blocks")]
    NotWholeBlocks {
        ty: GgmlType,
        values: usize,
        block: usize,
    },
    /// The byte buffer does not hold exactly the blocks the value count needs.
    #[error("{ty}: {values} values take {expected} bytes, got {found}")]
    ByteLength {
        ty: GgmlType,
        values: usize,
        expected: usize,
        found: usize,
    },
    /// The byte buffer is not a whole number of blocks.
    #[error("{ty}: {found} bytes is not a whole number of {block}-byte blocks")]
    NotWholeBlockBytes {
        ty: GgmlType,
        found: usize,
        block: usize,
    },
    /// The size does not fit in memory (`usize`).
    #[error("{ty}: {values} values overflow the address space")]
    TooLarge { ty: GgmlType, values: usize },
    /// The type has no implementation of the operation.
    #[error("{ty}: {op} is not implemented for this type")]
    Unsupported { ty: GgmlType, op: &'static str },
}
