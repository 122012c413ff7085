//! Parsing the GGUF header: magic, version, metadata, tensor infos, and the layout of the
//! data section. Every count, length and offset is checked against the bytes that remain
//! before anything is allocated or sliced, so a lying header yields an error, never a huge
//! allocation or an out-of-bounds read.

use std::collections::{HashMap, HashSet};

use super::cursor::{Cursor, Short};
use super::error::GgufError;
use super::value::{MetaArray, MetaValue, ValueType};
use crate::quant::GgmlType;

/// GGML's `GGML_MAX_DIMS`.
pub const MAX_DIMS: u32 = 4;
/// Alignment of the data section and of every tensor when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Arrays of arrays deeper than this are rejected (the format allows nesting; no model needs
/// more than one level, and unbounded nesting would let a file exhaust the stack).
pub const MAX_NESTING: usize = 8;

const MAGIC: &[u8; 4] = b"GGUF";

/// One tensor's description from the header.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufTensorInfo {
    pub name: String,
    pub ty: GgmlType,
    /// GGUF order: `ne[0]` (the row length) first.
    pub ne: Vec<u64>,
    /// Offset from the start of the data section.
    pub offset: u64,
    /// Bytes of data.
    pub size: u64,
}

impl GgufTensorInfo {
    /// Row-major shape: outermost first, the row last (`ne` reversed).
    pub fn shape(&self) -> Vec<u64> {
        self.ne.iter().rev().copied().collect()
    }
}

/// Everything in a GGUF file except the tensor data.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufHeader {
    pub version: u32,
    /// In file order.
    pub metadata: Vec<(String, MetaValue)>,
    /// In file order.
    pub tensors: Vec<GgufTensorInfo>,
    pub alignment: u64,
    /// Absolute offset of the data section.
    pub data_offset: u64,
    /// Length of the whole file.
    pub file_len: u64,
    index: HashMap<String, usize>,
}

impl GgufHeader {
    /// The metadata value under `key`.
    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.index.get(key).map(|&i| &self.metadata[i].1)
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Option<&str> {
        self.get("general.architecture").and_then(MetaValue::as_str)
    }

    /// Absolute byte range of tensor `i` (checked against the file at parse time).
    pub fn tensor_range(&self, i: usize) -> Option<std::ops::Range<usize>> {
        let t = self.tensors.get(i)?;
        let start = usize::try_from(self.data_offset + t.offset).ok()?;
        let end = start.checked_add(usize::try_from(t.size).ok()?)?;
        Some(start..end)
    }
}

/// Parses the header of the GGUF file in `bytes` (the whole file) and checks that every
/// tensor's data lies inside it, aligned and without overlap.
pub fn parse(bytes: &[u8]) -> Result<GgufHeader, GgufError> {
    let mut c = Cursor::new(bytes);
    let magic = c.bytes(4).map_err(|s| s.context("magic"))?;
    if magic != MAGIC {
        return Err(GgufError::BadMagic {
            found: magic.to_vec(),
        });
    }
    let version = c.u32().map_err(|s| s.context("version"))?;
    match version {
        2 | 3 => {}
        // Version 1 used 32-bit counts and lengths; nothing current writes it.
        v if matches!(v.swap_bytes(), 2 | 3) => {
            return Err(GgufError::BigEndian {
                version: v.swap_bytes(),
            })
        }
        v => return Err(GgufError::UnsupportedVersion { version: v }),
    }
    let n_tensors = c.u64().map_err(|s| s.context("tensor count"))?;
    let n_kv = c.u64().map_err(|s| s.context("metadata count"))?;
    // key length + value type + smallest value
    check_count(&c, "metadata entry", n_kv, 8 + 4 + 1)?;

    let mut metadata = Vec::with_capacity(n_kv as usize);
    let mut index = HashMap::with_capacity(n_kv as usize);
    for i in 0..n_kv {
        let key = read_string(&mut c, &format!("key of metadata entry {i}"))?;
        let key = String::from_utf8(key.to_vec()).map_err(|_| GgufError::InvalidUtf8 {
            what: format!("key of metadata entry {i}"),
        })?;
        let type_id = c.u32().map_err(|s| s.context(format!("type of `{key}`")))?;
        let ty = ValueType::from_id(type_id).ok_or_else(|| GgufError::UnknownValueType {
            key: key.clone(),
            type_id,
        })?;
        let value = read_value(&mut c, &key, ty, 0)?;
        if index.insert(key.clone(), metadata.len()).is_some() {
            return Err(GgufError::DuplicateKey { key });
        }
        metadata.push((key, value));
    }

    // name length + n_dims + one dim + type + offset
    check_count(&c, "tensor info", n_tensors, 8 + 4 + 8 + 4 + 8)?;
    let mut tensors = Vec::with_capacity(n_tensors as usize);
    let mut names = HashSet::with_capacity(n_tensors as usize);
    for i in 0..n_tensors {
        let t = read_tensor_info(&mut c, i)?;
        if !names.insert(t.name.clone()) {
            return Err(GgufError::DuplicateTensor { name: t.name });
        }
        tensors.push(t);
    }

    let alignment = match index.get("general.alignment").map(|&i| &metadata[i].1) {
        None => DEFAULT_ALIGNMENT,
        // llama.cpp requires the u32 type for this key.
        Some(MetaValue::U32(a)) => u64::from(*a),
        Some(other) => {
            return Err(GgufError::WrongMetaType {
                key: "general.alignment".to_string(),
                expected: "u32",
                found: other.value_type().name().to_string(),
            })
        }
    };
    if alignment == 0 || !alignment.is_power_of_two() {
        return Err(GgufError::BadAlignment { alignment });
    }
    let file_len = bytes.len() as u64;
    // The data section starts at the next multiple of the alignment; `pos` is at most the file
    // length and the alignment at most 2^31, so this cannot overflow.
    let data_offset = c.pos().div_ceil(alignment) * alignment;
    check_layout(&tensors, data_offset, alignment, file_len)?;
    Ok(GgufHeader {
        version,
        metadata,
        tensors,
        alignment,
        data_offset,
        file_len,
        index,
    })
}

