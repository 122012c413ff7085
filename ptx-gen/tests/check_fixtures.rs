//! Every fixture — nvcc output and the hand-written kernel — passes every static check, as
//! printed by nvcc and as reprinted by our printer; and randomly edited fixtures, the odd
//! but parseable PTX they become, never make a check panic.

use std::path::{Path, PathBuf};

use proptest::collection::vec;
use proptest::prelude::*;

use ptx_gen::check::check_module;
use ptx_gen::emit::print_module;
use ptx_gen::parse::parse_module;

fn fixture_paths() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut out = Vec::new();
    for dir in ["nvcc", "hand"] {
        let mut paths: Vec<_> = std::fs::read_dir(root.join(dir))
            .expect("fixture folder")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "ptx"))
            .collect();
        paths.sort();
        out.extend(paths);
    }
    out
}

#[test]
fn every_fixture_passes_every_check() {
    let paths = fixture_paths();
    assert!(paths.len() >= 6, "only {} fixtures", paths.len());
    for p in paths {
        let text = std::fs::read_to_string(&p).expect("fixture");
        let m = parse_module(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let findings = check_module(&m);
        let list: Vec<String> = findings.iter().map(ToString::to_string).collect();
        assert!(findings.is_empty(), "{}:\n{}", p.display(), list.join("\n"));
        let reprinted = parse_module(&print_module(&m)).expect("reprinted fixture");
        assert!(
            check_module(&reprinted).is_empty(),
            "{} reprinted",
            p.display()
        );
    }
}

/// Lines to delete, duplicate or swap: what an emitter bug would do to a kernel.
#[derive(Debug, Clone)]
enum LineEdit {
    Delete(usize),
    Duplicate(usize),
    Swap(usize, usize),
}

fn line_edit() -> impl Strategy<Value = LineEdit> {
    prop_oneof![
        any::<usize>().prop_map(LineEdit::Delete),
        any::<usize>().prop_map(LineEdit::Duplicate),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| LineEdit::Swap(a, b)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn edited_fixtures_never_panic_the_checks(which in any::<usize>(), edits in vec(line_edit(), 1..8)) {
        let paths = fixture_paths();
        let text = std::fs::read_to_string(&paths[which % paths.len()]).expect("fixture");
        let mut lines: Vec<&str> = text.lines().collect();
        for e in &edits {
            let n = lines.len().max(1);
            match *e {
                LineEdit::Delete(k) if !lines.is_empty() => {
                    lines.remove(k % n);
                }
                LineEdit::Duplicate(k) if !lines.is_empty() => {
                    let line = lines[k % n];
                    lines.insert(k % n, line);
                }
                LineEdit::Swap(a, b) if !lines.is_empty() => lines.swap(a % n, b % n),
                _ => {}
            }
        }
        if let Ok(m) = parse_module(&lines.join("\n")) {
            let _ = check_module(&m);
        }
    }
}
