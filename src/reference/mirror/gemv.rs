//! GEMV, for now the f64 reference ([`crate::reference::gemv`]), NOT a mirror of the kernel:
//! to be replaced by the kernel mirror (the f32 arithmetic of the DP4A GEMV kernels in their
//! exact order) once their redesign lands. Until then a decode step run with
//! [`super::super::forward::Arithmetic::Mirror`] differs from the GPU's by the GEMVs'
//! rounding.

use ptx_gen::kernels::{Gemv, WeightType};

use crate::quant::q8_1::{BlockQ8_1, BLOCK_Q8_1_BYTES};
use crate::quant::GgmlType;
use crate::reference::gemv::{Epilogue, QuantMatrix};

/// `y = W x (+ bias) (+ residual)` for one vector: `w` the `n` rows of `spec.weight` blocks
/// as GGUF stores them, `x` the Q8_1 bytes of `k` values. Operands that do not fit the spec
/// are logged (`tracing::error!`) and give `n` NaNs, so the mistake shows downstream.
pub fn gemv(
    spec: &Gemv,
    w: &[u8],
    x: &[u8],
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
) -> Vec<f32> {
    let ty = match spec.weight {
        WeightType::Q4K => GgmlType::Q4K,
        WeightType::Q6K => GgmlType::Q6K,
        WeightType::Q5_0 => GgmlType::Q5_0,
        WeightType::Q8_0 => GgmlType::Q8_0,
        WeightType::Q4_1 => GgmlType::Q4_1,
    };
    let n = spec.n as usize;
    if x.len() % BLOCK_Q8_1_BYTES != 0 {
        tracing::error!(
            "gemv mirror: x holds {} bytes, not whole Q8_1 blocks",
            x.len()
        );
        return vec![f32::NAN; n];
    }
    let blocks: Vec<BlockQ8_1> = x
        .chunks_exact(BLOCK_Q8_1_BYTES)
        .filter_map(|c| c.try_into().ok().map(BlockQ8_1::from_bytes))
        .collect();
    let matrix = QuantMatrix {
        ty,
        rows: n,
        cols: spec.k as usize,
        data: w,
    };
    match crate::reference::gemv::gemv(&matrix, &blocks, &Epilogue { bias, residual }) {
        Ok(y) => y,
        Err(e) => {
            tracing::error!("gemv mirror: {e}");
            vec![f32::NAN; n]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q8_0_rows_by_hand() {
        // One Q8_0 row of 32 values: d = 1, q = 1..=32; x = one Q8_1 block, d = 1, q = 1.
        let mut w = vec![0u8; 34];
        w[..2].copy_from_slice(&half::f16::from_f32(1.0).to_le_bytes());
        for i in 0..32 {
            w[2 + i] = (i + 1) as u8;
        }
        let x = crate::quant::q8_1::quantize_row_bytes(&[1.0; 32]).unwrap();
        let spec = Gemv {
            weight: WeightType::Q8_0,
            n: 1,
            k: 32,
            bias: true,
            residual: false,
            m: 1,
        };
        // sum 1..=32 = 528, times d8 = 1/127 * 127 (the block's amax is 1: d = 1/127, q = 127).
        let y = gemv(&spec, &w, &x, Some(&[0.5]), None);
        let d8 = f64::from(half::f16::from_f32(1.0 / 127.0).to_f32());
        assert!(
            (f64::from(y[0]) - (528.0 * 127.0 * d8 + 0.5)).abs() < 1e-3,
            "{y:?}"
        );
        assert!(gemv(&spec, &w, &x[..35], None, None)[0].is_nan());
    }
}