/// Rejects `count` items of at least `min_size` bytes each when the rest of the file can't
/// hold them, so that `Vec::with_capacity(count)` stays proportional to the file.
fn check_count(c: &Cursor<'_>, what: &str, count: u64, min_size: u64) -> Result<(), GgufError> {
    let max = c.remaining() / min_size;
    if count > max {
        return Err(GgufError::CountTooLarge {
            what: what.to_string(),
            count,
            max,
            available: c.remaining(),
        });
    }
    Ok(())
}

/// A GGUF string: u64 length, then the bytes.
fn read_string<'a>(c: &mut Cursor<'a>, what: &str) -> Result<&'a [u8], GgufError> {
    let len = c
        .u64()
        .map_err(|s| s.context(format!("length of {what}")))?;
    if len > c.remaining() {
        return Err(GgufError::StringTooLong {
            what: what.to_string(),
            len,
            offset: c.pos(),
            available: c.remaining(),
        });
    }
    c.bytes(len).map_err(|s| s.context(what.to_string()))
}

/// String values are UTF-8 by the spec; a file that breaks it gets replacement characters
/// rather than an error, because tokenizers of real files occasionally do.
fn read_string_value(c: &mut Cursor<'_>, key: &str) -> Result<String, GgufError> {
    let bytes = read_string(c, &format!("value of `{key}`"))?;
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

fn read_value(
    c: &mut Cursor<'_>,
    key: &str,
    ty: ValueType,
    depth: usize,
) -> Result<MetaValue, GgufError> {
    let short = |s: Short| s.context(format!("value of `{key}`"));
    Ok(match ty {
        ValueType::U8 => MetaValue::U8(c.u8().map_err(short)?),
        ValueType::I8 => MetaValue::I8(c.i8().map_err(short)?),
        ValueType::U16 => MetaValue::U16(c.u16().map_err(short)?),
        ValueType::I16 => MetaValue::I16(c.i16().map_err(short)?),
        ValueType::U32 => MetaValue::U32(c.u32().map_err(short)?),
        ValueType::I32 => MetaValue::I32(c.i32().map_err(short)?),
        ValueType::F32 => MetaValue::F32(c.f32().map_err(short)?),
        ValueType::Bool => MetaValue::Bool(c.u8().map_err(short)? != 0),
        ValueType::U64 => MetaValue::U64(c.u64().map_err(short)?),
        ValueType::I64 => MetaValue::I64(c.i64().map_err(short)?),
        ValueType::F64 => MetaValue::F64(c.f64().map_err(short)?),
        ValueType::String => MetaValue::String(read_string_value(c, key)?),
        ValueType::Array => MetaValue::Array(read_array(c, key, depth)?),
    })
}

fn read_array(c: &mut Cursor<'_>, key: &str, depth: usize) -> Result<MetaArray, GgufError> {
    if depth >= MAX_NESTING {
        return Err(GgufError::NestingTooDeep {
            key: key.to_string(),
            max: MAX_NESTING,
        });
    }
    let what = || format!("array `{key}`");
    let type_id = c
        .u32()
        .map_err(|s| s.context(format!("element type of {}", what())))?;
    let ty = ValueType::from_id(type_id).ok_or_else(|| GgufError::UnknownValueType {
        key: key.to_string(),
        type_id,
    })?;
    let n = c
        .u64()
        .map_err(|s| s.context(format!("length of {}", what())))?;
    check_count(c, &what(), n, ty.min_encoded_size())?;
    let short = |s: Short| s.context(format!("element of {}", what()));
    macro_rules! items {
        ($variant:ident, $read:expr) => {{
            let mut v = Vec::with_capacity(n as usize);
            for _ in 0..n {
                v.push($read);
            }
            MetaArray::$variant(v)
        }};
    }
    Ok(match ty {
        ValueType::U8 => items!(U8, c.u8().map_err(short)?),
        ValueType::I8 => items!(I8, c.i8().map_err(short)?),
        ValueType::U16 => items!(U16, c.u16().map_err(short)?),
        ValueType::I16 => items!(I16, c.i16().map_err(short)?),
        ValueType::U32 => items!(U32, c.u32().map_err(short)?),
        ValueType::I32 => items!(I32, c.i32().map_err(short)?),
        ValueType::F32 => items!(F32, c.f32().map_err(short)?),
        ValueType::Bool => items!(Bool, c.u8().map_err(short)? != 0),
        ValueType::U64 => items!(U64, c.u64().map_err(short)?),
        ValueType::I64 => items!(I64, c.i64().map_err(short)?),
        ValueType::F64 => items!(F64, c.f64().map_err(short)?),
        ValueType::String => items!(String, read_string_value(c, key)?),
        ValueType::Array => items!(Array, read_array(c, key, depth + 1)?),
    })
}

fn read_tensor_info(c: &mut Cursor<'_>, i: u64) -> Result<GgufTensorInfo, GgufError> {
    let name = read_string(c, &format!("name of tensor {i}"))?;
    let name = String::from_utf8(name.to_vec()).map_err(|_| GgufError::InvalidUtf8 {
        what: format!("name of tensor {i}"),
    })?;
    let field = |what: &str| format!("{what} of tensor `{name}`");
    let n_dims = c.u32().map_err(|s| s.context(field("dimension count")))?;
    if n_dims == 0 || n_dims > MAX_DIMS {
        return Err(GgufError::BadDimCount {
            name,
            n_dims,
            max: MAX_DIMS,
        });
    }
    let mut ne = Vec::with_capacity(n_dims as usize);
    for index in 0..n_dims as usize {
        let d = c.u64().map_err(|s| s.context(field("dimensions")))?;
        // ggml stores dimensions as int64_t.
        if d == 0 || d > i64::MAX as u64 {
            return Err(GgufError::BadDim {
                name,
                index,
                value: d,
            });
        }
        ne.push(d);
    }
    let type_id = c.u32().map_err(|s| s.context(field("type")))?;
    let offset = c.u64().map_err(|s| s.context(field("offset")))?;
    let ty = match GgmlType::from_id(type_id) {
        Some(t) => t,
        None => {
            return Err(match GgmlType::foreign_name(type_id) {
                Some(type_name) => GgufError::UnsupportedTensorType {
                    name,
                    type_id,
                    type_name,
                },
                None => GgufError::UnknownTensorType { name, type_id },
            })
        }
    };
    let block = ty.block_size();
    if ne[0] % u64::from(block) != 0 {
        return Err(GgufError::RowNotBlockAligned {
            name,
            ty,
            block,
            row: ne[0],
        });
    }
    let shape: Vec<u64> = ne.iter().rev().copied().collect();
    let Some(size) = ty.tensor_bytes(&shape) else {
        return Err(GgufError::ShapeOverflow { name, shape });
    };
    Ok(GgufTensorInfo {
        name,
        ty,
        ne,
        offset,
        size,
    })
}

/// Tensor data must be aligned, inside the file and disjoint.
fn check_layout(
    tensors: &[GgufTensorInfo],
    data_offset: u64,
    alignment: u64,
    file_len: u64,
) -> Result<(), GgufError> {
    for t in tensors {
        if t.offset % alignment != 0 {
            return Err(GgufError::MisalignedOffset {
                name: t.name.clone(),
                offset: t.offset,
                alignment,
            });
        }
        let start = data_offset.checked_add(t.offset);
        let end = start.and_then(|s| s.checked_add(t.size));
        match (start, end) {
            (Some(_), Some(end)) if end <= file_len => {}
            _ => {
                return Err(GgufError::DataOutOfRange {
                    name: t.name.clone(),
                    start: start.unwrap_or(u64::MAX),
                    end: end.unwrap_or(u64::MAX),
                    file_len,
                })
            }
        }
    }
    let mut by_offset: Vec<&GgufTensorInfo> = tensors.iter().collect();
    by_offset.sort_by_key(|t| (t.offset, t.size));
    for pair in by_offset.windows(2) {
        // Offsets and sizes were checked above: no overflow. Empty tensors can't exist (every
        // dimension is at least 1).
        if pair[0].offset + pair[0].size > pair[1].offset {
            return Err(GgufError::Overlap {
                first: pair[0].name.clone(),
                second: pair[1].name.clone(),
            });
        }
    }
    Ok(())
}
