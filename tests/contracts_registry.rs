//! The shipped contracts and presets load, validate, and are exactly the files on disk.

use std::collections::BTreeSet;
use std::path::Path;

use ptxforge::contract::{Registry, BUILTIN_ARCHITECTURES, BUILTIN_PRESETS};

fn builtin() -> Registry {
    Registry::builtin().unwrap_or_else(|e| panic!("builtin contracts fail to load: {e}"))
}

fn yaml_files(dir: &str) -> BTreeSet<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::read_dir(root.join(dir))
        .unwrap()
        .map(|e| format!("{dir}/{}", e.unwrap().file_name().to_string_lossy()))
        .filter(|n| n.ends_with(".yaml"))
        .collect()
}

#[test]
fn builtin_contracts_and_presets_load() {
    let r = builtin();
    let names: Vec<&str> = r.contracts().iter().map(|c| c.name()).collect();
    assert_eq!(
        names,
        ["gemma3", "llama", "mistral", "phi3", "qwen2", "qwen3"]
    );
    let presets: BTreeSet<&str> = r.presets().iter().map(|p| p.name.as_str()).collect();
    for want in [
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
        "smollm2-135m",
    ] {
        assert!(presets.contains(want), "no preset {want}");
    }
}

#[test]
fn compiled_in_lists_match_the_directories() {
    let arch: BTreeSet<String> = BUILTIN_ARCHITECTURES
        .iter()
        .map(|(p, _)| p.to_string())
        .collect();
    assert_eq!(
        arch,
        yaml_files("contracts/architectures"),
        "update BUILTIN_ARCHITECTURES in src/contract/registry.rs"
    );
    let presets: BTreeSet<String> = BUILTIN_PRESETS.iter().map(|(p, _)| p.to_string()).collect();
    assert_eq!(
        presets,
        yaml_files("contracts/presets"),
        "update BUILTIN_PRESETS in src/contract/registry.rs"
    );
}

#[test]
fn loading_the_directory_gives_the_builtin_set() {
    let dir = Registry::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("contracts")).unwrap();
    let b = builtin();
    let names = |r: &Registry| {
        r.contracts()
            .iter()
            .map(|c| c.name().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&dir), names(&b));
    for p in b.presets() {
        let q = dir.preset(&p.name).unwrap();
        assert_eq!(q.spec.dims, p.spec.dims);
        assert_eq!(q.spec.weights, p.spec.weights);
    }
    let e = Registry::load_dir(Path::new("/nonexistent/contracts")).unwrap_err();
    assert_eq!(e.code(), "contract.io");
}

#[test]
fn architecture_names_resolve_to_one_contract() {
    let r = builtin();
    for (gguf, contract) in [
        ("llama", "llama"),
        ("qwen2", "qwen2"),
        ("qwen3", "qwen3"),
        ("gemma3", "gemma3"),
        ("phi3", "phi3"),
    ] {
        assert_eq!(r.for_gguf(gguf).map(|c| c.name()), Some(contract));
    }
    for (hf, contract) in [
        ("LlamaForCausalLM", "llama"),
        ("MistralForCausalLM", "mistral"),
        ("Qwen2ForCausalLM", "qwen2"),
        ("Qwen3ForCausalLM", "qwen3"),
        ("Gemma3ForCausalLM", "gemma3"),
        ("Phi3ForCausalLM", "phi3"),
    ] {
        assert_eq!(r.for_hf(hf).map(|c| c.name()), Some(contract));
    }
    // No fallback: unknown names find nothing.
    assert!(r.for_gguf("mamba").is_none());
    assert!(r.for_gguf("gemma2").is_none());
    // llama.cpp writes Mistral 7B GGUFs as "llama"; the mistral contract claims no GGUF name.
    assert!(r.contract("mistral").unwrap().gguf_names().is_empty());
}

#[test]
fn two_contracts_claiming_one_name_are_refused() {
    let llama = BUILTIN_ARCHITECTURES
        .iter()
        .find(|(p, _)| p.ends_with("llama.yaml"))
        .unwrap()
        .1;
    let clone = llama
        .replace("architecture: llama", "architecture: llama2")
        .replace("hf: [LlamaForCausalLM]", "hf: [X]");
    let e = Registry::from_sources(&[("a.yaml", llama), ("b.yaml", &clone)], &[]).unwrap_err();
    assert_eq!(e.code(), "contract.duplicate_name");
    assert!(
        e.to_string()
            .contains("`llama` is already claimed by contract `llama`"),
        "{e}"
    );
    let e = Registry::builtin().unwrap().preset("gemma9").unwrap_err();
    assert_eq!(e.code(), "preset.unknown");
}
