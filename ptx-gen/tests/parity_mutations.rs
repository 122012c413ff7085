//! Mutation tests of structural parity (`ptx_gen::parity`).
//!
//! Real generated GEMV pairs (single m = 1, batched m > 1, from the same generator) are
//! mutated the way a generator bug would change them — one instruction dropped or
//! duplicated, an immediate, modifier or type changed, operands swapped, the reduction
//! reordered, a bounds check lost, a vector's output missing or misplaced — and each
//! mutant must fail with the right check, naming the right instruction and vector. Every
//! real pair must pass. A small hand-written pair batched over `%ctaid.y` (with a table of
//! per-vector scalars, a runtime loop and a shared-memory reduction) shows that style too.

use ptx_gen::kernels::{q8_1_vector_bytes, Gemv, WeightType};
use ptx_gen::launch::LaunchSpec;
use ptx_gen::parity::{
    validate_pair, BatchDecl, CheckKind, CheckStatus, GridAxis, KernelSource, PairReport,
};
use ptx_gen::{generate, GeneratedKernel, KernelSpec, Target};

// ---- pairs ----------------------------------------------------------------------------

struct Pair {
    spec: Gemv,
    single: GeneratedKernel,
    batched: GeneratedKernel,
    decl: BatchDecl,
}

fn kernel(spec: Gemv) -> GeneratedKernel {
    generate(&KernelSpec::Gemv(spec), Target::dp4a_default()).expect("generates")
}

fn x_bytes(g: &Gemv) -> u32 {
    q8_1_vector_bytes(g.k)
}

/// The claim the GEMV generator makes about its batched kernel.
fn gemv_decl(g: &Gemv) -> BatchDecl {
    let mut d = BatchDecl::unrolled(g.m)
        .shared("w")
        .per_vector("x", u64::from(x_bytes(g)));
    if g.bias {
        d = d.shared("bias");
    }
    if g.residual {
        d = d.per_vector("residual", u64::from(g.n) * 4);
    }
    // A row's split warps add their sums in shared memory: one copy of the slots per vector.
    if g.tile().split > 1 {
        d = d.shared_per_vector("gemv_partial");
    }
    d.per_vector("y", u64::from(g.n) * 4)
}

fn pair(weight: WeightType, n: u32, blocks: u32, bias: bool, residual: bool, m: u32) -> Pair {
    let spec = Gemv {
        weight,
        n,
        k: blocks * weight.block_values(),
        bias,
        residual,
        m,
        more_rows: [0, 0],
        rope: None,
        prologue: None,
        tile: None,
    };
    Pair {
        spec,
        single: kernel(Gemv { m: 1, ..spec }),
        batched: kernel(spec),
        decl: gemv_decl(&spec),
    }
}

/// Q4_K: 6 rows, not a multiple of the block's 8 (2 rows per warp, 4 warps: row bound), 5
/// blocks in passes of 4 (one full pass, then the tail guard), bias and residual.
fn q4k() -> Pair {
    pair(WeightType::Q4K, 6, 5, true, true, 3)
}

fn q6k() -> Pair {
    pair(WeightType::Q6K, 8, 2, false, false, 4)
}

/// Q8_0: 9 blocks in passes of 8 (tail), residual only.
fn q8_0() -> Pair {
    pair(WeightType::Q8_0, 10, 9, false, true, 2)
}

fn q4_1() -> Pair {
    pair(WeightType::Q4_1, 5, 3, true, false, 5)
}

fn q5_0() -> Pair {
    pair(WeightType::Q5_0, 7, 5, true, true, 16)
}

// ---- editing PTX ----------------------------------------------------------------------

/// PTX as editable lines.
struct Text {
    lines: Vec<String>,
}

impl Text {
    fn new(ptx: &str) -> Text {
        Text {
            lines: ptx.lines().map(str::to_string).collect(),
        }
    }

    fn finish(&self) -> String {
        let mut s = self.lines.join("\n");
        s.push('\n');
        s
    }

    fn at(&self, k: usize) -> &str {
        self.lines[k].trim()
    }

    /// The first line at or after `from` whose text satisfies `f`.
    fn find(&self, from: usize, f: impl Fn(&str) -> bool) -> usize {
        (from..self.lines.len())
            .find(|&k| f(self.at(k)))
            .unwrap_or_else(|| panic!("no such line after {from}:\n{}", self.finish()))
    }

    fn find_all(&self, f: impl Fn(&str) -> bool) -> Vec<usize> {
        (0..self.lines.len()).filter(|&k| f(self.at(k))).collect()
    }

    fn set(&mut self, k: usize, text: &str) {
        let indent: String = self.lines[k]
            .chars()
            .take_while(|c| c.is_whitespace())
            .collect();
        self.lines[k] = format!("{indent}{text}");
    }

    fn replace(&mut self, k: usize, from: &str, to: &str) {
        let t = self.at(k).to_string();
        assert!(t.contains(from), "`{from}` not in `{t}`");
        self.set(k, &t.replacen(from, to, 1));
    }

    fn delete(&mut self, k: usize) -> String {
        self.lines.remove(k).trim().to_string()
    }

    fn insert(&mut self, k: usize, text: &str) {
        self.lines.insert(k, format!("\t{text}"));
    }

    /// Operands of the instruction on line `k` (without the opcode and `;`).
    fn operands(&self, k: usize) -> Vec<String> {
        let t = self.at(k).trim_end_matches(';');
        let rest = t.split_once(' ').map_or("", |(_, r)| r);
        rest.split(", ").map(str::to_string).collect()
    }

    fn opcode(&self, k: usize) -> String {
        self.at(k).split(' ').next().unwrap_or("").to_string()
    }
}

/// Where things are in a generated GEMV.
struct Layout<'p> {
    p: &'p Pair,
    m: u32,
}

