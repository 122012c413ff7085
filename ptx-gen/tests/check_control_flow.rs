//! Checks 2 and 6: branch and call targets exist; no path falls off the end of a body.

use ptx_gen::check::{check_module, CheckKind, Finding};
use ptx_gen::parse::parse_module;

const HEADER: &str = ".version 8.0\n.target sm_80\n.address_size 64\n\n\
    .extern .func (.param .b32 func_retval0) vprintf(\n\t.param .b64 vprintf_param_0,\n\
    \t.param .b64 vprintf_param_1\n);\n\n";

/// A kernel whose body is exactly `body` (no `ret` added).
fn entry(body: &str) -> String {
    format!("{HEADER}.visible .entry k()\n{{\n\t.reg .pred %p<4>;\n\t.reg .b32 %r<8>;\n\t.reg .b64 %rd<4>;\n{body}\n}}\n")
}

fn of_kind(body: &str, kind: CheckKind) -> Vec<Finding> {
    let text = entry(body);
    let m = parse_module(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    check_module(&m)
        .into_iter()
        .filter(|f| f.check == kind)
        .collect()
}

fn all(body: &str) -> Vec<Finding> {
    let text = entry(body);
    check_module(&parse_module(&text).unwrap())
}

#[test]
fn correct_branches_and_calls_pass() {
    let body = "\tmov.u32 %r1, %tid.x;\n\tsetp.eq.s32 %p1, %r1, 0;\n\t@%p1 bra $L__BB0_2;\n\
                \tbra.uni $L__BB0_3;\n$L__BB0_2:\n\t{\n\t.param .b64 param0;\n\tst.param.b64 [param0], %rd1;\n\
                \t.param .b64 param1;\n\tst.param.b64 [param1], %rd1;\n\t.param .b32 retval0;\n\
                \tcall.uni (retval0), vprintf, (param0, param1);\n\t}\n$L__BB0_3:\n\tret;";
    let got = all(body);
    assert!(got.is_empty(), "{got:#?}");
}

#[test]
fn a_branch_to_a_missing_label_is_caught() {
    let got = of_kind(
        "\tbra.uni $L__BB0_9;\n$L__BB0_1:\n\tret;",
        CheckKind::BranchTarget,
    );
    assert_eq!(got.len(), 1);
    assert!(
        got[0].message.contains("no label `$L__BB0_9`"),
        "{}",
        got[0]
    );
    assert_eq!(got[0].instruction.as_deref(), Some("bra.uni $L__BB0_9;"));
}

#[test]
fn labels_inside_nested_blocks_count_for_the_whole_function() {
    assert!(of_kind(
        "\tbra $L_in;\n\t{\n$L_in:\n\tret;\n\t}",
        CheckKind::BranchTarget
    )
    .is_empty());
}

#[test]
fn a_call_to_a_missing_function_is_caught() {
    let got = of_kind(
        "\tcall.uni printf_missing, ();\n\tret;",
        CheckKind::BranchTarget,
    );
    assert_eq!(got.len(), 1);
    assert!(
        got[0].message.contains("no function `printf_missing`"),
        "{}",
        got[0]
    );
    // An indirect call through a register is left to check 1.
    assert!(of_kind("\tcall.uni %rd1, ();\n\tret;", CheckKind::BranchTarget).is_empty());
}

#[test]
fn brx_idx_targets_come_from_its_branchtargets_list() {
    let ok = "\tmov.u32 %r1, 1;\n\tbrx.idx %r1, $ts;\n$ts:\n\t.branchtargets $L0, $L1;\n$L0:\n\tret;\n$L1:\n\tret;";
    assert!(all(ok).is_empty(), "{:#?}", all(ok));
    let missing = ok.replace("$L0, $L1", "$L0, $L7");
    let got = of_kind(&missing, CheckKind::BranchTarget);
    assert_eq!(got.len(), 1);
    assert!(got[0].message.contains("`$L7`"), "{}", got[0]);
    let no_table = "\tmov.u32 %r1, 1;\n\tbrx.idx %r1, $L0;\n$L0:\n\tret;";
    assert_eq!(of_kind(no_table, CheckKind::BranchTarget).len(), 1);
}

#[test]
fn a_body_without_ret_falls_off_the_end() {
    let got = of_kind("\tmov.u32 %r1, 0;", CheckKind::FallsOffEnd);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].instruction.as_deref(), Some("mov.u32 %r1, 0;"));
}

#[test]
fn a_guarded_ret_at_the_end_falls_off_when_the_guard_is_false() {
    let body = "\tmov.u32 %r1, %tid.x;\n\tsetp.eq.s32 %p1, %r1, 0;\n\t@%p1 ret;";
    assert_eq!(of_kind(body, CheckKind::FallsOffEnd).len(), 1);
}

#[test]
fn a_branch_to_a_label_after_the_last_instruction_falls_off() {
    let body =
        "\tmov.u32 %r1, %tid.x;\n\tsetp.eq.s32 %p1, %r1, 0;\n\t@%p1 bra $L_end;\n\tret;\n$L_end:";
    let got = of_kind(body, CheckKind::FallsOffEnd);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(got[0].message.contains("`$L_end`"), "{}", got[0]);
}

#[test]
fn every_way_of_ending_a_body_is_accepted() {
    for end in ["\tret;", "\texit;", "\ttrap;", "$L_top:\n\tbra.uni $L_top;"] {
        assert!(of_kind(end, CheckKind::FallsOffEnd).is_empty(), "{end}");
    }
}

#[test]
fn an_empty_body_is_caught() {
    assert_eq!(of_kind("", CheckKind::FallsOffEnd).len(), 1);
}
