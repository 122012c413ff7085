//! Structural parity: proof, from the parsed PTX alone, that a batched kernel computes for
//! each of its M vectors exactly what its single-vector twin computes.
//!
//! The generator states a claim, a [`BatchDecl`]: M, how a thread finds vector v
//! ([`VectorIndex::Unrolled`]: every thread does all M; [`VectorIndex::Grid`]: one vector
//! per block along `%ctaid.y`/`%ctaid.z`), and per parameter how vector v addresses it
//! ([`ParamRole::Shared`], [`ParamRole::PerVector`] at `v * stride`,
//! [`ParamRole::ScalarTable`] for per-sequence positions and lengths). The checker
//! trusts none of it: every offset, stride and role is verified against the code.
//!
//! # How
//!
//! Each kernel is evaluated symbolically into a hash-consed value graph (`exec`): a node
//! per distinct value, registers renamed away, integer index arithmetic kept as flat affine
//! forms `Σ coef·term + c` (add, sub, neg, mul/mad/shl by a constant, `mul.wide`/`mad.wide`/
//! `cvt` zero-extension), integer and predicate constants folded. Branches whose predicate
//! folds are followed, so constant-trip loops — the batching loop over M included — are
//! unrolled; branches on runtime predicates evaluate both sides to the branch's immediate
//! post-dominator and merge registers with `Gate(cond, then, else)` nodes; a guarded
//! instruction writes `Gate(guard, new, old)`; an early `@p ret` conjoins `!p` into the path
//! condition. A loop with a runtime trip count is summarised once with `Mu` nodes per
//! register it writes (entry value, value on the back edge) and `Exit` nodes after it.
//! Shared and local memory are chains of `MemStore`/`MemBarrier` nodes threaded through
//! the evaluation, so a shared load depends on every earlier shared store and barrier.
//! Every store, reduction or atomic to global memory is an *output*, recorded with its
//! address, values and path condition (guards included).
//!
//! Comparison (`compare`) then walks, for each vector v and each output of the single
//! kernel, the backward slice of that output (address, values, path condition: data
//! dependences through registers and memory chains, control dependences through gates
//! and path conditions) in lockstep with the slice of the matching batched output. A memo
//! of node pairs known to agree (per vector, and across vectors for the parts of the
//! slice no per-vector input reaches, such as the weight decode) makes the cost linear in
//! the slices: a few milliseconds for a fully unrolled K = 14336 GEMV with M = 16.
//!
//! # The rules, as implemented
//!
//! 1. **Params** — the batched kernel's `.param` list equals the single kernel's (names,
//!    types, alignment, order), except that a declared `ScalarTable` takes the place of the
//!    by-value parameter it replaces; every batched parameter has a declared role; declared
//!    names exist; `.maxntid`/`.reqntid`/... are identical. With the generators'
//!    [`ParamSpec`]s: a per-vector stride is at least the single kernel's buffer size (no
//!    two vectors overlap), the batched buffer holds M strides, shared buffers keep their
//!    size. **Launch** (with both [`LaunchSpec`]s): identical for `Unrolled`; for `Grid`,
//!    1 block on the axis for the single kernel, exactly M for the batched, all else equal.
//! 2. **Dataflow** — two nodes agree when they are the same operation (opcode with all its
//!    modifiers: types, rounding, `.nc`, `.wide`, comparison) on agreeing operands in the
//!    same order, or equal immediates (exact bits for floats), the same parameter, special
//!    register or variable, or both undefined. Two affine forms agree when their terms agree
//!    pairwise with equal coefficients and their constants differ by exactly the declared
//!    per-vector offset: `Σ coef·stride·v` over the terms that are a `PerVector` parameter
//!    (its `ld.param` value, possibly through `cvta`), or, for `Grid`, when the batched form
//!    has the extra term `%ctaid.<axis>` with coefficient `Σ coef·stride` and the same
//!    constant. A `Shared` parameter must be addressed exactly as in the single kernel.
//!    A single kernel's `ScalarTable`-replaced parameter agrees with a global load of the
//!    same width at `table + v·stride` (or `+ %ctaid·stride`). In a `Grid` pair the
//!    single kernel's `%ctaid.<axis>` is 0 and `%nctaid.<axis>` 1, the batched kernel's
//!    `%nctaid.<axis>` is M, and `%ctaid.<axis>` may appear only in declared offsets.
//! 3. **Reduction** — shuffles are operations like any other (mode, lane offset or mask,
//!    clamp, member mask are operands), so their order and offsets are part of rule 2; a
//!    shared-memory load agrees only if the chains of shared stores (address, values, path
//!    condition) and barriers before it agree. Differences found at a shuffle, at the
//!    operation combining a shuffle's result, or in shared memory are reported as this
//!    check. **Per-vector shared variables** (an `Unrolled` claim's `per_vector_shared`):
//!    the single kernel's variable `base` stands, for vector v, for the batched kernel's
//!    copy `base` (v = 0) or `base_v<v>`, so vector v must address its own copy exactly as
//!    the single kernel addresses `base`; on the batched side of a chain, a store into
//!    another vector's copy (an address that is such a copy's address plus offsets) is
//!    passed over, and so is a branch whose two sides are one state once such stores are
//!    passed over. The M copies can then be live at once (a GEMV's staged inputs, or its
//!    split warps' sums, all stored before one barrier), with the single kernel's barriers.
//!    Rule 1 checks the declarations: the single kernel declares `base` and no copy, the
//!    batched kernel a copy per vector, each declared exactly as `base` (alignment, type,
//!    array shape).
//! 4. **Control** and **Outputs** — each output's path condition (branches taken to reach
//!    it, guards, early returns, loop conditions) is part of its slice, and so is every
//!    gate a value passed through: a bounds check, tail guard or loop test that differs is
//!    a difference, reported as `control`. Outputs are matched by (buffer, constant
//!    offset): for every vector v and every output of the single kernel at `p + c`, the
//!    batched kernel must have an output at `p + c + v·stride(p)` (`Unrolled`; `Grid`: at
//!    `p + c` with the `%ctaid` term) whose slice agrees. A missing one, a batched output
//!    that no (output, vector) claims, an output whose own address differs (terms or
//!    per-vector term), and two stores to one place in the opposite order are `outputs`
//!    findings.
//!
//! # Findings
//!
//! The walk stops at the first pair of nodes that differ, and the finding names both
//! instructions (an immediate or parameter with the instruction using it), the output in
//! whose slice it lies and the vectors it concerns (one finding for all vectors that show
//! the same difference). Before reporting, the path from the output down to the difference
//! is searched for a simple edit, compared by structural shape (a hash blind to register
//! names and offsets): operands in another order, an operation or condition only one kernel
//! has (a dropped `@p ret` reads "lacks the condition `@%p0 ret;`"). A differing
//! coefficient of index arithmetic is followed back to the instruction that introduced it
//! (`mad.wide.u32 %rd4, %r4, 448, %rd1;` for a wrong row stride). The check a difference
//! belongs to is decided by where it is: in a shuffle, an operation combining a shuffle's
//! result, shared memory or a barrier: `reduction`; in a path condition or guard:
//! `control`; elsewhere `dataflow`.
//!
//! Equivalent code written differently (operands of a commutative operation swapped,
//! `setp.lt` for `setp.ge` with negated use, a different but equal shared-memory
//! schedule) is reported as a difference: the rules ask for the same instruction sequence,
//! not for semantic equivalence. Instruction order between independent values, register
//! names, dead code and recomputation of a value are free.
//!
//! # Limits (documented trade-offs)
//!
//! - Index arithmetic is compared as mathematical integers: 32-bit indices that are
//!   later zero-extended are assumed not to wrap (the generators' size limits ensure it).
//! - Global memory is inputs plus outputs: a global load is not ordered against the
//!   kernel's own global stores. (The GEMV reads a residual that may alias `y` before it
//!   writes that element; this order is not checked here but by the GPU bit-exactness test.)
//! - A batched kernel that interleaves several vectors' shared-memory traffic in one block
//!   fails rule 3 (the chains differ) unless each vector has its own copy of the variables
//!   (per-vector shared variables); else batch such kernels over the grid. Distinct
//!   variables are taken not to overlap: a kernel that indexes one out of its bounds is
//!   wrong single or batched, which the GPU tests against the CPU mirrors catch.
//! - `call`, indirect branches, irreducible control flow and loops with several exit
//!   targets are refused (`analysis`), as are kernels needing more than 8 M evaluation
//!   steps or nesting branches and loops more than 256 deep.
//! - Registers are resolved by name over the whole body (nested `{ }` scopes that redeclare
//!   a name are not told apart); our generators declare every register once.
//!
//! # Use
//!
//! [`validate_pair`] (or [`validate_generated`]) checks one pair and returns a
//! [`PairReport`]; [`validate_pairs`] checks a kernel set on every core and returns the
//! [`ParityReport`] (serde, for `parity.json`). A [`KernelSource`] is PTX text or an
//! already parsed module, with its launch and parameter specs when known (without them
//! the launch and layout checks are skipped, and say so).
//!
//! # Cost
//!
//! Everything is checked on the parsed PTX of both kernels of every pair; what is saved is
//! only repeated work, never a check:
//!
//! - PTX text of a module holding one entry is read by the parser's fast path
//!   (`parse::fast`): the header by the real parser, the body as slices of the text in
//!   flat arrays (no tree, no string per operand), each statement of an unusual shape by
//!   the real statement parser. It reads exactly what [`crate::parse::parse_module`]
//!   reads (tested on every sample kernel and thousands of mutants); text it cannot take
//!   goes through `parse_module`, which also gives the error to report.
//! - [`validate_pairs`] parses a single kernel shared by several pairs (the twin of every
//!   M) once, and evaluates it once per distinct list of names its claims intern first
//!   (the evaluation depends on nothing else); each pair then parses, lowers and
//!   evaluates its own batched kernel and compares the two, so every report is the one
//!   [`validate_pair`] gives (tested).
//! - Nodes are hash-consed with an Fx-style hasher (`graph::Fx`), opcodes are interned
//!   once per pair, and one instruction's operands are resolved without allocating.

