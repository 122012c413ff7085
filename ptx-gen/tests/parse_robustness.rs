//! The parser returns Ok or Err on any input, never panics, and never runs off the stack:
//! random bytes, random PTX-alphabet soup, fixtures with random edits, truncated fixtures,
//! and pathological nesting.

use std::path::Path;

use proptest::collection::vec;
use proptest::prelude::*;

use ptx_gen::parse::parse_module;

fn fixture_texts() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut out = Vec::new();
    for dir in ["nvcc", "hand"] {
        let mut paths: Vec<_> = std::fs::read_dir(root.join(dir))
            .expect("fixture folder")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "ptx"))
            .collect();
        paths.sort();
        out.extend(
            paths
                .iter()
                .map(|p| std::fs::read_to_string(p).expect("fixture")),
        );
    }
    out
}

/// Pieces of PTX to splice into fixtures: they steer mutations into deep parser paths.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    ";",
    ",",
    ":",
    ".",
    "@",
    "!",
    "%",
    "|",
    "<",
    ">",
    "=",
    "+",
    "-",
    "\"",
    "/*",
    "*/",
    "//",
    "\n",
    "0f",
    "0d",
    "0x",
    "0b",
    "00",
    "99999999999999999999",
    ".reg",
    ".entry",
    ".func",
    ".section",
    ".pragma",
    "%r1",
    "%tid.x",
    "$L__BB0_1:",
    "ld.global",
    "é",
    "\u{0}",
    "\r\n",
];

/// One edit of a text, at positions taken modulo its length and moved to char boundaries.
#[derive(Debug, Clone)]
enum Edit {
    Delete(usize, usize),
    Insert(usize, usize),
    Duplicate(usize, usize),
    InsertChar(usize, char),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 1usize..40).prop_map(|(at, n)| Edit::Delete(at, n)),
        (any::<usize>(), 0..TOKENS.len()).prop_map(|(at, t)| Edit::Insert(at, t)),
        (any::<usize>(), 1usize..80).prop_map(|(at, n)| Edit::Duplicate(at, n)),
        (any::<usize>(), any::<char>()).prop_map(|(at, c)| Edit::InsertChar(at, c)),
    ]
}

fn boundary(s: &str, at: usize) -> usize {
    let mut k = if s.is_empty() { 0 } else { at % (s.len() + 1) };
    while !s.is_char_boundary(k) {
        k -= 1;
    }
    k
}

fn apply(text: &mut String, e: &Edit) {
    match *e {
        Edit::Delete(at, n) => {
            let a = boundary(text, at);
            let b = boundary(text, a.saturating_add(n).min(text.len()));
            text.replace_range(a..b.max(a), "");
        }
        Edit::Insert(at, t) => {
            let a = boundary(text, at);
            text.insert_str(a, TOKENS[t]);
        }
        Edit::Duplicate(at, n) => {
            let a = boundary(text, at);
            let b = boundary(text, a.saturating_add(n).min(text.len())).max(a);
            let piece = text[a..b].to_string();
            text.insert_str(b, &piece);
        }
        Edit::InsertChar(at, c) => {
            let a = boundary(text, at);
            text.insert(a, c);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn random_bytes_never_panic(bytes in vec(any::<u8>(), 0..400)) {
        let _ = parse_module(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn ptx_alphabet_soup_never_panics(
        text in "[.%@!{}()\\[\\],;:<>=|+\\-/*\" \t\r\nA-Za-z0-9_$é]{0,300}",
        prefix in prop::sample::select(vec!["", ".entry k()\n{\n", ".global .b8 x[2] = ", ".func (.param .b32 r) f("]),
    ) {
        let _ = parse_module(&format!("{prefix}{text}"));
    }

    #[test]
    fn mutated_fixtures_never_panic(which in any::<usize>(), edits in vec(edit(), 1..6)) {
        let texts = fixture_texts();
        let mut text = texts[which % texts.len()].clone();
        for e in &edits {
            apply(&mut text, e);
        }
        if let Err(e) = parse_module(&text) {
            // The error must point inside the text (lines are 1-based).
            prop_assert!(e.line >= 1 && e.line <= text.lines().count() + 1, "{}", e);
            prop_assert!(e.column >= 1);
        }
    }
}

#[test]
fn every_truncation_of_a_fixture_is_ok_or_an_error() {
    let texts = fixture_texts();
    let text = texts.iter().min_by_key(|t| t.len()).expect("a fixture");
    for (k, _) in text.char_indices().step_by(3) {
        let _ = parse_module(&text[..k]);
    }
}

fn assert_nesting_error(text: &str) {
    let err = parse_module(text).expect_err("nesting this deep is refused");
    assert!(err.expected.contains("64"), "{err}");
}

#[test]
fn a_hundred_thousand_open_blocks_is_an_error_not_a_stack_overflow() {
    let deep = format!(".entry k()\n{{\n{}", "{".repeat(100_000));
    assert_nesting_error(&deep);
    let closed = format!(
        ".entry k()\n{{{}{}}}\n",
        "{\n".repeat(100_000),
        "}\n".repeat(100_000)
    );
    assert_nesting_error(&closed);
}

#[test]
fn deep_operands_and_initializers_are_errors() {
    assert_nesting_error(&format!(
        ".entry k()\n{{\nmov.b32 %r1, {};\n}}\n",
        "{".repeat(100_000)
    ));
    assert_nesting_error(&format!(
        ".entry k()\n{{\ncall f, {};\n}}\n",
        "(".repeat(100_000)
    ));
    assert_nesting_error(&format!(
        ".entry k()\n{{\nnot.pred %p1, {}%p2;\n}}\n",
        "!".repeat(100_000)
    ));
    assert_nesting_error(&format!(".global .b8 x[1] = {}0;\n", "{".repeat(100_000)));
}

#[test]
fn deep_raw_directive_groups_are_scanned_without_recursion() {
    let text = format!(
        ".section .x\n{}{}\n",
        "{".repeat(100_000),
        "}".repeat(100_000)
    );
    assert!(parse_module(&text).is_ok());
    assert!(parse_module(&format!(".section .x {}\n", "{".repeat(100_000))).is_err());
}

#[test]
fn a_module_level_brace_is_an_error() {
    let err = parse_module(&"{".repeat(100_000)).unwrap_err();
    assert_eq!((err.line, err.column), (1, 1));
    assert!(parse_module("}").is_err());
}

#[test]
fn nesting_at_the_limit_is_accepted() {
    // The body is level 1, so 63 more blocks reach the limit of 64.
    let text = format!(
        ".entry k()\n{{\n{}{}}}\n",
        "{\n".repeat(63),
        "}\n".repeat(63)
    );
    assert!(parse_module(&text).is_ok());
}
