//! Our CPU (de)quantization against the external oracles: the fixtures that
//! `scripts/quant_oracle.py` wrote from the `gguf` package and, for the Q4_K/Q6_K quantizers,
//! from GGML's C reference (see tests/fixtures/quant/README.md). Every comparison is bit for
//! bit. No Python or C is needed to run these tests.

mod common;

use common::Rng;
use ptxforge::quant::block::{read_blocks, write_blocks, Block};
use ptxforge::quant::q2_k::BlockQ2K;
use ptxforge::quant::q3_k::BlockQ3K;
use ptxforge::quant::q4_0::BlockQ4_0;
use ptxforge::quant::q4_1::BlockQ4_1;
use ptxforge::quant::q4_k::{self, BlockQ4K};
use ptxforge::quant::q5_0::BlockQ5_0;
use ptxforge::quant::q5_1::BlockQ5_1;
use ptxforge::quant::q5_k::BlockQ5K;
use ptxforge::quant::q6_k::{self, BlockQ6K};
use ptxforge::quant::q8_0::BlockQ8_0;
use ptxforge::quant::{dequantize, q8_1, quantize, GgmlType, QuantError};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/quant");

const DEQUANT_TYPES: [GgmlType; 12] = [
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2K,
    GgmlType::Q3K,
    GgmlType::Q4K,
    GgmlType::Q5K,
    GgmlType::Q6K,
    GgmlType::F16,
    GgmlType::BF16,
];

const QUANT_TYPES: [GgmlType; 10] = [
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q8_1,
    GgmlType::Q4K,
    GgmlType::Q6K,
    GgmlType::F16,
    GgmlType::BF16,
];

