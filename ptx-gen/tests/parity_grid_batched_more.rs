//! Structural parity of the grid-batched embedding lookup, argmax (both stages), RoPE + KV
//! write and decode attention (split + combine): one vector (token, sequence) per
//! `%ctaid.y`, or per `%ctaid.z` where the single kernel already uses `y`.
//!
//! As in `parity_grid_batched.rs`: every real pair passes for M in 2..=16 at a couple of
//! shapes per family, `m` = 1 is the single kernel exactly, and each family's pair broken the
//! ways a generator bug would break it (stride claims off by 4 bytes, per-vector claimed
//! shared and back, a wrong or dropped stride in the PTX, a grid one vector short, a claim for
//! another M) fails with the right check.

use ptx_gen::launch::Extent;
use ptx_gen::parity::{
    validate_generated, BatchDecl, CheckKind, PairReport, ParamRole, VectorIndex,
};
use ptx_gen::{generate, GeneratedKernel, KernelSpec, Target};

use ptx_gen::kernels::{
    Argmax, ArgmaxStage, AttentionCombine, DecodeAttention, Embed, EmbedTable, RopeKv, RopeStyle,
};

/// The spec with `m` vectors.
fn with_m(spec: &KernelSpec, m: u32) -> KernelSpec {
    match spec.clone() {
        KernelSpec::Embed(s) => KernelSpec::Embed(Embed { m, ..s }),
        KernelSpec::Argmax(s) => KernelSpec::Argmax(Argmax { m, ..s }),
        KernelSpec::RopeKv(s) => KernelSpec::RopeKv(RopeKv { m, ..s }),
        KernelSpec::Attention(s) => KernelSpec::Attention(DecodeAttention { m, ..s }),
        KernelSpec::AttentionCombine(s) => {
            KernelSpec::AttentionCombine(AttentionCombine { m, ..s })
        }
        other => panic!("not a family of this file: {}", other.name()),
    }
}

/// Single-vector specs, a couple of shapes per family (with and without bounds checks).
fn cases() -> Vec<KernelSpec> {
    use EmbedTable::*;
    let embed = |table, vocab, hidden, scale| {
        KernelSpec::Embed(Embed {
            table,
            vocab,
            hidden,
            scale,
            m: 1,
        })
    };
    let argmax = |vocab, stage| KernelSpec::Argmax(Argmax { vocab, stage, m: 1 });
    let rope = |style, n_heads, n_kv_heads, head_dim, rope_dims, max_ctx| {
        KernelSpec::RopeKv(RopeKv {
            style,
            n_heads,
            n_kv_heads,
            head_dim,
            rope_dims,
            max_ctx,
            m: 1,
        })
    };
    let attn = |n_heads, n_kv_heads, head_dim: u32, max_ctx, window, softcap| DecodeAttention {
        n_heads,
        n_kv_heads,
        head_dim,
        max_ctx,
        scale: 1.0 / (head_dim as f32).sqrt(),
        window,
        softcap,
        m: 1,
    };
    let attns = [
        // llama3-8b (shorter cache); qwen2.5 (chunk 128); group 7, window 1, soft-cap 50;
        // head_dim 80 with a window.
        attn(32, 8, 128, 4096, None, None),
        attn(14, 2, 64, 1024, None, None),
        attn(7, 1, 128, 257, Some(1), Some(50.0)),
        attn(10, 2, 80, 2048, Some(100), None),
    ];
    let mut all = vec![
        // Every table type; a partial block (F16 of 33: guarded chunk), a scale.
        embed(Q4K, 128256, 4096, 1.0),
        embed(Q6K, 3, 768, 2.5),
        embed(Q8_0, 262144, 640, 640f32.sqrt()),
        embed(F16, 5, 33, 1.0),
        embed(F32, 2, 6, 0.5),
        // A ragged last block (float4), odd vocabs (scalar loads), one partial.
        argmax(128256, ArgmaxStage::Partial),
        argmax(2049, ArgmaxStage::Partial),
        argmax(31, ArgmaxStage::Partial),
        argmax(128256, ArgmaxStage::Final),
        argmax(151936, ArgmaxStage::Final),
        argmax(2049, ArgmaxStage::Final),
        // llama3-8b; qwen (neox); partial rotary with a partial block.
        rope(RopeStyle::Norm, 32, 8, 128, 128, 8192),
        rope(RopeStyle::Neox, 14, 2, 64, 64, 4096),
        rope(RopeStyle::Norm, 5, 5, 80, 34, 257),
    ];
    all.extend(attns.iter().map(|a| KernelSpec::Attention(*a)));
    all.extend(
        attns
            .iter()
            .map(|a| KernelSpec::AttentionCombine(a.combine())),
    );
    all
}

fn kernel(spec: &KernelSpec) -> GeneratedKernel {
    generate(spec, Target::dp4a_default())
        .unwrap_or_else(|e| panic!("{} generates: {e}", spec.name()))
}

fn axis_of(decl: &BatchDecl) -> usize {
    match &decl.index {
        VectorIndex::Grid { axis } => axis.index(),
        other => panic!("not a grid claim: {other:?}"),
    }
}

