//! Check 3: CTA barriers in control flow that depends on the thread index.

use ptx_gen::check::{check_module, CheckKind, Finding};
use ptx_gen::parse::parse_module;

/// A kernel with one `.u32` parameter `n`, read into `%r1`, around `body`.
fn entry(body: &str) -> String {
    format!(
        ".version 8.0\n.target sm_80\n.address_size 64\n\n.visible .entry k(\n\t.param .u32 n\n)\n{{\n\
         \t.reg .pred %p<8>;\n\t.reg .b32 %r<16>;\n\t.reg .f32 %f<4>;\n\n\tld.param.u32 %r1, [n];\n{body}\n}}\n"
    )
}

fn barrier_findings(body: &str) -> Vec<Finding> {
    let text = entry(body);
    let m = parse_module(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let all = check_module(&m);
    let (barriers, others): (Vec<_>, Vec<_>) = all
        .into_iter()
        .partition(|f| f.check == CheckKind::DivergentBarrier);
    assert!(
        others.is_empty(),
        "the test kernels are otherwise correct: {others:#?}"
    );
    barriers
}

fn assert_flagged(body: &str) -> Finding {
    let got = barrier_findings(body);
    assert_eq!(got.len(), 1, "{body}\n{got:#?}");
    got.into_iter().next().unwrap()
}

fn assert_passes(body: &str) {
    let got = barrier_findings(body);
    assert!(got.is_empty(), "{body}\n{got:#?}");
}

#[test]
fn a_barrier_skipped_by_a_tid_branch_is_flagged() {
    let f = assert_flagged(
        "\tmov.u32 %r2, %tid.x;\n\tsetp.ge.u32 %p1, %r2, %r1;\n\t@%p1 bra $L_skip;\n\
         \tbar.sync 0;\n$L_skip:\n\tret;",
    );
    assert_eq!(f.instruction.as_deref(), Some("bar.sync 0;"));
    assert!(f.message.contains("@%p1 bra $L_skip;"), "{f}");
}

#[test]
fn the_same_branch_on_a_uniform_value_passes() {
    assert_passes(
        "\tmov.u32 %r2, %ctaid.x;\n\tsetp.ge.u32 %p1, %r2, %r1;\n\t@%p1 bra $L_skip;\n\
         \tbar.sync 0;\n$L_skip:\n\tret;",
    );
}

#[test]
fn a_barrier_under_a_tid_guard_is_flagged() {
    let f = assert_flagged(
        "\tmov.u32 %r2, %laneid;\n\tsetp.eq.u32 %p1, %r2, 0;\n\t@%p1 bar.sync 0;\n\tret;",
    );
    assert!(f.message.contains("`%p1`"), "{f}");
}

#[test]
fn taint_flows_through_any_instruction_chain() {
    assert_flagged(
        "\tmov.u32 %r2, %tid.y;\n\tshr.u32 %r3, %r2, 5;\n\tcvt.rn.f32.u32 %f1, %r3;\n\
         \tsetp.gt.f32 %p1, %f1, 0f3F800000;\n\tselp.b32 %r4, 1, 0, %p1;\n\
         \tsetp.ne.s32 %p2, %r4, 0;\n\t@!%p2 bra $L_skip;\n\tbar.sync 0;\n$L_skip:\n\tret;",
    );
}

#[test]
fn an_early_return_of_some_threads_before_a_barrier_is_flagged() {
    assert_flagged(
        "\tmov.u32 %r2, %tid.x;\n\tsetp.ge.u32 %p1, %r2, %r1;\n\t@%p1 ret;\n\tbar.sync 0;\n\tret;",
    );
    assert_flagged(
        "\tmov.u32 %r2, %tid.x;\n\tsetp.ge.u32 %p1, %r2, %r1;\n\t@%p1 bra $L_out;\n\
         \tbar.sync 0;\n\tret;\n$L_out:\n\tret;",
    );
}

#[test]
fn a_barrier_after_the_join_of_a_tid_branch_passes() {
    // if (tid < n) { ... } __syncthreads();
    assert_passes(
        "\tmov.u32 %r2, %tid.x;\n\tsetp.ge.u32 %p1, %r2, %r1;\n\t@%p1 bra $L_join;\n\
         \tadd.s32 %r3, %r2, 1;\n$L_join:\n\tbar.sync 0;\n\tret;",
    );
}

#[test]
fn a_uniform_loop_with_a_tid_branch_and_barriers_passes() {
    // The shared-memory tree reduction: for (s = n/2; s > 0; s >>= 1) { if (tid < s) ...; __syncthreads(); }
    assert_passes(
        "\tmov.u32 %r2, %tid.x;\n\tshr.u32 %r3, %r1, 1;\n\tsetp.eq.s32 %p1, %r3, 0;\n\t@%p1 bra $L_done;\n\
         $L_loop:\n\tsetp.ge.u32 %p2, %r2, %r3;\n\t@%p2 bra $L_latch;\n\tadd.s32 %r4, %r2, %r3;\n\
         $L_latch:\n\tbar.sync 0;\n\tshr.u32 %r3, %r3, 1;\n\tsetp.ne.s32 %p3, %r3, 0;\n\t@%p3 bra $L_loop;\n\
         $L_done:\n\tbar.sync 0;\n\tret;",
    );
}

#[test]
fn a_loop_whose_trip_count_depends_on_tid_is_flagged() {
    // for (i = tid; i < n; i += 32) { __syncthreads(); }
    assert_flagged(
        "\tmov.u32 %r2, %tid.x;\n$L_loop:\n\tsetp.ge.u32 %p1, %r2, %r1;\n\t@%p1 bra $L_done;\n\
         \tbar.sync 0;\n\tadd.s32 %r2, %r2, 32;\n\tbra.uni $L_loop;\n$L_done:\n\tret;",
    );
}

#[test]
fn a_value_merged_from_divergent_paths_is_thread_dependent() {
    // x = 0; if (tid == 0) x = 1; if (x) __syncthreads();
    assert_flagged(
        "\tmov.u32 %r2, %tid.x;\n\tmov.u32 %r3, 0;\n\tsetp.ne.u32 %p1, %r2, 0;\n\t@%p1 bra $L_a;\n\
         \tmov.u32 %r3, 1;\n$L_a:\n\tsetp.eq.u32 %p2, %r3, 0;\n\t@%p2 bra $L_b;\n\tbar.sync 0;\n$L_b:\n\tret;",
    );
}

#[test]
fn a_uniform_branch_nested_in_a_tid_branch_is_divergent_too() {
    assert_flagged(
        "\tmov.u32 %r2, %tid.x;\n\tsetp.ne.u32 %p1, %r2, 0;\n\t@%p1 bra $L_out;\n\
         \tsetp.eq.u32 %p2, %r1, 0;\n\t@%p2 bra $L_out;\n\tbar.sync 0;\n$L_out:\n\tret;",
    );
}

#[test]
fn atomics_make_per_thread_values() {
    assert_flagged(
        "\tmov.u32 %r2, 0;\n\tatom.shared.add.u32 %r3, [%r2], 1;\n\tsetp.eq.u32 %p1, %r3, 0;\n\
         \t@%p1 bra $L_b;\n\tbar.sync 0;\n$L_b:\n\tret;",
    );
}

#[test]
fn warp_barriers_and_counted_barriers_are_not_cta_barriers() {
    assert_passes(
        "\tmov.u32 %r2, %tid.x;\n\tsetp.ge.u32 %p1, %r2, 64;\n\t@%p1 bra $L_b;\n\
         \tbar.warp.sync -1;\n\tbar.sync 1, 64;\n\tbar.arrive 2, 64;\n$L_b:\n\tret;",
    );
    // barrier.sync.aligned is the same barrier as bar.sync.
    assert_flagged(
        "\tmov.u32 %r2, %tid.x;\n\tsetp.ge.u32 %p1, %r2, 64;\n\t@%p1 bra $L_b;\n\
         \tbarrier.sync.aligned 0;\n$L_b:\n\tret;",
    );
}
