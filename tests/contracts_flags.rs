//! Behaviour flags and dimension rules of each contract, as the public definitions of the
//! architectures state them (sources are cited in the YAML comments).

use std::collections::BTreeMap;

use ptxforge::contract::{
    Activation, Contract, Dim, DimRule, DimSource, DimsError, EmbeddingScale, Format, ModelDims,
    QkNorm, QueryScale, Registry, Role, RopeScaling, RopeStyle, SlidingLayers,
};

fn registry() -> Registry {
    Registry::builtin().unwrap()
}

/// Dims given by GGUF key (with `{arch}` already substituted), like a GGUF file's metadata.
struct Keys(BTreeMap<String, f64>, &'static str);

impl DimSource for Keys {
    fn dim_value(&self, _dim: Dim, rule: &DimRule) -> Result<Option<f64>, DimsError> {
        Ok(rule
            .gguf
            .iter()
            .find_map(|k| self.0.get(&k.replace("{arch}", self.1)).copied()))
    }
    fn keys_tried(&self, _dim: Dim, rule: &DimRule) -> Vec<String> {
        rule.gguf.clone()
    }
    fn tied_embeddings(&self, _contract: &Contract) -> Result<bool, DimsError> {
        Ok(true)
    }
    fn rope_scaling(&self) -> Result<Option<RopeScaling>, DimsError> {
        Ok(None)
    }
}

fn gguf_dims(
    contract: &Contract,
    arch: &'static str,
    pairs: &[(&str, f64)],
) -> Result<ModelDims, DimsError> {
    let keys = pairs
        .iter()
        .map(|(k, v)| (format!("{arch}.{k}"), *v))
        .collect();
    ModelDims::derive(contract, &Keys(keys, arch))
}

#[test]
fn gemma3_behaviour() {
    let r = registry();
    let c = r.contract("gemma3").unwrap();
    let gguf = c.behaviour(Format::Gguf);
    let hf = c.behaviour(Format::Hf);
    // HF stores w - 1; the GGUF converter already added the 1.
    assert_eq!((gguf.norm_weight_offset, hf.norm_weight_offset), (0.0, 1.0));
    assert_eq!(gguf.rope_style, RopeStyle::Neox);
    assert_eq!(hf.rope_style, RopeStyle::Neox);
    assert_eq!(gguf.qk_norm, QkNorm::PerHeadRms);
    assert!(gguf.post_attn_norm && gguf.post_ffn_norm);
    assert_eq!(
        (gguf.activation, gguf.gated_ffn),
        (Activation::GeluTanh, true)
    );
    assert_eq!(gguf.embedding_scale, EmbeddingScale::SqrtHidden);
    assert_eq!(
        (gguf.query_scale, hf.query_scale),
        (QueryScale::Query, QueryScale::Scores)
    );
    assert_eq!(gguf.sliding_layers, SlidingLayers::PeriodicGlobal);
    assert!(!gguf.qkv_bias);
    for role in [
        Role::AttnQNorm,
        Role::AttnKNorm,
        Role::AttnPostNorm,
        Role::FfnPostNorm,
    ] {
        assert!(c.tensor(role).unwrap().required, "{role}");
    }
    assert!(
        !c.tensor(Role::Output).unwrap().required,
        "gemma ties its LM head"
    );
}

#[test]
fn gemma3_dims_from_gguf_keys() {
    let r = registry();
    let c = r.contract("gemma3").unwrap();
    let base = [
        ("embedding_length", 640.0),
        ("block_count", 18.0),
        ("attention.head_count", 4.0),
        ("attention.head_count_kv", 1.0),
        ("attention.key_length", 256.0),
        ("feed_forward_length", 2048.0),
        ("context_length", 32768.0),
        ("vocab_size", 262144.0),
        ("rope.freq_base", 1e6),
        ("attention.layer_norm_rms_epsilon", 1e-6),
        ("attention.sliding_window", 512.0),
    ];
    let d = gguf_dims(c, "gemma3", &base).unwrap();
    // No GGUF key: llama.cpp's 1/sqrt(head_dim), local theta 10000, period 6, no soft-cap.
    assert_eq!(d.query_pre_attn_scalar, 256.0);
    assert_eq!(d.rope_theta_local, Some(10000.0));
    assert_eq!(d.sliding_period, Some(6));
    assert_eq!(d.final_logit_softcap, None);
    let global: Vec<u32> = (0..18)
        .filter(|&l| d.layer_attention(l).window.is_none())
        .collect();
    assert_eq!(global, [5, 11, 17]);
    // Gemma 3 27B (62 layers): llama.cpp scales by 1/sqrt(hidden / heads) = 1/sqrt(168).
    let big: Vec<(&str, f64)> = base
        .iter()
        .map(|&(k, v)| match k {
            "embedding_length" => (k, 5376.0),
            "block_count" => (k, 62.0),
            "attention.head_count" => (k, 32.0),
            "attention.head_count_kv" => (k, 16.0),
            "attention.key_length" => (k, 128.0),
            _ => (k, v),
        })
        .collect();
    let d = gguf_dims(c, "gemma3", &big).unwrap();
    assert_eq!(d.query_pre_attn_scalar, 168.0);
}

#[test]
fn llama_family_rope_and_ffn() {
    let r = registry();
    for name in ["llama", "mistral"] {
        let c = r.contract(name).unwrap();
        // convert_hf_to_gguf.py permutes Q/K for these: adjacent pairs in GGUF, halves in HF.
        assert_eq!(
            c.behaviour(Format::Gguf).rope_style,
            RopeStyle::Norm,
            "{name}"
        );
        assert_eq!(
            c.behaviour(Format::Hf).rope_style,
            RopeStyle::Neox,
            "{name}"
        );
        let b = c.behaviour(Format::Gguf);
        assert_eq!(
            (b.activation, b.gated_ffn, b.qk_norm, b.qkv_bias),
            (Activation::Silu, true, QkNorm::None, false)
        );
        assert_eq!(b.embedding_scale, EmbeddingScale::None);
        assert_eq!(b.norm_weight_offset, 0.0);
    }
    assert_eq!(
        r.contract("mistral")
            .unwrap()
            .behaviour(Format::Hf)
            .sliding_layers,
        SlidingLayers::All
    );
    assert_eq!(
        r.contract("llama")
            .unwrap()
            .behaviour(Format::Hf)
            .sliding_layers,
        SlidingLayers::None
    );
}

#[test]
fn qwen_flags() {
    let r = registry();
    let q2 = r.contract("qwen2").unwrap();
    assert!(q2.behaviour(Format::Gguf).qkv_bias);
    assert_eq!(q2.behaviour(Format::Gguf).rope_style, RopeStyle::Neox);
    for role in [Role::AttnQBias, Role::AttnKBias, Role::AttnVBias] {
        assert!(q2.tensor(role).unwrap().required);
    }
    let q3 = r.contract("qwen3").unwrap();
    assert_eq!(q3.behaviour(Format::Hf).qk_norm, QkNorm::PerHeadRms);
    assert!(!q3.behaviour(Format::Hf).qkv_bias);
    // Qwen3's head_dim is not hidden / heads: without a key it defaults to 128.
    let d = gguf_dims(
        q3,
        "qwen3",
        &[
            ("embedding_length", 1024.0),
            ("block_count", 28.0),
            ("attention.head_count", 16.0),
            ("attention.head_count_kv", 8.0),
            ("feed_forward_length", 3072.0),
            ("context_length", 40960.0),
            ("vocab_size", 151936.0),
            ("rope.freq_base", 1e6),
            ("attention.layer_norm_rms_epsilon", 1e-6),
        ],
    )
    .unwrap();
    assert_eq!((d.head_dim, d.q_dim(), d.kv_dim()), (128, 2048, 1024));
}

#[test]
fn phi3_fused_tensors_split_into_their_parts() {
    let r = registry();
    let c = r.contract("phi3").unwrap();
    let spec = &r.preset("phi3-mini").unwrap().spec;
    let qkv = c.tensor(Role::AttnQkv).unwrap();
    let parts: Vec<Role> = qkv.split.iter().map(|p| p.role).collect();
    assert_eq!(parts, [Role::AttnQ, Role::AttnK, Role::AttnV]);
    let rows: Vec<u64> = qkv
        .split
        .iter()
        .map(|p| p.rows.eval_count(&|d| spec.dims.value(d)).unwrap())
        .collect();
    assert_eq!(rows, [3072, 3072, 3072]);
    assert_eq!(spec.shape(Role::AttnQkv).unwrap().unwrap(), [9216, 3072]);
    let gate_up = c.tensor(Role::FfnGateUp).unwrap();
    // llama.cpp keeps the fused gate/up under the ffn_up name; the gate is the first half.
    assert_eq!(
        gate_up.name(Format::Gguf).unwrap().render(Some(3)),
        "blk.3.ffn_up.weight"
    );
    assert_eq!(gate_up.split[0].role, Role::FfnGate);
    assert_eq!(spec.shape(Role::FfnGateUp).unwrap().unwrap(), [16384, 3072]);
    assert!(c.tensor(Role::AttnQ).is_none() && c.tensor(Role::FfnUp).is_none());
    assert_eq!(spec.dims.layer_attention(0).window, Some(2047));
}

#[test]
fn every_contract_names_every_tensor_for_gguf() {
    // Presets are GGUF files; every role a contract declares needs a GGUF name.
    for c in registry().contracts() {
        for t in c.tensors() {
            assert!(
                t.gguf.is_some(),
                "{}: {} has no GGUF name",
                c.name(),
                t.role
            );
            if c.name() != "llama" || t.role != Role::RopeFreqs {
                assert!(t.hf.is_some(), "{}: {} has no HF name", c.name(), t.role);
            }
        }
    }
}
