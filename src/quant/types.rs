//! The GGML tensor type table: ids as GGUF stores them, names as llama.cpp prints them, and
//! the block geometry every size and alignment check in the crate is computed from.
//!
//! Only the table lives here; (de)quantization lives next to it in its own files.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A GGML tensor element type this crate can describe.
///
/// Discriminants are GGML's `enum ggml_type` ids, which GGUF tensor infos store as `u32`.
/// Ids GGML has that are not listed here (the IQ family, integer types, ...) are reported by
/// name through [`GgmlType::foreign_name`] so an error can say what a file contains.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u32)]
pub enum GgmlType {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2K = 10,
    Q3K = 11,
    Q4K = 12,
    Q5K = 13,
    Q6K = 14,
    Q8K = 15,
    BF16 = 30,
}

/// Block geometry of one type: how many elements a block holds and how many bytes it takes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct BlockLayout {
    /// Elements per block (1 for the float types).
    pub elements: u32,
    /// Bytes per block.
    pub bytes: u32,
}

impl GgmlType {
    /// Every type of the table, in id order.
    pub const ALL: [GgmlType; 15] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q8_1,
        GgmlType::Q2K,
        GgmlType::Q3K,
        GgmlType::Q4K,
        GgmlType::Q5K,
        GgmlType::Q6K,
        GgmlType::Q8K,
        GgmlType::BF16,
    ];

    /// The GGML id (`enum ggml_type`).
    pub const fn id(self) -> u32 {
        self as u32
    }

    /// The type with GGML id `id`, if this table describes it.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        GgmlType::ALL.into_iter().find(|t| t.id() == id)
    }

    /// The name llama.cpp and the `gguf` Python package use (`Q4_K`, `BF16`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "F32",
            GgmlType::F16 => "F16",
            GgmlType::Q4_0 => "Q4_0",
            GgmlType::Q4_1 => "Q4_1",
            GgmlType::Q5_0 => "Q5_0",
            GgmlType::Q5_1 => "Q5_1",
            GgmlType::Q8_0 => "Q8_0",
            GgmlType::Q8_1 => "Q8_1",
            GgmlType::Q2K => "Q2_K",
            GgmlType::Q3K => "Q3_K",
            GgmlType::Q4K => "Q4_K",
            GgmlType::Q5K => "Q5_K",
            GgmlType::Q6K => "Q6_K",
            GgmlType::Q8K => "Q8_K",
            GgmlType::BF16 => "BF16",
        }
    }

    /// The type called `name` (exact, case-sensitive, as [`GgmlType::name`] spells it).
    pub fn from_name(name: &str) -> Option<GgmlType> {
        GgmlType::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Block geometry, straight from GGML's `type_traits` table (`ggml.c`) and the block
    /// structs of `ggml-common.h`.
    pub const fn layout(self) -> BlockLayout {
        // (elements, bytes): QK4_0 = QK4_1 = QK5_0 = QK5_1 = QK8_0 = QK8_1 = 32, QK_K = 256.
        let (elements, bytes) = match self {
            GgmlType::F32 => (1, 4),
            GgmlType::F16 | GgmlType::BF16 => (1, 2),
            GgmlType::Q4_0 => (32, 18),  // half d; u8 qs[16]
            GgmlType::Q4_1 => (32, 20),  // half d, m; u8 qs[16]
            GgmlType::Q5_0 => (32, 22),  // half d; u8 qh[4]; u8 qs[16]
            GgmlType::Q5_1 => (32, 24),  // half d, m; u8 qh[4]; u8 qs[16]
            GgmlType::Q8_0 => (32, 34),  // half d; i8 qs[32]
            GgmlType::Q8_1 => (32, 36),  // half d, s; i8 qs[32]
            GgmlType::Q2K => (256, 84),  // u8 scales[16]; u8 qs[64]; half d, dmin
            GgmlType::Q3K => (256, 110), // u8 hmask[32]; u8 qs[64]; u8 scales[12]; half d
            GgmlType::Q4K => (256, 144), // half d, dmin; u8 scales[12]; u8 qs[128]
            GgmlType::Q5K => (256, 176), // half d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]
            GgmlType::Q6K => (256, 210), // u8 ql[128]; u8 qh[64]; i8 scales[16]; half d
            GgmlType::Q8K => (256, 292), // float d; i8 qs[256]; i16 bsums[16]
        };
        BlockLayout { elements, bytes }
    }

    /// Elements per block.
    pub const fn block_size(self) -> u32 {
        self.layout().elements
    }

    /// Bytes per block.
    pub const fn block_bytes(self) -> u32 {
        self.layout().bytes
    }

    /// True for the block-quantized types (everything but F32, F16, BF16).
    pub const fn is_quantized(self) -> bool {
        !matches!(self, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16)
    }

    /// Bytes of one row of `row_len` elements, or `None` when `row_len` is not a whole number
    /// of blocks or the size does not fit in `u64`.
    pub fn row_bytes(self, row_len: u64) -> Option<u64> {
        let layout = self.layout();
        if row_len % u64::from(layout.elements) != 0 {
            return None;
        }
        (row_len / u64::from(layout.elements)).checked_mul(u64::from(layout.bytes))
    }

    /// Bytes of a tensor of `shape` (row-major, the last dimension is the row), or `None` when
    /// the row is not a whole number of blocks or the size overflows `u64`.
    pub fn tensor_bytes(self, shape: &[u64]) -> Option<u64> {
        let (&row_len, outer) = shape.split_last()?;
        let row = self.row_bytes(row_len)?;
        outer.iter().try_fold(row, |acc, &d| acc.checked_mul(d))
    }

    /// Name of a GGML type id this table does not describe (so errors can say "IQ4_XS"
    /// rather than "type 23"). `None` for ids GGML does not define either.
    pub fn foreign_name(id: u32) -> Option<&'static str> {
        // From `enum ggml_type` in ggml.h; 4 and 5 (Q4_2, Q4_3) and 31..=33 were removed.
        Some(match id {
            16 => "IQ2_XXS",
            17 => "IQ2_XS",
            18 => "IQ3_XXS",
            19 => "IQ1_S",
            20 => "IQ4_NL",
            21 => "IQ3_S",
            22 => "IQ2_S",
            23 => "IQ4_XS",
            24 => "I8",
            25 => "I16",
            26 => "I32",
            27 => "I64",
            28 => "F64",
            29 => "IQ1_M",
            34 => "TQ1_0",
            35 => "TQ2_0",
            39 => "MXFP4",
            _ => return None,
        })
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Error of [`GgmlType::from_str`]: the name is not in the table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown GGML type `{0}` (expected one of F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K)")]
pub struct UnknownTypeName(pub String);

impl FromStr for GgmlType {
    type Err = UnknownTypeName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        GgmlType::from_name(s).ok_or_else(|| UnknownTypeName(s.to_string()))
    }
}

