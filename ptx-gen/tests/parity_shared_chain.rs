//! Structural parity of kernels whose warps meet in shared memory: the split GEMV (several
//! warps share a row and add their sums through shared slots) and the GEMV whose prologue
//! stages its normalized, quantized input in shared memory. A batched kernel gives each
//! vector its own copy of such a variable (`gemv_partial`, `gemv_partial_v1`, ...: the
//! claim's per-vector shared variables), all stored before the one barrier the single
//! kernel has. A store into another vector's copy cannot change what a vector reads, so the
//! walk passes over it; a vector that reads another's copy, a missing store or barrier, or
//! copies declared unlike the single kernel's variable fail.

use ptx_gen::kernels::{
    Gemv, GemvNorm, GemvPrologue, WeightType, Q8_1_BLOCK_BYTES, Q8_1_BLOCK_VALUES,
};
use ptx_gen::parity::{validate_pair, BatchDecl, CheckKind, CheckStatus, KernelSource, PairReport};
use ptx_gen::{generate, GeneratedKernel, KernelSpec, Target};

/// Q4_K, 16 blocks per row: four warps per row (split 4); 9 rows, so the last block's
/// groups past the last row read it again and store nothing.
fn spec(m: u32) -> Gemv {
    Gemv {
        weight: WeightType::Q4K,
        n: 9,
        k: 16 * 256,
        bias: false,
        residual: true,
        m,
        more_rows: [0, 0],
        rope: None,
        prologue: None,
        tile: None,
    }
}

fn kernel(s: Gemv) -> GeneratedKernel {
    generate(&KernelSpec::Gemv(s), Target::dp4a_default()).expect("generates")
}

fn decl(s: &Gemv) -> BatchDecl {
    let x = u64::from(s.k / Q8_1_BLOCK_VALUES * Q8_1_BLOCK_BYTES);
    BatchDecl::unrolled(s.m)
        .shared("w")
        .per_vector("x", x)
        .per_vector("residual", u64::from(s.n) * 4)
        .per_vector("y", u64::from(s.n) * 4)
        .shared_per_vector("gemv_partial")
}

fn check(batched_ptx: &str) -> PairReport {
    let (single, batched) = (kernel(spec(1)), kernel(spec(3)));
    validate_pair(
        KernelSource::from(&single),
        KernelSource::text(&batched.name, batched_ptx),
        &decl(&spec(3)),
    )
}

/// Line numbers of the instructions starting with `op`.
fn lines_of(ptx: &str, op: &str) -> Vec<usize> {
    ptx.lines()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with(op))
        .map(|(k, _)| k)
        .collect()
}

fn without_line(ptx: &str, k: usize) -> String {
    let mut out: Vec<&str> = ptx.lines().collect();
    out.remove(k);
    out.join("\n") + "\n"
}

fn fails(r: &PairReport, kinds: &[CheckKind], what: &str) {
    let failed: Vec<CheckKind> = kinds
        .iter()
        .copied()
        .filter(|k| r.check(*k).is_some_and(|c| c.status == CheckStatus::Fail))
        .collect();
    assert!(
        !failed.is_empty(),
        "{what}: expected one of {kinds:?} to fail\n{r}"
    );
    assert!(!r.passed(), "{what}\n{r}");
}

#[test]
fn the_split_pair_has_a_copy_per_vector_and_one_barrier() {
    let (single, batched) = (kernel(spec(1)), kernel(spec(3)));
    assert!(
        single.ptx.contains(".f32 gemv_partial[8]"),
        "{}",
        single.ptx
    );
    for copy in [
        "gemv_partial[8]",
        "gemv_partial_v1[8]",
        "gemv_partial_v2[8]",
    ] {
        assert!(batched.ptx.contains(copy), "{copy}\n{}", batched.ptx);
    }
    assert_eq!(lines_of(&single.ptx, "bar.sync").len(), 1);
    assert_eq!(lines_of(&batched.ptx, "bar.sync").len(), 1);
    let r = check(&batched.ptx);
    assert!(r.passed(), "{r}");
}

#[test]
fn without_the_per_vector_claim_the_copies_are_other_variables() {
    let (single, batched) = (kernel(spec(1)), kernel(spec(3)));
    let mut d = decl(&spec(3));
    d.per_vector_shared.clear();
    let r = validate_pair(
        KernelSource::from(&single),
        KernelSource::from(&batched),
        &d,
    );
    fails(&r, &[CheckKind::Dataflow, CheckKind::Reduction], "no claim");
}

