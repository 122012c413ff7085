//! How long structural parity takes on a real model's kernel set: the batched GEMVs of
//! llama3-8b (Q4_K_M: Q4_K, with Q6_K for some attn_v/ffn_down layers and the LM head),
//! each against its single twin. Prints the times (run in release with `--nocapture`);
//! asserts only that every pair passes, never a time.

use std::time::{Duration, Instant};

use ptx_gen::kernels::{Gemv, WeightType, Q8_1_BLOCK_BYTES, Q8_1_BLOCK_VALUES};
use ptx_gen::parity::{validate_pair, validate_pairs, BatchDecl, KernelSource, PairInput};
use ptx_gen::{generate, GeneratedKernel, KernelSpec, Target};

/// (weight, rows, columns, residual): the distinct GEMVs of a llama3-8b decode step.
const LLAMA3_8B: [(WeightType, u32, u32, bool); 8] = [
    (WeightType::Q4K, 4096, 4096, false),   // attn_q
    (WeightType::Q4K, 1024, 4096, false),   // attn_k, attn_v
    (WeightType::Q6K, 1024, 4096, false),   // attn_v (Q6_K layers)
    (WeightType::Q4K, 4096, 4096, true),    // attn_output + residual
    (WeightType::Q4K, 14336, 4096, false),  // ffn_gate, ffn_up
    (WeightType::Q4K, 4096, 14336, true),   // ffn_down + residual
    (WeightType::Q6K, 4096, 14336, true),   // ffn_down (Q6_K layers) + residual
    (WeightType::Q6K, 128256, 4096, false), // output
];

fn kernel(spec: Gemv) -> GeneratedKernel {
    generate(&KernelSpec::Gemv(spec), Target::dp4a_default()).expect("generates")
}

fn decl(g: &Gemv) -> BatchDecl {
    let x = g.k / Q8_1_BLOCK_VALUES * Q8_1_BLOCK_BYTES;
    let mut d = BatchDecl::unrolled(g.m)
        .shared("w")
        .per_vector("x", u64::from(x));
    if g.residual {
        d = d.per_vector("residual", u64::from(g.n) * 4);
    }
    if g.tile().split > 1 {
        d = d.shared_per_vector("gemv_partial");
    }
    d.per_vector("y", u64::from(g.n) * 4)
}

struct Set {
    singles: Vec<GeneratedKernel>,
    batched: Vec<GeneratedKernel>,
    decls: Vec<BatchDecl>,
}

fn set(m: u32) -> Set {
    let mut s = Set {
        singles: Vec::new(),
        batched: Vec::new(),
        decls: Vec::new(),
    };
    for (weight, n, k, residual) in LLAMA3_8B {
        let spec = Gemv {
            weight,
            n,
            k,
            bias: false,
            residual,
            m,
            more_rows: [0, 0],
            rope: None,
            prologue: None,
            tile: None,
        };
        // The single kernel with the batch's tile (its parity twin where they differ).
        s.singles.push(kernel(Gemv {
            m: 1,
            tile: Some(spec.tile()),
            ..spec
        }));
        s.batched.push(kernel(spec));
        s.decls.push(decl(&spec));
    }
    s
}

/// The best of `runs` timings of `f` (the machine is shared; the minimum is the cost).
fn best(runs: usize, mut f: impl FnMut()) -> Duration {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

#[test]
fn llama3_8b_gemv_set_validation_time() {
    for m in [4u32, 8, 16] {
        let s = set(m);
        let bytes: usize = s
            .batched
            .iter()
            .chain(&s.singles)
            .map(|k| k.ptx.len())
            .sum();
        let pairs: Vec<PairInput<'_>> = (0..s.decls.len())
            .map(|i| PairInput {
                single: (&s.singles[i]).into(),
                batched: (&s.batched[i]).into(),
                decl: &s.decls[i],
            })
            .collect();
        let report = validate_pairs(&pairs);
        assert!(report.passed(), "{report}");

        let parallel = best(5, || assert!(validate_pairs(&pairs).passed()));
        let sequential = best(5, || {
            for p in &pairs {
                assert!(validate_pair(p.single, p.batched, p.decl).passed());
            }
        });
        // What a caller that already parsed the modules (for the static checks) pays.
        let parsed: Vec<(ptx_gen::ast::Module, ptx_gen::ast::Module)> = (0..pairs.len())
            .map(|i| {
                let p = |k: &GeneratedKernel| ptx_gen::parse::parse_module(&k.ptx).expect("parses");
                (p(&s.singles[i]), p(&s.batched[i]))
            })
            .collect();
        let pre: Vec<PairInput<'_>> = (0..pairs.len())
            .map(|i| PairInput {
                single: KernelSource::parsed(&s.singles[i].name, &parsed[i].0),
                batched: KernelSource::parsed(&s.batched[i].name, &parsed[i].1),
                decl: &s.decls[i],
            })
            .collect();
        let preparsed = best(5, || assert!(validate_pairs(&pre).passed()));
        let instructions: usize = parsed.iter().map(|(a, b)| count(a) + count(b)).sum();
        println!(
            "llama3-8b GEMV set, M = {m:2}: {} pairs, {:.1} MB PTX, {instructions} instructions: \
             {:.1} ms on all cores, {:.1} ms on one, {:.1} ms from parsed modules (all cores)",
            pairs.len(),
            bytes as f64 / 1e6,
            ms(parallel),
            ms(sequential),
            ms(preparsed),
        );
    }
}

fn count(m: &ptx_gen::ast::Module) -> usize {
    m.entries().map(|f| f.instructions().len()).sum()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