mod cfg;
mod compare;
mod decl;
mod exec;
mod graph;
mod report;
mod signature;

pub use decl::{
    per_vector_shared_name, BatchDecl, GridAxis, ParamBatching, ParamRole, VectorIndex,
};
pub use report::{CheckKind, CheckResult, CheckStatus, Finding, PairReport, ParityReport};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::ast::{Function, Module};
use crate::kernels::{GeneratedKernel, ParamSpec};
use crate::launch::LaunchSpec;

use compare::{Roles, Side, Table};
use graph::{FxMap, Names};

/// Findings kept per check; the rest are counted in one last finding.
const MAX_FINDINGS: usize = 16;

#[derive(Debug, Clone, Copy)]
enum Ptx<'a> {
    Text(&'a str),
    Parsed(&'a Module),
}

/// One kernel to compare: its entry name and PTX (text, or already parsed), with its
/// launch shape and parameter descriptions when known.
#[derive(Debug, Clone, Copy)]
pub struct KernelSource<'a> {
    name: &'a str,
    ptx: Ptx<'a>,
    launch: Option<&'a LaunchSpec>,
    params: Option<&'a [ParamSpec]>,
}

impl<'a> KernelSource<'a> {
    /// The entry `name` of the PTX module `ptx`.
    pub fn text(name: &'a str, ptx: &'a str) -> KernelSource<'a> {
        KernelSource {
            name,
            ptx: Ptx::Text(ptx),
            launch: None,
            params: None,
        }
    }

    /// The entry `name` of an already parsed module (saves parsing it again).
    pub fn parsed(name: &'a str, module: &'a Module) -> KernelSource<'a> {
        KernelSource {
            name,
            ptx: Ptx::Parsed(module),
            launch: None,
            params: None,
        }
    }

    pub fn with_launch(mut self, launch: &'a LaunchSpec) -> KernelSource<'a> {
        self.launch = Some(launch);
        self
    }

    pub fn with_params(mut self, params: &'a [ParamSpec]) -> KernelSource<'a> {
        self.params = Some(params);
        self
    }

    pub fn name(&self) -> &'a str {
        self.name
    }
}

