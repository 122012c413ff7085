//! Presets: dimensions of the well-known models, and weight types exactly as llama.cpp's
//! Q4_K_M produces them. The types are checked against an independent transcription of
//! `llama_tensor_get_type` (llama.cpp src/llama-quant.cpp) and, for Gemma 3 270M and SmolLM2,
//! against the real files' type counts (shared/fixtures/llamacpp-greedy.json), no model file
//! needed.

use std::collections::BTreeMap;

use ptxforge::contract::{ModelSpec, Registry, Role, Scope};
use ptxforge::quant::GgmlType;

fn registry() -> Registry {
    Registry::builtin().unwrap()
}

/// llama.cpp's `use_more_bits(i_layer, n_layers)`.
fn use_more_bits(i: u32, n: u32) -> bool {
    i < n / 8 || i >= 7 * n / 8 || (i as i64 - (n / 8) as i64) % 3 == 2
}

/// `tensor_type_fallback`: rows that aren't whole 256-blocks take a 32-block type.
fn fallback(ty: GgmlType, row: u64) -> GgmlType {
    if row % u64::from(ty.block_size()) == 0 {
        return ty;
    }
    match ty {
        GgmlType::Q4K => GgmlType::Q5_0,
        GgmlType::Q5K => GgmlType::Q5_1,
        GgmlType::Q6K => GgmlType::Q8_0,
        other => panic!("no fallback for {other}"),
    }
}

/// The type llama.cpp's Q4_K_M gives a tensor of `role` in `layer`, with `row` columns.
fn q4_k_m(
    role: Role,
    layer: Option<u32>,
    layers: u32,
    row: u64,
    tied: bool,
    n_dims: usize,
) -> GgmlType {
    if n_dims < 2 {
        return GgmlType::F32; // 1-D tensors (norms, biases, rope factors) are not quantized
    }
    let lm_head = role == Role::Output || (tied && role == Role::TokenEmbd);
    if lm_head {
        return if row % 256 == 0 {
            GgmlType::Q6K
        } else {
            GgmlType::Q8_0
        };
    }
    let wanted = match role {
        // attn_qkv counts as attn_v (category_is_attn_v).
        Role::AttnV | Role::AttnQkv | Role::FfnDown if use_more_bits(layer.unwrap(), layers) => {
            GgmlType::Q6K
        }
        _ => GgmlType::Q4K,
    };
    fallback(wanted, row)
}

fn check_q4_k_m(spec: &ModelSpec) {
    let d = &spec.dims;
    let mut seen = 0;
    for rule in spec.contract.tensors() {
        let shape = spec.shape(rule.role).unwrap().unwrap();
        let layers: Vec<Option<u32>> = match rule.role.scope() {
            Scope::Global => vec![None],
            Scope::PerLayer => (0..d.layers).map(Some).collect(),
        };
        for layer in layers {
            let Some(got) = spec.weights.get(rule.role, layer) else {
                assert!(
                    !rule.required || rule.role == Role::Output,
                    "{}: no type for {}",
                    spec.name,
                    rule.role
                );
                continue;
            };
            seen += 1;
            let want = q4_k_m(
                rule.role,
                layer,
                d.layers,
                *shape.last().unwrap(),
                d.tied_embeddings,
                shape.len(),
            );
            assert_eq!(got, want, "{}: {} layer {layer:?}", spec.name, rule.role);
        }
    }
    assert_eq!(seen, spec.weights.len());
}

fn counts(spec: &ModelSpec) -> BTreeMap<String, usize> {
    spec.weights
        .type_counts()
        .into_iter()
        .map(|(t, n)| (t.to_string(), n))
        .collect()
}

#[test]
fn q4_k_m_presets_follow_llama_cpp() {
    let r = registry();
    for name in [
        "llama3-8b",
        "llama3.2-1b",
        "mistral-7b",
        "qwen2.5-0.5b",
        "qwen2.5-7b",
        "qwen3-0.6b",
        "qwen3-8b",
        "gemma3-270m",
        "gemma3-1b",
        "phi3-mini",
    ] {
        check_q4_k_m(r.preset_spec(name).unwrap());
    }
}

