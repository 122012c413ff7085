//! The GGUF reader on files the test writes: every metadata value type (nested arrays too),
//! versions 2 and 3, `general.alignment`, tensor infos, data offsets and zero-copy views.

#[path = "fixtures/gguf_writer.rs"]
mod gguf_writer;

use gguf_writer::{ggml, ty, Builder, Value};
use ptxforge::model::gguf::{parse, MetaArray, MetaValue, ValueType};
use ptxforge::quant::GgmlType;

fn every_value_type() -> Builder {
    Builder::new()
        .kv("u8", Value::U8(200))
        .kv("i8", Value::I8(-100))
        .kv("u16", Value::U16(60000))
        .kv("i16", Value::I16(-30000))
        .kv("u32", Value::U32(4_000_000_000))
        .kv("i32", Value::I32(-2_000_000_000))
        .kv("f32", Value::F32(1.5))
        .kv("bool", Value::Bool(true))
        .kv("string", Value::Str("héllo".into()))
        .kv("u64", Value::U64(u64::MAX))
        .kv("i64", Value::I64(i64::MIN))
        .kv("f64", Value::F64(-0.25))
        .kv("strings", Value::strings(&["a", "", "ccc"]))
        .kv(
            "floats",
            Value::Array(ty::F32, vec![Value::F32(1.0), Value::F32(-2.0)]),
        )
        .kv("empty", Value::Array(ty::U64, vec![]))
        .kv(
            "nested",
            Value::Array(
                ty::ARRAY,
                vec![
                    Value::Array(ty::I32, vec![Value::I32(1), Value::I32(-2)]),
                    Value::Array(ty::STRING, vec![Value::Str("x".into())]),
                ],
            ),
        )
}

#[test]
fn every_metadata_type_reads_back() {
    for version in [2, 3] {
        let bytes = Builder {
            version,
            ..every_value_type()
        }
        .build();
        let h = parse(&bytes).unwrap_or_else(|e| panic!("v{version}: {e}"));
        assert_eq!(h.version, version);
        let get = |k: &str| h.get(k).unwrap_or_else(|| panic!("no {k}")).clone();
        assert_eq!(get("u8"), MetaValue::U8(200));
        assert_eq!(get("i8"), MetaValue::I8(-100));
        assert_eq!(get("u16"), MetaValue::U16(60000));
        assert_eq!(get("i16"), MetaValue::I16(-30000));
        assert_eq!(get("u32"), MetaValue::U32(4_000_000_000));
        assert_eq!(get("i32"), MetaValue::I32(-2_000_000_000));
        assert_eq!(get("f32"), MetaValue::F32(1.5));
        assert_eq!(get("bool"), MetaValue::Bool(true));
        assert_eq!(get("string"), MetaValue::String("héllo".into()));
        assert_eq!(get("u64"), MetaValue::U64(u64::MAX));
        assert_eq!(get("i64"), MetaValue::I64(i64::MIN));
        assert_eq!(get("f64"), MetaValue::F64(-0.25));
        assert_eq!(
            get("strings"),
            MetaValue::Array(MetaArray::String(vec!["a".into(), "".into(), "ccc".into()]))
        );
        assert_eq!(
            get("floats"),
            MetaValue::Array(MetaArray::F32(vec![1.0, -2.0]))
        );
        assert_eq!(get("empty"), MetaValue::Array(MetaArray::U64(vec![])));
        assert_eq!(
            get("nested"),
            MetaValue::Array(MetaArray::Array(vec![
                MetaArray::I32(vec![1, -2]),
                MetaArray::String(vec!["x".into()])
            ]))
        );
        // File order is kept.
        assert_eq!(h.metadata.first().map(|(k, _)| k.as_str()), Some("u8"));
        assert_eq!(h.metadata.last().map(|(k, _)| k.as_str()), Some("nested"));
    }
}

#[test]
fn value_accessors() {
    assert_eq!(MetaValue::U32(7).as_u64(), Some(7));
    assert_eq!(MetaValue::I32(-7).as_u64(), None);
    assert_eq!(MetaValue::F32(0.5).as_f64(), Some(0.5));
    assert_eq!(MetaValue::String("s".into()).as_f64(), None);
    assert_eq!(MetaValue::Bool(true).as_bool(), Some(true));
    let a = MetaValue::Array(MetaArray::String(vec!["t".into(); 3]));
    assert_eq!(a.as_array().map(MetaArray::len), Some(3));
    assert_eq!(a.to_string(), "[string; 3]");
    assert_eq!(a.value_type(), ValueType::Array);
}

#[test]
fn tensor_infos_offsets_and_alignment() {
    let b = Builder::new()
        .kv("general.alignment", Value::U32(64))
        .tensor("a", ggml::F32, &[3])
        .tensor("b", ggml::Q4_K, &[512, 2, 3])
        .tensor("c", ggml::Q8_0, &[64, 5]);
    let bytes = b.build();
    let h = parse(&bytes).unwrap();
    assert_eq!(h.alignment, 64);
    assert_eq!(h.data_offset % 64, 0);
    assert_eq!(h.data_offset as usize, b.header().len().div_ceil(64) * 64);
    let names: Vec<&str> = h.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    let t = &h.tensors[1];
    assert_eq!(
        (t.ty, t.ne.clone(), t.shape()),
        (GgmlType::Q4K, vec![512, 2, 3], vec![3, 2, 512])
    );
    assert_eq!(t.size, 3 * 2 * 2 * 144);
    assert_eq!(
        t.offset, 64,
        "the 12-byte tensor `a` is padded to the alignment"
    );
    for (i, (t, want)) in h.tensors.iter().zip(b.offsets()).enumerate() {
        assert_eq!(t.offset, want);
        let range = h.tensor_range(i).unwrap();
        assert_eq!(range.len() as u64, t.size);
        // The writer fills each tensor with 0, 1, 2, ... from its first byte.
        assert_eq!(&bytes[range.start..range.start + 3], &[0, 1, 2]);
    }
}

#[test]
fn default_alignment_is_32() {
    let h = parse(
        &Builder::new()
            .tensor("a", ggml::F16, &[5])
            .tensor("b", ggml::F16, &[5])
            .build(),
    )
    .unwrap();
    assert_eq!(h.alignment, 32);
    assert_eq!(h.tensors[1].offset, 32);
}

#[test]
fn files_open_through_the_memory_map() {
    let dir = std::env::temp_dir().join(format!("ptxforge-gguf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("views.gguf");
    let bytes = every_value_type().tensor("w", ggml::Q8_0, &[32, 4]).build();
    std::fs::write(&p, &bytes).unwrap();
    let f = ptxforge::model::gguf::GgufFile::open(&p).unwrap();
    let data = f.tensor_data_by_name("w").unwrap();
    assert_eq!(data.len(), 4 * 34);
    let file = f.bytes().as_ptr_range();
    assert!(
        file.contains(&data.as_ptr()),
        "a view into the map, not a copy"
    );
    assert_eq!(f.tensor_data(1), None);
    let _ = std::fs::remove_dir_all(&dir);
}