impl<'a> From<&'a GeneratedKernel> for KernelSource<'a> {
    fn from(k: &'a GeneratedKernel) -> KernelSource<'a> {
        KernelSource::text(&k.name, &k.ptx)
            .with_launch(&k.launch)
            .with_params(&k.params)
    }
}

/// One pair to validate.
#[derive(Debug, Clone, Copy)]
pub struct PairInput<'a> {
    pub single: KernelSource<'a>,
    pub batched: KernelSource<'a>,
    pub decl: &'a BatchDecl,
}

fn result(check: CheckKind, findings: Vec<Finding>, note: Option<String>) -> CheckResult {
    let status = if findings.is_empty() {
        CheckStatus::Pass
    } else {
        CheckStatus::Fail
    };
    CheckResult {
        check,
        status,
        note,
        findings,
    }
}

fn skipped(check: CheckKind, why: &str) -> CheckResult {
    CheckResult {
        check,
        status: CheckStatus::Skipped,
        note: Some(why.to_string()),
        findings: Vec::new(),
    }
}

fn analysis_finding(message: String) -> Finding {
    Finding {
        check: CheckKind::Analysis,
        vectors: Vec::new(),
        message,
        single: None,
        batched: None,
        output: None,
    }
}

/// Merges findings that differ only in their vector, and caps their number.
fn condense(findings: Vec<Finding>) -> Vec<Finding> {
    let mut out: Vec<Finding> = Vec::new();
    for f in findings {
        // The same difference found in the slices of several vectors' outputs is one
        // finding (the first output names where).
        let same = out.iter_mut().find(|g| {
            g.check == f.check
                && g.message == f.message
                && g.single == f.single
                && g.batched == f.batched
        });
        match same {
            Some(g) => {
                for v in f.vectors {
                    if !g.vectors.contains(&v) {
                        g.vectors.push(v);
                    }
                }
                g.vectors.sort_unstable();
            }
            None => out.push(f),
        }
    }
    if out.len() > MAX_FINDINGS {
        let rest = out.len() - MAX_FINDINGS + 1;
        let check = out[0].check;
        out.truncate(MAX_FINDINGS - 1);
        out.push(Finding {
            check,
            vectors: Vec::new(),
            message: format!("... and {rest} more finding(s) of this check"),
            single: None,
            batched: None,
            output: None,
        });
    }
    out
}

