//! Turning a difference into a finding: which check it breaks, which instructions of
//! the two kernels it is at (located as closely as the graphs allow: a differing
//! coefficient is followed back to the instruction that introduced it; swapped operands,
//! an extra or a missing operation are recognised by comparing structural shapes along
//! the path from the output), and a sentence saying what differs.

use super::{Cmp, Edit, Reason, Side, Visit, ROOT};
use crate::parity::graph::{Graph, Node, NodeId, Space};
use crate::parity::report::{CheckKind, Finding};

impl Cmp<'_> {
    /// Compares one pair on its own (for locating a difference), leaving the memo as it
    /// was.
    pub(super) fn trial(&mut self, s: NodeId, b: NodeId) -> Result<(), Reason> {
        let saved = (
            std::mem::take(&mut self.seen),
            std::mem::take(&mut self.seen_all),
            std::mem::take(&mut self.trail),
            std::mem::take(&mut self.stack),
        );
        let r = self
            .run(&[Visit {
                s,
                b,
                parent: ROOT,
                arg: 0,
                ctl: false,
                term: false,
            }])
            .map_err(|(_, r)| r);
        (self.seen, self.seen_all, self.trail, self.stack) = saved;
        r
    }

    /// For index arithmetic whose terms differ: follows the operands each form was built
    /// from down to the instruction whose own coefficient (or operand count) differs.
    pub(super) fn localize(&mut self, s: NodeId, b: NodeId) -> (NodeId, NodeId) {
        let mut cur = (s, b);
        for _ in 0..64 {
            let (Some(ps), Some(pb)) = (
                self.s.g.parts.get(&cur.0).cloned(),
                self.b.g.parts.get(&cur.1).cloned(),
            ) else {
                break;
            };
            if ps.len() != pb.len() {
                break;
            }
            let mut next = None;
            for (x, y) in ps.iter().zip(pb.iter()) {
                if x.1 != y.1 {
                    return cur;
                }
                if matches!(self.trial(x.0, y.0), Err(Reason::Terms)) {
                    next = Some((x.0, y.0));
                    break;
                }
            }
            match next {
                Some(n) => cur = n,
                None => break,
            }
        }
        cur
    }

    // ---- findings ------------------------------------------------------------------

    pub(super) fn describe(&self, side: Side<'_>, n: NodeId) -> String {
        let g = side.g;
        let names = self.names;
        match g.node(n) {
            Node::Int(v) if (-256..=256).contains(v) => format!("immediate {v}"),
            Node::Int(v) => format!("immediate {v} ({v:#x})"),
            Node::F32(b) => format!("immediate 0f{b:08X} ({})", f32::from_bits(*b)),
            Node::F64(b) => format!("immediate 0d{b:016X}"),
            Node::Float(s) => format!("immediate {}", names.str(*s)),
            Node::Bool(b) => format!("constant predicate {b}"),
            Node::Param(p) => format!("parameter `{}`", names.str(*p)),
            Node::Addr(s) => format!("address of `{}`", names.str(*s)),
            Node::Special(s) => format!("`{}`", names.str(*s)),
            Node::Undef(r) => format!(
                "register `{}` read before any write",
                side.prog.reg_names.get(*r as usize).copied().unwrap_or("?")
            ),
            Node::MemInit(Space::Shared) => "shared memory as the kernel starts".into(),
            Node::MemInit(Space::Local) => "local memory as the kernel starts".into(),
            _ => self
                .origin_text(side, n)
                .unwrap_or_else(|| "a merged value".into()),
        }
    }

    pub(super) fn origin_text(&self, side: Side<'_>, n: NodeId) -> Option<String> {
        let k = *side.g.origin.get(n as usize)?;
        side.prog
            .src
            .get(k as usize)
            .map(|i| format!("`{}`", i.text()))
    }

    pub(super) fn is_leaf(g: &Graph, n: NodeId) -> bool {
        matches!(
            g.node(n),
            Node::Int(_)
                | Node::F32(_)
                | Node::F64(_)
                | Node::Float(_)
                | Node::Bool(_)
                | Node::Param(_)
                | Node::Addr(_)
                | Node::Special(_)
                | Node::Undef(_)
        )
    }

    pub(super) fn is_shfl(&self, g: &Graph, n: NodeId) -> bool {
        match g.node(n) {
            Node::Op { key, .. } => self.names.str(*key).starts_with("shfl"),
            Node::Proj(x, _) => self.is_shfl(g, *x),
            _ => false,
        }
    }

    pub(super) fn is_reduction(&self, g: &Graph, n: NodeId) -> bool {
        match g.node(n) {
            Node::Op { key, args } => {
                let k = self.names.str(*key);
                k.starts_with("shfl")
                    || k.contains(".shared")
                    || args.iter().any(|&a| self.is_shfl(g, a))
            }
            Node::Proj(x, _) => self.is_shfl(g, *x),
            Node::MemStore { key, .. } => self.names.str(*key).contains(".shared"),
            Node::MemBarrier { .. } | Node::MemInit(Space::Shared) => true,
            _ => false,
        }
    }

    pub(super) fn is_control(g: &Graph, n: NodeId) -> bool {
        matches!(
            g.node(n),
            Node::Gate(..)
                | Node::Not(_)
                | Node::And(..)
                | Node::Or(..)
                | Node::Bool(_)
                | Node::Loop(_)
                | Node::Mu(..)
        )
    }

    pub(super) fn classify(&self, at: usize, reason: &Reason) -> CheckKind {
        let vi = self.trail[at];
        let (sg, bg) = (self.s.g, self.b.g);
        let addressing = matches!(
            reason,
            Reason::Offset { .. } | Reason::Grid { .. } | Reason::Terms
        );
        if vi.parent == ROOT && vi.arg == 0 && !vi.ctl && addressing {
            // The output's own address: it writes the wrong place.
            return CheckKind::Outputs;
        }
        // Immediates, parameters and index arithmetic belong to the instruction using them.
        let operand_like =
            |g: &Graph, n: NodeId| Self::is_leaf(g, n) || matches!(g.node(n), Node::Affine { .. });
        let leaf = operand_like(sg, vi.s) && operand_like(bg, vi.b);
        let anchor = if leaf && vi.parent != ROOT {
            self.trail[vi.parent as usize]
        } else {
            vi
        };
        if self.is_reduction(sg, anchor.s) || self.is_reduction(bg, anchor.b) {
            CheckKind::Reduction
        } else if vi.ctl || Self::is_control(sg, vi.s) || Self::is_control(bg, vi.b) {
            CheckKind::Control
        } else {
            CheckKind::Dataflow
        }
    }

    pub(super) fn kind_name(g: &Graph, n: NodeId) -> &'static str {
        match g.node(n) {
            Node::Gate(..) => "a value merged under a branch or guard",
            Node::Undef(_) => "an undefined register",
            Node::Int(_) | Node::F32(_) | Node::F64(_) | Node::Float(_) | Node::Bool(_) => {
                "an immediate"
            }
            Node::Param(_) => "a parameter",
            Node::Special(_) => "a special register",
            Node::Affine { .. } => "index arithmetic",
            Node::Mu(..) | Node::Exit(..) | Node::Loop(_) => "a loop-carried value",
            Node::MemStore { .. } | Node::MemBarrier { .. } | Node::MemInit(_) => "a memory state",
            Node::Not(_) | Node::And(..) | Node::Or(..) => "a path condition",
            _ => "an operation",
        }
    }

    /// `desc`, with the instruction it is an operand of when that is another one.
    pub(super) fn in_context(
        &self,
        side: Side<'_>,
        n: NodeId,
        parent: Option<(NodeId, u16)>,
    ) -> String {
        let d = self.describe(side, n);
        let Some((p, arg)) = parent else { return d };
        let own = !Self::is_leaf(side.g, n)
            && side.g.origin.get(n as usize) == side.g.origin.get(p as usize);
        match (self.origin_text(side, p), side.g.node(p)) {
            (Some(t), _) if own => {
                let _ = t;
                d
            }
            (Some(t), Node::Gate(..)) => format!("{d}, merged at {t}"),
            (Some(t), Node::And(..) | Node::Or(..) | Node::Not(_)) => {
                format!("{d}, in the condition of {t}")
            }
            (Some(t), _) => format!("{d}, operand {} of {t}", arg + 1),
            (None, _) => d,
        }
    }

    /// Looks along the comparison path, from the output down to the difference, for the
    /// first place that reads as a simple edit: operands in another order, an operation
    /// one kernel has and the other does not. (Top-down: below a real insertion, pairs
    /// are misaligned and can look like spurious edits.)
    pub(super) fn explain(&self, at: usize) -> Option<(usize, Edit)> {
        let ss = self.s.g.shapes();
        let bs = self.b.g.shapes();
        let mut path = vec![at];
        while let Some(&k) = path.last() {
            match self.trail[k].parent {
                ROOT => break,
                p => path.push(p as usize),
            }
        }
        for &k in path.iter().rev() {
            let vi = self.trail[k];
            let (s, b) = (vi.s, vi.b);
            let (os, ob) = (self.s.g.operands(s), self.b.g.operands(b));
            let same_op = match (self.s.g.node(s), self.b.g.node(b)) {
                (Node::Op { key: k1, .. }, Node::Op { key: k2, .. }) => k1 == k2,
                (x, y) => std::mem::discriminant(x) == std::mem::discriminant(y),
            };
            if same_op && os.len() == ob.len() && os.len() >= 2 {
                let (mut a, mut c): (Vec<u64>, Vec<u64>) = (
                    os.iter().map(|&x| ss[x as usize]).collect(),
                    ob.iter().map(|&x| bs[x as usize]).collect(),
                );
                if a != c {
                    a.sort_unstable();
                    c.sort_unstable();
                    if a == c {
                        return Some((k, Edit::Swapped));
                    }
                }
            }
            if let Some(&x) = ob.iter().find(|&&x| bs[x as usize] == ss[s as usize]) {
                return Some((k, Edit::Extra(x)));
            }
            if let Some(&x) = os.iter().find(|&&x| ss[x as usize] == bs[b as usize]) {
                return Some((k, Edit::Missing(x)));
            }
        }
        None
    }

    /// The user of pair `k`'s node, for context: always for immediates and other leaves;
    /// for an operation only when it is per-vector (an operation shared by all vectors is
    /// named on its own, so that one finding covers them all).
    pub(super) fn parent_of(&self, k: usize, s_side: bool) -> Option<(NodeId, u16)> {
        let vi = self.trail[k];
        let wanted = (Self::is_leaf(self.s.g, vi.s) && Self::is_leaf(self.b.g, vi.b))
            || self.dep[vi.s as usize];
        (vi.parent != ROOT && wanted).then(|| {
            let p = self.trail[vi.parent as usize];
            (if s_side { p.s } else { p.b }, vi.arg)
        })
    }

    pub(super) fn finding(&mut self, at: usize, reason: &Reason, output: &str) -> Finding {
        let vi = self.trail[at];
        let (s, b) = (self.s, self.b);
        let check = self.classify(at, reason);
        let simple = matches!(
            reason,
            Reason::Kind | Reason::Key | Reason::Imm | Reason::Arity | Reason::Terms
        );
        let edit = if simple { self.explain(at) } else { None };
        let (message, single, batched) = match edit {
            Some((k, edit)) => {
                let e = self.trail[k];
                let name = |g: &Graph, n: NodeId| match g.node(n) {
                    Node::And(..) | Node::Or(..) | Node::Not(_) => "condition",
                    Node::Gate(..) => "guard",
                    _ => "operation",
                };
                match edit {
                    Edit::Swapped => (
                        "operands in a different order".to_string(),
                        self.in_context(s, e.s, self.parent_of(k, true)),
                        self.in_context(b, e.b, self.parent_of(k, false)),
                    ),
                    Edit::Extra(keep) => {
                        let extra = b.g.operands(e.b).into_iter().find(|&x| x != keep);
                        let what = name(b.g, e.b);
                        let msg = match (what, extra) {
                            ("condition", Some(x)) => format!("the batched kernel has an extra condition: {}", self.describe(b, x)),
                            ("guard", _) => "the batched kernel guards (or merges under a branch) a value the single kernel computes unconditionally".to_string(),
                            _ => "the batched kernel has an extra operation here".to_string(),
                        };
                        (
                            msg,
                            self.in_context(s, e.s, self.parent_of(k, true)),
                            self.in_context(b, e.b, self.parent_of(k, false)),
                        )
                    }
                    Edit::Missing(keep) => {
                        let lost = s.g.operands(e.s).into_iter().find(|&x| x != keep);
                        let what = name(s.g, e.s);
                        let msg = match (what, lost) {
                            ("condition", Some(x)) => format!("the batched kernel lacks the condition {}", self.describe(s, x)),
                            ("guard", Some(x)) => format!(
                                "the batched kernel computes unconditionally what the single kernel guards by {}",
                                self.describe(s, x)
                            ),
                            _ => format!("the batched kernel lacks the operation {}", self.describe(s, e.s)),
                        };
                        (
                            msg,
                            self.in_context(s, e.s, self.parent_of(k, true)),
                            self.in_context(b, e.b, self.parent_of(k, false)),
                        )
                    }
                }
            }
            None => {
                let (ls, lb) = if matches!(reason, Reason::Terms) {
                    self.localize(vi.s, vi.b)
                } else {
                    (vi.s, vi.b)
                };
                let (ps, pb) = if (ls, lb) == (vi.s, vi.b) {
                    (self.parent_of(at, true), self.parent_of(at, false))
                } else {
                    (None, None)
                };
                let single = self.in_context(s, ls, ps);
                let batched = self.in_context(b, lb, pb);
                (self.message(reason, vi, ls, lb), single, batched)
            }
        };
        Finding {
            check,
            vectors: self.vectors(),
            message,
            single: Some(single),
            batched: Some(batched),
            output: Some(output.to_string()),
        }
    }

    pub(super) fn message(&self, reason: &Reason, vi: Visit, ls: NodeId, lb: NodeId) -> String {
        let (s, b) = (self.s, self.b);
        let key = |g: &Graph, n: NodeId| match g.node(n) {
            Node::Op { key, .. }
            | Node::Unique { key, .. }
            | Node::MemStore { key, .. }
            | Node::MemBarrier { key, .. } => self.names.str(*key).to_string(),
            _ => String::new(),
        };
        match reason {
            Reason::Key => format!("operation differs: `{}` in the single kernel, `{}` in the batched", key(s.g, vi.s), key(b.g, vi.b)),
            Reason::Imm => "immediate differs".to_string(),
            Reason::Arity => "operand count differs".to_string(),
            Reason::Param => "reads a different parameter".to_string(),
            Reason::Special => "reads a different special register".to_string(),
            Reason::Symbol => "names a different variable".to_string(),
            Reason::Terms => {
                let (a, c) = (s.g.linear(ls).0, b.g.linear(lb).0);
                let coefs = |l: &[(NodeId, i64)]| l.iter().map(|t| t.1.to_string()).collect::<Vec<_>>().join(", ");
                format!(
                    "index arithmetic differs: coefficients [{}] in the single kernel, [{}] in the batched",
                    coefs(&a),
                    coefs(&c)
                )
            }
            Reason::Kind => match (s.g.node(vi.s), b.g.node(vi.b)) {
                (Node::Proj(_, i), Node::Proj(_, j)) => format!("uses result {i} of an operation in the single kernel, result {j} in the batched"),
                _ => format!("the single kernel has {} where the batched kernel has {}", Self::kind_name(s.g, vi.s), Self::kind_name(b.g, vi.b)),
            },
            Reason::Offset { param, per_vector, single: c, expected, found } => {
                let p = param.map_or_else(|| "memory".to_string(), |p| format!("`{}`", self.names.str(p)));
                if *per_vector {
                    let stride = param.and_then(|p| self.roles.per_vector.get(&p)).copied().unwrap_or(0);
                    format!(
                        "addresses {p} at offset {found} for vector {v}; expected {expected} (the single kernel's {c} + {v} x stride {stride})",
                        v = self.v
                    )
                } else if param.is_some() {
                    format!("addresses {p} at offset {found}; expected {expected}, the single kernel's offset (not a per-vector buffer)")
                } else {
                    format!("integer arithmetic adds {found} where the single kernel adds {expected}")
                }
            }
            Reason::Grid { expected, found } => format!(
                "the per-vector term `{}` has coefficient {found}; expected {expected} (the declared stride)",
                self.roles.grid.map_or("", |g| self.names.str(g))
            ),
            Reason::Table(t) => t.clone(),
        }
    }
}
