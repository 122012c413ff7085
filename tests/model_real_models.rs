//! The two real models (Gemma 3 270M Q4_K_M and SmolLM2 135M Q4_1): read, bound and gated,
//! with exactly their known dims and per-tensor types, matching their presets tensor for
//! tensor. Paths come from `PTXFORGE_GEMMA3_270M_GGUF` / `PTXFORGE_SMOLLM2_135M_GGUF`.

#[path = "fixtures/real_models.rs"]
mod real_models;

use std::collections::BTreeMap;

use ptxforge::contract::{Format, ModelDims, Registry, Role, RopeStyle, SlidingLayers};
use ptxforge::model::{open_checked, BoundModel, SupportedTypes, TensorDtype};
use ptxforge::quant::GgmlType;

fn open(var: &str, test: &str) -> Option<BoundModel> {
    let path = real_models::model(var, test)?;
    let registry = Registry::builtin().expect("builtin contracts");
    Some(open_checked(&path, &registry, &SupportedTypes::all()).unwrap_or_else(|e| panic!("{e}")))
}

fn type_counts(b: &BoundModel) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for t in b.info.tensors() {
        *out.entry(t.dtype.to_string()).or_insert(0) += 1;
    }
    out
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

#[test]
fn gemma3_270m_dims_types_and_preset() {
    let Some(b) = open(
        real_models::GEMMA3_270M,
        "gemma3_270m_dims_types_and_preset",
    ) else {
        return;
    };
    assert_eq!(b.info.format(), Format::Gguf);
    assert_eq!(b.info.architecture(), "gemma3");
    assert_eq!(b.contract().name(), "gemma3");
    let d: &ModelDims = &b.spec.dims;
    assert_eq!(
        (d.hidden, d.layers, d.heads, d.kv_heads, d.head_dim, d.ffn, d.vocab),
        (640, 18, 4, 1, 256, 2048, 262144)
    );
    assert_eq!(
        (d.context, d.rope_dims, d.sliding_window, d.sliding_period),
        (32768, 256, Some(512), Some(6))
    );
    assert_eq!(
        (d.rope_theta, d.rope_theta_local, d.rms_eps),
        (1e6, Some(1e4), 1e-6)
    );
    assert_eq!(d.query_pre_attn_scalar, 256.0);
    assert_eq!(d.final_logit_softcap, None);
    assert!(d.tied_embeddings, "the file has no output.weight");
    assert_eq!(d.sliding_layers, SlidingLayers::PeriodicGlobal);
    // The GGUF stores Gemma's norms already +1 (convert_hf_to_gguf.py norm_shift).
    assert_eq!(b.spec.behaviour.norm_weight_offset, 0.0);
    assert_eq!(b.spec.behaviour.rope_style, RopeStyle::Neox);

    // tensor_types of this file in shared/fixtures/llamacpp-greedy.json.
    assert_eq!(
        type_counts(&b),
        counts(&[
            ("F32", 109),
            ("Q4_K", 27),
            ("Q5_0", 81),
            ("Q6_K", 9),
            ("Q8_0", 10)
        ])
    );
    assert!(b.unrecognised.is_empty());
    assert_eq!(b.tensors.len(), 236);

    // The preset describes this file exactly: same dims, same type for every tensor.
    let registry = Registry::builtin().unwrap();
    let preset = registry.preset_spec("gemma3-270m").unwrap();
    assert_eq!(preset.dims, b.spec.dims);
    assert_eq!(preset.weights, b.spec.weights);
    assert_eq!(preset.behaviour, b.spec.behaviour);
}

