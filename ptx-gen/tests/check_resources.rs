//! Checks 4 and 5: static shared memory within 48 KiB; every `.entry` parameter read.

use ptx_gen::ast::Module;
use ptx_gen::check::{
    check_module, static_shared_memory, CheckKind, Finding, MAX_STATIC_SHARED_BYTES,
};
use ptx_gen::parse::parse_module;

const HEADER: &str = ".version 8.0\n.target sm_80\n.address_size 64\n\n";

/// An entry named `name` with the given declarations and a body that names `uses`.
fn entry(name: &str, decls: &str, uses: &[&str]) -> String {
    let mut body = String::new();
    for (k, u) in uses.iter().enumerate() {
        body.push_str(&format!("\tmov.u32 %r{k}, {u};\n"));
    }
    format!(".visible .entry {name}()\n{{\n\t.reg .b32 %r<8>;\n{decls}\n{body}\tret;\n}}\n")
}

fn parse(text: &str) -> Module {
    parse_module(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn of_kind(text: &str, kind: CheckKind) -> Vec<Finding> {
    check_module(&parse(text))
        .into_iter()
        .filter(|f| f.check == kind)
        .collect()
}

fn shared_bytes(text: &str, entry_name: &str) -> u64 {
    let m = parse(text);
    let e = m.entries().find(|f| f.name == entry_name).expect("entry");
    static_shared_memory(&m, e).bytes
}

#[test]
fn shared_memory_at_the_limit_passes_and_one_byte_over_is_caught() {
    let at = format!(
        "{HEADER}{}",
        entry(
            "k",
            "\t.shared .align 4 .b8 a[32768];\n\t.shared .align 4 .f32 b[4096];",
            &[]
        )
    );
    assert_eq!(shared_bytes(&at, "k"), MAX_STATIC_SHARED_BYTES);
    assert!(of_kind(&at, CheckKind::SharedMemory).is_empty());

    let over = at.replace("a[32768]", "a[32769]");
    let got = of_kind(&over, CheckKind::SharedMemory);
    assert_eq!(got.len(), 1);
    // 32769 bytes, padded to 32772 for the 4-aligned b, plus 16384.
    assert!(got[0].message.contains("49156 bytes"), "{}", got[0]);
    assert!(got[0].message.contains("`a` 32769"), "{}", got[0]);
}

#[test]
fn alignment_padding_vectors_and_dimensions_count() {
    let padded = format!(
        "{HEADER}{}",
        entry(
            "k",
            "\t.shared .b8 x[17];\n\t.shared .align 16 .b8 y[100];",
            &[]
        )
    );
    assert_eq!(shared_bytes(&padded, "k"), 32 + 100);
    let vectors = format!(
        "{HEADER}{}",
        entry("k", "\t.shared .align 16 .v4 .f32 v[2][3];", &[])
    );
    assert_eq!(shared_bytes(&vectors, "k"), 16 * 6);
    let big = format!(
        "{HEADER}{}",
        entry("k", "\t.shared .align 16 .v4 .f32 v[3100];", &[])
    );
    assert_eq!(of_kind(&big, CheckKind::SharedMemory).len(), 1);
    // Nested blocks declare shared memory for the kernel too.
    let nested = format!(
        "{HEADER}{}",
        entry("k", "\t{\n\t.shared .b32 s[5];\n\t}", &[])
    );
    assert_eq!(shared_bytes(&nested, "k"), 20);
}

#[test]
fn module_scope_shared_memory_counts_for_the_entries_that_use_it() {
    let text = format!(
        "{HEADER}.shared .align 4 .b8 big[40000];\n.extern .shared .align 16 .b8 dynamic[];\n\n{}\n{}",
        entry("uses_big", "\t.shared .align 4 .b8 own[10000];", &["big", "dynamic"]),
        entry("does_not", "\t.shared .align 4 .b8 own[10000];", &["dynamic"]),
    );
    assert_eq!(shared_bytes(&text, "uses_big"), 50000);
    assert_eq!(shared_bytes(&text, "does_not"), 10000);
    let got = of_kind(&text, CheckKind::SharedMemory);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].function, "uses_big");
}

#[test]
fn shared_memory_of_called_functions_counts() {
    let text = format!(
        "{HEADER}.func helper()\n{{\n\t.shared .align 4 .b8 tile[30000];\n\tret;\n}}\n\n{}",
        entry(
            "k",
            "\t.shared .align 4 .b8 own[20000];\n\tcall.uni helper, ();",
            &[]
        )
    );
    assert_eq!(shared_bytes(&text, "k"), 50000);
    assert_eq!(of_kind(&text, CheckKind::SharedMemory).len(), 1);
}

#[test]
fn hostile_sizes_saturate_instead_of_overflowing() {
    let text = format!(
        "{HEADER}{}",
        entry(
            "k",
            "\t.shared .align 4 .v8 .b64 x[18446744073709551615][3];",
            &[]
        )
    );
    assert_eq!(shared_bytes(&text, "k"), u64::MAX);
    assert_eq!(of_kind(&text, CheckKind::SharedMemory).len(), 1);
}

#[test]
fn an_entry_param_never_read_is_caught() {
    let text = format!(
        "{HEADER}.visible .entry k(\n\t.param .u64 k_param_0,\n\t.param .u64 k_param_1,\n\t.param .u32 k_param_2\n)\n{{\n\
         \t.reg .b32 %r<2>;\n\t.reg .b64 %rd<3>;\n\tld.param.u64 %rd1, [k_param_0];\n\
         \tmov.u64 %rd2, k_param_2;\n\tret;\n}}\n"
    );
    let got = of_kind(&text, CheckKind::UnusedParam);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(got[0].message.contains("`k_param_1`"), "{}", got[0]);
    assert_eq!(
        got[0].to_string(),
        "k: unused-param: parameter `k_param_1` is never read"
    );

    let all_read = text.replace("\tret;", "\tld.param.u64 %rd2, [k_param_1+0];\n\tret;");
    assert!(of_kind(&all_read, CheckKind::UnusedParam).is_empty());
}

#[test]
fn func_params_are_not_required_to_be_read() {
    let text = format!("{HEADER}.func f(\n\t.param .b32 unused\n)\n{{\n\tret;\n}}\n");
    assert!(check_module(&parse(&text)).is_empty());
}
