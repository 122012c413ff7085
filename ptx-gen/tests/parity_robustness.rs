//! Structural parity on PTX it was not written for: every entry of every PTX fixture
//! (nvcc output and hand-written) and of every generated sample kernel, validated against
//! itself as a batch of one with every parameter shared, must pass — or be refused by the
//! `analysis` check (calls, for instance) — and never panic.

use std::path::Path;

use ptx_gen::parity::{validate_pair, BatchDecl, CheckKind, CheckStatus, KernelSource};
use ptx_gen::{generate, Target};

/// Validates every entry against itself; returns the reasons of the refused ones.
fn self_pair(ptx: &str, what: &str) -> Vec<String> {
    let module = ptx_gen::parse::parse_module(ptx).unwrap_or_else(|e| panic!("{what}: {e}"));
    let mut refused = Vec::new();
    for f in module.entries() {
        let mut decl = BatchDecl::unrolled(1);
        for p in &f.params {
            decl = decl.shared(&p.name);
        }
        let k = KernelSource::parsed(&f.name, &module);
        let r = validate_pair(k, k, &decl);
        let analysis = r.check(CheckKind::Analysis).map(|c| c.status);
        if analysis == Some(CheckStatus::Fail) {
            let why = r
                .findings()
                .next()
                .map_or(String::new(), |x| x.message.clone());
            println!("{what} `{}`: refused: {why}", f.name);
            refused.push(why);
            continue;
        }
        assert!(r.passed(), "{what}: {r}");
    }
    refused
}

#[test]
fn fixtures_compared_with_themselves() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut files = 0;
    let mut refused = Vec::new();
    for dir in ["nvcc", "hand"] {
        let mut paths: Vec<_> = std::fs::read_dir(root.join(dir))
            .expect("fixtures")
            .flatten()
            .map(|e| e.path())
            .collect();
        paths.sort();
        for path in paths
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "ptx"))
        {
            let text = std::fs::read_to_string(&path).expect("reads");
            refused.extend(self_pair(&text, &path.display().to_string()));
            files += 1;
        }
    }
    assert!(files >= 5);
    // Only kernels that call a function (printf, a `.func`) are refused.
    assert!(refused.iter().all(|w| w.contains("calls")), "{refused:?}");
}

#[test]
fn generated_samples_compared_with_themselves() {
    for spec in ptx_gen::kernels::sample_specs() {
        let k = generate(&spec, Target::dp4a_default()).expect("generates");
        assert_eq!(
            self_pair(&k.ptx, &k.name),
            Vec::<String>::new(),
            "{} refused",
            k.name
        );
    }
}
