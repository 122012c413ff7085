//! Check 1: registers are declared in scope and their declared types fit the instruction.

use ptx_gen::check::{check_module, CheckKind, Finding};
use ptx_gen::parse::parse_module;

/// A kernel with nvcc's register declarations around `body`.
fn entry(body: &str) -> String {
    format!(
        ".version 8.0\n.target sm_80\n.address_size 64\n\n.visible .entry k()\n{{\n\
         \t.reg .pred \t%p<8>;\n\t.reg .b16 \t%rs<4>;\n\t.reg .b32 \t%r<16>;\n\
         \t.reg .f32 \t%f<8>;\n\t.reg .b64 \t%rd<8>;\n\n{body}\n\tret;\n}}\n"
    )
}

fn findings(text: &str) -> Vec<Finding> {
    let m = parse_module(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    check_module(&m)
}

fn of_kind(body: &str, kind: CheckKind) -> Vec<Finding> {
    findings(&entry(body))
        .into_iter()
        .filter(|f| f.check == kind)
        .collect()
}

fn assert_clean(body: &str) {
    let got = findings(&entry(body));
    assert!(got.is_empty(), "{body}\n{got:#?}");
}

fn assert_type_error(body: &str, register: &str) {
    let got = of_kind(body, CheckKind::OperandType);
    assert_eq!(got.len(), 1, "{body}\n{got:#?}");
    assert!(
        got[0].message.contains(&format!("`{register}`")),
        "{}",
        got[0]
    );
}

#[test]
fn a_correct_kernel_passes() {
    assert_clean(
        "\tmov.u32 %r1, %tid.x;\n\tmov.u32 %r2, %ctaid.y;\n\tmov.u64 %rd1, %clock64;\n\
         \tmad.lo.s32 %r3, %r1, %r2, 7;\n\tmul.wide.u32 %rd2, %r3, 4;\n\tadd.s64 %rd3, %rd1, %rd2;\n\
         \tld.global.nc.f32 %f1, [%rd3];\n\tld.global.u8 %rs1, [%rd3+1];\n\tld.global.u8 %r4, [%rd3+2];\n\
         \tcvt.rn.f32.s32 %f2, %r3;\n\tcvt.u32.u16 %r5, %rs1;\n\tcvt.rn.f16x2.f32 %r6, %f1, %f2;\n\
         \tmov.b32 {%rs2, %rs3}, %r6;\n\tmov.b32 %r7, {%rs3, %rs2};\n\tmov.b32 %r8, %f1;\n\
         \tfma.rn.f32 %f3, %f1, %f2, 0f3F800000;\n\trcp.approx.ftz.f32 %f4, %f3;\n\
         \tsetp.lt.f32 %p1, %f4, %f3;\n\tselp.b32 %r9, %r7, 0, %p1;\n\tshl.b32 %r10, %r9, %r1;\n\
         \tshfl.sync.down.b32 %r11|%p2, %r10, 16, 31, -1;\n\tdp4a.s32.u32 %r12, %r11, %r8, %r9;\n\
         \tprmt.b32 %r13, %r12, %r11, 0x3210;\n\tbfe.u32 %r14, %r13, 8, %r1;\n\
         \tst.shared.v2.f32 [%r14], {%f1, %f2};\n\tatom.global.add.u32 %r15, [%rd3], 1;\n\
         \tmov.u32 %r0, %laneid;\n\tmov.b32 %r0, %envreg3;\n\tbar.sync 0;\n\t@!%p2 bra $L_end;\n$L_end:",
    );
}

#[test]
fn an_nvcc_range_declares_exactly_its_registers() {
    // `%r<16>` is %r0 .. %r15.
    assert_clean("\tmov.u32 %r15, 0;\n\tmov.u32 %r0, 0;");
    let got = of_kind("\tmov.u32 %r16, 0;", CheckKind::UndeclaredRegister);
    assert_eq!(got.len(), 1);
    assert!(
        got[0].message.contains("`%r16` is not declared"),
        "{}",
        got[0]
    );
    // `%r016` is not `%r16` nor any other register of the range.
    assert_eq!(
        of_kind("\tmov.u32 %r016, 0;", CheckKind::UndeclaredRegister).len(),
        1
    );
}

#[test]
fn undeclared_registers_are_caught_in_every_position() {
    let cases = [
        "\tadd.s32 %r1, %q1, 1;",                        // source
        "\tadd.s32 %q1, %r1, 1;",                        // destination
        "\t@%p9 bra $L;\n$L:",                           // guard (%p<8> ends at %p7)
        "\tld.global.f32 %f1, [%rd9];",                  // address base
        "\tst.global.v2.f32 [%rd1], {%f1, %f9};",        // vector element
        "\tshfl.sync.down.b32 %r1|%p9, %r2, 1, 31, -1;", // pred pair
        "\tselp.b32 %r1, 1, 0, !%p9;",                   // negated operand
        "\tfrobnicate.b32 %r99, %r1;",                   // unknown opcode: declared-ness only
    ];
    for body in cases {
        let got = of_kind(body, CheckKind::UndeclaredRegister);
        assert_eq!(got.len(), 1, "{body}: {got:#?}");
    }
}

#[test]
fn special_registers_need_no_declaration() {
    assert_clean(
        "\tmov.u32 %r1, %ntid.x;\n\tmov.u32 %r2, %nctaid.z;\n\tmov.u32 %r3, %warpid;\n\
         \tmov.u32 %r4, %lanemask_lt;\n\tmov.u32 %r5, %smid;\n\tmov.u64 %rd1, %globaltimer;\n\
         \tmov.u32 %r6, %dynamic_smem_size;\n\tmov.u32 %r7, %pm3;\n\tmov.u64 %rd2, %gridid;",
    );
    assert_eq!(
        of_kind("\tmov.u32 %r1, %tid.q;", CheckKind::UndeclaredRegister).len(),
        1
    );
    assert_eq!(
        of_kind("\tmov.u32 %r1, %envreg32;", CheckKind::UndeclaredRegister).len(),
        1
    );
}

#[test]
fn registers_of_the_wrong_type_are_caught() {
    assert_type_error("\tadd.s32 %r1, %rd1, 1;", "%rd1");
    assert_type_error("\tadd.f32 %f1, %f2, %p1;", "%p1");
    assert_type_error("\tfma.rn.f32 %f1, %f2, %f3, %rd1;", "%rd1");
    assert_type_error("\tld.global.f32 %rd1, [%rd2];", "%rd1");
    assert_type_error("\tst.global.f32 [%f1], %f2;", "%f1");
    assert_type_error("\tsetp.lt.f32 %r1, %f1, %f2;", "%r1");
    assert_type_error("\tselp.b32 %r1, %r2, %r3, %r4;", "%r4");
    assert_type_error("\tmul.wide.u32 %r1, %r2, %r3;", "%r1");
    assert_type_error("\tmad.wide.s32 %rd1, %r2, %r3, %r4;", "%r4");
    assert_type_error("\tcvt.rn.f32.s32 %f1, %f2;", "%f2");
    assert_type_error("\tcvt.u64.u32 %r1, %r2;", "%r1");
    assert_type_error("\tshl.b32 %r1, %r2, %rd1;", "%rd1");
    assert_type_error("\tmov.b32 %r1, {%rs2, %r3};", "%r3");
    assert_type_error("\tmov.u64 %rd1, %tid.x;", "%tid.x");
    assert_type_error("\tshfl.sync.down.b32 %r1|%r2, %r3, 1, 31, -1;", "%r2");
    assert_type_error("\tshfl.sync.bfly.b32 %r1, %r3, %rd1, 31, -1;", "%rd1");
    assert_type_error("\tdp4a.s32.s32 %rd1, %r1, %r2, %r3;", "%rd1");
    assert_type_error("\tbfe.u32 %r1, %r2, %rd1, 8;", "%rd1");
    assert_type_error("\tbar.sync %rd1;", "%rd1");
    assert_type_error("\t@%r1 bra $L;\n$L:", "%r1");
    assert_type_error(
        "\tld.shared.v2.f32 {%f1, %r1}, [%r2];\n\tld.shared.v2.f32 {%f1, %rs1}, [%r2];",
        "%rs1",
    );
}

#[test]
fn the_relaxed_rule_lets_memory_and_cvt_use_wider_registers() {
    assert_clean(
        "\tld.global.u16 %r1, [%rd1];\n\tst.global.u8 [%rd1], %r1;\n\tcvt.u32.u8 %r2, %r1;",
    );
    // ... but not narrower ones, and not for floats.
    assert_type_error("\tld.global.u32 %rs1, [%rd1];", "%rs1");
    assert_type_error("\tld.global.f16 %f1, [%rd1];", "%f1");
}

#[test]
fn inline_asm_scopes_declare_registers_without_percent() {
    let body =
        "\t{\n\t.reg .pred p;\n\tsetp.ne.f32 p, %f1, 0f00000000;\n\tselp.u32 %r1, 1, 0, p;\n\t}";
    assert_clean(body);
    // A block's `p` is not visible after the block: as a guard it is undeclared.
    let got = of_kind(
        &format!("{body}\n\t@p bra $L;\n$L:"),
        CheckKind::UndeclaredRegister,
    );
    assert_eq!(got.len(), 1, "{got:#?}");
    // Inside the block, its type is checked like any other.
    let bad = "\t{\n\t.reg .pred p;\n\tadd.s32 %r1, p, 1;\n\t}";
    assert_type_error(bad, "p");
}

#[test]
fn reg_parameters_of_a_func_are_registers() {
    let text = ".version 8.0\n.target sm_80\n.address_size 64\n\n\
                .func (.reg .b32 r) f(\n\t.reg .b32 a\n)\n{\n\tadd.s32 r, a, 1;\n\tret;\n}\n";
    assert!(findings(text).is_empty(), "{:#?}", findings(text));
    let bad = text.replace("add.s32 r, a, 1", "add.f64 r, a, 1");
    assert_eq!(
        findings(&bad)
            .iter()
            .filter(|f| f.check == CheckKind::OperandType)
            .count(),
        2
    );
}

#[test]
fn findings_name_the_function_the_check_and_the_instruction() {
    let got = of_kind("\tadd.s32 %r1, %rd1, 1;", CheckKind::OperandType);
    let text = got[0].to_string();
    assert_eq!(
        text,
        "k: operand-type: `%rd1` is .b64 but operand 2 needs .s32 in `add.s32 %r1, %rd1, 1;`"
    );
}
