//! Errors say where (1-based line and column, in characters) and what the grammar expected
//! there, with a snippet of what it found.

use ptx_gen::parse::parse_module;

/// (input, line, column, part of `expected`, `found`)
const CASES: &[(&str, usize, usize, &str, &str)] = &[
    (
        ".entry k()\n{\n\tret\n}\n",
        4,
        1,
        "the `;` that ends the instruction",
        "`}`",
    ),
    (
        ".entry k()\n{\n\tadd.s32 %r1, %r2 %r3;\n}\n",
        3,
        19,
        "`,` or `;`",
        "`%r3;`",
    ),
    (
        ".entry k()\n{\n\t.reg .b32 %r<>;\n\tret;\n}\n",
        3,
        15,
        "integer",
        "`>;`",
    ),
    (
        ".entry k()\n{\n\t.reg .b24 %r1;\n\tret;\n}\n",
        3,
        7,
        "a type",
        "`.b24 %r1;`",
    ),
    (
        ".entry k()\n{\n\tld.global.f32 %f1, [%rd1+];\n\tret;\n}\n",
        3,
        27,
        "an integer",
        "`];`",
    ),
    (
        ".entry k()\n{\n\tadd.s32 %r1, [%rd1;\n}\n",
        3,
        20,
        "`]`",
        "`;`",
    ),
    (
        ".entry k()\n{\n\tmov.f32 %f1, 0f3F80;\n\tret;\n}\n",
        3,
        17,
        "8 hex digits",
        "`3F80;`",
    ),
    (
        ".entry k()\n{\n\tmov.u64 %rd1, 18446744073709551616;\n\tret;\n}\n",
        3,
        16,
        "fits in 64 bits",
        "`18446744073709551616;`",
    ),
    (
        ".entry k()\n{\n\tret;\n",
        4,
        1,
        "`}` closing the block",
        "end of input",
    ),
    (
        ".entry k(\n\t.param .u64\n)\n{\n\tret;\n}\n",
        3,
        1,
        "the parameter name",
        "`)`",
    ),
    (
        ".version 8.0\n/* open\n.target sm_80\n",
        2,
        1,
        "`*/`",
        "`/* open`",
    ),
    (".version 7\n", 1, 11, "MAJOR.MINOR", "end of line"),
    ("$L:\n", 1, 1, "a module directive", "`$L:`"),
    ("// é\n.entry é", 2, 8, "the function name", "`é`"),
];

#[test]
fn errors_point_at_the_problem_and_say_what_was_expected() {
    for &(text, line, column, expected, found) in CASES {
        let err = parse_module(text).expect_err(text);
        assert_eq!((err.line, err.column), (line, column), "{text:?}: {err}");
        assert!(err.expected.contains(expected), "{text:?}: {err}");
        assert_eq!(err.found, found, "{text:?}: {err}");
    }
}

#[test]
fn the_message_reads_as_one_sentence() {
    let err = parse_module(".entry k()\n{\n\tret\n}\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "line 4, column 1: expected an operand or the `;` that ends the instruction, found `}`"
    );
}

#[test]
fn what_the_tree_cannot_hold_is_an_error_not_a_silent_loss() {
    // A string .pragma before a function body has no place in ast::PerfDirective.
    let err = parse_module(".entry k()\n.pragma \"nounroll\";\n{\n\tret;\n}\n").unwrap_err();
    assert_eq!((err.line, err.column), (2, 1));
    assert!(err.expected.contains("PerfDirective"), "{err}");
    // Texture references are no ast::Type.
    let err = parse_module(".global .texref t;\n").unwrap_err();
    assert!(err.expected.contains("a type"), "{err}");
}
