//! Control flow: branch and call targets (check 2), paths that fall off the end of a body
//! (check 6), and the basic blocks of a body that the divergence analysis runs on.
//!
//! Checks 2 and 6 only need the instructions and labels `registers::Body` collects; the
//! `Cfg` of basic blocks is built on demand by `divergence` (only for bodies with a
//! barrier), which also holds the post-dominator and control-dependence computations on it.

use std::collections::{BTreeSet, HashSet};

use super::registers::Body;
use super::{finding, CheckKind, Finding};
use crate::ast::{Instruction, Module, Operand};

/// Check 2: `bra` and `brx.idx` targets are labels of this function (and every label of a
/// `.branchtargets` list is), `call` targets are functions of the module.
pub(super) fn branch_targets(m: &Module, body: &Body<'_>) -> Vec<Finding> {
    let functions: HashSet<&str> = m.functions().map(|f| f.name.as_str()).collect();
    let name = &body.function.name;
    let mut out = Vec::new();
    let mut report = |msg: String, i: &Instruction| {
        out.push(finding(name, CheckKind::BranchTarget, msg, Some(i)));
    };
    for site in &body.sites {
        let i = site.instr;
        match i.opcode.as_str() {
            "bra" => match i.operands.first() {
                Some(Operand::Symbol(l)) if body.labels.contains_key(l.as_str()) => {}
                Some(Operand::Symbol(l)) => report(format!("no label `{l}` in this function"), i),
                _ => report("`bra` needs a label as its target".into(), i),
            },
            "brx" => match i.operands.get(1) {
                Some(Operand::Symbol(t)) => match body.tables.get(t.as_str()) {
                    Some(targets) => {
                        for l in targets
                            .iter()
                            .filter(|l| !body.labels.contains_key(l.as_str()))
                        {
                            report(format!("`.branchtargets` list `{t}` names `{l}`, which is no label of this function"), i);
                        }
                    }
                    None => report(
                        format!("`{t}` is not a `.branchtargets` list of this function"),
                        i,
                    ),
                },
                _ => report(
                    "`brx.idx` needs an index and a `.branchtargets` label".into(),
                    i,
                ),
            },
            "call" => {
                let target = i.operands.iter().find(|o| !matches!(o, Operand::Tuple(_)));
                match target {
                    Some(Operand::Symbol(f)) if functions.contains(f.as_str()) => {}
                    Some(Operand::Symbol(f)) => {
                        report(format!("no function `{f}` in this module"), i)
                    }
                    Some(Operand::Reg(_)) => {} // an indirect call; the register is check 1's
                    _ => report("`call` needs a function as its target".into(), i),
                }
            }
            _ => {}
        }
    }
    out
}

/// Whether control can leave instruction `i` only by jumping (or stopping).
fn ends_path(i: &Instruction) -> bool {
    i.guard.is_none() && matches!(i.opcode.as_str(), "ret" | "exit" | "trap" | "bra" | "brx")
}

/// Check 6: the last instruction of the body ends every path through it (an unguarded
/// `ret`, `exit`, `trap`, `bra` or `brx`), and no branch targets a label written after the
/// last instruction. Together these mean no path falls off the end, since falling through
/// past the end can only happen from the last instruction or by jumping past it.
pub(super) fn falls_off_end(body: &Body<'_>) -> Vec<Finding> {
    let name = &body.function.name;
    let mut out = Vec::new();
    match body.sites.last() {
        None => out.push(finding(
            name,
            CheckKind::FallsOffEnd,
            "the body has no instructions; it needs at least a `ret` or `exit`".into(),
            None,
        )),
        Some(last) if !ends_path(last.instr) => out.push(finding(
            name,
            CheckKind::FallsOffEnd,
            "the last instruction can fall through past the end of the body; end it with an \
             unguarded `ret`, `exit`, `trap` or `bra`"
                .into(),
            Some(last.instr),
        )),
        Some(_) => {}
    }
    let end = body.sites.len();
    for site in &body.sites {
        if site.instr.opcode != "bra" {
            continue;
        }
        if let Some(Operand::Symbol(l)) = site.instr.operands.first() {
            if body.labels.get(l.as_str()) == Some(&end) {
                let msg = format!("`{l}` labels the end of the body, so this branch falls off it");
                out.push(finding(name, CheckKind::FallsOffEnd, msg, Some(site.instr)));
            }
        }
    }
    out
}

