//! HF checkpoints (safetensors + config.json) written by the test: read into the same
//! `ModelInfo` as GGUF, bound through the same contract to the same dims, gated the same way.

#[path = "fixtures/gguf_writer.rs"]
mod gguf_writer;

use std::path::{Path, PathBuf};

use gguf_writer::{ggml, tiny_hf_llama, tiny_hf_llama_config, tiny_llama, Tiny};
use ptxforge::contract::{Format, Registry, Role, RopeStyle, TensorKey};
use ptxforge::model::{
    open_checked, BoundModel, InspectReport, ModelError, ModelInfo, SupportedTypes, TensorDtype,
};
use ptxforge::quant::GgmlType;

/// A fresh directory for one test.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ptxforge-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Writes a tiny HF llama into `dir`, its tensors split over `shards` files.
fn write_hf(dir: &Path, d: Tiny, dtype: &str, tied: bool, shards: usize) {
    std::fs::write(dir.join("config.json"), tiny_hf_llama_config(d, tied)).unwrap();
    let entries = tiny_hf_llama(d, dtype, !tied);
    let per = entries.len().div_ceil(shards);
    for (i, chunk) in entries.chunks(per).enumerate() {
        let refs: Vec<(&str, &str, Vec<u64>)> = chunk
            .iter()
            .map(|(n, t, s)| (n.as_str(), t.as_str(), s.clone()))
            .collect();
        let name = format!("model-{:05}-of-{shards:05}.safetensors", i + 1);
        std::fs::write(dir.join(name), gguf_writer::safetensors(&refs)).unwrap();
    }
}

fn registry() -> Registry {
    Registry::builtin().unwrap()
}

#[test]
fn hf_directory_binds_to_the_same_dims_as_the_gguf() {
    let d = Tiny::LLAMA;
    let dir = scratch("hf-dims");
    write_hf(&dir, d, "BF16", true, 1);
    let hf =
        open_checked(&dir, &registry(), &SupportedTypes::all()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(hf.info.format(), Format::Hf);
    assert_eq!(hf.info.architecture(), "LlamaForCausalLM");
    assert_eq!(hf.contract().name(), "llama");

    let gguf_path = dir.join("tiny.gguf");
    std::fs::write(&gguf_path, tiny_llama(d, ggml::Q8_0).build()).unwrap();
    let gguf = open_checked(&gguf_path, &registry(), &SupportedTypes::all())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(hf.spec.dims, gguf.spec.dims);
    assert_eq!(hf.spec.dims.hidden, 64);
    assert_eq!(hf.spec.dims.head_dim, 16);
    assert!(hf.spec.dims.tied_embeddings);
    // Same architecture, different weight layout: HF Q/K rows are not permuted.
    assert_eq!(hf.spec.behaviour.rope_style, RopeStyle::Neox);
    assert_eq!(gguf.spec.behaviour.rope_style, RopeStyle::Norm);
    // Same roles, same count.
    let hf_roles: Vec<TensorKey> = hf.tensors.keys().copied().collect();
    let gguf_roles: Vec<TensorKey> = gguf.tensors.keys().copied().collect();
    assert_eq!(hf_roles, gguf_roles);
    assert!(hf.spec.weights.iter().all(|(_, t)| t == GgmlType::BF16));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sharded_checkpoint_with_lm_head_is_read_whole() {
    let d = Tiny::LLAMA;
    let dir = scratch("hf-shards");
    write_hf(&dir, d, "F32", false, 3);
    let b =
        open_checked(&dir, &registry(), &SupportedTypes::all()).unwrap_or_else(|e| panic!("{e}"));
    assert!(!b.spec.dims.tied_embeddings);
    assert_eq!(b.info.tensors().len(), 3 + 9 * d.layers as usize);
    assert!(b.tensors.contains_key(&TensorKey::global(Role::Output)));
    // Views point at each tensor's own bytes: the writer's pattern restarts per file at the
    // data section, so check lengths and in-file ranges.
    for (key, &i) in &b.tensors {
        let t = &b.info.tensors()[i];
        assert_eq!(b.tensor_data(*key).unwrap().len() as u64, t.bytes);
        assert_eq!(t.bytes, t.shape.iter().product::<u64>() * 4);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn single_safetensors_file_uses_the_config_beside_it() {
    let d = Tiny::LLAMA;
    let dir = scratch("hf-file");
    write_hf(&dir, d, "F16", true, 1);
    let file = dir.join("model-00001-of-00001.safetensors");
    let info = ModelInfo::open(&file).unwrap();
    assert_eq!(info.format(), Format::Hf);
    assert!(info
        .tensors()
        .iter()
        .all(|t| t.dtype == TensorDtype::Ggml(GgmlType::F16)));
    let b = BoundModel::bind(info, &registry()).unwrap();
    let report = InspectReport::new(&b, b.gate(&SupportedTypes::all()));
    assert!(report.gate.passed());
    assert_eq!(
        report.type_counts.get("F16"),
        Some(&(2 + 9 * d.layers as usize))
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn config_values_drive_the_dims() {
    let d = Tiny::LLAMA;
    let dir = scratch("hf-config");
    write_hf(&dir, d, "BF16", true, 1);
    // head_dim given explicitly, rope scaling, and an unknown rope type.
    let config = tiny_hf_llama_config(d, true).replace(
        "\"rope_theta\": 10000.0,",
        "\"rope_theta\": 500000.0, \"head_dim\": 16, \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 32.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192},",
    );
    std::fs::write(dir.join("config.json"), &config).unwrap();
    let b =
        open_checked(&dir, &registry(), &SupportedTypes::all()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(b.spec.dims.rope_theta, 500000.0);
    assert!(matches!(
        b.spec.dims.rope_scaling,
        Some(ptxforge::contract::RopeScaling::Llama3 { factor, original_context: 8192, .. }) if factor == 32.0
    ));
    std::fs::write(
        dir.join("config.json"),
        config.replace("\"llama3\"", "\"yarn\""),
    )
    .unwrap();
    let e = open_checked(&dir, &registry(), &SupportedTypes::all()).unwrap_err();
    assert_eq!(e.code(), "dims.rope_scaling", "{e}");
    // A head_dim the tensors don't have fails the gate, naming the first tensors.
    std::fs::write(
        dir.join("config.json"),
        config.replace("\"head_dim\": 16", "\"head_dim\": 8"),
    )
    .unwrap();
    let e = open_checked(&dir, &registry(), &SupportedTypes::all()).unwrap_err();
    assert!(matches!(e, ModelError::Gate { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("model.layers.0.self_attn.q_proj.weight: shape [64, 64], expected [32, 64]"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
