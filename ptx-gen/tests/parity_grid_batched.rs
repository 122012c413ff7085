//! Structural parity of the grid-batched families (one vector per `%ctaid.y`): Q8_1
//! quantize, RMSNorm (plain, fused with Q8_1, fused with the residual add), per-head RMSNorm,
//! the gated activations and the residual add.
//!
//! For every family, at shapes with and without bounds checks and tails, and for every
//! M in 2..=16, the batched kernel (the same generator with `m` = M) is validated against its
//! single twin (`m` = 1) under the generator's own [`BatchDecl`]: every pair passes. Then each
//! family's pair is broken the ways a generator bug would break it (a stride claim off by 4
//! bytes, a per-vector buffer claimed shared, a shared weight claimed per-vector, a wrong
//! stride immediate in the PTX, a vector's offset dropped, a grid one vector short) and every
//! mutant must fail with the right check.

use ptx_gen::launch::Extent;
use ptx_gen::parity::{validate_generated, BatchDecl, CheckKind, PairReport, ParamRole};
use ptx_gen::{generate, GeneratedKernel, KernelSpec, Target};

use ptx_gen::kernels::{
    Glu, GluAct, HeadRmsNorm, OutFormat, QuantizeQ8_1, ResidualAdd, ResidualRmsNorm, RmsNorm,
    RmsNormQ8_1,
};

/// The spec with `m` vectors.
fn with_m(spec: &KernelSpec, m: u32) -> KernelSpec {
    match spec.clone() {
        KernelSpec::QuantizeQ8_1(s) => KernelSpec::QuantizeQ8_1(QuantizeQ8_1 { m, ..s }),
        KernelSpec::RmsNorm(s) => KernelSpec::RmsNorm(RmsNorm { m, ..s }),
        KernelSpec::RmsNormQ8_1(s) => KernelSpec::RmsNormQ8_1(RmsNormQ8_1 { m, ..s }),
        KernelSpec::ResidualRmsNorm(s) => KernelSpec::ResidualRmsNorm(ResidualRmsNorm { m, ..s }),
        KernelSpec::HeadRmsNorm(s) => KernelSpec::HeadRmsNorm(HeadRmsNorm { m, ..s }),
        KernelSpec::Glu(s) => KernelSpec::Glu(Glu { m, ..s }),
        KernelSpec::ResidualAdd(s) => KernelSpec::ResidualAdd(ResidualAdd { m, ..s }),
        other => panic!("not a grid-batched family: {}", other.name()),
    }
}