/// A kernel's PTX, parsed.
enum Parsed<'t> {
    Tree(&'t Module),
    Owned(Module),
    /// The fast path for a module of one entry (`parse::fast`), boxed: it is the largest.
    Lean(Box<crate::parse::fast::LeanEntry<'t>>),
}

impl Parsed<'_> {
    fn entry(&self, name: &str) -> Result<cfg::Entry<'_>, String> {
        match self {
            Parsed::Tree(m) => cfg::find_entry(m, name).map(cfg::Entry::Ast),
            Parsed::Owned(m) => cfg::find_entry(m, name).map(cfg::Entry::Ast),
            Parsed::Lean(e) if e.func.name == name => Ok(cfg::Entry::Lean(e.as_ref())),
            // The module's only entry is another one.
            Parsed::Lean(e) => Err(format!(
                "no `.entry {name}` in the PTX (entries: {})",
                e.func.name
            )),
        }
    }
}

fn parse<'t>(ptx: Ptx<'t>, which: &str) -> Result<Parsed<'t>, String> {
    match ptx {
        Ptx::Parsed(m) => Ok(Parsed::Tree(m)),
        Ptx::Text(t) => {
            if let Some(e) = crate::parse::fast::parse_entry(t) {
                return Ok(Parsed::Lean(Box::new(e)));
            }
            crate::parse::parse_module(t)
                .map(Parsed::Owned)
                .map_err(|e| format!("the {which} kernel's PTX does not parse: {e}"))
        }
    }
}

fn param_bits(f: &Function, name: &str) -> Option<u32> {
    f.params
        .iter()
        .find(|p| p.name == name)
        .map(|p| p.ty.bits())
}

/// The names a batching claim interns before either kernel is lowered, in order: pairs
/// with the same single kernel and the same list share the single kernel's evaluation.
fn prelude(decl: &BatchDecl) -> Vec<String> {
    let mut out = Vec::new();
    for p in &decl.params {
        match &p.role {
            ParamRole::Shared => {}
            ParamRole::PerVector { .. } => out.push(p.name.clone()),
            ParamRole::ScalarTable { replaces, .. } => {
                out.push(p.name.clone());
                out.push(replaces.clone());
            }
        }
    }
    if let VectorIndex::Grid { axis } = decl.index {
        out.push(format!("%ctaid.{}", axis.suffix()));
        out.push(format!("%nctaid.{}", axis.suffix()));
    }
    out.extend(decl.per_vector_shared.iter().cloned());
    out
}

