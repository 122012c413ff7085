//! Generated manifests validate against docs/manifest.schema.json, for every preset.

use ptx_gen::Target;
use ptxforge::contract::Registry;
use ptxforge::kernel_set::{KernelSet, SetOptions};

#[test]
fn every_preset_manifest_matches_the_published_schema() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/docs/manifest.schema.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let registry = Registry::builtin().unwrap();
    for preset in registry.presets() {
        let options = SetOptions {
            target: Target::dp4a_default(),
            max_context: 2048,
            batch_max: 2,
        };
        let set = KernelSet::generate(&preset.spec, options)
            .unwrap_or_else(|e| panic!("{}: {e}", preset.name));
        let manifest = serde_json::to_value(set.manifest()).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&manifest)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{}: {}", preset.name, errors.join("\n"));
    }
}

#[test]
fn the_schema_rejects_a_broken_manifest() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/docs/manifest.schema.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let registry = Registry::builtin().unwrap();
    let spec = registry.preset_spec("smollm2-135m").unwrap();
    let set = KernelSet::generate(
        spec,
        SetOptions {
            target: Target::dp4a_default(),
            max_context: 512,
            batch_max: 1,
        },
    )
    .unwrap();
    let mut manifest = serde_json::to_value(set.manifest()).unwrap();
    manifest["kernels"][0]["sha256"] = "not-a-hash".into();
    assert!(!validator.is_valid(&manifest));
    let mut manifest = serde_json::to_value(set.manifest()).unwrap();
    manifest["decode_steps"][0]["launches"][0]["args"][0][1] = serde_json::json!({"constant": 3});
    assert!(!validator.is_valid(&manifest));
}