/// Single-vector specs, a couple of shapes per family: a real model's and one with bounds
/// checks, partial chunks or tails.
fn cases() -> Vec<KernelSpec> {
    let norm = |hidden, eps, weight_offset| RmsNorm {
        hidden,
        eps,
        weight_offset,
        m: 1,
    };
    let norm_q8 = |hidden, eps, weight_offset| RmsNormQ8_1 {
        hidden,
        eps,
        weight_offset,
        m: 1,
    };
    let res_norm = |hidden, out, weight_offset| ResidualRmsNorm {
        hidden,
        eps: 1e-6,
        weight_offset,
        out,
        post_norm: false,
        m: 1,
    };
    let head = |n_heads, head_dim, weight_offset| HeadRmsNorm {
        n_heads,
        head_dim,
        eps: 1e-6,
        weight_offset,
        k_heads: 0,
        m: 1,
    };
    let glu = |act, ffn, out| Glu {
        act,
        ffn,
        out,
        m: 1,
    };
    vec![
        // 128 blocks in warps of 8; 3 blocks: a partial thread block (early return).
        KernelSpec::QuantizeQ8_1(QuantizeQ8_1 { k: 4096, m: 1 }),
        KernelSpec::QuantizeQ8_1(QuantizeQ8_1 { k: 96, m: 1 }),
        // Resident row, float4; odd length (scalar loads, guarded chunk); re-read row.
        KernelSpec::RmsNorm(norm(4096, 1e-5, 0.0)),
        KernelSpec::RmsNorm(norm(99, 1e-6, 1.0)),
        KernelSpec::RmsNorm(norm(16384, 1e-6, 0.0)),
        KernelSpec::RmsNormQ8_1(norm_q8(4096, 1e-5, 0.0)),
        KernelSpec::RmsNormQ8_1(norm_q8(96, 1e-6, 1.0)),
        KernelSpec::ResidualRmsNorm(res_norm(4096, OutFormat::F32, 0.0)),
        KernelSpec::ResidualRmsNorm(res_norm(130, OutFormat::F32, 1.0)),
        KernelSpec::ResidualRmsNorm(res_norm(896, OutFormat::Q8_1, 0.0)),
        // Qwen3-like heads; 5 heads (a partial block) of 34 (float2, a guarded chunk).
        KernelSpec::HeadRmsNorm(head(16, 128, 0.0)),
        KernelSpec::HeadRmsNorm(head(5, 34, 1.0)),
        KernelSpec::Glu(glu(GluAct::Swiglu, 14336, OutFormat::F32)),
        KernelSpec::Glu(glu(GluAct::Geglu, 1001, OutFormat::F32)),
        KernelSpec::Glu(glu(GluAct::Swiglu, 4864, OutFormat::Q8_1)),
        KernelSpec::Glu(glu(GluAct::Geglu, 96, OutFormat::Q8_1)),
        // float4 only; float4 + scalar tail threads with a scale; scalars only.
        KernelSpec::ResidualAdd(ResidualAdd {
            n: 4096,
            scale: 1.0,
            m: 1,
        }),
        KernelSpec::ResidualAdd(ResidualAdd {
            n: 3,
            scale: 0.5,
            m: 1,
        }),
        KernelSpec::ResidualAdd(ResidualAdd {
            n: 1028,
            scale: 0.22,
            m: 1,
        }),
    ]
}

fn kernel(spec: &KernelSpec) -> GeneratedKernel {
    generate(spec, Target::dp4a_default())
        .unwrap_or_else(|e| panic!("{} generates: {e}", spec.name()))
}

struct Pair {
    single: GeneratedKernel,
    batched: GeneratedKernel,
    decl: BatchDecl,
}

fn pair(spec: &KernelSpec, m: u32) -> Pair {
    let batched_spec = with_m(spec, m);
    let decl = batched_spec
        .batch_decl()
        .unwrap_or_else(|| panic!("{} makes a batching claim", batched_spec.name()));
    Pair {
        single: kernel(spec),
        batched: kernel(&batched_spec),
        decl,
    }
}

fn failed_checks(r: &PairReport) -> Vec<CheckKind> {
    r.findings().map(|f| f.check).collect()
}

/// The mutant fails, with a finding of one of `checks`.
fn assert_caught(what: &str, r: &PairReport, checks: &[CheckKind]) {
    assert!(!r.passed(), "{what}: the mutant passed:\n{r}");
    let found = failed_checks(r);
    assert!(
        found.iter().any(|c| checks.contains(c)),
        "{what}: expected a finding of {checks:?}, got {found:?}:\n{r}"
    );
}

#[test]
fn every_real_pair_passes_for_every_m() {
    for spec in cases() {
        let single = kernel(&spec);
        assert!(
            spec.batch_decl().is_none(),
            "{}: m = 1 claims a batch",
            single.name
        );
        assert!(
            !single.ptx.contains("%ctaid.y"),
            "{}: the single kernel reads %ctaid.y",
            single.name
        );
        for m in 2..=16 {
            let bspec = with_m(&spec, m);
            let batched = kernel(&bspec);
            assert_eq!(batched.name, format!("{}_m{m}", single.name));
            assert_eq!(batched.launch.grid[1], Extent::Const(m), "{}", batched.name);
            assert_eq!(batched.launch.grid[0], single.launch.grid[0]);
            assert_eq!(batched.launch.block, single.launch.block);
            assert!(batched.ptx.contains("%ctaid.y"), "{}", batched.name);
            let decl = bspec.batch_decl().expect("batched spec makes a claim");
            assert_eq!(decl.m, m);
            let r = validate_generated(&single, &batched, &decl);
            assert!(r.passed(), "{}:\n{r}", batched.name);
            assert!(r.outputs > 0 && r.slices_compared >= r.outputs, "{r}");
        }
    }
}