type Subst = Vec<(graph::Sym, i64)>;

/// The batching claim resolved to interned names (interned in [`prelude`]'s order), and
/// the special registers each kernel sees as constants.
fn roles(decl: &BatchDecl, sf: &Function, names: &mut Names) -> (Roles, Subst, Subst) {
    let mut roles = Roles {
        per_vector: FxMap::default(),
        tables: FxMap::default(),
        grid: None,
        m: decl.m,
        shared_vars: FxMap::default(),
        vector_of_var: FxMap::default(),
    };
    // The names of the later vectors' copies are interned here, after the single kernel's
    // prelude: the single kernel never names them.
    for base in &decl.per_vector_shared {
        let copies: Vec<graph::Sym> = (0..decl.m)
            .map(|v| names.id(&per_vector_shared_name(base, v)))
            .collect();
        for (v, c) in copies.iter().enumerate() {
            roles.vector_of_var.insert(*c, v as i64);
        }
        roles.shared_vars.insert(copies[0], copies);
    }
    for p in &decl.params {
        match &p.role {
            ParamRole::Shared => {}
            ParamRole::PerVector { stride_bytes } => {
                roles
                    .per_vector
                    .insert(names.id(&p.name), *stride_bytes as i64);
            }
            ParamRole::ScalarTable {
                replaces,
                stride_bytes,
            } => {
                let bits = param_bits(sf, replaces).unwrap_or(32);
                let t = Table {
                    table: names.id(&p.name),
                    stride: *stride_bytes as i64,
                    bits,
                };
                roles.tables.insert(names.id(replaces), t);
            }
        }
    }
    let (s_subst, b_subst) = match decl.index {
        VectorIndex::Unrolled => (Vec::new(), Vec::new()),
        VectorIndex::Grid { axis } => {
            let ctaid = names.id(&format!("%ctaid.{}", axis.suffix()));
            let nctaid = names.id(&format!("%nctaid.{}", axis.suffix()));
            roles.grid = Some(ctaid);
            (
                vec![(ctaid, 0), (nctaid, 1)],
                vec![(nctaid, i64::from(decl.m))],
            )
        }
    };
    (roles, s_subst, b_subst)
}

/// A single kernel evaluated once for every pair that shares it: the interned names after
/// its evaluation, and the evaluation (or why it failed).
struct SingleEval<'p> {
    names: Names,
    eval: Result<exec::Evaluated<'p>, String>,
}

/// The single kernel's evaluation for `decl` (as `validate_parsed` evaluates it), if its
/// PTX parses and has the entry.
fn single_eval<'p>(
    parsed: &'p Result<Parsed<'_>, String>,
    name: &str,
    decl: &BatchDecl,
) -> Option<SingleEval<'p>> {
    let sf = parsed.as_ref().ok()?.entry(name).ok()?;
    let mut names = Names::default();
    let (_, s_subst, _) = roles(decl, sf.header(), &mut names);
    let eval = cfg::lower(sf, &mut names)
        .and_then(|p| exec::evaluate(p, &mut names, &s_subst))
        .map_err(|e| format!("single kernel: {e}"));
    Some(SingleEval { names, eval })
}

/// Validates one batched kernel against its single-vector twin.
pub fn validate_pair(
    single: KernelSource<'_>,
    batched: KernelSource<'_>,
    decl: &BatchDecl,
) -> PairReport {
    let s_parsed = parse(single.ptx, "single");
    validate_parsed(single, batched, decl, &s_parsed, None)
}

