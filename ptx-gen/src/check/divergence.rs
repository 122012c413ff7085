//! Check 3: CTA barriers in thread-dependent control flow.
//!
//! A `bar.sync` that some threads of a CTA skip deadlocks the CTA or corrupts the next
//! barrier, and ptxas cannot know. The analysis is the classic divergence analysis:
//!
//! - **Thread-dependent values.** A register is tainted if an instruction that writes it
//!   reads `%tid.*`, `%laneid`, `%warpid`, `%lanemask_*`, `%clock*`, `%globaltimer*` or a
//!   tainted register, runs under a tainted guard, is an `atom` or `activemask` (different
//!   per thread even at one address), or sits in a divergent block (below): a value merged
//!   from paths only some threads took differs between threads. `.param`/`.local` variables
//!   written with tainted values taint what is loaded from them, and a `call` taints its
//!   return values if an argument is tainted or the callee may read a thread-dependent
//!   special register (callees outside the module are assumed to).
//! - **Divergent blocks.** On the CFG of basic blocks (from labels, `bra`, `brx.idx` with
//!   its `.branchtargets`, `ret`/`exit`/`trap`), block Y is control-dependent on branch X
//!   when Y post-dominates a successor of X but does not strictly post-dominate X (computed
//!   from post-dominator sets). A branch is tainted if its guard (or `brx` index) is; the
//!   divergent blocks are those control-dependent on a tainted branch, closed under control
//!   dependence (a uniform branch inside a divergent block still only runs for some
//!   threads). Taint and divergence are iterated together to a fixed point.
//! - **Findings.** A barrier (`bar`/`barrier` `.sync`/`.red`, not `.warp`, not `.arrive`)
//!   is flagged if its guard is tainted or its block is divergent. A barrier that
//!   post-dominates the tainted branch (`if (tid < n) {...} __syncthreads();`) is not
//!   control-dependent on it and passes; so does a loop whose trip count depends only on
//!   parameters, `%ctaid`, `%ntid` and immediates.
//!
//! Limits, all documented trade-offs: registers are tracked by name, not by definition, so
//! a register reused for a thread-dependent and a uniform value is tainted everywhere (a
//! false positive, never a miss); values loaded from global or shared memory at uniform
//! addresses count as uniform (memory written per thread and read back at one address is a
//! miss); barriers with an explicit thread count (`bar.sync 1, 64`) are exempt, since they
//! are meant for a subset of warps; a `.func`'s parameters are taken as uniform and its
//! barriers are checked within the function only; an early `ret`/`exit` of some threads
//! before a barrier is flagged, as CUDA requires all threads of the CTA to reach it; blocks
//! that cannot reach the exit (infinite loops) are given an edge to it.
//!
//! The CFG itself (basic blocks and successors) is in `cfg`; the post-dominator sets and
//! control dependence it needs are computed here.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::cfg::Cfg;
use super::registers::{is_thread_dependent_special, Body, RegId, SPECIAL};
use super::{finding, CheckKind, Finding};
use crate::ast::{AddrBase, Function, Instruction, Module, Operand};
use crate::emit::instruction_text;

impl Cfg {
    /// Post-dominator sets (bitsets over blocks and the exit), by the iterative
    /// dataflow pdom(b) = {b} ∪ ⋂ pdom(successors).
    fn post_dominators(&self) -> Vec<BitSet> {
        let size = self.exit + 1;
        let mut pdom: Vec<BitSet> = (0..size).map(|_| BitSet::full(size)).collect();
        pdom[self.exit] = BitSet::single(size, self.exit);
        let mut changed = true;
        while changed {
            changed = false;
            for b in (0..self.exit).rev() {
                let mut next = BitSet::full(size);
                for &s in &self.succs[b] {
                    next.intersect(&pdom[s]);
                }
                next.insert(b);
                if next != pdom[b] {
                    pdom[b] = next;
                    changed = true;
                }
            }
        }
        pdom
    }

    /// For each block X, the blocks control-dependent on X's branch.
    fn control_dependents(&self) -> Vec<Vec<usize>> {
        let pdom = self.post_dominators();
        (0..self.exit)
            .map(|x| {
                if !self.is_branch(x) {
                    return Vec::new();
                }
                let mut deps = BTreeSet::new();
                for &s in &self.succs[x] {
                    for y in pdom[s].iter().filter(|&y| y < self.exit) {
                        let strictly_pdoms_x = y != x && pdom[x].contains(y);
                        if !strictly_pdoms_x {
                            deps.insert(y);
                        }
                    }
                }
                deps.into_iter().collect()
            })
            .collect()
    }
}

