//! Embedding row lookup: row `token` of a table stored as GGUF stores it, dequantized as
//! GGML's CPU `dequantize_row_*` do (same float operations in the same order, each rounded
//! to f32), then multiplied by `scale` in f32. A token id `>= vocab` gives NaN (bits
//! 0x7fc00000) everywhere, the kernel's documented answer to a bad id.
//!
//! Block layouts (little endian):
//! - Q8_0 `{f16 d; i8 qs[32]}`: `y[j] = qs[j] * d`.
//! - Q4_K `{f16 d; f16 dmin; u8 scales[12]; u8 qs[128]}`: for j in 0..4, with
//!   `(sc, m) = get_scale_min_k4(2j)` and `(sc', m')` of `2j + 1`:
//!   `y[64j + l] = (d * sc) * (qs[32j + l] & 15) - dmin * m`,
//!   `y[64j + 32 + l] = (d * sc') * (qs[32j + l] >> 4) - dmin * m'`.
//! - Q6_K `{u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}`: for half n and l in 0..32, the
//!   four 6-bit quants of `ql[64n + l]`, `ql[64n + l + 32]` (low, then high nibbles) and the
//!   2-bit pairs of `qh[32n + l]`, minus 32, times `d * scales[8n + l / 16 + 2g]`.

use half::f16;
use ptx_gen::kernels::{Embed, EmbedTable};

/// The bits of the value written for a token id `>= vocab`.
pub const BAD_TOKEN_BITS: u32 = 0x7fc0_0000;

const QK8_0: usize = 32;
const Q8_0_BYTES: usize = 34;
const QK_K: usize = 256;
const Q4_K_BYTES: usize = 144;
const Q6_K_BYTES: usize = 210;

/// Values per block and bytes per block of a table type.
fn geometry(t: EmbedTable) -> (usize, usize) {
    match t {
        EmbedTable::F32 => (1, 4),
        EmbedTable::F16 => (1, 2),
        EmbedTable::Q8_0 => (QK8_0, Q8_0_BYTES),
        EmbedTable::Q4K => (QK_K, Q4_K_BYTES),
        EmbedTable::Q6K => (QK_K, Q6_K_BYTES),
    }
}

/// Bytes of one row of `hidden` values.
pub fn row_bytes(t: EmbedTable, hidden: usize) -> usize {
    let (values, bytes) = geometry(t);
    assert_eq!(
        hidden % values,
        0,
        "{t}: {hidden} values are not whole blocks"
    );
    hidden / values * bytes
}

/// The embedding of `token`: `f32[hidden]`. `table` holds `vocab` rows.
pub fn embed(spec: &Embed, table: &[u8], token: u32) -> Vec<f32> {
    let hidden = spec.hidden as usize;
    let rb = row_bytes(spec.table, hidden);
    assert_eq!(
        table.len(),
        rb * spec.vocab as usize,
        "embed: the table must hold exactly {} rows",
        spec.vocab
    );
    if token >= spec.vocab {
        return vec![f32::from_bits(BAD_TOKEN_BITS); hidden];
    }
    let row = &table[token as usize * rb..][..rb];
    dequantize_row(spec.table, row)
        .into_iter()
        .map(|v| v * spec.scale)
        .collect()
}

/// All values of one row.
pub fn dequantize_row(t: EmbedTable, row: &[u8]) -> Vec<f32> {
    let (_, bytes) = geometry(t);
    match t {
        EmbedTable::F32 => row
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        EmbedTable::F16 => row.chunks_exact(2).map(f16_at).collect(),
        EmbedTable::Q8_0 => row.chunks_exact(bytes).flat_map(dequantize_q8_0).collect(),
        EmbedTable::Q4K => row.chunks_exact(bytes).flat_map(dequantize_q4_k).collect(),
        EmbedTable::Q6K => row.chunks_exact(bytes).flat_map(dequantize_q6_k).collect(),
    }
}

fn f16_at(b: &[u8]) -> f32 {
    f16::from_le_bytes([b[0], b[1]]).to_f32()
}

/// One Q8_0 block (34 bytes), `dequantize_row_q8_0`.
pub fn dequantize_q8_0(block: &[u8]) -> [f32; QK8_0] {
    let d = f16_at(&block[0..2]);
    let mut y = [0f32; QK8_0];
    for (j, v) in y.iter_mut().enumerate() {
        *v = (block[2 + j] as i8) as f32 * d;
    }
    y
}

/// `get_scale_min_k4(j, scales)`.
fn get_scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// One Q4_K block (144 bytes), `dequantize_row_q4_K`.
pub fn dequantize_q4_k(block: &[u8]) -> [f32; QK_K] {
    let d = f16_at(&block[0..2]);
    let min = f16_at(&block[2..4]);
    let scales = &block[4..16];
    let qs = &block[16..144];
    let mut y = [0f32; QK_K];
    for j in 0..4 {
        let (sc, m) = get_scale_min_k4(2 * j, scales);
        let (d1, m1) = (d * sc as f32, min * m as f32);
        let (sc, m) = get_scale_min_k4(2 * j + 1, scales);
        let (d2, m2) = (d * sc as f32, min * m as f32);
        for l in 0..32 {
            let q = qs[32 * j + l];
            y[64 * j + l] = d1 * (q & 0xF) as f32 - m1;
            y[64 * j + 32 + l] = d2 * (q >> 4) as f32 - m2;
        }
    }
    y
}

