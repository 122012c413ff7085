//! Mirror of the `embed` kernel. The kernel dequantizes with GGML's CPU operation order,
//! each step one IEEE rounding (`mul.rn`, `sub.rn`, exact f16 and integer conversions), then
//! multiplies by the scale (`mul.rn`); [`crate::reference::embed`] is written to that same
//! order, so the mirror is the reference, behind the mirrors' typed length checks. A token
//! id `>= vocab` gives `EMBED_BAD_TOKEN_BITS` NaNs, as the kernel writes.

use ptx_gen::kernels::Embed;

use super::{check_len, check_spec, MirrorError};

/// The embedding of `token` (`table` holds the `vocab` rows as GGUF stores them).
pub fn embed(spec: &Embed, table: &[u8], token: u32) -> Result<Vec<f32>, MirrorError> {
    const K: &str = "embed";
    check_spec(K, spec)?;
    let rows = crate::reference::embed::row_bytes(spec.table, spec.hidden as usize);
    check_len(K, "table (bytes)", rows * spec.vocab as usize, table.len())?;
    Ok(crate::reference::embed::embed(spec, table, token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ptx_gen::kernels::{EmbedTable, EMBED_BAD_TOKEN_BITS};

    #[test]
    fn rows_scale_and_bad_tokens() {
        let spec = Embed {
            table: EmbedTable::F32,
            vocab: 3,
            hidden: 4,
            scale: 2.0,
            m: 1,
        };
        let table: Vec<u8> = (0..12)
            .flat_map(|i| (i as f32 + 0.5).to_le_bytes())
            .collect();
        assert_eq!(
            embed(&spec, &table, 1).unwrap(),
            vec![9.0, 11.0, 13.0, 15.0]
        );
        let bad = embed(&spec, &table, 3).unwrap();
        assert!(bad.iter().all(|v| v.to_bits() == EMBED_BAD_TOKEN_BITS));
        assert!(embed(&spec, &table[..40], 0).is_err());
    }
}
