//! What every GGML block format shares: reading blocks from bytes, writing them back, and
//! turning whole rows into f32 values. Each format implements [`Block`] in its own file; the
//! row helpers here do the length checks once, so no format deals with bad lengths.

use half::f16;

use super::q8_1::{BlockQ8_1, BLOCK_Q8_1_BYTES};
use super::{GgmlType, QuantError};

/// One block of a GGML format, decoded into its fields.
pub trait Block: Sized {
    /// The GGML type this block belongs to.
    const TYPE: GgmlType;
    /// Values per block.
    const VALUES: usize = Self::TYPE.block_size() as usize;
    /// Bytes per block.
    const BYTES: usize = Self::TYPE.block_bytes() as usize;

    /// Decodes a block from exactly [`Block::BYTES`] bytes; `None` for any other length.
    fn read(bytes: &[u8]) -> Option<Self>;
    /// Appends the block's bytes, in GGML's layout.
    fn write(&self, out: &mut Vec<u8>);
    /// Appends the block's [`Block::VALUES`] values, in element order.
    fn dequantize_into(&self, out: &mut Vec<f32>);
}

/// A block format with a GGML reference quantizer.
pub trait Quantize: Block {
    /// Quantizes exactly [`Block::VALUES`] values; `None` for any other length.
    fn quantize_values(values: &[f32]) -> Option<Self>;
}

/// Decodes a buffer that is a whole number of blocks.
pub fn read_blocks<B: Block>(bytes: &[u8]) -> Result<Vec<B>, QuantError> {
    if bytes.len() % B::BYTES != 0 {
        return Err(QuantError::NotWholeBlockBytes {
            ty: B::TYPE,
            found: bytes.len(),
            block: B::BYTES,
        });
    }
    bytes
        .chunks_exact(B::BYTES)
        .map(|chunk| B::read(chunk).ok_or(not_whole_bytes::<B>(chunk.len())))
        .collect()
}

/// Dequantizes a buffer that is a whole number of blocks.
pub fn dequantize_blocks<B: Block>(bytes: &[u8]) -> Result<Vec<f32>, QuantError> {
    let blocks = read_blocks::<B>(bytes)?;
    let mut out = Vec::with_capacity(blocks.len() * B::VALUES);
    for block in &blocks {
        block.dequantize_into(&mut out);
    }
    Ok(out)
}

/// The bytes of `blocks`, back to back, as GGUF stores a row.
pub fn write_blocks<B: Block>(blocks: &[B]) -> Vec<u8> {
    let mut out = Vec::with_capacity(blocks.len() * B::BYTES);
    for block in blocks {
        block.write(&mut out);
    }
    out
}

/// Quantizes values whose count is a multiple of the block size.
pub fn quantize_blocks<B: Quantize>(values: &[f32]) -> Result<Vec<B>, QuantError> {
    if values.len() % B::VALUES != 0 {
        return Err(QuantError::NotWholeBlocks {
            ty: B::TYPE,
            values: values.len(),
            block: B::VALUES,
        });
    }
    values
        .chunks_exact(B::VALUES)
        .map(|chunk| {
            B::quantize_values(chunk).ok_or(QuantError::NotWholeBlocks {
                ty: B::TYPE,
                values: chunk.len(),
                block: B::VALUES,
            })
        })
        .collect()
}

fn not_whole_bytes<B: Block>(found: usize) -> QuantError {
    QuantError::NotWholeBlockBytes {
        ty: B::TYPE,
        found,
        block: B::BYTES,
    }
}

/// The little-endian f16 at `b[at..at + 2]`.
pub(crate) fn f16_at<const N: usize>(b: &[u8; N], at: usize) -> f16 {
    f16::from_le_bytes([b[at], b[at + 1]])
}

/// `b[at..at + M]` as an array.
pub(crate) fn array_at<const N: usize, const M: usize>(b: &[u8; N], at: usize) -> [u8; M] {
    let mut out = [0u8; M];
    out.copy_from_slice(&b[at..at + M]);
    out
}

/// Reads a fixed-size array from a slice of exactly that length.
pub(crate) fn exact<const N: usize>(bytes: &[u8]) -> Option<&[u8; N]> {
    bytes.try_into().ok()
}

impl Block for BlockQ8_1 {
    const TYPE: GgmlType = GgmlType::Q8_1;

    fn read(bytes: &[u8]) -> Option<Self> {
        exact::<BLOCK_Q8_1_BYTES>(bytes).map(BlockQ8_1::from_bytes)
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_bytes());
    }

    fn dequantize_into(&self, out: &mut Vec<f32>) {
        let d = self.d.to_f32();
        out.extend(self.qs.iter().map(|&q| f32::from(q) * d));
    }
}