/// [`validate_pair`] with the single kernel already parsed and, when `memo` is given,
/// already evaluated (under the same [`prelude`]).
fn validate_parsed(
    single: KernelSource<'_>,
    batched: KernelSource<'_>,
    decl: &BatchDecl,
    s_parsed: &Result<Parsed<'_>, String>,
    memo: Option<&SingleEval<'_>>,
) -> PairReport {
    let mut report = PairReport {
        single: single.name.to_string(),
        batched: batched.name.to_string(),
        m: decl.m,
        index: decl.index,
        checks: Vec::new(),
        outputs: 0,
        slices_compared: 0,
    };
    let b_parsed;
    let modules = match s_parsed {
        Err(e) => Err(e.clone()),
        Ok(s) => {
            b_parsed = parse(batched.ptx, "batched");
            b_parsed.as_ref().map(|b| (s, b)).map_err(|e| e.clone())
        }
    };
    let entries = modules.and_then(|(sm, bm)| {
        let sf = sm
            .entry(single.name)
            .map_err(|e| format!("single kernel: {e}"))?;
        let bf = bm
            .entry(batched.name)
            .map_err(|e| format!("batched kernel: {e}"))?;
        Ok((sf, bf))
    });
    let (sf, bf) = match entries {
        Ok(x) => x,
        Err(e) => {
            report
                .checks
                .push(result(CheckKind::Analysis, vec![analysis_finding(e)], None));
            for k in &CheckKind::ALL[1..] {
                report
                    .checks
                    .push(skipped(*k, "the kernels could not be analysed"));
            }
            return report;
        }
    };
    let params = signature::check_params(
        sf.header(),
        bf.header(),
        decl,
        single.params,
        batched.params,
    );
    let mut params = params;
    params.extend(signature::check_shared_vars(&sf.decls(), &bf.decls(), decl));
    let launch = signature::check_launch(single.launch, batched.launch, decl);

    // Evaluate both kernels with the batching claim resolved to interned names.
    let mut names = memo.map(|m| m.names.clone()).unwrap_or_default();
    let (roles, s_subst, b_subst) = roles(decl, sf.header(), &mut names);
    let fresh;
    let s_eval = match memo {
        Some(m) => m.eval.as_ref().map_err(|e| e.clone()),
        None => {
            fresh = cfg::lower(sf, &mut names)
                .and_then(|p| exec::evaluate(p, &mut names, &s_subst))
                .map_err(|e| format!("single kernel: {e}"));
            fresh.as_ref().map_err(|e| e.clone())
        }
    };
    let evaluated = s_eval.and_then(|s| {
        let b = cfg::lower(bf, &mut names)
            .and_then(|p| exec::evaluate(p, &mut names, &b_subst))
            .map_err(|e| format!("batched kernel: {e}"))?;
        Ok((s, b))
    });
    let (se, be) = match evaluated {
        Ok(x) => x,
        Err(e) => {
            report
                .checks
                .push(result(CheckKind::Analysis, vec![analysis_finding(e)], None));
            report
                .checks
                .push(result(CheckKind::Params, condense(params), None));
            report.checks.push(launch.map_or_else(
                || skipped(CheckKind::Launch, "no launch spec given"),
                |f| result(CheckKind::Launch, f, None),
            ));
            for k in &CheckKind::ALL[3..] {
                report
                    .checks
                    .push(skipped(*k, "the kernels could not be analysed"));
            }
            return report;
        }
    };
    let s_side = Side {
        g: &se.g,
        prog: &se.prog,
    };
    let b_side = Side {
        g: &be.g,
        prog: &be.prog,
    };
    let outcome = compare::compare_outputs(s_side, b_side, &names, &roles);
    report.outputs = se.g.events.len();
    report.slices_compared = outcome.slices;

    let note = format!(
        "{} instructions single, {} batched; {} summarised loop(s)",
        se.prog.src.len(),
        be.prog.src.len(),
        se.g.loops.len().max(be.g.loops.len())
    );
    report
        .checks
        .push(result(CheckKind::Analysis, Vec::new(), Some(note)));
    report
        .checks
        .push(result(CheckKind::Params, condense(params), None));
    report.checks.push(launch.map_or_else(
        || skipped(CheckKind::Launch, "no launch spec given"),
        |f| result(CheckKind::Launch, f, None),
    ));
    for kind in [
        CheckKind::Outputs,
        CheckKind::Dataflow,
        CheckKind::Reduction,
        CheckKind::Control,
    ] {
        let mine: Vec<Finding> = outcome
            .findings
            .iter()
            .filter(|f| f.check == kind)
            .cloned()
            .collect();
        let note = (kind == CheckKind::Outputs).then(|| {
            let vecs = if roles.grid.is_some() {
                "all vectors at once (grid)".to_string()
            } else {
                format!("{} vectors", decl.m)
            };
            format!("{} output(s) x {vecs}", report.outputs)
        });
        report.checks.push(result(kind, condense(mine), note));
    }
    report
}