/// One Q6_K block (210 bytes), `dequantize_row_q6_K`.
pub fn dequantize_q6_k(block: &[u8]) -> [f32; QK_K] {
    let ql_all = &block[0..128];
    let qh_all = &block[128..192];
    let sc_all = &block[192..208];
    let d = f16_at(&block[208..210]);
    let mut y = [0f32; QK_K];
    for n in 0..2 {
        let (ql, qh, sc) = (&ql_all[64 * n..], &qh_all[32 * n..], &sc_all[8 * n..]);
        let out = &mut y[128 * n..];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            let s = |k: usize| d * (sc[is + k] as i8) as f32;
            out[l] = s(0) * q1 as f32;
            out[l + 32] = s(2) * q2 as f32;
            out[l + 64] = s(4) * q3 as f32;
            out[l + 96] = s(6) * q4 as f32;
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: f32) -> [u8; 2] {
        f16::from_f32(v).to_le_bytes()
    }

    #[test]
    fn q8_0_by_hand() {
        let mut b = vec![0u8; 34];
        b[0..2].copy_from_slice(&h(0.5));
        b[2] = 3;
        b[3] = (-128i8) as u8;
        b[33] = 127;
        let y = dequantize_q8_0(&b);
        assert_eq!((y[0], y[1], y[2], y[31]), (1.5, -64.0, 0.0, 63.5));
    }

    #[test]
    fn q4_k_by_hand() {
        let mut b = vec![0u8; 144];
        b[0..2].copy_from_slice(&h(2.0));
        b[2..4].copy_from_slice(&h(0.25));
        // Sub-block 0: sc = 5, m = 3 (bytes 0 and 4, low 6 bits).
        // Sub-block 5: sc = 0b01_0010 = 18 (low 4 bits in byte 9's low nibble, high 2 bits in
        // byte 1's top bits), m = 0b10_0111 = 39 (byte 9's high nibble, byte 5's top bits).
        b[4] = 5;
        b[8] = 3;
        b[4 + 1] = 0b01 << 6;
        b[4 + 5] = 0b10 << 6;
        b[4 + 9] = 0x72;
        // Value 0: low nibble of qs[0]; value 2 * 64 + 32 + 1 (sub-block 5): high nibble of
        // qs[64 + 1].
        b[16] = 0x0E;
        b[16 + 65] = 0xA0;
        let y = dequantize_q4_k(&b);
        assert_eq!(y[0], 2.0 * 5.0 * 14.0 - 0.25 * 3.0);
        assert_eq!(y[1], -0.75);
        assert_eq!(y[161], 2.0 * 18.0 * 10.0 - 0.25 * 39.0);
        assert_eq!(y[160], -0.25 * 39.0);
    }

    #[test]
    fn q6_k_by_hand() {
        let mut b = vec![0u8; 210];
        b[208..210].copy_from_slice(&h(0.5));
        // Value 128 + 64 + 17 (n = 1, group 2, l = 17): high nibble of ql[64 + 17], bits
        // 4..6 of qh[32 + 17], scale 8 + 1 + 4 = 13.
        b[64 + 17] = 0x90;
        b[128 + 32 + 17] = 0b10 << 4;
        b[192 + 13] = (-3i8) as u8;
        let y = dequantize_q6_k(&b);
        let q = (0x9 | (0b10 << 4)) - 32;
        assert_eq!(y[128 + 64 + 17], 0.5 * -3.0 * q as f32);
        // Everything else has q = -32 and scale 0.
        assert_eq!(y[0], 0.0);
    }

    #[test]
    fn rows_are_found_and_bad_tokens_give_nan() {
        let spec = Embed {
            table: EmbedTable::F16,
            vocab: 3,
            hidden: 2,
            scale: 2.0,
            m: 1,
        };
        let table: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0, 5.0, -6.0]
            .iter()
            .flat_map(|v| h(*v))
            .collect();
        assert_eq!(embed(&spec, &table, 2), vec![10.0, -12.0]);
        assert_eq!(embed(&spec, &table, 0), vec![2.0, 4.0]);
        for bad in [3, u32::MAX] {
            assert!(embed(&spec, &table, bad)
                .iter()
                .all(|v| v.to_bits() == BAD_TOKEN_BITS));
        }
    }

    /// Agrees bit for bit with the crate's block dequantizers (written separately from the
    /// same GGML definitions) on pseudo-random blocks with finite scales.
    #[test]
    fn agrees_with_the_quant_module() {
        use crate::quant::GgmlType;
        let mut s = 0x1234_5678_9abc_def0u64;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for (t, g) in [
            (EmbedTable::Q8_0, GgmlType::Q8_0),
            (EmbedTable::Q4K, GgmlType::Q4K),
            (EmbedTable::Q6K, GgmlType::Q6K),
        ] {
            let hidden = 1024;
            let mut row: Vec<u8> = (0..row_bytes(t, hidden)).map(|_| next() as u8).collect();
            let (_, bytes) = geometry(t);
            for blk in row.chunks_exact_mut(bytes) {
                let d_at: &[usize] = match t {
                    EmbedTable::Q8_0 => &[0],
                    EmbedTable::Q4K => &[0, 2],
                    _ => &[208],
                };
                for &o in d_at {
                    let v = f16::from_f32((next() % 2000) as f32 / 1000.0 - 1.0);
                    blk[o..o + 2].copy_from_slice(&v.to_le_bytes());
                }
            }
            let ours = dequantize_row(t, &row);
            let theirs = crate::quant::dequantize(g, &row, hidden).unwrap();
            let same = ours
                .iter()
                .zip(&theirs)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{t}: the two dequantizers differ");
        }
    }
}