impl Layout<'_> {
    /// The accumulators of the vectors' first rows, in order (they are made vector by
    /// vector, `tile.rows` per vector).
    fn accs(&self, t: &Text) -> Vec<String> {
        let rows = self.p.spec.tile().rows as usize;
        let k = t.find_all(|l| l.starts_with("mov.f32 %f") && l.ends_with(", 0f00000000;"));
        k.iter()
            .step_by(rows)
            .take(self.m as usize)
            .map(|&k| t.operands(k)[0].clone())
            .collect()
    }

    /// The register holding the quants of this lane's first Q8_1 block of `x`.
    fn x_lane(&self, t: &Text) -> String {
        let ld = t.find(0, |l| l.ends_with("[x];"));
        let x = t.operands(t.find(ld, |l| l.starts_with("cvta.to.global.u64")))[0].clone();
        let lane = t.find(ld, |l| {
            l.starts_with("mad.wide.u32") && l.ends_with(&format!(", {x};"))
        });
        t.operands(lane)[0].clone()
    }

    /// Lines `[start, end]` of vector `v`'s dot product in pass `pass`: from the add of
    /// the lane's offset to its x quants (one per vector and pass, in that order; the
    /// vector's and pass's offsets are in the loads' addresses) to its accumulate.
    fn region(&self, t: &Text, v: u32, pass: u32) -> (usize, usize) {
        let lane = self.x_lane(t);
        let adds = t.find_all(|l| l.starts_with("add.u64") && l.contains(&format!(", {lane}, ")));
        let start = adds[(pass * self.p.spec.m + v) as usize];
        let acc = self.accs(t)[v as usize].clone();
        let end = t.find(start, |l| {
            l.starts_with(&format!("add.rn.f32 {acc}, {acc}, "))
        });
        (start, end)
    }

    /// The first line of vector `v`'s pass-0 region satisfying `f`.
    fn in_region(&self, t: &Text, v: u32, f: impl Fn(&str) -> bool) -> usize {
        let (s, e) = self.region(t, v, 0);
        let k = t.find(s, f);
        assert!(k <= e, "not in vector {v}'s region");
        k
    }

    /// The five shuffles of vector `v`'s butterfly.
    fn shuffles(&self, t: &Text, v: u32) -> Vec<usize> {
        let acc = self.accs(t)[v as usize].clone();
        let first = t.find(0, |l| {
            l.starts_with("shfl.sync.bfly.b32") && l.contains(&format!(", {acc}, 16,"))
        });
        let mut out = vec![first];
        while out.len() < 5 {
            let k = t.find(out[out.len() - 1] + 1, |l| l.starts_with("shfl."));
            out.push(k);
        }
        out
    }

    fn stores(&self, t: &Text) -> Vec<usize> {
        t.find_all(|l| l.starts_with("st.global.f32"))
    }
}

// ---- running --------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum Which {
    Single,
    Batched,
}

fn sources<'a>(
    p: &'a Pair,
    single: &'a str,
    batched: &'a str,
) -> (KernelSource<'a>, KernelSource<'a>) {
    let s = KernelSource::text(&p.single.name, single)
        .with_launch(&p.single.launch)
        .with_params(&p.single.params);
    let b = KernelSource::text(&p.batched.name, batched)
        .with_launch(&p.batched.launch)
        .with_params(&p.batched.params);
    (s, b)
}