/// `f(i)` for every `i` in `order` on up to `workers` threads (each takes the next
/// index as it finishes one); results by index.
fn par_each<R: Send>(n: usize, order: &[usize], f: impl Fn(usize) -> R + Sync) -> Vec<R> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(order.len())
        .max(1);
    if workers == 1 {
        let mut out: Vec<Option<R>> = (0..n).map(|_| None).collect();
        for &k in order {
            out[k] = Some(f(k));
        }
        return out.into_iter().flatten().collect();
    }
    let next = AtomicUsize::new(0);
    let done: Mutex<Vec<(usize, R)>> = Mutex::new(Vec::with_capacity(n));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let at = next.fetch_add(1, Ordering::Relaxed);
                let Some(&k) = order.get(at) else { break };
                let r = f(k);
                if let Ok(mut d) = done.lock() {
                    d.push((k, r));
                }
            });
        }
    });
    let mut done = done.into_inner().unwrap_or_default();
    done.sort_by_key(|(k, _)| *k);
    done.into_iter().map(|(_, r)| r).collect()
}

/// The identity of a kernel's PTX (the same text or module, not equal text).
fn source_id(k: &KernelSource<'_>) -> (usize, usize, bool) {
    match k.ptx {
        Ptx::Text(t) => (t.as_ptr() as usize, t.len(), true),
        Ptx::Parsed(m) => (m as *const Module as usize, 0, false),
    }
}

/// Validates many pairs, on every available core; the report keeps the input order.
///
/// A single kernel shared by several pairs (the twin of every M) is parsed once, and
/// evaluated once per distinct batching prelude; every pair still parses and evaluates its
/// own batched kernel and compares the two.
pub fn validate_pairs(pairs: &[PairInput<'_>]) -> ParityReport {
    // Distinct single kernels, and per pair the distinct (single, prelude) it uses.
    let mut singles: Vec<usize> = Vec::new();
    let mut single_of = Vec::with_capacity(pairs.len());
    let mut evals: Vec<(usize, usize, Vec<String>)> = Vec::new();
    let mut eval_of = Vec::with_capacity(pairs.len());
    for (k, p) in pairs.iter().enumerate() {
        let id = (source_id(&p.single), p.single.name);
        let s = match singles
            .iter()
            .position(|&j| (source_id(&pairs[j].single), pairs[j].single.name) == id)
        {
            Some(s) => s,
            None => {
                singles.push(k);
                singles.len() - 1
            }
        };
        single_of.push(s);
        let pre = prelude(p.decl);
        let e = match evals.iter().position(|(js, _, jp)| *js == s && *jp == pre) {
            Some(e) => e,
            None => {
                evals.push((s, k, pre));
                evals.len() - 1
            }
        };
        eval_of.push(e);
    }
    let len = |k: &KernelSource<'_>| match k.ptx {
        Ptx::Text(t) => t.len(),
        Ptx::Parsed(_) => 0,
    };
    let by_size = |n: usize, size: &dyn Fn(usize) -> usize| {
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&k| std::cmp::Reverse(size(k)));
        order
    };
    let order = by_size(singles.len(), &|s| len(&pairs[singles[s]].single));
    let parsed: Vec<Result<Parsed<'_>, String>> = par_each(singles.len(), &order, |s| {
        parse(pairs[singles[s]].single.ptx, "single")
    });
    let order = by_size(evals.len(), &|e| len(&pairs[evals[e].1].single));
    let evaluated: Vec<Option<SingleEval<'_>>> = par_each(evals.len(), &order, |e| {
        let (s, k, _) = &evals[e];
        let p = &pairs[*k];
        single_eval(&parsed[*s], p.single.name, p.decl)
    });
    let order = by_size(pairs.len(), &|k| len(&pairs[k].batched));
    let reports = par_each(pairs.len(), &order, |k| {
        let p = &pairs[k];
        validate_parsed(
            p.single,
            p.batched,
            p.decl,
            &parsed[single_of[k]],
            evaluated[eval_of[k]].as_ref(),
        )
    });
    ParityReport { pairs: reports }
}