#[test]
fn m_one_is_the_single_kernel_and_out_of_range_m_is_refused() {
    for spec in cases() {
        let k = kernel(&spec);
        let again = kernel(&with_m(&spec, 1));
        assert_eq!(k.ptx, again.ptx);
        for bad in [0, 17] {
            assert!(
                with_m(&spec, bad).validate().is_err(),
                "{} m = {bad}",
                spec.name()
            );
        }
    }
    // CLI: an optional trailing M.
    let dims = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
    let s = KernelSpec::from_cli("rmsnorm", &dims("4096 1e-5 0 4")).unwrap();
    assert_eq!(s.name(), "rmsnorm_f32_n4096_eps3727c5ac_m4");
    let s = KernelSpec::from_cli("quantize_q8_1", &dims("4096 16")).unwrap();
    assert_eq!(s.name(), "quantize_q8_1_k4096_m16");
    let s = KernelSpec::from_cli("glu", &dims("swiglu q8_1 14336 2")).unwrap();
    assert_eq!(s.name(), "glu_swiglu_q8_1_n14336_m2");
    let s = KernelSpec::from_cli("residual_add", &dims("4096")).unwrap();
    assert_eq!(s.name(), "residual_add_f32_n4096");
    // A batched residual add keeps every vector 16-byte aligned.
    let bad = KernelSpec::ResidualAdd(ResidualAdd {
        n: 4097,
        scale: 1.0,
        m: 2,
    });
    assert!(bad.validate().is_err());
}

/// `decl` with parameter `name`'s role replaced.
fn with_role(decl: &BatchDecl, name: &str, role: ParamRole) -> BatchDecl {
    let mut d = decl.clone();
    for p in &mut d.params {
        if p.name == name {
            p.role = role.clone();
        }
    }
    d
}

fn stride_of(decl: &BatchDecl, name: &str) -> Option<u64> {
    match decl.role(name) {
        Some(ParamRole::PerVector { stride_bytes }) => Some(*stride_bytes),
        _ => None,
    }
}

/// The batched PTX with the `mad.wide.u32` that offsets `param`'s pointer by `%ctaid.y *
/// stride` rewritten by `edit` (the line, without its newline).
fn edit_offset(
    single: &GeneratedKernel,
    batched: &GeneratedKernel,
    stride: u64,
    edit: impl Fn(&str) -> String,
) -> GeneratedKernel {
    let needle = format!(", {stride}, ");
    let lines: Vec<&str> = batched.ptx.lines().collect();
    let idx = lines
        .iter()
        .position(|l| l.contains("mad.wide.u32") && l.contains(&needle))
        .unwrap_or_else(|| {
            panic!(
                "{}: no mad.wide.u32 by {stride} in\n{}",
                batched.name, batched.ptx
            )
        });
    let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    out[idx] = edit(lines[idx]);
    assert_ne!(out[idx], lines[idx]);
    let _ = single;
    GeneratedKernel {
        ptx: out.join("\n") + "\n",
        ..batched.clone()
    }
}

