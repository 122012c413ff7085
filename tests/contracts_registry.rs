//! The shipped contracts and presets load, validate, and agree with the files on disk.

use std::path::Path;

use ptxforge::contract::{Registry, BUILTIN_ARCHITECTURES, BUILTIN_PRESETS};

fn builtin() -> Registry {
    match Registry::builtin() {
        Ok(r) => r,
        Err(e) => panic!("builtin contracts fail to load: {e}"),
    }
}

#[test]
fn builtin_contracts_and_presets_load() {
    let r = builtin();
    let names: Vec<&str> = r.contracts().iter().map(|c| c.name()).collect();
    assert_eq!(
        names,
        ["gemma3", "llama", "mistral", "phi3", "qwen2", "qwen3"]
    );
    assert_eq!(r.presets().len(), 11);
}