/// One fixture file: the encoded bytes and the f32 values they stand for.
struct Fixture {
    ty: GgmlType,
    bytes: Vec<u8>,
    values: Vec<f32>,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// Reads `<kind>_<type>.bin`, checking its header against what the test expects.
fn load(kind: &str, ty: GgmlType) -> Fixture {
    let path = format!("{DIR}/{kind}_{}.bin", ty.name().to_lowercase());
    let raw = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{path}: {e} (run scripts/quant_oracle.py)"));
    assert_eq!(&raw[0..8], b"PFQUANT1", "{path}: magic");
    let want_kind = if kind == "dequant" { 0 } else { 1 };
    assert_eq!(u32_at(&raw, 8), want_kind, "{path}: kind");
    assert_eq!(u32_at(&raw, 12), ty.id(), "{path}: type id");
    let n_values = u32_at(&raw, 16) as usize;
    let n_bytes = u32_at(&raw, 20) as usize;
    assert_eq!(raw.len(), 24 + n_bytes + 4 * n_values, "{path}: size");
    let bytes = raw[24..24 + n_bytes].to_vec();
    let values = raw[24 + n_bytes..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    Fixture { ty, bytes, values }
}

/// Asserts bit equality, naming the first differing value and its block.
fn assert_same_bits(what: &str, ty: GgmlType, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: value count");
    let block = ty.block_size() as usize;
    if let Some(i) = (0..got.len()).find(|&i| got[i].to_bits() != want[i].to_bits()) {
        panic!(
            "{what}: value {i} (block {}, element {}) is {:e} ({:#010x}), the oracle says {:e} ({:#010x})",
            i / block,
            i % block,
            got[i],
            got[i].to_bits(),
            want[i],
            want[i].to_bits()
        );
    }
}

fn assert_same_bytes(what: &str, ty: GgmlType, got: &[u8], want: &[u8]) {
    assert_eq!(got.len(), want.len(), "{what}: byte count");
    let block = ty.block_bytes() as usize;
    if let Some(i) = (0..got.len()).find(|&i| got[i] != want[i]) {
        let b = i / block;
        panic!(
            "{what}: byte {i} (block {b}, offset {}) is {:#04x}, the oracle says {:#04x}\n got block:  {:02x?}\n want block: {:02x?}",
            i % block,
            got[i],
            want[i],
            &got[b * block..(b + 1) * block],
            &want[b * block..(b + 1) * block]
        );
    }
}

#[test]
fn dequantization_equals_gguf_bit_for_bit() {
    for ty in DEQUANT_TYPES {
        let f = load("dequant", ty);
        let got = dequantize(f.ty, &f.bytes, f.values.len())
            .unwrap_or_else(|e| panic!("dequantize {ty}: {e}"));
        assert_same_bits(&format!("dequantize {ty}"), ty, &got, &f.values);
    }
}

#[test]
fn per_format_row_functions_agree_with_the_dispatch() {
    type RowFn = fn(&[u8]) -> Result<Vec<f32>, QuantError>;
    let rows: [(GgmlType, RowFn); 10] = [
        (GgmlType::Q4_0, ptxforge::quant::q4_0::dequantize_row),
        (GgmlType::Q4_1, ptxforge::quant::q4_1::dequantize_row),
        (GgmlType::Q5_0, ptxforge::quant::q5_0::dequantize_row),
        (GgmlType::Q5_1, ptxforge::quant::q5_1::dequantize_row),
        (GgmlType::Q8_0, ptxforge::quant::q8_0::dequantize_row),
        (GgmlType::Q2K, ptxforge::quant::q2_k::dequantize_row),
        (GgmlType::Q3K, ptxforge::quant::q3_k::dequantize_row),
        (GgmlType::Q4K, q4_k::dequantize_row),
        (GgmlType::Q5K, ptxforge::quant::q5_k::dequantize_row),
        (GgmlType::Q6K, q6_k::dequantize_row),
    ];
    for (ty, row) in rows {
        let f = load("dequant", ty);
        let got = row(&f.bytes).unwrap();
        assert_same_bits(&format!("{ty}::dequantize_row"), ty, &got, &f.values);
    }
}

/// `from_bytes` then `to_bytes` gives back every fixture block unchanged.
fn round_trip<B: Block>() {
    let f = load("dequant", B::TYPE);
    let blocks = read_blocks::<B>(&f.bytes).unwrap();
    assert_eq!(blocks.len() * B::BYTES, f.bytes.len());
    assert_eq!(
        write_blocks(&blocks),
        f.bytes,
        "{} bytes round trip",
        B::TYPE
    );
}

#[test]
fn blocks_round_trip_through_their_fields() {
    round_trip::<BlockQ4_0>();
    round_trip::<BlockQ4_1>();
    round_trip::<BlockQ5_0>();
    round_trip::<BlockQ5_1>();
    round_trip::<BlockQ8_0>();
    round_trip::<BlockQ2K>();
    round_trip::<BlockQ3K>();
    round_trip::<BlockQ4K>();
    round_trip::<BlockQ5K>();
    round_trip::<BlockQ6K>();
}

#[test]
fn quantization_equals_the_oracles_bit_for_bit() {
    for ty in QUANT_TYPES {
        let f = load("quant", ty);
        let got = quantize(ty, &f.values).unwrap_or_else(|e| panic!("quantize {ty}: {e}"));
        assert_same_bytes(&format!("quantize {ty}"), ty, &got, &f.bytes);
    }
}

#[test]
fn q8_1_quantize_equals_ggml_definition() {
    // Through the colleague's `q8_1` module directly, not only through the dispatch.
    let f = load("quant", GgmlType::Q8_1);
    let got = q8_1::quantize_row_bytes(&f.values).unwrap();
    assert_same_bytes("q8_1::quantize_row_bytes", GgmlType::Q8_1, &got, &f.bytes);
}

#[test]
fn bad_lengths_are_typed_errors() {
    let err = dequantize(GgmlType::Q4K, &[0; 144], 128).unwrap_err();
    assert_eq!(
        err,
        QuantError::NotWholeBlocks {
            ty: GgmlType::Q4K,
            values: 128,
            block: 256
        }
    );
    let err = dequantize(GgmlType::Q8_0, &[0; 33], 32).unwrap_err();
    assert_eq!(
        err,
        QuantError::ByteLength {
            ty: GgmlType::Q8_0,
            values: 32,
            expected: 34,
            found: 33
        }
    );
    assert_eq!(err.to_string(), "Q8_0: 32 values take 34 bytes, got 33");
    assert!(matches!(
        dequantize(GgmlType::Q8K, &[0; 292], 256),
        Err(QuantError::Unsupported { .. })
    ));
    assert!(matches!(
        dequantize(GgmlType::F16, &[0; 3], 2),
        Err(QuantError::ByteLength { expected: 4, .. })
    ));
    assert!(matches!(
        quantize(GgmlType::Q6K, &[0.0; 300]),
        Err(QuantError::NotWholeBlocks { block: 256, .. })
    ));
    assert!(matches!(
        quantize(GgmlType::Q3K, &[0.0; 256]),
        Err(QuantError::Unsupported { .. })
    ));
    assert!(matches!(
        read_blocks::<BlockQ5_0>(&[0; 23]),
        Err(QuantError::NotWholeBlockBytes { block: 22, .. })
    ));
    // Empty input is a valid tensor of no blocks.
    assert_eq!(dequantize(GgmlType::Q6K, &[], 0), Ok(vec![]));
}

/// Random rows with a different scale per 256 values.
fn random_rows(rng: &mut Rng, n: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let sd = 10f32.powf(rng.uniform(-3.0, 1.0));
        let offset = if rng.below(3) == 0 {
            rng.normal(sd)
        } else {
            0.0
        };
        out.extend((0..256).map(|_| rng.normal(sd) + offset));
    }
    out
}

/// Root-mean-square error of `ty`'s round trip relative to the RMS of the values, and the
/// largest error of one value relative to its 256-value block's largest magnitude.
fn round_trip_error(ty: GgmlType, x: &[f32]) -> (f64, f64) {
    let bytes = quantize(ty, x).unwrap();
    let back = dequantize(ty, &bytes, x.len()).unwrap();
    let (mut se, mut sx, mut worst) = (0.0f64, 0.0f64, 0.0f64);
    for (xb, yb) in x.chunks(256).zip(back.chunks(256)) {
        let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
        for (a, b) in xb.iter().zip(yb) {
            let e = (*a as f64 - *b as f64).abs();
            se += e * e;
            sx += (*a as f64) * (*a as f64);
            worst = worst.max(e / amax);
        }
    }
    ((se / sx).sqrt(), worst)
}

#[test]
fn k_quant_quantizers_round_trip_within_their_precision() {
    // Beyond the fixtures: the error the formats allow, 4-bit (Q4_K) and 6-bit (Q6_K) levels
    // with 6/8-bit sub-block scales, on many more blocks.
    let mut rng = Rng::seeded(0x0001_4b6b);
    let x = random_rows(&mut rng, 256 * 64);
    let (rms, worst) = round_trip_error(GgmlType::Q4K, &x);
    assert!(rms < 0.12 && worst < 0.2, "Q4_K: rms {rms}, worst {worst}");
    let (rms, worst) = round_trip_error(GgmlType::Q6K, &x);
    assert!(rms < 0.03 && worst < 0.05, "Q6_K: rms {rms}, worst {worst}");
    let (rms, worst) = round_trip_error(GgmlType::Q8_0, &x);
    assert!(rms < 0.01 && worst < 0.01, "Q8_0: rms {rms}, worst {worst}");
}

#[test]
fn k_quant_quantizers_handle_degenerate_blocks() {
    for ty in [GgmlType::Q4K, GgmlType::Q6K] {
        let zeros = quantize(ty, &[0.0; 256]).unwrap();
        assert!(
            zeros.iter().all(|&b| b == 0),
            "{ty}: zero block is all zero bytes"
        );
        let back = dequantize(ty, &quantize(ty, &[0.5; 256]).unwrap(), 256).unwrap();
        assert!(
            back.iter().all(|v| (v - 0.5).abs() < 0.01),
            "{ty}: constant block"
        );
    }
    // One large value among zeros: the zeros stay (near) zero.
    let mut x = [0.0f32; 256];
    x[77] = -3.0;
    let back = dequantize(GgmlType::Q6K, &quantize(GgmlType::Q6K, &x).unwrap(), 256).unwrap();
    assert!(
        (back[77] + 3.0).abs() < 0.05 && back[0] == 0.0,
        "{}",
        back[77]
    );
}