#[test]
fn every_family_catches_its_mutations() {
    // One pair per (family, output format), at a shape with bounds checks where it has them.
    let mut families_seen = std::collections::BTreeSet::new();
    for spec in cases() {
        let fam = format!(
            "{}{}",
            spec.family(),
            match &spec {
                KernelSpec::ResidualRmsNorm(s) => s.out.tag(),
                KernelSpec::Glu(s) => s.out.tag(),
                _ => "",
            }
        );
        if !families_seen.insert(fam) {
            continue;
        }
        let m = 3;
        let p = pair(&spec, m);
        let name = p.batched.name.clone();
        let per_vector: Vec<(String, u64)> = p
            .decl
            .params
            .iter()
            .filter_map(|b| match b.role {
                ParamRole::PerVector { stride_bytes } => Some((b.name.clone(), stride_bytes)),
                _ => None,
            })
            .collect();
        assert!(!per_vector.is_empty(), "{name}");
        let shared: Vec<String> = p
            .decl
            .params
            .iter()
            .filter(|b| b.role == ParamRole::Shared)
            .map(|b| b.name.clone())
            .collect();

        // 1. Every per-vector stride claim off by 4 bytes (either way) is caught.
        for (param, stride) in &per_vector {
            for wrong in [stride + 4, stride - 4] {
                let d = with_role(
                    &p.decl,
                    param,
                    ParamRole::PerVector {
                        stride_bytes: wrong,
                    },
                );
                let r = validate_generated(&p.single, &p.batched, &d);
                assert_caught(
                    &format!("{name}: {param} claimed at stride {wrong} (is {stride})"),
                    &r,
                    &[CheckKind::Params, CheckKind::Dataflow, CheckKind::Outputs],
                );
            }
            // 2. A per-vector buffer claimed shared.
            let d = with_role(&p.decl, param, ParamRole::Shared);
            let r = validate_generated(&p.single, &p.batched, &d);
            assert_caught(
                &format!("{name}: per-vector {param} claimed shared"),
                &r,
                &[CheckKind::Params, CheckKind::Dataflow, CheckKind::Outputs],
            );
        }
        // 3. A shared weight claimed per-vector.
        for param in &shared {
            let d = with_role(
                &p.decl,
                param,
                ParamRole::PerVector {
                    stride_bytes: stride_of(&p.decl, &per_vector[0].0).unwrap(),
                },
            );
            let r = validate_generated(&p.single, &p.batched, &d);
            assert_caught(
                &format!("{name}: shared {param} claimed per-vector"),
                &r,
                &[CheckKind::Params, CheckKind::Dataflow, CheckKind::Outputs],
            );
        }
        // 4. The PTX offsets a per-vector buffer by a stride 4 bytes short (the claim is
        //    right): vectors overlap their neighbours.
        let (param, stride) = per_vector.last().unwrap();
        let short = edit_offset(&p.single, &p.batched, *stride, |l| {
            l.replace(&format!(", {stride}, "), &format!(", {}, ", stride - 4))
        });
        let r = validate_generated(&p.single, &short, &p.decl);
        assert_caught(
            &format!("{name}: PTX offsets {param} by ctaid.y * {}", stride - 4),
            &r,
            &[CheckKind::Dataflow, CheckKind::Outputs],
        );
        // 5. The PTX drops a per-vector offset (every vector reads or writes vector 0).
        let dropped = edit_offset(&p.single, &p.batched, *stride, |l| {
            // `mad.wide.u32 %rdA, %rB, S, %rdC;` -> `mov.u64 %rdA, %rdC;`
            let body = l.trim().trim_end_matches(';');
            let ops: Vec<&str> = body["mad.wide.u32".len()..]
                .split(',')
                .map(str::trim)
                .collect();
            format!("\tmov.u64 \t{}, {};", ops[0], ops[3])
        });
        let r = validate_generated(&p.single, &dropped, &p.decl);
        assert_caught(
            &format!("{name}: PTX drops {param}'s per-vector offset"),
            &r,
            &[CheckKind::Dataflow, CheckKind::Outputs],
        );
        // 6. A grid one vector short: vector M - 1 is never computed.
        let mut short_grid = p.batched.clone();
        short_grid.launch.grid[1] = Extent::Const(m - 1);
        let r = validate_generated(&p.single, &short_grid, &p.decl);
        assert_caught(&format!("{name}: grid y = M - 1"), &r, &[CheckKind::Launch]);
        // 7. A claim for a different M than the kernel's grid.
        let mut other_m = p.decl.clone();
        other_m.m = m + 1;
        let r = validate_generated(&p.single, &p.batched, &other_m);
        assert!(!r.passed(), "{name}: claim of M + 1 passed:\n{r}");
    }
    assert_eq!(
        families_seen.len(),
        9,
        "7 families, two of them in both output formats: {families_seen:?}"
    );
}