#[derive(Clone, PartialEq, Eq)]
struct BitSet(Vec<u64>);

impl BitSet {
    fn full(n: usize) -> BitSet {
        let mut words = vec![u64::MAX; n.div_ceil(64)];
        if n % 64 != 0 {
            if let Some(last) = words.last_mut() {
                *last = (1u64 << (n % 64)) - 1;
            }
        }
        BitSet(words)
    }

    fn single(n: usize, k: usize) -> BitSet {
        let mut s = BitSet(vec![0; n.div_ceil(64)]);
        s.insert(k);
        s
    }

    fn insert(&mut self, k: usize) {
        if let Some(w) = self.0.get_mut(k / 64) {
            *w |= 1 << (k % 64);
        }
    }

    fn contains(&self, k: usize) -> bool {
        self.0.get(k / 64).is_some_and(|w| w & (1 << (k % 64)) != 0)
    }

    fn intersect(&mut self, other: &BitSet) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a &= b;
        }
    }

    fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().enumerate().flat_map(|(w, &bits)| {
            (0..64)
                .filter(move |k| bits & (1 << k) != 0)
                .map(move |k| w * 64 + k)
        })
    }
}

fn is_cta_barrier(i: &Instruction) -> bool {
    if !matches!(i.opcode.as_str(), "bar" | "barrier") || i.has_mod("warp") {
        return false;
    }
    match i.mods.first().map(String::as_str) {
        None | Some("sync") => i.operands.len() < 2,
        Some("red") => i.operands.len() < 4,
        _ => false,
    }
}

/// Whether a call to `name` may return a thread-dependent value on its own.
/// Whether a call to `name` may return a thread-dependent value although its arguments
/// are uniform: the callee, or anything it calls, reads a thread-dependent special
/// register, or is not defined in the module (external, or an indirect call's
/// prototype). Iterative, so a long call chain cannot overflow the stack.
fn callee_is_thread_dependent(m: &Module, name: &str) -> bool {
    let bodies: HashMap<&str, &Function> = m
        .functions()
        .filter(|f| f.body.is_some())
        .map(|f| (f.name.as_str(), f))
        .collect();
    let mut seen: HashSet<&str> = HashSet::new();
    let mut work = vec![name];
    while let Some(n) = work.pop() {
        if !seen.insert(n) {
            continue;
        }
        let Some(f) = bodies.get(n) else {
            return true;
        };
        for i in f.instructions() {
            if i.operands.iter().any(mentions_thread_special) {
                return true;
            }
            if i.opcode == "call" {
                work.extend(i.operands.iter().filter_map(|op| match op {
                    Operand::Symbol(c) => Some(c.as_str()),
                    _ => None,
                }));
            }
        }
    }
    false
}

fn mentions_thread_special(op: &Operand) -> bool {
    match op {
        Operand::Reg(r) => is_thread_dependent_special(r),
        Operand::Vector(items) | Operand::Tuple(items) => items.iter().any(mentions_thread_special),
        Operand::Not(inner) => mentions_thread_special(inner),
        Operand::PredPair(a, b) => is_thread_dependent_special(a) || is_thread_dependent_special(b),
        _ => false,
    }
}

