//! Dequantization of any supported tensor type, chosen by [`GgmlType`].

use super::block::{dequantize_blocks, Block};
use super::q8_1::BlockQ8_1;
use super::{
    float, q2_k, q3_k, q4_0, q4_1, q4_k, q5_0, q5_1, q5_k, q6_k, q8_0, GgmlType, QuantError,
};

/// The `n` values stored in `bytes` as type `ty` (GGUF's layout: blocks back to back).
///
/// Errors when `n` is not a whole number of blocks, when `bytes` is not exactly the size `n`
/// values take, and for Q8_K (an in-memory type GGUF files do not hold).
pub fn dequantize(ty: GgmlType, bytes: &[u8], n: usize) -> Result<Vec<f32>, QuantError> {
    let expected = byte_len(ty, n)?;
    if bytes.len() != expected {
        return Err(QuantError::ByteLength {
            ty,
            values: n,
            expected,
            found: bytes.len(),
        });
    }
    match ty {
        GgmlType::F32 => float::f32_from_bytes(bytes),
        GgmlType::F16 => float::f16_to_f32(bytes),
        GgmlType::BF16 => float::bf16_to_f32(bytes),
        GgmlType::Q4_0 => dequantize_blocks::<q4_0::BlockQ4_0>(bytes),
        GgmlType::Q4_1 => dequantize_blocks::<q4_1::BlockQ4_1>(bytes),
        GgmlType::Q5_0 => dequantize_blocks::<q5_0::BlockQ5_0>(bytes),
        GgmlType::Q5_1 => dequantize_blocks::<q5_1::BlockQ5_1>(bytes),
        GgmlType::Q8_0 => dequantize_blocks::<q8_0::BlockQ8_0>(bytes),
        GgmlType::Q8_1 => dequantize_blocks::<BlockQ8_1>(bytes),
        GgmlType::Q2K => dequantize_blocks::<q2_k::BlockQ2K>(bytes),
        GgmlType::Q3K => dequantize_blocks::<q3_k::BlockQ3K>(bytes),
        GgmlType::Q4K => dequantize_blocks::<q4_k::BlockQ4K>(bytes),
        GgmlType::Q5K => dequantize_blocks::<q5_k::BlockQ5K>(bytes),
        GgmlType::Q6K => dequantize_blocks::<q6_k::BlockQ6K>(bytes),
        GgmlType::Q8K => Err(QuantError::Unsupported {
            ty,
            op: "dequantize",
        }),
    }
}

/// Bytes that `n` values of type `ty` take.
pub fn byte_len(ty: GgmlType, n: usize) -> Result<usize, QuantError> {
    let block = ty.block_size() as usize;
    if n % block != 0 {
        return Err(QuantError::NotWholeBlocks {
            ty,
            values: n,
            block,
        });
    }
    (n / block)
        .checked_mul(ty.block_bytes() as usize)
        .ok_or(QuantError::TooLarge { ty, values: n })
}

// Every block struct must agree with the type table on its geometry.
const _: () = {
    macro_rules! geometry {
        ($($b:ty => $bytes:expr),* $(,)?) => {
            $(assert!(<$b as Block>::BYTES == $bytes && <$b as Block>::VALUES
                == <$b as Block>::TYPE.block_size() as usize);)*
        };
    }
    geometry!(
        q4_0::BlockQ4_0 => q4_0::BLOCK_Q4_0_BYTES,
        q4_1::BlockQ4_1 => q4_1::BLOCK_Q4_1_BYTES,
        q5_0::BlockQ5_0 => q5_0::BLOCK_Q5_0_BYTES,
        q5_1::BlockQ5_1 => q5_1::BLOCK_Q5_1_BYTES,
        q8_0::BlockQ8_0 => q8_0::BLOCK_Q8_0_BYTES,
        BlockQ8_1 => super::q8_1::BLOCK_Q8_1_BYTES,
        q2_k::BlockQ2K => q2_k::BLOCK_Q2_K_BYTES,
        q3_k::BlockQ3K => q3_k::BLOCK_Q3_K_BYTES,
        q4_k::BlockQ4K => q4_k::BLOCK_Q4_K_BYTES,
        q5_k::BlockQ5K => q5_k::BLOCK_Q5_K_BYTES,
        q6_k::BlockQ6K => q6_k::BLOCK_Q6_K_BYTES,
    );
};
