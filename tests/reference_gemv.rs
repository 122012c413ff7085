//! The CPU reference GEMV (`reference::gemv`): against a plain f64 dot product of the
//! dequantized operands, on hand-computed tiny cases that pin down its DP4A math, and on bad
//! shapes.

mod common;

use common::Rng;
use half::f16;
use ptxforge::quant::block::Block;
use ptxforge::quant::q4_k::{pack_scale_min, BlockQ4K};
use ptxforge::quant::q6_k::BlockQ6K;
use ptxforge::quant::q8_1::{self, BlockQ8_1};
use ptxforge::quant::{dequantize, quantize, GgmlType};
use ptxforge::reference::gemv::{gemv, row_magnitudes, Epilogue, GemvError, QuantMatrix};

/// A random `rows x cols` matrix of type `ty` (quantized from normal values with a per-row
/// scale and, for some rows, an offset so that mins matter) and a random Q8_1 vector.
fn operands(rng: &mut Rng, ty: GgmlType, rows: usize, cols: usize) -> (Vec<u8>, Vec<BlockQ8_1>) {
    let mut w = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        let sd = 10f32.powf(rng.uniform(-2.0, 0.5));
        let offset = if r % 3 == 2 { sd } else { 0.0 };
        w.extend((0..cols).map(|_| rng.normal(sd) + offset));
    }
    let x: Vec<f32> = (0..cols).map(|_| rng.normal(1.0)).collect();
    (quantize(ty, &w).unwrap(), q8_1::quantize_row(&x).unwrap())
}

/// Per row: `Σ w x` over the dequantized operands in f64, `Σ |w x|`, and the exact amount by
/// which the Q8_1 sum `s` (an f16) differs from `d * Σ q` in the formulas that use it (Q4_1's
/// `m * s`, Q5_0's `-16 d s`).
fn f64_reference(
    ty: GgmlType,
    w: &[u8],
    rows: usize,
    cols: usize,
    x: &[BlockQ8_1],
) -> Vec<(f64, f64, f64)> {
    let xv = q8_1::dequantize_row(x);
    let wv = dequantize(ty, w, rows * cols).unwrap();
    let row_bytes = w.len() / rows;
    (0..rows)
        .map(|r| {
            let wr = &wv[r * cols..(r + 1) * cols];
            let dot: f64 = wr.iter().zip(&xv).map(|(a, b)| *a as f64 * *b as f64).sum();
            let l1: f64 = wr
                .iter()
                .zip(&xv)
                .map(|(a, b)| (*a as f64 * *b as f64).abs())
                .sum();
            let mut s_term = 0.0;
            let blocks = &w[r * row_bytes..(r + 1) * row_bytes];
            for (wb, xb) in blocks.chunks_exact(ty.block_bytes() as usize).zip(x) {
                let s_error = xb.s.to_f32() as f64
                    - xb.d.to_f32() as f64 * xb.qs.iter().map(|&q| q as f64).sum::<f64>();
                let h = |at: usize| f16::from_le_bytes([wb[at], wb[at + 1]]).to_f32() as f64;
                s_term += match ty {
                    GgmlType::Q4_1 => h(2) * s_error,
                    GgmlType::Q5_0 => -16.0 * h(0) * s_error,
                    _ => 0.0,
                };
            }
            (dot, l1, s_term)
        })
        .collect()
}

#[test]
fn gemv_equals_the_f64_dot_product_of_dequantized_operands() {
    let mut rng = Rng::seeded(0x6e6d_7631);
    let shapes: [(GgmlType, &[(usize, usize)]); 5] = [
        (GgmlType::Q4K, &[(9, 1024), (3, 2048)]),
        (GgmlType::Q6K, &[(9, 1024), (3, 2048)]),
        (GgmlType::Q5_0, &[(9, 640), (4, 896)]),
        (GgmlType::Q8_0, &[(9, 640), (4, 896)]),
        (GgmlType::Q4_1, &[(9, 576), (4, 1536)]),
    ];
    for (ty, dims) in shapes {
        for &(rows, cols) in dims {
            let (w, x) = operands(&mut rng, ty, rows, cols);
            let m = QuantMatrix {
                ty,
                rows,
                cols,
                data: &w,
            };
            let y = gemv(&m, &x, &Epilogue::default()).unwrap();
            let mags = row_magnitudes(&m, &x).unwrap();
            let want = f64_reference(ty, &w, rows, cols, &x);
            for (r, (&got, &(dot, l1, s_term))) in y.iter().zip(&want).enumerate() {
                assert!(
                    (mags[r] - l1).abs() <= 1e-12 * l1,
                    "{ty}: magnitude of row {r}"
                );
                // Exactly the dequantized dot product plus the documented `s` term, up to the
                // f32 rounding of the dequantized weights and of the result.
                let err = (got as f64 - (dot + s_term)).abs() / l1;
                assert!(
                    err < 1e-7,
                    "{ty} {rows}x{cols} row {r}: {got} vs {} ({err:e})",
                    dot + s_term
                );
                // And close to the plain dot product: `s` is an f16, 2^-11 relative.
                let plain = (got as f64 - dot).abs() / l1;
                assert!(
                    plain < 5e-4,
                    "{ty} {rows}x{cols} row {r}: {got} vs {dot} ({plain:e})"
                );
            }
        }
    }
}

