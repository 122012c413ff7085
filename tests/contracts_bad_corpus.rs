//! The contract and preset part of the bad-input corpus: every YAML under
//! `tests/fixtures/bad/{contract,preset}/` gives the typed error `expected.json` names, with
//! the file, line and column in its one-line message. The contract cases are variants of
//! `tests/fixtures/toy_contract.yaml`, which itself must load, so each fails for its own reason.

use std::path::{Path, PathBuf};

use ptxforge::contract::{Contract, ContractError, Registry, BUILTIN_ARCHITECTURES};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

#[derive(serde::Deserialize)]
struct Manifest {
    cases: Vec<Case>,
}

#[derive(serde::Deserialize)]
struct Case {
    file: String,
    loader: String,
    code: String,
    message: String,
}

fn manifest() -> Manifest {
    let text =
        std::fs::read_to_string(fixtures().join("bad/expected.json")).expect("expected.json");
    serde_json::from_str(&text).expect("expected.json parses")
}

fn load(case: &Case) -> Result<(), ContractError> {
    let path = fixtures().join("bad").join(&case.file);
    match case.loader.as_str() {
        "contract" => Contract::load(&path).map(|_| ()),
        "preset" => {
            let text = std::fs::read_to_string(&path).expect("preset fixture");
            let name = path.display().to_string();
            Registry::from_sources(BUILTIN_ARCHITECTURES, &[(name.as_str(), text.as_str())])
                .map(|_| ())
        }
        other => panic!("{}: unknown loader {other}", case.file),
    }
}

#[test]
fn the_base_of_the_contract_cases_is_valid() {
    let c = Contract::load(&fixtures().join("toy_contract.yaml")).expect("toy contract loads");
    assert_eq!(c.name(), "toy");
}

#[test]
fn every_contract_and_preset_fixture_gives_its_error() {
    let mut failures = Vec::new();
    let mut ran = 0;
    for case in manifest()
        .cases
        .iter()
        .filter(|c| matches!(c.loader.as_str(), "contract" | "preset"))
    {
        ran += 1;
        match load(case) {
            Ok(()) => failures.push(format!("{}: loaded without error", case.file)),
            Err(e) => {
                let msg = e.to_string();
                if e.code() != case.code {
                    failures.push(format!(
                        "{}: code {} (expected {}): {msg}",
                        case.file,
                        e.code(),
                        case.code
                    ));
                }
                if !msg.contains(&case.message) {
                    failures.push(format!(
                        "{}: message lacks {:?}: {msg}",
                        case.file, case.message
                    ));
                }
                if !msg.contains(&case.file) {
                    failures.push(format!(
                        "{}: message does not name the file: {msg}",
                        case.file
                    ));
                }
                if msg.contains('\n') {
                    failures.push(format!("{}: message is not one line: {msg}", case.file));
                }
            }
        }
    }
    assert!(ran >= 30, "only {ran} contract and preset fixtures");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_yaml_fixture_is_in_the_manifest() {
    let listed: std::collections::HashSet<String> =
        manifest().cases.into_iter().map(|c| c.file).collect();
    let mut unlisted = Vec::new();
    for dir in ["contract", "preset"] {
        for entry in std::fs::read_dir(fixtures().join("bad").join(dir)).expect("fixture dir") {
            let name = format!(
                "{dir}/{}",
                entry.expect("dir entry").file_name().to_string_lossy()
            );
            if !listed.contains(&name) {
                unlisted.push(name);
            }
        }
    }
    assert!(
        unlisted.is_empty(),
        "fixtures without an expected error: {unlisted:?}"
    );
}

#[test]
fn yaml_errors_carry_line_and_column() {
    // A duplicate key deep inside a per-format value, to check the position is the key's.
    let text = std::fs::read_to_string(fixtures().join("toy_contract.yaml")).unwrap();
    let text = text.replace(
        "weight_offset: 0 }",
        "weight_offset: { gguf: 0, gguf: 1 } }",
    );
    let e = Contract::from_yaml(Path::new("inline.yaml"), &text).unwrap_err();
    match &e {
        ContractError::Yaml { pos, .. } => {
            assert_eq!(pos.file, Path::new("inline.yaml"));
            assert_eq!(pos.line, 18, "{e}");
            assert!(pos.column > 1, "{e}");
        }
        other => panic!("expected a YAML error, got {other}"),
    }
}