#[test]
fn gemma3_270m_tensor_views_are_zero_copy_and_in_bounds() {
    let Some(b) = open(
        real_models::GEMMA3_270M,
        "gemma3_270m_tensor_views_are_zero_copy_and_in_bounds",
    ) else {
        return;
    };
    let gguf = b.info.gguf().expect("a GGUF model");
    let file = gguf.bytes().as_ptr_range();
    for (key, &i) in &b.tensors {
        let t = &b.info.tensors()[i];
        let data = b.tensor_data(*key).expect("tensor data");
        assert_eq!(data.len() as u64, t.bytes, "{}", t.name);
        assert!(
            file.start <= data.as_ptr() && data.as_ptr_range().end <= file.end,
            "{} outside the map",
            t.name
        );
        assert_eq!(
            (data.as_ptr() as usize - file.start as usize) % gguf.header().alignment as usize,
            0
        );
    }
    // Norm weights are plain f32; Gemma's (already +1) are around 1, certainly finite.
    let norm = b
        .tensor_data(ptxforge::contract::TensorKey::global(Role::OutputNorm))
        .unwrap();
    for w in norm
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
    {
        assert!(w.is_finite());
    }
}

#[test]
fn gemma3_270m_layer_schedule() {
    let Some(b) = open(real_models::GEMMA3_270M, "gemma3_270m_layer_schedule") else {
        return;
    };
    let d = &b.spec.dims;
    for layer in 0..d.layers {
        let a = d.layer_attention(layer);
        if (layer + 1) % 6 == 0 {
            assert_eq!(
                (a.window, a.rope_theta),
                (None, 1e6),
                "layer {layer} is global"
            );
        } else {
            assert_eq!(
                (a.window, a.rope_theta),
                (Some(512), 1e4),
                "layer {layer} slides"
            );
        }
    }
    assert_eq!(d.attention_scale(), 1.0 / 16.0);
}

#[test]
fn gemma3_270m_passes_the_gate_with_the_design_kernel_types() {
    let Some(b) = open(
        real_models::GEMMA3_270M,
        "gemma3_270m_passes_the_gate_with_the_design_kernel_types",
    ) else {
        return;
    };
    let kernels = SupportedTypes::new(
        &[GgmlType::Q4K, GgmlType::Q6K, GgmlType::Q8_0, GgmlType::Q5_0],
        &[GgmlType::F32],
    );
    let report = b.gate(&kernels);
    assert!(report.passed(), "{:?}", report.problems);
    // Without Q5_0 kernels, the 81 Q5_0 tensors are refused, the first ones listed.
    let without = SupportedTypes::new(
        &[GgmlType::Q4K, GgmlType::Q6K, GgmlType::Q8_0],
        &[GgmlType::F32],
    );
    let e = b.gate(&without).into_result().unwrap_err();
    assert_eq!(e.total, 81);
    assert!(
        e.to_string()
            .contains("blk.0.attn_q.weight: type Q5_0 is not supported"),
        "{e}"
    );
}

#[test]
fn smollm2_135m_dims_types_and_preset() {
    let Some(b) = open(
        real_models::SMOLLM2_135M,
        "smollm2_135m_dims_types_and_preset",
    ) else {
        return;
    };
    assert_eq!(b.info.architecture(), "llama");
    assert_eq!(b.contract().name(), "llama");
    let d = &b.spec.dims;
    assert_eq!(
        (d.hidden, d.layers, d.heads, d.kv_heads, d.head_dim, d.ffn, d.vocab),
        (576, 30, 9, 3, 64, 1536, 49152)
    );
    assert_eq!(
        (d.context, d.rope_theta, d.rope_dims, d.rms_eps),
        (8192, 1e5, 64, 1e-5)
    );
    assert!(d.tied_embeddings);
    assert_eq!(d.sliding_window, None);
    // llama.cpp permuted Q/K at conversion: adjacent-pair rope on this file.
    assert_eq!(b.spec.behaviour.rope_style, RopeStyle::Norm);
    assert_eq!(
        type_counts(&b),
        counts(&[("F32", 61), ("Q4_1", 210), ("Q8_0", 1)])
    );
    assert!(b
        .info
        .tensors()
        .iter()
        .all(|t| t.dtype != TensorDtype::Ggml(GgmlType::Q4K)));
    let registry = Registry::builtin().unwrap();
    let preset = registry.preset_spec("smollm2-135m").unwrap();
    assert_eq!(preset.dims, b.spec.dims);
    assert_eq!(preset.weights, b.spec.weights);
}
