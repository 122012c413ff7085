//! Batched GEMVs take more rows per group than their single kernel (`Gemv::tile`), so each
//! lane's inputs serve more rows. The batched kernel is then not its single kernel thread
//! for thread: parity is proven against the single kernel with the batch's tile (the parity
//! twin), which computes every row's sum as the single kernel does because only the rows
//! per group differ (the GPU tests check the bits: `gpu_gemv`, and the engine's numeric
//! parity against the kernel the single step launches).

use ptx_gen::kernels::{batch_rows, FamilySpec, Gemv, GemvTile, WeightType, FILL_BLOCKS};
use ptx_gen::parity::{validate_pair, KernelSource};
use ptx_gen::{generate, GeneratedKernel, KernelSpec, Target};

fn gemv(weight: WeightType, n: u32, k: u32, m: u32) -> Gemv {
    Gemv {
        residual: true,
        m,
        ..Gemv::plain(weight, n, k)
    }
}

fn kernel(s: Gemv) -> GeneratedKernel {
    generate(&KernelSpec::Gemv(s), Target::dp4a_default()).expect("generates")
}

fn grid(s: &Gemv, t: GemvTile) -> u32 {
    let per_block = t.rows * t.warps / t.split;
    s.parts().iter().map(|r| r.div_ceil(per_block)).sum()
}

/// Every sample GEMV at every batch: a batch's tile differs from the single kernel's only in
/// its rows per group (never fewer, at most `batch_rows`), and only where the grid keeps
/// `FILL_BLOCKS` blocks.
#[test]
fn a_batch_changes_only_the_rows_per_group() {
    let mut raised = 0;
    for spec in KernelSpec::samples() {
        let KernelSpec::Gemv(g) = spec else { continue };
        if g.m != 1 || g.tile.is_some() {
            continue;
        }
        let one = g.tile();
        for m in 2..=16 {
            let b = Gemv { m, ..g };
            let t = b.tile();
            assert_eq!(
                (t.warps, t.split, t.lookahead),
                (one.warps, one.split, one.lookahead),
                "{}",
                b.name()
            );
            assert!(
                t.rows >= one.rows && t.rows <= batch_rows(g.weight, one.rows, m),
                "{}: {t}",
                b.name()
            );
            if t.rows > one.rows {
                assert!(grid(&b, t) >= FILL_BLOCKS, "{}: {t}", b.name());
                raised += 1;
            }
        }
    }
    assert!(raised > 0, "no sample takes more rows when batched");
}

/// A short matrix keeps its tile: more rows per group would leave too few blocks.
#[test]
fn a_short_matrix_keeps_the_single_tile() {
    let s = gemv(WeightType::Q4_1, 576, 576, 8);
    assert_eq!(s.tile(), gemv(WeightType::Q4_1, 576, 576, 1).tile());
    let s = gemv(WeightType::Q4K, 4096, 14336, 8);
    assert_eq!(s.tile().rows, 4);
    assert_eq!(gemv(WeightType::Q4K, 4096, 14336, 2).tile().rows, 2);
    // Q6_K takes 4 rows only at M = 5..=8 (the ninth session's sweep).
    let q6 = |m| gemv(WeightType::Q6K, 4096, 14336, m).tile().rows;
    assert_eq!(
        [q6(1), q6(2), q6(4), q6(5), q6(8), q6(9), q6(16)],
        [1, 2, 2, 4, 4, 2, 2]
    );
}

/// The batched kernel fails parity against the single kernel (different threads) and passes
/// against its twin, which is named after its tile and has no batched variant of its own.
#[test]
fn the_batch_is_proven_against_its_twin() {
    let single = KernelSpec::Gemv(gemv(WeightType::Q4K, 4096, 14336, 1));
    let batched = single.batched(8).expect("batched");
    let twin = single
        .parity_twin(&batched)
        .expect("a twin: the tiles differ");
    let KernelSpec::Gemv(t) = &twin else {
        unreachable!()
    };
    let KernelSpec::Gemv(b) = &batched else {
        unreachable!()
    };
    assert_eq!(t.tile(), b.tile());
    assert!(
        twin.name().ends_with(&format!("_{}", b.tile())),
        "{}",
        twin.name()
    );
    assert_eq!(twin.twin_source(), Some(single.clone()));
    assert!(twin.batched(2).is_none());
    let decl = batched.batch_decl().expect("claim");
    let (s, b, t) = (
        kernel(gemv(WeightType::Q4K, 4096, 14336, 1)),
        kernel(*b),
        kernel(*t),
    );
    let r = validate_pair(KernelSource::from(&s), KernelSource::from(&b), &decl);
    assert!(
        !r.passed(),
        "a batch of 4 rows per group equal to 1 row per group?\n{r}"
    );
    let r = validate_pair(KernelSource::from(&t), KernelSource::from(&b), &decl);
    assert!(r.passed(), "{r}");
    // Where the tiles agree there is no twin.
    let short = KernelSpec::Gemv(gemv(WeightType::Q4_1, 576, 576, 1));
    assert!(short.parity_twin(&short.batched(8).unwrap()).is_none());
}

/// The CLI's `tile=` gives an explicit tile, named in the kernel.
#[test]
fn an_explicit_tile_is_named() {
    let s = KernelSpec::from_cli(
        "gemv",
        &["q4_k", "4096", "14336", "tile=r4w8l1s8"].map(String::from),
    )
    .expect("parses");
    assert!(s.name().ends_with("_r4w8l1s8"), "{}", s.name());
    let KernelSpec::Gemv(g) = &s else {
        unreachable!()
    };
    assert_eq!(g.tile().rows, 4);
    // The default tile, given explicitly, is not named.
    let s = KernelSpec::from_cli(
        "gemv",
        &["q4_k", "4096", "14336", "tile=r1w8l1s8"].map(String::from),
    )
    .expect("parses");
    assert_eq!(s.name(), "gemv_q4_k_q8_1_n4096_k14336");
}