/// Mutates one kernel of `p` with `edit` and validates.
fn mutate(p: &Pair, which: Which, edit: impl FnOnce(&mut Text, &Layout<'_>)) -> PairReport {
    let base = if which == Which::Batched {
        &p.batched
    } else {
        &p.single
    };
    let mut t = Text::new(&base.ptx);
    let layout = Layout {
        p,
        m: if which == Which::Batched { p.spec.m } else { 1 },
    };
    edit(&mut t, &layout);
    let mutated = t.finish();
    assert_ne!(mutated, base.ptx, "the mutation changed nothing");
    let (s, b) = match which {
        Which::Batched => (p.single.ptx.as_str(), mutated.as_str()),
        Which::Single => (mutated.as_str(), p.batched.ptx.as_str()),
    };
    let (s, b) = sources(p, s, b);
    validate_pair(s, b, &p.decl)
}

/// Asserts that `r` failed `kind` with a finding that names `needle` (in its message or
/// either instruction) and, when given, exactly `vectors`.
fn expect(name: &str, r: &PairReport, kind: CheckKind, vectors: Option<&[u32]>, needle: &str) {
    assert!(!r.passed(), "{name}: the mutant passed\n{r}");
    let check = r.check(kind).expect("every check is reported");
    assert_eq!(
        check.status,
        CheckStatus::Fail,
        "{name}: expected `{kind}` to fail\n{r}"
    );
    let hit = check.findings.iter().find(|f| {
        let texts = [
            Some(&f.message),
            f.single.as_ref(),
            f.batched.as_ref(),
            f.output.as_ref(),
        ];
        texts.iter().flatten().any(|t| t.contains(needle)) && vectors.is_none_or(|v| f.vectors == v)
    });
    match hit {
        Some(f) => println!("{name}: {f}"),
        None => {
            panic!("{name}: no `{kind}` finding naming `{needle}` for vectors {vectors:?}\n{r}")
        }
    }
}

fn all(m: u32) -> Vec<u32> {
    (0..m).collect()
}

// ---- every real pair passes -----------------------------------------------------------

#[test]
fn every_real_gemv_pair_passes() {
    let mut checked = 0;
    for weight in WeightType::ALL {
        // Rows with and without the row bound, block counts with and without a tail pass.
        let shapes = [(6, 3), (8, 4)];
        for (n, blocks) in shapes {
            for (bias, residual) in [(false, false), (true, false), (false, true), (true, true)] {
                let single = kernel(Gemv {
                    weight,
                    n,
                    k: blocks * weight.block_values(),
                    bias,
                    residual,
                    m: 1,
                    more_rows: [0, 0],
                    rope: None,
                    prologue: None,
                    tile: None,
                });
                for m in 2..=16 {
                    let spec = Gemv {
                        weight,
                        n,
                        k: blocks * weight.block_values(),
                        bias,
                        residual,
                        m,
                        more_rows: [0, 0],
                        rope: None,
                        prologue: None,
                        tile: None,
                    };
                    let batched = kernel(spec);
                    let r = validate_pair((&single).into(), (&batched).into(), &gemv_decl(&spec));
                    assert!(r.passed(), "{r}");
                    assert_eq!(r.slices_compared, m as usize * r.outputs);
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 5 * 2 * 4 * 15);
}

#[test]
fn reference_shaped_pairs_pass() {
    for weight in WeightType::ALL {
        for (n, k) in [(896, 4864), (4864, 896), (1000, 7 * 256)] {
            if k % weight.block_values() != 0 {
                continue;
            }
            let spec = Gemv {
                weight,
                n,
                k,
                bias: true,
                residual: true,
                m: 8,
                more_rows: [0, 0],
                rope: None,
                prologue: None,
                tile: None,
            };
            // The single kernel with the batch's tile: its parity twin where the batch takes
            // more rows per group.
            let twin = Gemv {
                m: 1,
                tile: Some(spec.tile()),
                ..spec
            };
            let r = validate_pair(
                (&kernel(twin)).into(),
                (&kernel(spec)).into(),
                &gemv_decl(&spec),
            );
            assert!(r.passed(), "{r}");
        }
    }
}

#[test]
fn the_report_names_the_pair_and_every_check() {
    let p = q4k();
    let r = validate_pair((&p.single).into(), (&p.batched).into(), &p.decl);
    assert!(r.passed(), "{r}");
    assert_eq!(r.single, p.single.name);
    assert_eq!(r.batched, p.batched.name);
    assert_eq!(r.m, 3);
    let kinds: Vec<CheckKind> = r.checks.iter().map(|c| c.check).collect();
    assert_eq!(kinds, CheckKind::ALL.to_vec());
    assert_eq!(
        r.check(CheckKind::Launch).map(|c| c.status),
        Some(CheckStatus::Pass)
    );
    // Without launch specs the launch check is skipped, not passed silently.
    let r = validate_pair(
        KernelSource::text(&p.single.name, &p.single.ptx),
        KernelSource::text(&p.batched.name, &p.batched.ptx),
        &p.decl,
    );
    assert!(r.passed());
    assert_eq!(
        r.check(CheckKind::Launch).map(|c| c.status),
        Some(CheckStatus::Skipped)
    );
}

// ---- dataflow: operations, types, modifiers, immediates --------------------------------

#[test]
fn m01_drop_a_dp4a() {
    let p = q4k();
    let mut dropped = String::new();
    let r = mutate(&p, Which::Batched, |t, l| {
        let k = l.in_region(t, 1, |s| s.starts_with("dp4a.s32.s32"));
        dropped = t.delete(k);
    });
    expect(
        "drop vector 1's first dp4a",
        &r,
        CheckKind::Dataflow,
        Some(&[1]),
        "dp4a.s32.s32",
    );
    assert!(
        r.findings().any(|f| f
            .batched
            .as_deref()
            .is_some_and(|b| b.contains("read before any write"))),
        "{r}"
    );
}

#[test]
fn m02_duplicate_a_dp4a() {
    let p = q4k();
    let r = mutate(&p, Which::Batched, |t, l| {
        // The second dp4a of the chain accumulates into its own result once more.
        let first = l.in_region(t, 2, |s| s.starts_with("dp4a.s32.s32"));
        let k = t.find(first + 1, |s| s.starts_with("dp4a.s32.s32"));
        let ops = t.operands(k);
        t.insert(
            k + 1,
            &format!(
                "dp4a.s32.s32 {d}, {a}, {b}, {d};",
                d = ops[0],
                a = ops[1],
                b = ops[2]
            ),
        );
    });
    expect(
        "duplicate vector 2's accumulating dp4a",
        &r,
        CheckKind::Dataflow,
        Some(&[2]),
        "dp4a.s32.s32",
    );
}

#[test]
fn m03_drop_an_accumulate() {
    let p = q4k();
    let r = mutate(&p, Which::Batched, |t, l| {
        let (_, end) = l.region(t, 0, 0);
        t.delete(end);
    });
    expect(
        "drop vector 0's pass-0 accumulate",
        &r,
        CheckKind::Dataflow,
        Some(&[0]),
        "add.rn.f32",
    );
}

#[test]
fn m04_duplicate_an_accumulate() {
    let p = q6k();
    let r = mutate(&p, Which::Batched, |t, l| {
        let (_, end) = l.region(t, 3, 0);
        let line = t.at(end).to_string();
        t.insert(end + 1, &line);
    });
    expect(
        "duplicate vector 3's accumulate",
        &r,
        CheckKind::Dataflow,
        Some(&[3]),
        "add.rn.f32",
    );
}

#[test]
fn m05_swap_operands_of_sub() {
    let p = q4k();
    let r = mutate(&p, Which::Batched, |t, l| {
        let k = l.in_region(t, 1, |s| s.starts_with("sub.rn.f32"));
        let o = t.operands(k);
        t.set(k, &format!("sub.rn.f32 {}, {}, {};", o[0], o[2], o[1]));
    });
    expect(
        "swap the operands of vector 1's sub.rn.f32",
        &r,
        CheckKind::Dataflow,
        Some(&[1]),
        "sub.rn.f32",
    );
}

#[test]
fn m06_swap_operands_of_selp() {
    let p = q4k();
    let r = mutate(&p, Which::Batched, |t, _| {
        // The scale selection belongs to the weight part, shared by every vector: the
        // first selp after the block's loads picks the scale word of sub-blocks 2c, 2c + 1.
        let ld = t.find(0, |s| s.starts_with("ld.global.nc.v4.b32"));
        let k = t.find(ld, |s| s.starts_with("selp.b32"));
        let o = t.operands(k);
        t.set(
            k,
            &format!("selp.b32 {}, {}, {}, {};", o[0], o[2], o[1], o[3]),
        );
    });
    expect(
        "swap the operands of the weight scale's selp",
        &r,
        CheckKind::Dataflow,
        Some(&all(3)),
        "selp.b32",
    );
}

#[test]
fn m07_change_the_row_stride() {
    let p = q4k();
    let row_bytes = 5 * WeightType::Q4K.block_bytes();
    let mut changed = String::new();
    let r = mutate(&p, Which::Batched, |t, _| {
        let k = t.find(0, |s| {
            s.starts_with("mad.wide.u32") && s.contains(&format!(", {row_bytes}, "))
        });
        t.replace(
            k,
            &format!(", {row_bytes}, "),
            &format!(", {}, ", row_bytes + 16),
        );
        changed = t.at(k).to_string();
    });
    expect(
        "change the weight row stride",
        &r,
        CheckKind::Dataflow,
        Some(&all(3)),
        &changed,
    );
}

#[test]
fn m08_change_a_rounding_mode() {
    let p = q4k();
    let r = mutate(&p, Which::Batched, |t, l| {
        let k = l.in_region(t, 1, |s| s.starts_with("mul.rn.f32"));
        t.replace(k, "mul.rn.f32", "mul.rz.f32");
    });
    expect(
        "mul.rn -> mul.rz in vector 1",
        &r,
        CheckKind::Dataflow,
        Some(&[1]),
        "mul.rz.f32",
    );
}

#[test]
fn m09_change_a_conversion_type() {
    let p = q4k();
    let r = mutate(&p, Which::Batched, |t, l| {
        let k = l.in_region(t, 2, |s| s.starts_with("cvt.rn.f32.s32"));
        t.replace(k, "cvt.rn.f32.s32", "cvt.rn.f32.u32");
    });
    expect(
        "cvt .s32 -> .u32 in vector 2",
        &r,
        CheckKind::Dataflow,
        Some(&[2]),
        "cvt.rn.f32.u32",
    );
}

#[test]
fn m10_change_a_dp4a_type() {
    let p = q8_0();
    let r = mutate(&p, Which::Batched, |t, l| {
        let k = l.in_region(t, 0, |s| s.starts_with("dp4a.s32.s32"));
        t.replace(k, "dp4a.s32.s32", "dp4a.u32.s32");
    });
    expect(
        "dp4a .s32 -> .u32 in vector 0",
        &r,
        CheckKind::Dataflow,
        Some(&[0]),
        "dp4a.u32.s32",
    );
}

#[test]
fn m11_change_a_decode_mask() {
    let p = q4k();
    let r = mutate(&p, Which::Batched, |t, _| {
        let k = t.find(0, |s| {
            s.starts_with("and.b32") && s.ends_with(", 0xf0f0f0f;")
        });
        t.replace(k, "0xf0f0f0f", "0xf0f0f0e");
    });
    expect(
        "nibble mask 0x0f0f0f0f -> 0x0f0f0f0e",
        &r,
        CheckKind::Dataflow,
        Some(&all(3)),
        "immediate 252645135",
    );
}

#[test]
fn m12_change_a_float_scale() {
    let p = q5_0();
    let r = mutate(&p, Which::Batched, |t, l| {
        // Q5_0's `sx * 16.0` (the -16 offset of 5-bit values).
        let k = l.in_region(t, 9, |s| {
            s.starts_with("mul.rn.f32") && s.ends_with(", 0f41800000;")
        });
        t.replace(k, "0f41800000", "0f41700000");
    });
    expect(
        "scale 16.0 -> 15.0 in vector 9",
        &r,
        CheckKind::Dataflow,
        Some(&[9]),
        "0f41800000",
    );
}

#[test]
fn m13_change_a_cache_modifier() {
    let p = q8_0();
    let r = mutate(&p, Which::Batched, |t, l| {
        let k = l.in_region(t, 1, |s| s.starts_with("ld.global.nc.v2.b32"));
        t.replace(k, "ld.global.nc.v2.b32", "ld.global.v2.b32");
    });
    expect(
        "ld.global.nc -> ld.global for vector 1's x",
        &r,
        CheckKind::Dataflow,
        Some(&[1]),
        "ld.global.v2.b32",
    );
}

#[test]
fn m14_vector_1_reads_vector_0s_x() {
    let p = q4k();
    let xb = x_bytes(&p.spec);
    let r = mutate(&p, Which::Batched, |t, l| {
        // Vector 1's first load of its quants: the vector's offset is in the address.
        let k = l.in_region(t, 1, |s| s.starts_with("ld.global.nc.v4.b32"));
        t.replace(k, &format!("+{xb}];"), "];");
    });
    expect(
        "vector 1 uses vector 0's x offset",
        &r,
        CheckKind::Dataflow,
        Some(&[1]),
        &format!("addresses `x` at offset 0 for vector 1; expected {xb}"),
    );
}

#[test]
fn m15_residual_of_the_wrong_vector() {
    let p = q4k();
    let r = mutate(&p, Which::Batched, |t, _| {
        let k = t.find_all(|s| s.starts_with("ld.global.f32"))[2];
        t.replace(k, "+48]", "]");
    });
    expect(
        "vector 2 adds vector 0's residual",
        &r,
        CheckKind::Dataflow,
        Some(&[2]),
        "addresses `residual` at offset 0 for vector 2; expected 48",
    );
}

#[test]
fn m16_shared_bias_read_per_vector() {
    let p = q4_1();
    let r = mutate(&p, Which::Batched, |t, _| {
        let k = t.find(0, |s| s.starts_with("ld.global.nc.f32"));
        t.replace(k, "];", "+4];");
    });
    expect(
        "the shared bias read at an offset",
        &r,
        CheckKind::Dataflow,
        Some(&all(5)),
        "addresses `bias` at offset 4; expected 0",
    );
}

#[test]
fn m17_accumulator_starts_at_one() {
    let p = q6k();
    let r = mutate(&p, Which::Batched, |t, l| {
        let acc = l.accs(t)[2].clone();
        let k = t.find(0, |s| s == format!("mov.f32 {acc}, 0f00000000;"));
        t.replace(k, "0f00000000", "0f3F800000");
    });
    expect(
        "vector 2's accumulator starts at 1.0",
        &r,
        CheckKind::Dataflow,
        Some(&[2]),
        "0f3F800000",
    );
}

#[test]
fn m18_mutated_single_kernel() {
    let p = q6k();
    let r = mutate(&p, Which::Single, |t, _| {
        let k = t.find(0, |s| s.starts_with("mul.rn.f32"));
        t.replace(k, "mul.rn.f32", "mul.rm.f32");
    });
    expect(
        "a rounding mode changed in the single kernel",
        &r,
        CheckKind::Dataflow,
        Some(&[0]),
        "mul.rm.f32",
    );
}

// ---- reductions -----------------------------------------------------------------------

#[test]
fn m19_change_a_shuffle_lane_mask() {
    let p = q4k();
    let r = mutate(&p, Which::Batched, |t, l| {
        let k = l.shuffles(t, 1)[0];
        t.replace(k, ", 16, 31,", ", 8, 31,");
    });
    expect(
        "vector 1's first shuffle uses lane mask 8",
        &r,
        CheckKind::Reduction,
        Some(&[1]),
        "shfl.sync.bfly.b32",
    );
}

#[test]
fn m20_reverse_the_shuffle_order() {
    let p = q4k();
    let r = mutate(&p, Which::Batched, |t, l| {
        let ks = l.shuffles(t, 0);
        for (k, (from, to)) in ks.iter().zip([(16, 1), (8, 2), (4, 4), (2, 8), (1, 16)]) {
            t.replace(*k, &format!(", {from}, 31,"), &format!(", {to}, 31,"));
        }
    });
    expect(
        "vector 0's butterfly runs 1, 2, 4, 8, 16",
        &r,
        CheckKind::Reduction,
        Some(&[0]),
        "immediate 16",
    );
}

#[test]
fn m21_change_the_shuffle_mode() {
    let p = q6k();
    let r = mutate(&p, Which::Batched, |t, l| {
        let k = l.shuffles(t, 2)[2];
        t.replace(k, "shfl.sync.bfly.b32", "shfl.sync.down.b32");
    });
    expect(
        "vector 2's third shuffle is shfl.down",
        &r,
        CheckKind::Reduction,
        Some(&[2]),
        "shfl.sync.down.b32",
    );
}

#[test]
fn m22_change_the_butterfly_combine() {
    let p = q8_0();
    let r = mutate(&p, Which::Batched, |t, l| {
        let k = l.shuffles(t, 1)[3] + 1;
        assert_eq!(t.opcode(k), "add.f32");
        t.replace(k, "add.f32", "max.f32");
    });
    expect(
        "vector 1's butterfly combines with max",
        &r,
        CheckKind::Reduction,
        Some(&[1]),
        "max.f32",
    );
}

#[test]
fn m23_drop_a_shuffle_step() {
    let p = q5_0();
    let r = mutate(&p, Which::Batched, |t, l| {
        // Drop the lane-mask-4 step (shuffle and add); the next step reads the value before.
        let ks = l.shuffles(t, 12);
        let before = t.operands(ks[2])[1].clone();
        let after = t.operands(ks[2] + 1)[0].clone();
        t.replace(ks[3], &format!(", {after}, "), &format!(", {before}, "));
        t.replace(ks[3] + 1, &format!(", {after}, "), &format!(", {before}, "));
        t.delete(ks[2] + 1);
        t.delete(ks[2]);
    });
    expect(
        "vector 12's butterfly skips lane mask 4",
        &r,
        CheckKind::Reduction,
        Some(&[12]),
        "lacks the operation `add.f32",
    );
}

// ---- control: bounds checks and tails -------------------------------------------------

#[test]
fn m24_drop_the_row_bound() {
    let p = q4k();
    let r = mutate(&p, Which::Batched, |t, _| {
        let k = t.find(0, |s| s.starts_with("@%p0 ret"));
        t.delete(k);
    });
    expect(
        "the row bound `@%p0 ret` dropped",
        &r,
        CheckKind::Control,
        Some(&all(3)),
        "@%p0 ret;",
    );
}

#[test]
fn m25_change_the_row_bound() {
    let p = q4k();
    let mut changed = String::new();
    let r = mutate(&p, Which::Batched, |t, _| {
        // The warp group's early return: its first row against n = 6.
        let k = t.find(0, |s| {
            s.starts_with("setp.ge.u32 %p") && s.ends_with(", 6;")
        });
        t.replace(k, ", 6;", ", 7;");
        changed = t.at(k).to_string();
    });
    expect(
        "the row bound n = 6 -> 7",
        &r,
        CheckKind::Control,
        Some(&all(3)),
        &changed,
    );
}

#[test]
fn m26_drop_the_tail_guard() {
    let p = q4k();
    let r = mutate(&p, Which::Batched, |t, _| {
        let k = t.find(0, |s| s.starts_with("@!") && s.contains("bra $L0_endif"));
        t.delete(k);
    });
    expect(
        "the tail pass's guard dropped",
        &r,
        CheckKind::Control,
        None,
        "bra $L0_endif",
    );
}

#[test]
fn m27_change_the_tail_bound() {
    let p = q8_0();
    let r = mutate(&p, Which::Batched, |t, _| {
        let g = t.find(0, |s| s.starts_with("@!") && s.contains("bra $L0_endif"));
        let k = (0..g)
            .rev()
            .find(|&k| t.at(k).starts_with("setp.lt.u32"))
            .expect("the tail test");
        t.replace(k, ", 1;", ", 2;");
    });
    expect(
        "the tail bound 1 -> 2 blocks",
        &r,
        CheckKind::Control,
        Some(&all(2)),
        "immediate 1",
    );
}

#[test]
fn m28_drop_the_lane_0_guard() {
    let p = q4_1();
    let r = mutate(&p, Which::Batched, |t, _| {
        let k = t.find(0, |s| s.starts_with("@!") && s.contains("bra $L1_endif"));
        t.delete(k);
    });
    expect(
        "the lane-0 guard of the stores dropped",
        &r,
        CheckKind::Control,
        Some(&all(5)),
        "setp.eq.u32",
    );
}

// ---- outputs --------------------------------------------------------------------------

#[test]
fn m29_m_loop_stops_one_short() {
    let p = q5_0();
    let r = mutate(&p, Which::Batched, |t, l| {
        let k = *l.stores(t).last().expect("stores");
        t.delete(k);
    });
    expect(
        "vector 15's store missing",
        &r,
        CheckKind::Outputs,
        Some(&[15]),
        "output missing",
    );
}

#[test]
fn m30_change_the_y_stride() {
    let p = q4k();
    let r = mutate(&p, Which::Batched, |t, l| {
        let k = l.stores(t)[1];
        t.replace(k, "+24]", "+28]");
    });
    expect(
        "vector 1 stored at stride 28",
        &r,
        CheckKind::Outputs,
        Some(&[1]),
        "never writes `y` at offset 24",
    );
    expect(
        "vector 1 stored at stride 28",
        &r,
        CheckKind::Outputs,
        None,
        "extra output: writes `y` at offset 28",
    );
}

#[test]
fn m31_one_store_too_many() {
    let p = q4_1();
    let r = mutate(&p, Which::Batched, |t, l| {
        // Vector 4's store of the group's first row (the last vector's, at 4 * 5 * 4 bytes).
        let k = *l
            .stores(t)
            .iter()
            .find(|&&k| t.at(k).contains("+80]"))
            .expect("vector 4's store");
        let line = t.at(k).replace("+80]", "+100]");
        t.insert(k + 1, &line);
    });
    expect(
        "a store for vector 5 of 5",
        &r,
        CheckKind::Outputs,
        None,
        "extra output: writes `y` at offset 100",
    );
}

#[test]
fn m32_stores_swapped_between_vectors() {
    let p = q6k();
    let r = mutate(&p, Which::Batched, |t, l| {
        let ks = l.stores(t);
        let (a, b) = (t.operands(ks[0])[1].clone(), t.operands(ks[1])[1].clone());
        t.replace(ks[0], &format!(", {a};"), &format!(", {b};"));
        t.replace(ks[1], &format!(", {b};"), &format!(", {a};"));
    });
    expect(
        "vectors 0 and 1 write each other's results",
        &r,
        CheckKind::Dataflow,
        Some(&[0]),
        "st.global.f32",
    );
}

// ---- parameters, launch, and the claim itself -------------------------------------------

#[test]
fn m33_parameter_renamed() {
    let p = q4k();
    let r = mutate(&p, Which::Batched, |t, _| {
        let d = t.find(0, |s| s.starts_with(".param .u64 residual"));
        t.replace(d, "residual", "resid");
        let k = t.find(0, |s| s.ends_with("[residual];"));
        t.replace(k, "[residual]", "[resid]");
    });
    expect(
        "residual renamed resid",
        &r,
        CheckKind::Params,
        None,
        "adds parameter `resid`",
    );
}

#[test]
fn m34_directive_changed() {
    let p = q6k();
    let threads = p.batched.launch.block[0];
    let r = mutate(&p, Which::Batched, |t, _| {
        let k = t.find(0, |s| s.starts_with(".maxntid"));
        t.replace(k, &format!("{threads},"), &format!("{},", 2 * threads));
    });
    expect(
        ".maxntid doubled",
        &r,
        CheckKind::Params,
        None,
        "performance directives differ",
    );
}

#[test]
fn m35_claim_lies_about_a_stride() {
    let p = q4k();
    let mut decl = p.decl.clone();
    decl.params.retain(|q| q.name != "x");
    decl = decl.per_vector("x", u64::from(x_bytes(&p.spec)) + 36);
    let r = validate_pair((&p.single).into(), (&p.batched).into(), &decl);
    expect(
        "x claimed at a stride one block too long",
        &r,
        CheckKind::Dataflow,
        Some(&[1]),
        "addresses `x`",
    );
}

#[test]
fn m36_claim_calls_a_per_vector_buffer_shared() {
    let p = q8_0();
    let mut decl = p.decl.clone();
    decl.params.retain(|q| q.name != "residual");
    decl = decl.shared("residual");
    let r = validate_pair((&p.single).into(), (&p.batched).into(), &decl);
    expect(
        "residual claimed shared",
        &r,
        CheckKind::Dataflow,
        Some(&[1]),
        "not a per-vector buffer",
    );
    // The layout check sees the shared buffer's size change too.
    expect(
        "residual claimed shared",
        &r,
        CheckKind::Params,
        None,
        "shared buffer `residual`",
    );
}

#[test]
fn m36b_claim_of_no_vectors() {
    let p = q4k();
    let mut decl = p.decl.clone();
    decl.m = 0;
    let r = validate_pair((&p.single).into(), (&p.batched).into(), &decl);
    expect("M = 0 claimed", &r, CheckKind::Params, None, "M = 0");
}

#[test]
fn m37_launch_grid_differs() {
    let p = q4k();
    let mut launch = p.batched.launch.clone();
    let ptx_gen::launch::Extent::Const(grid) = launch.grid[0] else {
        panic!("a GEMV's grid is a constant");
    };
    launch.grid[0] = ptx_gen::launch::Extent::Const(grid + 1);
    let b = KernelSource::text(&p.batched.name, &p.batched.ptx).with_launch(&launch);
    let s = KernelSource::from(&p.single);
    let r = validate_pair(s, b, &p.decl);
    expect(
        "the batched grid has one block more",
        &r,
        CheckKind::Launch,
        None,
        "grid x differs",
    );
}

// ---- batching over the grid: a hand-written pair ----------------------------------------

/// `y[i] = x[i] * 0.5 + pos` for i < 1000, in blocks of 128 threads.
const SCALE_ADD: &str = r#"
.version 7.8
.target sm_61
.address_size 64

.visible .entry scale_add(
	.param .u64 x,
	.param .u64 y,
	.param .u32 pos
)
.maxntid 128, 1, 1
{
	.reg .pred %p<1>;
	.reg .b32 %r<4>;
	.reg .f32 %f<3>;
	.reg .b64 %rd<7>;

	mov.u32 %r0, %tid.x;
	mov.u32 %r1, %ctaid.x;
	mad.lo.u32 %r2, %r1, 128, %r0;
	setp.ge.u32 %p0, %r2, 1000;
	@%p0 ret;
	ld.param.u64 %rd0, [x];
	cvta.to.global.u64 %rd1, %rd0;
	ld.param.u64 %rd2, [y];
	cvta.to.global.u64 %rd3, %rd2;
	ld.param.u32 %r3, [pos];
	mul.wide.u32 %rd4, %r2, 4;
	add.u64 %rd5, %rd1, %rd4;
	ld.global.nc.f32 %f0, [%rd5];
	cvt.rn.f32.u32 %f1, %r3;
	fma.rn.f32 %f2, %f0, 0f3F000000, %f1;
	add.u64 %rd6, %rd3, %rd4;
	st.global.f32 [%rd6], %f2;
	ret;
}
"#;

/// The same for 4 vectors, vector v = `%ctaid.y`, each with its own position.
const SCALE_ADD_M4: &str = r#"
.version 7.8
.target sm_61
.address_size 64

.visible .entry scale_add_m4(
	.param .u64 x,
	.param .u64 y,
	.param .u64 positions
)
.maxntid 128, 1, 1
{
	.reg .pred %p<1>;
	.reg .b32 %r<5>;
	.reg .f32 %f<3>;
	.reg .b64 %rd<12>;

	mov.u32 %r0, %tid.x;
	mov.u32 %r1, %ctaid.x;
	mov.u32 %r4, %ctaid.y;
	mad.lo.u32 %r2, %r1, 128, %r0;
	setp.ge.u32 %p0, %r2, 1000;
	@%p0 ret;
	mul.wide.u32 %rd7, %r4, 4000;
	ld.param.u64 %rd0, [x];
	cvta.to.global.u64 %rd1, %rd0;
	add.u64 %rd1, %rd1, %rd7;
	ld.param.u64 %rd2, [y];
	cvta.to.global.u64 %rd3, %rd2;
	add.u64 %rd3, %rd3, %rd7;
	ld.param.u64 %rd8, [positions];
	cvta.to.global.u64 %rd9, %rd8;
	mul.wide.u32 %rd10, %r4, 4;
	add.u64 %rd11, %rd9, %rd10;
	ld.global.u32 %r3, [%rd11];
	mul.wide.u32 %rd4, %r2, 4;
	add.u64 %rd5, %rd1, %rd4;
	ld.global.nc.f32 %f0, [%rd5];
	cvt.rn.f32.u32 %f1, %r3;
	fma.rn.f32 %f2, %f0, 0f3F000000, %f1;
	add.u64 %rd6, %rd3, %rd4;
	st.global.f32 [%rd6], %f2;
	ret;
}
"#;

fn scale_add_decl() -> BatchDecl {
    BatchDecl::grid(4, GridAxis::Y)
        .per_vector("x", 4000)
        .per_vector("y", 4000)
        .scalar_table("positions", "pos", 4)
}

fn grid_pair(
    single: &str,
    sname: &str,
    batched: &str,
    bname: &str,
    decl: &BatchDecl,
) -> PairReport {
    let (ls, lb) = (
        LaunchSpec::fixed(8, 1, 128),
        LaunchSpec::fixed(8, decl.m, 128),
    );
    validate_pair(
        KernelSource::text(sname, single).with_launch(&ls),
        KernelSource::text(bname, batched).with_launch(&lb),
        decl,
    )
}

fn scale_add(batched: &str) -> PairReport {
    grid_pair(
        SCALE_ADD,
        "scale_add",
        batched,
        "scale_add_m4",
        &scale_add_decl(),
    )
}

#[test]
fn grid_pair_passes() {
    let r = scale_add(SCALE_ADD_M4);
    assert!(r.passed(), "{r}");
    assert_eq!(r.slices_compared, 1);
}

#[test]
fn g01_grid_x_stride_wrong() {
    // x offset twice: vector v's x at 8000 v.
    let twice = "add.u64 %rd1, %rd1, %rd7;\n\tadd.u64 %rd1, %rd1, %rd7;";
    let r = scale_add(&SCALE_ADD_M4.replace("add.u64 %rd1, %rd1, %rd7;", twice));
    expect(
        "x at ctaid.y * 8000",
        &r,
        CheckKind::Dataflow,
        Some(&all(4)),
        "`%ctaid.y` has coefficient 8000; expected 4000",
    );
}

#[test]
fn g01b_grid_y_stride_wrong() {
    let r =
        scale_add(&SCALE_ADD_M4.replace("add.u64 %rd3, %rd3, %rd7;", "sub.u64 %rd3, %rd3, %rd7;"));
    expect(
        "y at -ctaid.y * 4000",
        &r,
        CheckKind::Outputs,
        Some(&all(4)),
        "`%ctaid.y` has coefficient -4000; expected 4000",
    );
}

#[test]
fn g02_position_of_vector_0_for_all() {
    let r = scale_add(
        &SCALE_ADD_M4.replace("ld.global.u32 %r3, [%rd11];", "ld.global.u32 %r3, [%rd9];"),
    );
    expect(
        "every vector reads positions[0]",
        &r,
        CheckKind::Dataflow,
        Some(&all(4)),
        "positions",
    );
}

#[test]
fn g03_grid_launch_wrong() {
    let decl = scale_add_decl();
    let (ls, lb) = (LaunchSpec::fixed(8, 1, 128), LaunchSpec::fixed(8, 3, 128));
    let r = validate_pair(
        KernelSource::text("scale_add", SCALE_ADD).with_launch(&ls),
        KernelSource::text("scale_add_m4", SCALE_ADD_M4).with_launch(&lb),
        &decl,
    );
    expect(
        "grid y = 3 for M = 4",
        &r,
        CheckKind::Launch,
        None,
        "M = 4 blocks along y",
    );
}

#[test]
fn g04_ctaid_y_used_as_data() {
    let r =
        scale_add(&SCALE_ADD_M4.replace("cvt.rn.f32.u32 %f1, %r3;", "cvt.rn.f32.u32 %f1, %r4;"));
    expect(
        "the vector index used as the position",
        &r,
        CheckKind::Dataflow,
        Some(&all(4)),
        "%ctaid.y",
    );
}

/// `out[0] = sum(x[0..len])`: 64 threads stride over a runtime length, then a
/// shared-memory reduction of two partial sums.
const ROW_SUM: &str = r#"
.version 7.8
.target sm_61
.address_size 64

.visible .entry row_sum(
	.param .u64 x,
	.param .u64 out,
	.param .u32 len
)
.reqntid 64, 1, 1
{
	.shared .align 4 .f32 partial[64];
	.reg .pred %p<3>;
	.reg .b32 %r<8>;
	.reg .f32 %f<8>;
	.reg .b64 %rd<8>;

	mov.u32 %r0, %tid.x;
	ld.param.u64 %rd0, [x];
	cvta.to.global.u64 %rd1, %rd0;
	ld.param.u32 %r1, [len];
	mov.f32 %f0, 0f00000000;
	mov.u32 %r2, %r0;
$L0_loop:
	setp.ge.u32 %p0, %r2, %r1;
	@%p0 bra $L1_loop_end;
	mul.wide.u32 %rd2, %r2, 4;
	add.u64 %rd3, %rd1, %rd2;
	ld.global.nc.f32 %f1, [%rd3];
	add.rn.f32 %f0, %f0, %f1;
	add.u32 %r2, %r2, 64;
	bra $L0_loop;
$L1_loop_end:
	mov.u32 %r3, partial;
	shl.b32 %r4, %r0, 2;
	add.u32 %r5, %r3, %r4;
	st.shared.f32 [%r5], %f0;
	bar.sync 0;
	setp.ne.u32 %p1, %r0, 0;
	@%p1 bra $L2_endif;
	ld.shared.f32 %f2, [%r3];
	ld.shared.f32 %f3, [%r3+4];
	add.rn.f32 %f4, %f2, %f3;
	ld.param.u64 %rd4, [out];
	cvta.to.global.u64 %rd5, %rd4;
	st.global.f32 [%rd5], %f4;
$L2_endif:
	ret;
}
"#;

/// The same for 3 sequences over `%ctaid.y`, each with its own length.
const ROW_SUM_M3: &str = r#"
.version 7.8
.target sm_61
.address_size 64

.visible .entry row_sum_m3(
	.param .u64 x,
	.param .u64 out,
	.param .u64 lens
)
.reqntid 64, 1, 1
{
	.shared .align 4 .f32 partial[64];
	.reg .pred %p<3>;
	.reg .b32 %r<9>;
	.reg .f32 %f<8>;
	.reg .b64 %rd<12>;

	mov.u32 %r0, %tid.x;
	mov.u32 %r8, %ctaid.y;
	ld.param.u64 %rd0, [x];
	cvta.to.global.u64 %rd1, %rd0;
	mul.wide.u32 %rd6, %r8, 16384;
	add.u64 %rd1, %rd1, %rd6;
	ld.param.u64 %rd7, [lens];
	cvta.to.global.u64 %rd8, %rd7;
	mul.wide.u32 %rd9, %r8, 4;
	add.u64 %rd10, %rd8, %rd9;
	ld.global.nc.u32 %r1, [%rd10];
	mov.f32 %f0, 0f00000000;
	mov.u32 %r2, %r0;
$L0_loop:
	setp.ge.u32 %p0, %r2, %r1;
	@%p0 bra $L1_loop_end;
	mul.wide.u32 %rd2, %r2, 4;
	add.u64 %rd3, %rd1, %rd2;
	ld.global.nc.f32 %f1, [%rd3];
	add.rn.f32 %f0, %f0, %f1;
	add.u32 %r2, %r2, 64;
	bra $L0_loop;
$L1_loop_end:
	mov.u32 %r3, partial;
	shl.b32 %r4, %r0, 2;
	add.u32 %r5, %r3, %r4;
	st.shared.f32 [%r5], %f0;
	bar.sync 0;
	setp.ne.u32 %p1, %r0, 0;
	@%p1 bra $L2_endif;
	ld.shared.f32 %f2, [%r3];
	ld.shared.f32 %f3, [%r3+4];
	add.rn.f32 %f4, %f2, %f3;
	ld.param.u64 %rd4, [out];
	cvta.to.global.u64 %rd5, %rd4;
	mul.wide.u32 %rd11, %r8, 4;
	add.u64 %rd5, %rd5, %rd11;
	st.global.f32 [%rd5], %f4;
$L2_endif:
	ret;
}
"#;

fn row_sum(batched: &str) -> PairReport {
    let decl = BatchDecl::grid(3, GridAxis::Y)
        .per_vector("x", 16384)
        .per_vector("out", 4)
        .scalar_table("lens", "len", 4);
    grid_pair(ROW_SUM, "row_sum", batched, "row_sum_m3", &decl)
}

#[test]
fn grid_pair_with_a_runtime_loop_and_shared_memory_passes() {
    let r = row_sum(ROW_SUM_M3);
    assert!(r.passed(), "{r}");
    let note = r
        .check(CheckKind::Analysis)
        .and_then(|c| c.note.clone())
        .unwrap_or_default();
    assert!(note.contains("1 summarised loop"), "{note}");
}

#[test]
fn g05_barrier_dropped() {
    let r = row_sum(&ROW_SUM_M3.replace("\tbar.sync 0;\n", ""));
    expect(
        "the barrier before the shared reads dropped",
        &r,
        CheckKind::Reduction,
        Some(&all(3)),
        "bar.sync 0",
    );
}

#[test]
fn g06_shared_slot_changed() {
    let r = row_sum(&ROW_SUM_M3.replace("shl.b32 %r4, %r0, 2;", "shl.b32 %r4, %r0, 3;"));
    expect(
        "partial sums stored at tid * 8",
        &r,
        CheckKind::Reduction,
        Some(&all(3)),
        "shl.b32 %r4, %r0, 3;",
    );
}

#[test]
fn g07_loop_stride_changed() {
    let r = row_sum(&ROW_SUM_M3.replace("add.u32 %r2, %r2, 64;", "add.u32 %r2, %r2, 32;"));
    expect(
        "the loop strides by 32",
        &r,
        CheckKind::Control,
        Some(&all(3)),
        "add.u32 %r2, %r2, 32;",
    );
}

#[test]
fn g08_length_of_the_wrong_sequence() {
    let r = row_sum(&ROW_SUM_M3.replace(
        "ld.global.nc.u32 %r1, [%rd10];",
        "ld.global.nc.u32 %r1, [%rd10+4];",
    ));
    expect(
        "each sequence loops to the next one's length",
        &r,
        CheckKind::Control,
        Some(&all(3)),
        "`lens` at offset 4",
    );
}

#[test]
fn g09_stores_to_one_place_reordered() {
    // Both kernels clear y[i] and then write it; the mutant writes it and then clears it.
    let clear_first = |ptx: &str| {
        ptx.replace(
            "\tst.global.f32 [%rd6], %f2;",
            "\tst.global.f32 [%rd6], 0f00000000;\n\tst.global.f32 [%rd6], %f2;",
        )
    };
    let (single, batched) = (clear_first(SCALE_ADD), clear_first(SCALE_ADD_M4));
    let decl = scale_add_decl();
    assert!(grid_pair(&single, "scale_add", &batched, "scale_add_m4", &decl).passed());
    let reordered = SCALE_ADD_M4.replace(
        "\tst.global.f32 [%rd6], %f2;",
        "\tst.global.f32 [%rd6], %f2;\n\tst.global.f32 [%rd6], 0f00000000;",
    );
    let r = grid_pair(&single, "scale_add", &reordered, "scale_add_m4", &decl);
    expect(
        "the clear after the write",
        &r,
        CheckKind::Outputs,
        Some(&all(4)),
        "opposite order",
    );
}

// ---- other families, as batches of one --------------------------------------------------
//
// Only the GEMV has batched variants so far; the rules are the same for every family. Each
// kernel below is compared with a mutated copy of itself (M = 1, every parameter shared),
// which exercises them on runtime loops, shared-memory trees and barriers.

fn family_mutant(family: &str, dims: &[&str], edit: impl FnOnce(&mut Text)) -> PairReport {
    let dims: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
    let spec = KernelSpec::from_cli(family, &dims).expect("spec");
    let k = generate(&spec, Target::dp4a_default()).expect("generates");
    let mut decl = BatchDecl::unrolled(1);
    for p in &k.params {
        decl = decl.shared(&p.name);
    }
    assert!(validate_pair((&k).into(), (&k).into(), &decl).passed());
    let mut t = Text::new(&k.ptx);
    edit(&mut t);
    let mutated = t.finish();
    assert_ne!(mutated, k.ptx, "the mutation changed nothing");
    let b = KernelSource::text(&k.name, &mutated)
        .with_launch(&k.launch)
        .with_params(&k.params);
    validate_pair((&k).into(), b, &decl)
}

fn replace_first(t: &mut Text, from: &str, to: &str) {
    let k = t.find(0, |s| s.contains(from));
    t.replace(k, from, to);
}

#[test]
fn f01_rmsnorm_eps_changed() {
    let r = family_mutant("rmsnorm", &["896"], |t| {
        replace_first(t, "0f3727C5AC", "0f3727C5AD")
    });
    expect(
        "rmsnorm eps 1e-5 -> next float",
        &r,
        CheckKind::Dataflow,
        Some(&[0]),
        "0f3727C5AC",
    );
}

#[test]
fn f02_rmsnorm_barrier_dropped() {
    let r = family_mutant("rmsnorm", &["896"], |t| {
        let k = t.find(0, |s| s == "bar.sync 0;");
        t.delete(k);
    });
    expect(
        "rmsnorm's block-reduce barrier dropped",
        &r,
        CheckKind::Reduction,
        Some(&[0]),
        "bar.sync 0;",
    );
}

#[test]
fn f03_rmsnorm_dimension_changed() {
    // The mean divides by hidden = 896.0; 900.0 instead.
    let r = family_mutant("rmsnorm", &["896"], |t| {
        replace_first(t, "0f44600000", "0f44610000")
    });
    expect(
        "rmsnorm divides by 900",
        &r,
        CheckKind::Dataflow,
        Some(&[0]),
        "0f44600000",
    );
}

#[test]
fn f04_quantize_rounding_changed() {
    let r = family_mutant("quantize_q8_1", &["896"], |t| {
        replace_first(t, "cvt.rzi.s32.f32", "cvt.rni.s32.f32")
    });
    expect(
        "quantize truncation -> round to nearest",
        &r,
        CheckKind::Dataflow,
        Some(&[0]),
        "cvt.rni.s32.f32",
    );
}

#[test]
fn f05_quantize_scale_changed() {
    let r = family_mutant("quantize_q8_1", &["896"], |t| {
        replace_first(t, "0f42FE0000", "0f43000000")
    });
    expect(
        "quantize scale amax / 127 -> / 128",
        &r,
        CheckKind::Dataflow,
        Some(&[0]),
        "0f42FE0000",
    );
}

#[test]
fn f06_attention_scale_changed() {
    let r = family_mutant("attention", &["32", "8", "128", "8192"], |t| {
        replace_first(t, "0f3E0293EE", "0f3E0293EF")
    });
    expect(
        "attention's softmax scale log2(e)/sqrt(128) one ulp off",
        &r,
        CheckKind::Dataflow,
        Some(&[0]),
        "0f3E0293EE",
    );
}

#[test]
fn f07_attention_barrier_dropped() {
    let r = family_mutant("attention", &["32", "8", "128", "8192"], |t| {
        let k = t.find(0, |s| s == "bar.sync 0;");
        t.delete(k);
    });
    expect(
        "attention's first barrier dropped",
        &r,
        CheckKind::Reduction,
        Some(&[0]),
        "bar.sync 0;",
    );
}

#[test]
fn f08_argmax_bound_changed() {
    let r = family_mutant("argmax", &["32000"], |t| {
        replace_first(
            t,
            "setp.lt.u32 %p0, %r4, 8000;",
            "setp.lt.u32 %p0, %r4, 8001;",
        )
    });
    expect(
        "argmax reads one value past its part",
        &r,
        CheckKind::Control,
        Some(&[0]),
        "8000",
    );
}