#[test]
fn a_vector_reading_another_vectors_copy_fails() {
    let batched = kernel(spec(3));
    // Vector 1's slots' address taken from vector 2's copy.
    let edited = batched
        .ptx
        .replacen(", gemv_partial_v1;", ", gemv_partial_v2;", 1);
    assert_ne!(edited, batched.ptx);
    fails(
        &check(&edited),
        &[CheckKind::Dataflow, CheckKind::Reduction],
        "vector 1 reads vector 2's copy",
    );
}

#[test]
fn a_missing_barrier_fails() {
    let batched = kernel(spec(3));
    let k = lines_of(&batched.ptx, "bar.sync")[0];
    fails(
        &check(&without_line(&batched.ptx, k)),
        &[CheckKind::Reduction],
        "drop the barrier",
    );
}

#[test]
fn a_missing_store_of_one_vector_fails() {
    let batched = kernel(spec(3));
    // The stores are vector 0's, 1's and 2's, in order.
    let k = lines_of(&batched.ptx, "st.shared")[1];
    fails(
        &check(&without_line(&batched.ptx, k)),
        &[CheckKind::Reduction, CheckKind::Dataflow],
        "drop vector 1's store",
    );
}

#[test]
fn copies_must_be_declared_as_the_single_kernels_variable() {
    let (single, batched) = (kernel(spec(1)), kernel(spec(3)));
    let params_fail = |single_ptx: &str, batched_ptx: &str, what: &str| {
        let r = validate_pair(
            KernelSource::text(&single.name, single_ptx),
            KernelSource::text(&batched.name, batched_ptx),
            &decl(&spec(3)),
        );
        let c = r.check(CheckKind::Params).expect("a params check");
        assert_eq!(c.status, CheckStatus::Fail, "{what}\n{r}");
    };
    let missing = batched
        .ptx
        .lines()
        .filter(|l| !l.contains("gemv_partial_v2["))
        .collect::<Vec<_>>()
        .join("\n");
    params_fail(&single.ptx, &missing, "vector 2's copy undeclared");
    let smaller = batched
        .ptx
        .replace("gemv_partial_v2[8]", "gemv_partial_v2[4]");
    params_fail(&single.ptx, &smaller, "vector 2's copy smaller");
    let extra = single.ptx.replace(
        ".f32 gemv_partial[8];",
        ".f32 gemv_partial[8];\n\t.shared .align 4 .f32 gemv_partial_v1[8];",
    );
    params_fail(
        &extra,
        &batched.ptx,
        "the single kernel declares a later copy",
    );
}

/// SmolLM2's gate + up with RMSNorm + quantize in the prologue.
fn normed(m: u32) -> Gemv {
    Gemv {
        weight: WeightType::Q4_1,
        n: 1536,
        k: 576,
        bias: false,
        residual: false,
        m,
        more_rows: [1536, 0],
        rope: None,
        prologue: Some(GemvPrologue::Norm(GemvNorm {
            eps: 1e-5,
            weight_offset: 0.0,
        })),
        tile: None,
    }
}

#[test]
fn the_norm_prologue_pair_passes_and_a_vector_reading_another_input_fails() {
    let (single, batched) = (kernel(normed(1)), kernel(normed(3)));
    let d = KernelSpec::Gemv(normed(3))
        .batch_decl()
        .expect("a batching claim");
    for base in ["gemv_xq", "gemv_rms"] {
        assert!(d.per_vector_shared.iter().any(|b| b == base), "{d:?}");
    }
    let r = validate_pair(
        KernelSource::from(&single),
        KernelSource::from(&batched),
        &d,
    );
    assert!(r.passed(), "{r}");
    // Vector 1's dot products read vector 0's staged input.
    let edited = batched.ptx.replacen(", gemv_xq_v1;", ", gemv_xq;", 1);
    assert_ne!(edited, batched.ptx);
    let r = validate_pair(
        KernelSource::from(&single),
        KernelSource::text(&batched.name, &edited),
        &d,
    );
    fails(
        &r,
        &[CheckKind::Dataflow, CheckKind::Reduction],
        "vector 1 reads vector 0's input",
    );
    // Vector 2's sum of squares added in vector 1's slots.
    let edited = batched.ptx.replacen(", gemv_rms_v2;", ", gemv_rms_v1;", 1);
    assert_ne!(edited, batched.ptx);
    let r = validate_pair(
        KernelSource::from(&single),
        KernelSource::text(&batched.name, &edited),
        &d,
    );
    fails(
        &r,
        &[CheckKind::Dataflow, CheckKind::Reduction],
        "vector 2's partials in vector 1's copy",
    );
}
