//! Quantization of f32 values to the types that have a GGML reference quantizer, chosen by
//! [`GgmlType`]: for building test weights and for quantizing float checkpoints on load.

use super::block::{quantize_blocks, write_blocks, Quantize};
use super::{float, q4_0, q4_1, q4_k, q5_0, q5_1, q6_k, q8_0, q8_1, GgmlType, QuantError};

/// `values` quantized to `ty`, as the bytes GGUF would store. F32, F16, BF16, Q4_0, Q4_1,
/// Q5_0, Q5_1, Q8_0, Q8_1, Q4_K and Q6_K are supported; the count must be a whole number of blocks.
pub fn quantize(ty: GgmlType, values: &[f32]) -> Result<Vec<u8>, QuantError> {
    match ty {
        GgmlType::F32 => Ok(float::f32_to_bytes(values)),
        GgmlType::F16 => Ok(float::f32_to_f16(values)),
        GgmlType::BF16 => Ok(float::f32_to_bf16(values)),
        GgmlType::Q4_0 => bytes::<q4_0::BlockQ4_0>(values),
        GgmlType::Q4_1 => bytes::<q4_1::BlockQ4_1>(values),
        GgmlType::Q5_0 => bytes::<q5_0::BlockQ5_0>(values),
        GgmlType::Q5_1 => bytes::<q5_1::BlockQ5_1>(values),
        GgmlType::Q8_0 => bytes::<q8_0::BlockQ8_0>(values),
        GgmlType::Q4K => bytes::<q4_k::BlockQ4K>(values),
        GgmlType::Q6K => bytes::<q6_k::BlockQ6K>(values),
        GgmlType::Q8_1 => q8_1::quantize_row_bytes(values).ok_or(QuantError::NotWholeBlocks {
            ty,
            values: values.len(),
            block: q8_1::QK8_1,
        }),
        GgmlType::Q2K | GgmlType::Q3K | GgmlType::Q5K | GgmlType::Q8K => {
            Err(QuantError::Unsupported { ty, op: "quantize" })
        }
    }
}

fn bytes<B: Quantize>(values: &[f32]) -> Result<Vec<u8>, QuantError> {
    Ok(write_blocks(&quantize_blocks::<B>(values)?))
}