#[test]
fn gemma3_270m_preset_is_the_real_files_types() {
    let spec = registry().preset_spec("gemma3-270m").unwrap().clone();
    let want: BTreeMap<String, usize> = [
        ("F32", 109),
        ("Q4_K", 27),
        ("Q5_0", 81),
        ("Q6_K", 9),
        ("Q8_0", 10),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), *v))
    .collect();
    assert_eq!(counts(&spec), want);
    // Q8_0 where llama.cpp wanted Q6_K (640 is not a multiple of 256): attn_v on the
    // use_more_bits layers, and the tied embedding.
    let q8: Vec<u32> = (0..18)
        .filter(|&l| spec.weights.get(Role::AttnV, Some(l)) == Some(GgmlType::Q8_0))
        .collect();
    assert_eq!(q8, [0, 1, 4, 7, 10, 13, 15, 16, 17]);
    assert_eq!(
        spec.weights.get(Role::TokenEmbd, None),
        Some(GgmlType::Q8_0)
    );
    assert_eq!(spec.weights.get(Role::Output, None), None);
}

#[test]
fn smollm2_preset_is_the_q4_1_file() {
    let spec = registry().preset_spec("smollm2-135m").unwrap().clone();
    let want: BTreeMap<String, usize> = [("F32", 61), ("Q4_1", 210), ("Q8_0", 1)]
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    assert_eq!(counts(&spec), want);
}

#[test]
fn preset_dims() {
    let r = registry();
    let dims = |n: &str| r.preset_spec(n).unwrap().dims.clone();
    // (hidden, layers, heads, kv_heads, head_dim, ffn, vocab)
    let table = [
        ("llama3-8b", (4096, 32, 32, 8, 128, 14336, 128256)),
        ("llama3.2-1b", (2048, 16, 32, 8, 64, 8192, 128256)),
        ("mistral-7b", (4096, 32, 32, 8, 128, 14336, 32768)),
        ("qwen2.5-0.5b", (896, 24, 14, 2, 64, 4864, 151936)),
        ("qwen2.5-7b", (3584, 28, 28, 4, 128, 18944, 152064)),
        ("qwen3-0.6b", (1024, 28, 16, 8, 128, 3072, 151936)),
        ("qwen3-8b", (4096, 36, 32, 8, 128, 12288, 151936)),
        ("gemma3-270m", (640, 18, 4, 1, 256, 2048, 262144)),
        ("gemma3-1b", (1152, 26, 4, 1, 256, 6912, 262144)),
        ("phi3-mini", (3072, 32, 32, 32, 96, 8192, 32064)),
        ("smollm2-135m", (576, 30, 9, 3, 64, 1536, 49152)),
    ];
    for (name, want) in table {
        let d = dims(name);
        assert_eq!(
            (d.hidden, d.layers, d.heads, d.kv_heads, d.head_dim, d.ffn, d.vocab),
            want,
            "{name}"
        );
        assert_eq!(d.rope_dims, d.head_dim, "{name}: full rotary");
    }
    let tied: Vec<&str> = table
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| dims(n).tied_embeddings)
        .collect();
    assert_eq!(
        tied,
        [
            "llama3.2-1b",
            "qwen2.5-0.5b",
            "qwen3-0.6b",
            "gemma3-270m",
            "gemma3-1b",
            "smollm2-135m"
        ]
    );
    assert!(matches!(
        dims("llama3.2-1b").rope_scaling,
        Some(ptxforge::contract::RopeScaling::Llama3 {
            original_context: 8192,
            ..
        })
    ));
    assert_eq!(dims("gemma3-1b").layer_attention(5).window, None);
    assert_eq!(dims("gemma3-1b").layer_attention(4).window, Some(512));
    assert_eq!(
        dims("mistral-7b").sliding_window,
        None,
        "v0.3 has no sliding window"
    );
    assert_eq!(dims("phi3-mini").sliding_window, Some(2047));
}

#[test]
fn preset_specs_give_every_shape_kernels_need() {
    for p in registry().presets() {
        let spec = &p.spec;
        for (key, ty) in spec.weights.iter() {
            let shape = spec.shape(key.role).unwrap().unwrap();
            assert!(
                ty.tensor_bytes(&shape).is_some(),
                "{}: {key} {ty} {shape:?}",
                p.name
            );
        }
        assert_eq!(spec.dims.gqa_ratio() * spec.dims.kv_heads, spec.dims.heads);
    }
}