/// A `call`'s return-tuple symbols, argument-tuple symbols and target name.
fn call_lists<'a>(i: &'a Instruction) -> (Vec<&'a str>, Vec<&'a str>, Option<&'a str>) {
    let names = |op: Option<&'a Operand>| -> Vec<&'a str> {
        match op {
            Some(Operand::Tuple(items)) => items
                .iter()
                .filter_map(|o| match o {
                    Operand::Symbol(s) => Some(s.as_str()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    };
    let rets = match i.operands.first() {
        Some(first @ Operand::Tuple(_)) => names(Some(first)),
        _ => Vec::new(),
    };
    let target = i.operands.iter().find_map(|o| match o {
        Operand::Symbol(s) => Some(s.as_str()),
        _ => None,
    });
    let args = names(
        i.operands
            .iter()
            .skip(1)
            .find(|o| matches!(o, Operand::Tuple(_))),
    );
    (rets, args, target)
}

pub(super) fn divergent_barriers(m: &Module, body: &Body<'_>) -> Vec<Finding> {
    if !body.sites.iter().any(|s| is_cta_barrier(s.instr)) {
        return Vec::new();
    }
    let cfg = Cfg::new(body);
    let deps = cfg.control_dependents();
    let nb = cfg.exit;
    let mut tainted: HashSet<RegId> = HashSet::new();
    let mut tainted_syms: HashSet<&str> = HashSet::new();
    // For each divergent block, the tainted branch (its block) it depends on.
    let mut divergent_by: Vec<Option<usize>> = vec![None; nb];
    let thread_callee: HashMap<&str, bool> = body
        .sites
        .iter()
        .filter(|s| s.instr.opcode == "call")
        .filter_map(|s| call_lists(s.instr).2)
        .map(|t| (t, callee_is_thread_dependent(m, t)))
        .collect();
    let is_tainted = |tainted: &HashSet<RegId>, r: &RegId| {
        tainted.contains(r) || (r.scope == SPECIAL && is_thread_dependent_special(r.name))
    };
    loop {
        let mut changed = false;
        for (k, site) in body.sites.iter().enumerate() {
            let i = site.instr;
            let block = cfg.block_of.get(k).copied().unwrap_or(0);
            let source = divergent_by.get(block).is_some_and(Option::is_some)
                || site.guard.as_ref().is_some_and(|g| is_tainted(&tainted, g))
                || site.uses.iter().any(|r| is_tainted(&tainted, r))
                || site.symbols.iter().any(|s| tainted_syms.contains(s))
                || matches!(i.opcode.as_str(), "atom" | "activemask");
            if source {
                for d in &site.defs {
                    changed |= tainted.insert(*d);
                }
            }
            let memory = i.opcode == "st" && (i.has_mod("param") || i.has_mod("local"));
            if memory && source {
                if let Some(Operand::Address(a)) = i.operands.first() {
                    if let Some(AddrBase::Symbol(s)) = &a.base {
                        changed |= tainted_syms.insert(s.as_str());
                    }
                }
            }
            if i.opcode == "call" {
                let (rets, args, target) = call_lists(i);
                let callee = target
                    .and_then(|t| thread_callee.get(t))
                    .copied()
                    .unwrap_or(true);
                if source || callee || args.iter().any(|a| tainted_syms.contains(a)) {
                    for r in rets {
                        changed |= tainted_syms.insert(r);
                    }
                }
            }
        }
        // Tainted branches, then everything control-dependent on them, transitively.
        let mut next: Vec<Option<usize>> = vec![None; nb];
        let mut work: Vec<(usize, usize)> = Vec::new();
        for (b, &(_, e)) in cfg.blocks.iter().enumerate() {
            let Some(last) = e.checked_sub(1).and_then(|k| body.sites.get(k)) else {
                continue;
            };
            let guard_tainted = last.guard.as_ref().is_some_and(|g| is_tainted(&tainted, g));
            let index_tainted =
                last.instr.opcode == "brx" && last.uses.iter().any(|r| is_tainted(&tainted, r));
            if cfg.is_branch(b) && (guard_tainted || index_tainted) {
                work.push((b, b));
            }
        }
        while let Some((x, root)) = work.pop() {
            for &y in deps.get(x).map_or(&[][..], Vec::as_slice) {
                if next[y].is_none() {
                    next[y] = Some(root);
                    if cfg.is_branch(y) {
                        work.push((y, root));
                    }
                }
            }
        }
        // Which blocks are divergent decides termination; which root each names is
        // only for the message.
        let grew = next
            .iter()
            .zip(&divergent_by)
            .any(|(a, b)| a.is_some() != b.is_some());
        divergent_by = next;
        changed |= grew;
        if !changed {
            break;
        }
    }
    let mut out = Vec::new();
    for (k, site) in body.sites.iter().enumerate() {
        if !is_cta_barrier(site.instr) {
            continue;
        }
        let name = &body.function.name;
        if let Some(g) = site.guard.as_ref().filter(|g| is_tainted(&tainted, g)) {
            let msg = format!(
                "barrier runs under `{}`, which depends on the thread index; the threads \
                 that skip it leave the others waiting",
                g.name
            );
            out.push(finding(
                name,
                CheckKind::DivergentBarrier,
                msg,
                Some(site.instr),
            ));
            continue;
        }
        let block = cfg.block_of.get(k).copied().unwrap_or(0);
        if let Some(root) = divergent_by.get(block).copied().flatten() {
            let branch = cfg
                .blocks
                .get(root)
                .and_then(|&(_, e)| body.sites.get(e.wrapping_sub(1)))
                .map_or_else(String::new, |s| instruction_text(s.instr));
            let msg = format!(
                "barrier is reached only by the threads that take one side of `{branch}`, \
                 a branch that depends on the thread index"
            );
            out.push(finding(
                name,
                CheckKind::DivergentBarrier,
                msg,
                Some(site.instr),
            ));
        }
    }
    out
}