/// Validates a batched [`GeneratedKernel`] against its single twin under `decl`.
pub fn validate_generated(
    single: &GeneratedKernel,
    batched: &GeneratedKernel,
    decl: &BatchDecl,
) -> PairReport {
    validate_pair(single.into(), batched.into(), decl)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{generate, sample_specs};
    use crate::target::Target;

    /// Sample pairs (single, batched, claim) at M = 2 and 3.
    fn pairs() -> Vec<(GeneratedKernel, GeneratedKernel, BatchDecl)> {
        let mut out = Vec::new();
        for spec in sample_specs() {
            for m in [2, 3] {
                let Some(b) = spec.batched(m) else { continue };
                let Some(decl) = b.batch_decl() else { continue };
                let t = Target::dp4a_default();
                if let (Ok(s), Ok(bk)) = (generate(&spec, t), generate(&b, t)) {
                    out.push((s, bk, decl));
                }
            }
        }
        out
    }

    /// Text mutations of every kind the fast parser must read exactly like the real one:
    /// lines dropped, swapped or duplicated, immediates and registers changed, odd spacing
    /// and comments (which the fast path hands to the real parser).
    fn mutants(text: &str) -> Vec<String> {
        let lines: Vec<&str> = text.lines().collect();
        let body: Vec<usize> = (0..lines.len())
            .filter(|&k| lines[k].starts_with('\t') && lines[k].ends_with(';'))
            .collect();
        let mut out = Vec::new();
        let join = |ls: &[String]| ls.join("\n") + "\n";
        let owned = || lines.iter().map(|l| l.to_string()).collect::<Vec<_>>();
        let step = (body.len() / 12).max(1);
        for (n, &k) in body.iter().enumerate().step_by(step) {
            let mut ls = owned();
            match n % 7 {
                0 => {
                    ls.remove(k);
                }
                1 if k + 1 < ls.len() => ls.swap(k, k + 1),
                2 => ls.insert(k, lines[k].to_string()),
                3 => ls[k] = lines[k].replacen(", ", " ,  ", 1),
                4 => ls[k] = format!("{} // note", lines[k]),
                5 => ls[k] = lines[k].replacen('1', "2", 1),
                _ => ls[k] = lines[k].replacen("%r", "%rd", 1),
            }
            out.push(join(&ls));
        }
        out
    }

    #[test]
    fn the_fast_path_and_the_memo_give_the_reports_of_the_tree() {
        let ps = pairs();
        assert!(ps.len() > 10);
        let mut cases: Vec<(GeneratedKernel, GeneratedKernel, BatchDecl)> = Vec::new();
        for (n, (s, b, d)) in ps.iter().enumerate() {
            cases.push((s.clone(), b.clone(), d.clone()));
            if n % 2 == 1 {
                continue;
            }
            for t in mutants(&b.ptx) {
                let mut bm = b.clone();
                bm.ptx = t;
                cases.push((s.clone(), bm, d.clone()));
            }
        }
        let mut checked = 0;
        let mut failing = 0;
        for (s, b, d) in &cases {
            let fast = validate_generated(s, b, d);
            let (Ok(sm), Ok(bm)) = (
                crate::parse::parse_module(&s.ptx),
                crate::parse::parse_module(&b.ptx),
            ) else {
                continue;
            };
            let tree = validate_pair(
                KernelSource::parsed(&s.name, &sm)
                    .with_launch(&s.launch)
                    .with_params(&s.params),
                KernelSource::parsed(&b.name, &bm)
                    .with_launch(&b.launch)
                    .with_params(&b.params),
                d,
            );
            assert_eq!(fast, tree, "{}", b.name);
            checked += 1;
            failing += usize::from(!fast.passed());
        }
        assert!(checked > 1000 && failing > 500, "{checked} {failing}");
        // All pairs at once: each single kernel parsed and evaluated once.
        let inputs: Vec<PairInput<'_>> = cases
            .iter()
            .map(|(s, b, d)| PairInput {
                single: s.into(),
                batched: b.into(),
                decl: d,
            })
            .collect();
        let all = validate_pairs(&inputs);
        for (r, (s, b, d)) in all.pairs.iter().zip(&cases) {
            assert_eq!(*r, validate_generated(s, b, d), "{}", b.name);
        }
    }
}