impl Serialize for GgmlType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for GgmlType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = GgmlType;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a GGML type name such as Q4_K")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<GgmlType, E> {
                GgmlType::from_str(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names_round_trip() {
        for t in GgmlType::ALL {
            assert_eq!(GgmlType::from_id(t.id()), Some(t));
            assert_eq!(GgmlType::from_name(t.name()), Some(t));
            assert!(
                GgmlType::foreign_name(t.id()).is_none(),
                "{t} is also foreign"
            );
        }
    }

    #[test]
    fn sizes_match_ggml() {
        // Bytes per block, as `ggml_type_size` reports them.
        let expect = [
            ("F32", 1, 4),
            ("F16", 1, 2),
            ("BF16", 1, 2),
            ("Q4_0", 32, 18),
            ("Q4_1", 32, 20),
            ("Q5_0", 32, 22),
            ("Q5_1", 32, 24),
            ("Q8_0", 32, 34),
            ("Q8_1", 32, 36),
            ("Q2_K", 256, 84),
            ("Q3_K", 256, 110),
            ("Q4_K", 256, 144),
            ("Q5_K", 256, 176),
            ("Q6_K", 256, 210),
            ("Q8_K", 256, 292),
        ];
        for (name, elements, bytes) in expect {
            let t = GgmlType::from_name(name).unwrap();
            assert_eq!(t.layout(), BlockLayout { elements, bytes }, "{name}");
        }
    }

    #[test]
    fn tensor_bytes_checks_rows_and_overflow() {
        assert_eq!(
            GgmlType::Q4K.tensor_bytes(&[640, 1024]),
            Some(640 * 4 * 144)
        );
        assert_eq!(GgmlType::Q4K.tensor_bytes(&[640, 640]), None);
        assert_eq!(GgmlType::F32.tensor_bytes(&[u64::MAX, 2]), None);
        assert_eq!(GgmlType::F32.tensor_bytes(&[]), None);
    }
}