fn q8_1_block(d: f32, s: f32, nonzero: &[(usize, i8)]) -> BlockQ8_1 {
    let mut qs = [0i8; 32];
    for &(i, q) in nonzero {
        qs[i] = q;
    }
    BlockQ8_1 {
        d: f16::from_f32(d),
        s: f16::from_f32(s),
        qs,
    }
}

fn one_row(ty: GgmlType, cols: usize, w: &[u8], x: &[BlockQ8_1]) -> f32 {
    let m = QuantMatrix {
        ty,
        rows: 1,
        cols,
        data: w,
    };
    gemv(&m, x, &Epilogue::default()).unwrap()[0]
}

#[test]
fn q8_0_by_hand() {
    // d = 0.5, d8 = 0.25: 0.125 * (1*4 + -2*4 + 3*-1 + 127*2) = 0.125 * 247.
    let mut w = vec![0u8; 34];
    w[0..2].copy_from_slice(&f16::from_f32(0.5).to_le_bytes());
    for (i, q) in [(0, 1i8), (1, -2), (2, 3), (31, 127)] {
        w[2 + i] = q as u8;
    }
    let x = [q8_1_block(0.25, 99.0, &[(0, 4), (1, 4), (2, -1), (31, 2)])];
    assert_eq!(one_row(GgmlType::Q8_0, 32, &w, &x), 30.875);
}

#[test]
fn q4_1_by_hand_uses_the_q8_1_sum() {
    // d = 2, m = -1; value 0 = nibble 3, value 16 = nibble 15. x: d8 = 0.5, u0 = 2, u16 = -1,
    // and a stored s = 10 that is deliberately not d8 * Σu: 2*0.5*(3*2 - 15) + (-1)*10.
    let mut w = vec![0u8; 20];
    w[0..2].copy_from_slice(&f16::from_f32(2.0).to_le_bytes());
    w[2..4].copy_from_slice(&f16::from_f32(-1.0).to_le_bytes());
    w[4] = 0xF3;
    let x = [q8_1_block(0.5, 10.0, &[(0, 2), (16, -1)])];
    assert_eq!(one_row(GgmlType::Q4_1, 32, &w, &x), -19.0);
}

#[test]
fn q5_0_by_hand_folds_the_offset_into_the_q8_1_sum() {
    // d = 0.25. Fifth bits set everywhere but value 20; value 0 has low nibble 1: q = 17 at 0,
    // 0 at 20, 16 elsewhere. x: d8 = 1, u0 = 2, u5 = 1, u20 = 1, s = 3 (not d8 * Σu = 4):
    // 0.25 * (1 * (17*2 + 16*1 + 0*1) - 16 * 3) = 0.5.
    let mut w = vec![0u8; 22];
    w[0..2].copy_from_slice(&f16::from_f32(0.25).to_le_bytes());
    w[2..6].copy_from_slice(&(!(1u32 << 20)).to_le_bytes());
    w[6] = 0x01;
    let x = [q8_1_block(1.0, 3.0, &[(0, 2), (5, 1), (20, 1)])];
    assert_eq!(one_row(GgmlType::Q5_0, 32, &w, &x), 0.5);
}

#[test]
fn q4_k_by_hand_uses_integer_sums_for_the_mins() {
    // d = 1, dmin = 0.5; sub-block 0: sc 2, m 3; sub-block 5 (high bits packed apart): sc 33,
    // m 36. Value 0 = 5; value 161 (sub-block 5, index 1: high nibble of qs[65]) = 7.
    let mut ls = [0u8; 8];
    let mut lm = [0u8; 8];
    (ls[0], lm[0], ls[5], lm[5]) = (2, 3, 33, 36);
    let block = BlockQ4K {
        d: f16::from_f32(1.0),
        dmin: f16::from_f32(0.5),
        scales: pack_scale_min(&ls, &lm),
        qs: std::array::from_fn(|i| match i {
            0 => 0x05,
            65 => 0x70,
            _ => 0,
        }),
    };
    assert_eq!(block.scale_min(5), (33, 36));
    let mut w = Vec::new();
    block.write(&mut w);
    // x block 0: d8 = 0.5, u0 = 3, u1 = 1 (Σu = 4); block 5: d8 = 2, u1 = -1, u2 = 5 (Σu = 4).
    // The stored s fields are wrong on purpose: Q4_K must not read them.
    let mut x = [q8_1_block(0.0, 0.0, &[]); 8];
    x[0] = q8_1_block(0.5, 1000.0, &[(0, 3), (1, 1)]);
    x[5] = q8_1_block(2.0, -1000.0, &[(1, -1), (2, 5)]);
    // Sub-block 0: 1*0.5*2*(5*3) - 0.5*0.5*3*4 = 15 - 3 = 12.
    // Sub-block 5: 1*2*33*(7*-1) - 0.5*2*36*4 = -462 - 144 = -606.
    assert_eq!(one_row(GgmlType::Q4K, 256, &w, &x), -594.0);
}