fn ctaid(axis: usize) -> &'static str {
    ["%ctaid.x", "%ctaid.y", "%ctaid.z"][axis]
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
        let mut axis = None;
        for m in 2..=16 {
            let bspec = with_m(&spec, m);
            let batched = kernel(&bspec);
            assert_eq!(batched.name, format!("{}_m{m}", single.name));
            let decl = bspec.batch_decl().expect("batched spec makes a claim");
            assert_eq!(decl.m, m);
            let ax = axis_of(&decl);
            axis = Some(ax);
            assert!(
                !single.ptx.contains(ctaid(ax)),
                "{}: the single kernel reads {}",
                single.name,
                ctaid(ax)
            );
            assert!(batched.ptx.contains(ctaid(ax)), "{}", batched.name);
            for a in 0..3 {
                let want = if a == ax {
                    Extent::Const(m)
                } else {
                    single.launch.grid[a]
                };
                assert_eq!(batched.launch.grid[a], want, "{} axis {a}", batched.name);
            }
            assert_eq!(batched.launch.block, single.launch.block);
            let r = validate_generated(&single, &batched, &decl);
            assert!(r.passed(), "{}:\n{r}", batched.name);
            assert!(r.outputs > 0 && r.slices_compared >= r.outputs, "{r}");
        }
        assert!(axis.is_some());
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
    let s = KernelSpec::from_cli("embed", &dims("Q4_K 128256 4096 1 4")).unwrap();
    assert_eq!(s.name(), "embed_q4k_v128256_h4096_m4");
    let s = KernelSpec::from_cli("argmax", &dims("151936 final 16")).unwrap();
    assert_eq!(s.name(), "argmax_final_v151936_m16");
    let s = KernelSpec::from_cli("rope_kv", &dims("norm 32 8 128 128 8192 2")).unwrap();
    assert_eq!(s.name(), "rope_kv_norm_h32_kv8_d128_r128_ctx8192_m2");
    let s = KernelSpec::from_cli("attention", &dims("32 8 128 4096 0.08838835 0 0 3")).unwrap();
    assert!(s.name().ends_with("_m3"), "{}", s.name());
    let s = KernelSpec::from_cli("attention_combine", &dims("32 128 4096 256 0 3")).unwrap();
    assert_eq!(s.name(), "attn_combine_h32_d128_ctx4096_c256_m3");
    // The combine of a batched split kernel is batched the same way.
    for spec in cases() {
        if let KernelSpec::Attention(a) = spec {
            let b = DecodeAttention { m: 5, ..a };
            assert_eq!(
                b.combine(),
                AttentionCombine {
                    m: 5,
                    ..a.combine()
                }
            );
        }
    }
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

/// The batched PTX with the first `mad.wide.u32` by `stride` rewritten by `edit`.
fn edit_offset(
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
    GeneratedKernel {
        ptx: out.join("\n") + "\n",
        ..batched.clone()
    }
}

#[test]
fn every_family_catches_its_mutations() {
    let mut seen = std::collections::BTreeSet::new();
    let mut mutants = 0;
    for spec in cases() {
        let fam = match &spec {
            KernelSpec::Argmax(a) => format!("argmax_{}", a.stage),
            s => s.family().to_string(),
        };
        if !seen.insert(fam) {
            continue;
        }
        let m = 3;
        let p = pair(&spec, m);
        let name = p.batched.name.clone();
        let axis = axis_of(&p.decl);
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
        let any = [CheckKind::Params, CheckKind::Dataflow, CheckKind::Outputs];

        // 1. Every per-vector stride claim off by 4 bytes (either way) is caught; 2. every
        //    per-vector buffer claimed shared is caught.
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
                    &any,
                );
                mutants += 1;
            }
            let d = with_role(&p.decl, param, ParamRole::Shared);
            let r = validate_generated(&p.single, &p.batched, &d);
            assert_caught(
                &format!("{name}: per-vector {param} claimed shared"),
                &r,
                &any,
            );
            mutants += 1;
        }
        // 3. A shared table claimed per-vector.
        for param in &shared {
            let d = with_role(
                &p.decl,
                param,
                ParamRole::PerVector {
                    stride_bytes: per_vector[0].1,
                },
            );
            let r = validate_generated(&p.single, &p.batched, &d);
            assert_caught(
                &format!("{name}: shared {param} claimed per-vector"),
                &r,
                &any,
            );
            mutants += 1;
        }
        // 4. The PTX offsets the per-vector buffer of the largest stride 4 bytes short.
        let (param, stride) = per_vector.iter().max_by_key(|(_, s)| *s).unwrap();
        let short = edit_offset(&p.batched, *stride, |l| {
            l.replace(&format!(", {stride}, "), &format!(", {}, ", stride - 4))
        });
        let r = validate_generated(&p.single, &short, &p.decl);
        assert_caught(
            &format!("{name}: PTX offsets {param} by ctaid * {}", stride - 4),
            &r,
            &[CheckKind::Dataflow, CheckKind::Outputs],
        );
        // 5. The PTX drops that per-vector offset.
        let dropped = edit_offset(&p.batched, *stride, |l| {
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
        // 6. A grid one vector short.
        let mut short_grid = p.batched.clone();
        short_grid.launch.grid[axis] = Extent::Const(m - 1);
        let r = validate_generated(&p.single, &short_grid, &p.decl);
        assert_caught(&format!("{name}: grid = M - 1"), &r, &[CheckKind::Launch]);
        // 7. A claim for a different M than the kernel's grid.
        let mut other_m = p.decl.clone();
        other_m.m = m + 1;
        let r = validate_generated(&p.single, &p.batched, &other_m);
        assert!(!r.passed(), "{name}: claim of M + 1 passed:\n{r}");
        mutants += 4;
    }
    assert_eq!(
        seen.len(),
        6,
        "embed, argmax partial + final, rope_kv, attention split + combine: {seen:?}"
    );
    assert!(mutants >= 60, "{mutants}");
}