/// Basic blocks over the instructions of a body.
pub(super) struct Cfg {
    /// `[start, end)` instruction ranges.
    pub(super) blocks: Vec<(usize, usize)>,
    pub(super) block_of: Vec<usize>,
    /// Successor blocks; `exit` (== blocks.len()) is the virtual exit.
    pub(super) succs: Vec<Vec<usize>>,
    pub(super) exit: usize,
}

fn is_transfer(i: &Instruction) -> bool {
    matches!(i.opcode.as_str(), "bra" | "brx" | "ret" | "exit" | "trap")
}

impl Cfg {
    pub(super) fn new(body: &Body<'_>) -> Cfg {
        let n = body.sites.len();
        let mut leaders: BTreeSet<usize> = BTreeSet::new();
        if n > 0 {
            leaders.insert(0);
        }
        leaders.extend(body.labels.values().copied().filter(|&k| k < n));
        for (k, s) in body.sites.iter().enumerate() {
            if is_transfer(s.instr) && k + 1 < n {
                leaders.insert(k + 1);
            }
        }
        let starts: Vec<usize> = leaders.into_iter().collect();
        let blocks: Vec<(usize, usize)> = starts
            .iter()
            .enumerate()
            .map(|(b, &s)| (s, starts.get(b + 1).copied().unwrap_or(n)))
            .collect();
        let mut block_of = vec![0; n];
        for (b, &(s, e)) in blocks.iter().enumerate() {
            block_of[s..e].iter_mut().for_each(|x| *x = b);
        }
        let exit = blocks.len();
        let block_at = |k: usize| if k < n { block_of[k] } else { exit };
        let label_block = |l: &str| body.labels.get(l).map(|&k| block_at(k));
        let mut succs = Vec::with_capacity(blocks.len());
        for &(_, e) in &blocks {
            let last = &body.sites[e - 1];
            let i = last.instr;
            let fallthrough = block_at(e);
            let mut next: Vec<usize> = match i.opcode.as_str() {
                "bra" => match i.operands.first() {
                    Some(Operand::Symbol(l)) => label_block(l).into_iter().collect(),
                    _ => Vec::new(),
                },
                "brx" => {
                    let table = match i.operands.get(1) {
                        Some(Operand::Symbol(t)) => body.tables.get(t.as_str()),
                        _ => None,
                    };
                    match table {
                        Some(ls) => ls.iter().filter_map(|l| label_block(l)).collect(),
                        // Unknown table: any label may be the target.
                        None => body.labels.values().map(|&k| block_at(k)).collect(),
                    }
                }
                "ret" | "exit" | "trap" => vec![exit],
                _ => vec![fallthrough],
            };
            if is_transfer(i) && i.guard.is_some() {
                next.push(fallthrough);
            }
            if next.is_empty() {
                next.push(exit);
            }
            next.sort_unstable();
            next.dedup();
            succs.push(next);
        }
        let mut cfg = Cfg {
            blocks,
            block_of,
            succs,
            exit,
        };
        cfg.connect_dead_ends();
        cfg
    }

    /// Gives every block that cannot reach the exit an edge to it, so that
    /// post-dominance is defined everywhere.
    fn connect_dead_ends(&mut self) {
        let mut preds = vec![Vec::new(); self.exit + 1];
        for (b, ss) in self.succs.iter().enumerate() {
            for &s in ss {
                preds[s].push(b);
            }
        }
        let mut reaches = vec![false; self.exit + 1];
        let mut stack = vec![self.exit];
        reaches[self.exit] = true;
        while let Some(x) = stack.pop() {
            for &p in &preds[x] {
                if !reaches[p] {
                    reaches[p] = true;
                    stack.push(p);
                }
            }
        }
        for (b, ss) in self.succs.iter_mut().enumerate() {
            if !reaches[b] {
                ss.push(self.exit);
            }
        }
    }

    pub(super) fn is_branch(&self, b: usize) -> bool {
        self.succs.get(b).is_some_and(|s| s.len() > 1)
    }
}