#[test]
fn q6_k_by_hand_subtracts_32_per_quant() {
    // d = 0.5; scales[0] = 3, scales[1] = -2. Raw 6-bit values are 32 (q = 0) except value 0
    // (raw 40, q = 8) and value 17 (raw 0, q = -32). All 2-bit high fields 2: qh = 0xAA.
    let mut block = BlockQ6K {
        ql: [0; 128],
        qh: [0xAA; 64],
        scales: [0; 16],
        d: f16::from_f32(0.5),
    };
    (block.scales[0], block.scales[1]) = (3, -2);
    block.ql[0] = 0x08;
    block.qh[17] = 0xA8;
    assert_eq!(
        &block.quants()[..18],
        &[8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, -32]
    );
    let mut w = Vec::new();
    block.write(&mut w);
    let mut x = [q8_1_block(0.0, 0.0, &[]); 8];
    x[0] = q8_1_block(0.25, 7.0, &[(0, 10), (1, 100), (17, 3)]);
    // 0.5 * 0.25 * (3 * (8*10) + -2 * (-32*3)) = 0.125 * 432.
    assert_eq!(one_row(GgmlType::Q6K, 256, &w, &x), 54.0);
}

#[test]
fn bias_and_residual_are_added_per_row() {
    let mut rng = Rng::seeded(7);
    let (w, x) = operands(&mut rng, GgmlType::Q8_0, 3, 64);
    let m = QuantMatrix {
        ty: GgmlType::Q8_0,
        rows: 3,
        cols: 64,
        data: &w,
    };
    let plain = gemv(&m, &x, &Epilogue::default()).unwrap();
    let bias = [1.0f32, -2.0, 0.5];
    let residual = [10.0f32, 20.0, -30.0];
    let with_bias = gemv(
        &m,
        &x,
        &Epilogue {
            bias: Some(&bias),
            residual: None,
        },
    )
    .unwrap();
    let both = gemv(
        &m,
        &x,
        &Epilogue {
            bias: Some(&bias),
            residual: Some(&residual),
        },
    )
    .unwrap();
    let close = |a: f32, b: f64| (a as f64 - b).abs() <= 1e-6 * b.abs().max(1.0);
    for r in 0..3 {
        assert!(
            close(with_bias[r], plain[r] as f64 + bias[r] as f64),
            "row {r}"
        );
        let want = plain[r] as f64 + bias[r] as f64 + residual[r] as f64;
        assert!(close(both[r], want), "row {r}");
    }
}

#[test]
fn bad_shapes_are_typed_errors() {
    let w = vec![0u8; 2 * 144];
    let x = vec![q8_1_block(0.0, 0.0, &[]); 8];
    let ok = QuantMatrix {
        ty: GgmlType::Q4K,
        rows: 2,
        cols: 256,
        data: &w,
    };
    let none = Epilogue::default();
    assert_eq!(gemv(&ok, &x, &none).unwrap(), vec![0.0, 0.0]);

    let q5k = QuantMatrix {
        ty: GgmlType::Q5K,
        ..ok
    };
    assert_eq!(
        gemv(&q5k, &x, &none),
        Err(GemvError::UnsupportedType(GgmlType::Q5K))
    );
    let narrow = QuantMatrix { cols: 640, ..ok };
    let err = gemv(&narrow, &x, &none).unwrap_err();
    assert_eq!(err.to_string(), "Q4_K rows need K % 256 == 0, got K = 640");
    let short = QuantMatrix {
        data: &w[..287],
        ..ok
    };
    assert!(matches!(
        gemv(&short, &x, &none),
        Err(GemvError::WeightBytes {
            expected: 288,
            found: 287,
            ..
        })
    ));
    assert_eq!(
        gemv(&ok, &x[..7], &none),
        Err(GemvError::XBlocks {
            cols: 256,
            expected: 8,
            found: 7
        })
    );
    let bias = [0.0f32; 3];
    assert_eq!(
        gemv(
            &ok,
            &x,
            &Epilogue {
                bias: Some(&bias),
                residual: None
            }
        ),
        Err(GemvError::EpilogueLength {
            what: "bias",
            expected: 2,
            found: 3
        })
    );
    let huge = QuantMatrix {
        rows: usize::MAX,
        ..ok
    };
    assert!(matches!(
        gemv(&huge, &x, &none),
        Err(GemvError::WeightBytes { .. })
    ));
    let empty = QuantMatrix {
        rows: 0,
        data: &[],
        ..ok
    };
    assert_eq!(gemv(&empty, &x, &none), Ok(vec![]));
}
