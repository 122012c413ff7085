//! Structural parity of kernels whose warps meet in shared memory once per vector: the
//! split GEMV (several warps share a row; each vector's partial sums go through the same
//! shared slots, a barrier between vectors). A batched vector's shared memory after such a
//! barrier stands for the single kernel's untouched shared memory, but only when nothing
//! reads the memory at that barrier state: without the barrier between one vector's loads
//! and the next vector's stores (a race), or with a vector's stores missing, the pair fails.

use ptx_gen::kernels::{Gemv, WeightType, Q8_1_BLOCK_BYTES, Q8_1_BLOCK_VALUES};
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

fn reduction_fails(r: &PairReport, what: &str) {
    let c = r.check(CheckKind::Reduction).expect("a reduction check");
    assert_eq!(
        c.status,
        CheckStatus::Fail,
        "{what}: expected a reduction failure\n{r}"
    );
    assert!(
        c.findings.iter().any(|f| f.vectors.contains(&1)),
        "{what}: no finding for vector 1\n{r}"
    );
}

#[test]
fn the_split_pair_goes_through_shared_memory_and_passes() {
    let (single, batched) = (kernel(spec(1)), kernel(spec(3)));
    assert!(single.ptx.contains("gemv_partial"), "{}", single.ptx);
    // One barrier for the single vector; two more per further vector.
    assert_eq!(lines_of(&single.ptx, "bar.sync").len(), 1);
    assert_eq!(lines_of(&batched.ptx, "bar.sync").len(), 5);
    let r = check(&batched.ptx);
    assert!(r.passed(), "{r}");
}

#[test]
fn a_missing_barrier_between_vectors_is_a_race_and_fails() {
    let batched = kernel(spec(3));
    // The second barrier: after vector 0's loads, before vector 1's stores.
    let k = lines_of(&batched.ptx, "bar.sync")[1];
    reduction_fails(&check(&without_line(&batched.ptx, k)), "drop the barrier");
}

#[test]
fn a_vector_reading_the_previous_vectors_sums_fails() {
    let batched = kernel(spec(3));
    // Vector 1's stores are the st.shared after the second barrier.
    let bar = lines_of(&batched.ptx, "bar.sync")[1];
    let k = *lines_of(&batched.ptx, "st.shared")
        .iter()
        .find(|&&k| k > bar)
        .expect("vector 1 stores its sums");
    reduction_fails(
        &check(&without_line(&batched.ptx, k)),
        "drop vector 1's store",
    );
}
