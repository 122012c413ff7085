//! Per-vector comparison of the two value graphs: the outputs are matched by address, and
//! each matched pair's backward slice (address, stored values, path condition) is walked
//! in lockstep, once per vector, from the outputs towards the parameters.
//!
//! The walk is a depth-first traversal of node pairs with a memo of pairs already known
//! to agree, so each (single node, batched node) pair is examined once per vector and the
//! whole comparison is linear in the size of the slices. Loops summarised with `Mu` nodes
//! are cyclic; a pair met again while it is being compared is taken as equal
//! (coinduction), which is what equality of the two recurrences means.

use std::collections::HashSet;
use std::hash::BuildHasherDefault;

mod explain;

use super::cfg::Program;
use super::graph::{Event, Fx, FxMap, Graph, Names, Node, NodeId, Space, Sym};
use super::report::{CheckKind, Finding};

/// One evaluated kernel.
#[derive(Clone, Copy)]
pub(crate) struct Side<'x> {
    pub g: &'x Graph,
    pub prog: &'x Program<'x>,
}

/// A single-kernel parameter that the batched kernel reads from a table per vector.
pub(crate) struct Table {
    pub table: Sym,
    pub stride: i64,
    pub bits: u32,
}

/// The batching claim resolved to interned names.
pub(crate) struct Roles {
    pub per_vector: FxMap<Sym, i64>,
    pub tables: FxMap<Sym, Table>,
    /// `%ctaid.<axis>` when vectors go over the grid.
    pub grid: Option<Sym>,
    pub m: u32,
    /// Per-vector shared variables: the single kernel's name -> the batched kernel's copy
    /// for each vector.
    pub shared_vars: FxMap<Sym, Vec<Sym>>,
    /// The batched kernel's copies -> their vector.
    pub vector_of_var: FxMap<Sym, i64>,
}

#[derive(Debug, Clone, Copy)]
struct Visit {
    s: NodeId,
    b: NodeId,
    parent: u32,
    arg: u16,
    ctl: bool,
    term: bool,
}

const ROOT: u32 = u32::MAX;

/// A difference read as an edit of the single kernel.
#[derive(Debug, Clone, Copy)]
enum Edit {
    Swapped,
    /// The batched node is an extra operation around this operand.
    Extra(NodeId),
    /// The single node is an operation the batched kernel lacks (it uses this operand).
    Missing(NodeId),
}

#[derive(Debug)]
enum Reason {
    Kind,
    Key,
    Imm,
    Arity,
    Param,
    Special,
    Symbol,
    Terms,
    Offset {
        param: Option<Sym>,
        per_vector: bool,
        single: i64,
        expected: i64,
        found: i64,
    },
    Grid {
        expected: i64,
        found: i64,
    },
    Table(String),
}

struct Cmp<'x> {
    s: Side<'x>,
    b: Side<'x>,
    names: &'x Names,
    roles: &'x Roles,
    v: i64,
    /// Per single-kernel node: whether its value depends on the vector (a per-vector
    /// buffer or table is in its slice, or a loop-carried value, conservatively).
    dep: Vec<bool>,
    /// Pairs known to agree for the current vector.
    seen: HashSet<u64, BuildHasherDefault<Fx>>,
    /// Pairs known to agree whatever the vector (no per-vector input below them).
    seen_all: HashSet<u64, BuildHasherDefault<Fx>>,
    trail: Vec<Visit>,
    stack: Vec<Visit>,
    ts_buf: Vec<(NodeId, i64)>,
    tb_buf: Vec<(NodeId, i64)>,
    /// Batched memory states some shared-memory load or atomic reads (the chain state it
    /// takes as its last operand).
    shared_reads: HashSet<NodeId, BuildHasherDefault<Fx>>,
    /// [`Cmp::past_other_copies`] of batched memory states, for the current vector.
    past: FxMap<NodeId, NodeId>,
}

/// What the comparison found.
pub(crate) struct Outcome {
    pub findings: Vec<Finding>,
    pub slices: usize,
}

fn param_of(g: &Graph, names: &Names, n: NodeId) -> Option<Sym> {
    match g.node(n) {
        Node::Param(p) => Some(*p),
        Node::Op { key, args } if args.len() == 1 && names.str(*key).starts_with("cvta") => {
            match g.node(args[0]) {
                Node::Param(p) => Some(*p),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Orders terms by coefficient, then shape (a stable sort; one or two terms without
/// calling into `sort`).
fn sort_terms(t: &mut [(NodeId, i64)], g: &Graph) {
    let key = |&(n, k): &(NodeId, i64)| (k, sig(g, n));
    match t.len() {
        0 | 1 => {}
        2 => {
            if key(&t[1]) < key(&t[0]) {
                t.swap(0, 1);
            }
        }
        _ => t.sort_by_key(key),
    }
}

/// A coarse shape used to pair the terms of two affine forms that share a coefficient.
fn sig(g: &Graph, n: NodeId) -> (u8, i64) {
    match g.node(n) {
        Node::Op { key, .. } | Node::Unique { key, .. } => (1, i64::from(*key)),
        Node::Param(p) => (2, i64::from(*p)),
        Node::Special(s) => (3, i64::from(*s)),
        Node::Addr(s) => (4, i64::from(*s)),
        Node::Proj(_, k) => (5, i64::from(*k)),
        Node::Gate(..) => (6, 0),
        Node::Mu(..) => (7, 0),
        Node::Exit(..) => (8, 0),
        _ => (9, 0),
    }
}

impl<'x> Cmp<'x> {
    fn new(s: Side<'x>, b: Side<'x>, names: &'x Names, roles: &'x Roles) -> Cmp<'x> {
        let g = s.g;
        let mut dep = vec![false; g.nodes.len()];
        for (k, n) in g.nodes.iter().enumerate() {
            dep[k] = match n {
                Node::Param(p) => roles.per_vector.contains_key(p) || roles.tables.contains_key(p),
                Node::Addr(a) => roles.shared_vars.contains_key(a),
                Node::Mu(..) | Node::Exit(..) | Node::Loop(_) => true,
                Node::Op { args, .. } | Node::Unique { args, .. } => {
                    args.iter().any(|&a| dep[a as usize])
                }
                Node::Affine { terms, .. } => terms.iter().any(|&(a, _)| dep[a as usize]),
                Node::Proj(a, _) | Node::Not(a) => dep[*a as usize],
                Node::And(a, b) | Node::Or(a, b) => dep[*a as usize] || dep[*b as usize],
                Node::Gate(c, a, b) => dep[*c as usize] || dep[*a as usize] || dep[*b as usize],
                Node::MemStore {
                    prev,
                    addr,
                    vals,
                    pc,
                    ..
                } => {
                    dep[*prev as usize]
                        || dep[*addr as usize]
                        || dep[*pc as usize]
                        || vals.iter().any(|&a| dep[a as usize])
                }
                Node::MemBarrier { prev, .. } => dep[*prev as usize],
                _ => false,
            };
        }
        let mut shared_reads = HashSet::default();
        for n in &b.g.nodes {
            if let Node::Op { key, args } | Node::Unique { key, args, .. } = n {
                if names.str(*key).contains(".shared") {
                    shared_reads.extend(args.iter().last().copied());
                }
            }
        }
        Cmp {
            s,
            b,
            names,
            roles,
            v: 0,
            dep,
            shared_reads,
            past: FxMap::default(),
            seen: HashSet::default(),
            seen_all: HashSet::default(),
            trail: Vec::new(),
            stack: Vec::new(),
            ts_buf: Vec::new(),
            tb_buf: Vec::new(),
        }
    }

    /// Moves on to vector `v`.
    fn vector(&mut self, v: i64) {
        self.v = v;
        self.past.clear();
        self.seen.clear();
        self.trail.clear();
    }

    /// Forgets everything after a mismatch: pairs visited on the way were only checked
    /// locally, their operands perhaps not at all.
    fn reset(&mut self) {
        self.seen.clear();
        self.seen_all.clear();
        self.trail.clear();
    }

    fn run(&mut self, roots: &[Visit]) -> Result<(), (usize, Reason)> {
        self.stack.clear();
        self.stack.extend(roots.iter().rev().copied());
        while let Some(vi) = self.stack.pop() {
            let key = (u64::from(vi.s) << 33) | (u64::from(vi.b) << 1) | u64::from(vi.term);
            let fresh = if self.dep[vi.s as usize] {
                self.seen.insert(key)
            } else {
                self.seen_all.insert(key)
            };
            if !fresh {
                continue;
            }
            let at = self.trail.len();
            self.trail.push(vi);
            if let Err(r) = self.local(at) {
                return Err((at, r));
            }
        }
        Ok(())
    }

    fn push(&mut self, parent: usize, s: NodeId, b: NodeId, arg: usize, ctl: bool, term: bool) {
        let p = &self.trail[parent];
        let ctl = ctl || p.ctl;
        self.stack.push(Visit {
            s,
            b,
            parent: parent as u32,
            arg: arg as u16,
            ctl,
            term,
        });
    }

    /// Pushes operand pairs so that the first operand is examined first.
    fn push_all(&mut self, parent: usize, pairs: &[(NodeId, NodeId, bool)]) {
        for (k, &(s, b, ctl)) in pairs.iter().enumerate().rev() {
            self.push(parent, s, b, k, ctl, false);
        }
    }

    fn affine_like(&self, g: &Graph, n: NodeId, batched: bool) -> bool {
        match g.node(n) {
            Node::Affine { .. } => true,
            Node::Special(s) => batched && self.roles.grid == Some(*s),
            _ => param_of(g, self.names, n).is_some_and(|p| self.roles.per_vector.contains_key(&p)),
        }
    }

    /// The batched kernel's copy of a per-vector shared variable that `addr` (an address
    /// value) points into, and its vector: `addr` is the variable's address plus offsets.
    fn copy_of(&self, addr: NodeId) -> Option<i64> {
        let g = self.b.g;
        let sym = match g.node(addr) {
            Node::Addr(s) => Some(*s),
            Node::Affine { terms, .. } => {
                let mut syms = terms.iter().filter_map(|(n, k)| match g.node(*n) {
                    Node::Addr(s) => Some((*s, *k)),
                    _ => None,
                });
                match (syms.next(), syms.next()) {
                    (Some((s, 1)), None) => Some(s),
                    _ => None,
                }
            }
            _ => None,
        };
        sym.and_then(|s| self.roles.vector_of_var.get(&s).copied())
    }

    /// The batched memory state `n` with the stores into other vectors' copies of
    /// per-vector shared variables passed over: a store's state before it, and a state
    /// merged under a branch whose two sides are then one state (a branch that only wrote
    /// other vectors' copies).
    /// Memoised per vector (a chain of branches would otherwise be walked once per path).
    fn past_other_copies(&mut self, n: NodeId) -> NodeId {
        if self.roles.vector_of_var.is_empty() {
            return n;
        }
        if let Some(&p) = self.past.get(&n) {
            return p;
        }
        let mut at = n;
        let out = loop {
            match self.b.g.node(at) {
                Node::MemStore { prev, addr, .. }
                    if self.copy_of(*addr).is_some_and(|u| u != self.v) =>
                {
                    at = *prev;
                }
                Node::Gate(_, t, e) => {
                    let (t, e) = (*t, *e);
                    let (t, e) = (self.past_other_copies(t), self.past_other_copies(e));
                    if t != e {
                        break at;
                    }
                    at = t;
                }
                _ => break at,
            }
        };
        self.past.insert(n, out);
        out
    }

    fn local(&mut self, at: usize) -> Result<(), Reason> {
        let vi = self.trail[at];
        let (sg, bg) = (self.s.g, self.b.g);
        let (ns, nb) = (sg.node(vi.s), bg.node(vi.b));
        // A batched store into another vector's copy of a per-vector shared variable
        // cannot change what this vector reads (its own copy is another variable): the
        // memory state before it stands for the state after it.
        let past = self.past_other_copies(vi.b);
        if past != vi.b {
            self.push_all(at, &[(vi.s, past, false)]);
            return Ok(());
        }
        if let Node::Param(p) = ns {
            if let Some(t) = self.roles.tables.get(p) {
                return self.table(vi.b, t);
            }
        }
        if !vi.term && (self.affine_like(sg, vi.s, false) || self.affine_like(bg, vi.b, true)) {
            return self.affine(at);
        }
        match (ns, nb) {
            (Node::Int(x), Node::Int(y)) => (x == y).then_some(()).ok_or(Reason::Imm),
            (Node::F32(x), Node::F32(y)) => (x == y).then_some(()).ok_or(Reason::Imm),
            (Node::F64(x), Node::F64(y)) => (x == y).then_some(()).ok_or(Reason::Imm),
            (Node::Float(x), Node::Float(y)) => (x == y).then_some(()).ok_or(Reason::Imm),
            (Node::Bool(x), Node::Bool(y)) => (x == y).then_some(()).ok_or(Reason::Imm),
            (Node::Param(x), Node::Param(y)) => (x == y).then_some(()).ok_or(Reason::Param),
            (Node::Addr(x), Node::Addr(y)) => {
                let same = match self.roles.shared_vars.get(x) {
                    Some(copies) => copies.get(self.v as usize) == Some(y),
                    None => x == y,
                };
                same.then_some(()).ok_or(Reason::Symbol)
            }
            (Node::Special(x), Node::Special(y)) => (x == y).then_some(()).ok_or(Reason::Special),
            (Node::Undef(_), Node::Undef(_)) => Ok(()),
            (Node::Op { key: k1, args: a1 }, Node::Op { key: k2, args: a2 })
            | (
                Node::Unique {
                    key: k1, args: a1, ..
                },
                Node::Unique {
                    key: k2, args: a2, ..
                },
            ) => {
                if k1 != k2 {
                    return Err(Reason::Key);
                }
                if a1.len() != a2.len() {
                    return Err(Reason::Arity);
                }
                // Inside a pointer term (`cvta` of a parameter) the offset rule was applied
                // by the enclosing form already.
                let term = vi.term && param_of(sg, self.names, vi.s).is_some();
                for (k, (&x, &y)) in a1.iter().zip(a2.iter()).enumerate().rev() {
                    self.push(at, x, y, k, false, term);
                }
                Ok(())
            }
            (Node::Proj(x, i), Node::Proj(y, j)) => {
                if i != j {
                    return Err(Reason::Kind);
                }
                self.push_all(at, &[(*x, *y, false)]);
                Ok(())
            }
            (Node::Gate(c1, t1, f1), Node::Gate(c2, t2, f2)) => {
                self.push_all(
                    at,
                    &[(*c1, *c2, true), (*t1, *t2, false), (*f1, *f2, false)],
                );
                Ok(())
            }
            (Node::Not(x), Node::Not(y)) => {
                self.push_all(at, &[(*x, *y, true)]);
                Ok(())
            }
            (Node::And(a, b), Node::And(c, d)) | (Node::Or(a, b), Node::Or(c, d)) => {
                self.push_all(at, &[(*a, *c, true), (*b, *d, true)]);
                Ok(())
            }
            (Node::MemInit(x), Node::MemInit(y)) => (x == y).then_some(()).ok_or(Reason::Kind),
            // The single kernel's shared memory as it found it, against the batched kernel's
            // shared memory after a barrier that ends an earlier vector's use of it: both are
            // contents this vector's computation did not write. It agrees when nothing reads
            // the memory at that barrier state, so every access of an earlier vector is
            // ordered before the barrier and cannot race with this vector's stores after it.
            // (A kernel whose result depends on shared memory it never wrote is undefined,
            // single or batched.)
            (Node::MemInit(Space::Shared), Node::MemBarrier { .. }) => {
                (!self.shared_reads.contains(&vi.b))
                    .then_some(())
                    .ok_or(Reason::Kind)
            }
            (
                Node::MemStore {
                    prev: p1,
                    key: k1,
                    addr: a1,
                    vals: v1,
                    pc: c1,
                },
                Node::MemStore {
                    prev: p2,
                    key: k2,
                    addr: a2,
                    vals: v2,
                    pc: c2,
                },
            ) => {
                if k1 != k2 {
                    return Err(Reason::Key);
                }
                if v1.len() != v2.len() {
                    return Err(Reason::Arity);
                }
                let mut pairs = vec![(*a1, *a2, false)];
                pairs.extend(v1.iter().zip(v2.iter()).map(|(&x, &y)| (x, y, false)));
                pairs.push((*c1, *c2, true));
                pairs.push((*p1, *p2, false));
                self.push_all(at, &pairs);
                Ok(())
            }
            (Node::MemBarrier { prev: p1, key: k1 }, Node::MemBarrier { prev: p2, key: k2 }) => {
                if k1 != k2 {
                    return Err(Reason::Key);
                }
                self.push_all(at, &[(*p1, *p2, false)]);
                Ok(())
            }
            (Node::Loop(l1), Node::Loop(l2)) => {
                let (a, b) = (&sg.loops[*l1 as usize], &bg.loops[*l2 as usize]);
                self.push_all(at, &[(a.cont, b.cont, true), (a.exit, b.exit, true)]);
                Ok(())
            }
            (Node::Mu(l1, k1), Node::Mu(l2, k2)) => {
                let (a, b) = (&sg.loops[*l1 as usize], &bg.loops[*l2 as usize]);
                let (k1, k2) = (*k1 as usize, *k2 as usize);
                self.push_all(
                    at,
                    &[
                        (a.node, b.node, true),
                        (a.init[k1], b.init[k2], false),
                        (a.next[k1], b.next[k2], false),
                    ],
                );
                Ok(())
            }
            (Node::Exit(l1, x), Node::Exit(l2, y)) => {
                let (a, b) = (sg.loops[*l1 as usize].node, bg.loops[*l2 as usize].node);
                self.push_all(at, &[(a, b, true), (*x, *y, false)]);
                Ok(())
            }
            _ => Err(Reason::Kind),
        }
    }

    /// Two integer forms: the same terms with the same coefficients, and constants that
    /// differ by exactly the declared per-vector offset of the parameter they point into.
    fn affine(&mut self, at: usize) -> Result<(), Reason> {
        let mut ts = std::mem::take(&mut self.ts_buf);
        let mut tb = std::mem::take(&mut self.tb_buf);
        let r = self.affine_with(at, &mut ts, &mut tb);
        self.ts_buf = ts;
        self.tb_buf = tb;
        r
    }

    fn affine_with(
        &mut self,
        at: usize,
        ts: &mut Vec<(NodeId, i64)>,
        tb: &mut Vec<(NodeId, i64)>,
    ) -> Result<(), Reason> {
        let vi = self.trail[at];
        let (sg, bg) = (self.s.g, self.b.g);
        let (lts, cs) = sg.linear(vi.s);
        let (ltb, cb) = bg.linear(vi.b);
        ts.clear();
        ts.extend_from_slice(&lts);
        tb.clear();
        tb.extend_from_slice(&ltb);
        let (mut delta, mut gcoef) = (0i64, 0i64);
        let mut param = None;
        let mut per_vector = false;
        for &(t, k) in ts.iter() {
            if let Some(p) = param_of(sg, self.names, t) {
                param.get_or_insert(p);
                if let Some(&stride) = self.roles.per_vector.get(&p) {
                    param = Some(p);
                    per_vector = true;
                    if self.roles.grid.is_some() {
                        gcoef += k * stride;
                    } else {
                        delta += k * stride * self.v;
                    }
                }
            }
        }
        if let Some(gs) = self.roles.grid {
            let pos = tb
                .iter()
                .position(|&(t, _)| matches!(bg.node(t), Node::Special(x) if *x == gs));
            let found = pos.map_or(0, |k| tb[k].1);
            if let Some(k) = pos {
                tb.remove(k);
            }
            if found != gcoef {
                return Err(Reason::Grid {
                    expected: gcoef,
                    found,
                });
            }
        }
        if ts.len() != tb.len() {
            return Err(Reason::Terms);
        }
        sort_terms(ts, sg);
        sort_terms(tb, bg);
        if ts.iter().zip(tb.iter()).any(|(a, b)| a.1 != b.1) {
            return Err(Reason::Terms);
        }
        if cb != cs + delta {
            return Err(Reason::Offset {
                param,
                per_vector,
                single: cs,
                expected: cs + delta,
                found: cb,
            });
        }
        for (k, (a, b)) in ts.iter().zip(tb.iter()).enumerate().rev() {
            self.push(at, a.0, b.0, k, false, true);
        }
        Ok(())
    }

    /// A by-value parameter of the single kernel against the batched kernel's load of the
    /// vector's entry of the table replacing it.
    fn table(&mut self, b: NodeId, t: &Table) -> Result<(), Reason> {
        let bg = self.b.g;
        let table = self.names.str(t.table);
        let entry = match self.roles.grid {
            Some(g) => format!("the entry at `{}` x {}", self.names.str(g), t.stride),
            None => format!("vector {}'s entry", self.v),
        };
        let Node::Op { key, args } = bg.node(b) else {
            return Err(Reason::Table(format!(
                "expected a load of {entry} of `{table}`"
            )));
        };
        let k = self.names.str(*key);
        let global = k.starts_with("ld.")
            && !k.contains(".param")
            && !k.contains(".shared")
            && !k.contains(".local");
        let bits = k
            .rsplit('.')
            .next()
            .and_then(crate::ast::Type::from_name)
            .map(|ty| ty.bits());
        if !global || args.len() != 1 || bits != Some(t.bits) {
            return Err(Reason::Table(format!(
                "expected a {}-bit global load from `{table}`",
                t.bits
            )));
        }
        let (terms, c) = bg.linear(args[0]);
        let mut terms = terms.to_vec();
        if let Some(gs) = self.roles.grid {
            let pos = terms
                .iter()
                .position(|&(n, _)| matches!(bg.node(n), Node::Special(x) if *x == gs));
            let found = pos.map_or(0, |k| terms[k].1);
            if found != t.stride {
                return Err(Reason::Table(format!(
                    "`{table}` indexed by the grid with stride {found}, expected {}",
                    t.stride
                )));
            }
            if let Some(k) = pos {
                terms.remove(k);
            }
        }
        let want = if self.roles.grid.is_some() {
            0
        } else {
            t.stride * self.v
        };
        let base_ok =
            matches!(terms.as_slice(), [(n, 1)] if param_of(bg, self.names, *n) == Some(t.table));
        if !base_ok {
            return Err(Reason::Table(format!(
                "the load does not read `{table}` at a per-vector offset"
            )));
        }
        if c != want {
            return Err(Reason::Table(format!(
                "reads `{table}` at offset {c}, expected {entry} (offset {want})"
            )));
        }
        Ok(())
    }

    fn vectors(&self) -> Vec<u32> {
        if self.roles.grid.is_some() {
            (0..self.roles.m).collect()
        } else {
            vec![self.v as u32]
        }
    }

    fn text(side: Side<'_>, e: &Event) -> String {
        side.prog
            .src
            .get(e.instr as usize)
            .map_or_else(String::new, |i| format!("`{}`", i.text()))
    }

    /// Compares one output of the single kernel with a candidate of the batched kernel.
    fn event(&mut self, se: &Event, be: &Event) -> Result<(), Box<Finding>> {
        if se.key != be.key || se.vals.len() != be.vals.len() {
            let out = Self::text(self.b, be);
            return Err(Box::new(Finding {
                check: CheckKind::Dataflow,
                vectors: self.vectors(),
                message: "the output instruction differs".into(),
                single: Some(Self::text(self.s, se)),
                batched: Some(out.clone()),
                output: Some(out),
            }));
        }
        let mut roots = vec![Visit {
            s: se.addr,
            b: be.addr,
            parent: ROOT,
            arg: 0,
            ctl: false,
            term: false,
        }];
        for (k, (&x, &y)) in se.vals.iter().zip(&be.vals).enumerate() {
            roots.push(Visit {
                s: x,
                b: y,
                parent: ROOT,
                arg: k as u16 + 1,
                ctl: false,
                term: false,
            });
        }
        roots.push(Visit {
            s: se.pc,
            b: be.pc,
            parent: ROOT,
            arg: 0,
            ctl: true,
            term: false,
        });
        match self.run(&roots) {
            Ok(()) => Ok(()),
            Err((at, reason)) => {
                let out = Self::text(self.b, be);
                let f = self.finding(at, &reason, &out);
                self.reset();
                Err(Box::new(f))
            }
        }
    }
}

/// The output's buffer (the one parameter its address is based on) and constant offset.
fn event_key(g: &Graph, names: &Names, e: &Event) -> (Option<Sym>, i64) {
    let (terms, c) = g.linear(e.addr);
    let mut params = terms
        .iter()
        .filter_map(|&(t, k)| param_of(g, names, t).filter(|_| k == 1));
    match (params.next(), params.next()) {
        (Some(p), None) => (Some(p), c),
        _ => (None, c),
    }
}

/// Matches every output of the single kernel, for every vector, with the batched kernel's
/// output at the declared offset, and compares their slices.
pub(crate) fn compare_outputs(s: Side<'_>, b: Side<'_>, names: &Names, roles: &Roles) -> Outcome {
    let mut findings = Vec::new();
    let mut by_key: FxMap<(Option<Sym>, i64), Vec<usize>> = FxMap::default();
    for (k, e) in b.g.events.iter().enumerate() {
        by_key.entry(event_key(b.g, names, e)).or_default().push(k);
    }
    let mut used = vec![false; b.g.events.len()];
    let grid = roles.grid.is_some();
    let vectors: Vec<i64> = if grid {
        vec![0]
    } else {
        (0..i64::from(roles.m)).collect()
    };
    let mut slices = 0;
    let mut cmp = Cmp::new(s, b, names, roles);
    for v in vectors {
        cmp.vector(v);
        // Per output address: the batched event matched last, to check that stores to one
        // place happen in the single kernel's order (the last one is what memory keeps).
        let mut last: FxMap<(Option<Sym>, i64), (usize, usize)> = FxMap::default();
        for (si, se) in s.g.events.iter().enumerate() {
            let (p, c) = event_key(s.g, names, se);
            let stride = p
                .and_then(|p| roles.per_vector.get(&p))
                .copied()
                .unwrap_or(0);
            let want = if grid { c } else { c + stride * v };
            let cands: Vec<usize> = by_key
                .get(&(p, want))
                .map(|ks| ks.iter().copied().filter(|&k| !used[k]).collect())
                .unwrap_or_default();
            slices += 1;
            if cands.is_empty() {
                let buf = p.map_or_else(|| "memory".to_string(), |p| format!("`{}`", names.str(p)));
                findings.push(Finding {
                    check: CheckKind::Outputs,
                    vectors: cmp.vectors(),
                    message: format!(
                        "output missing: the single kernel writes {buf} at offset {c}; the batched kernel never writes {buf} at offset {want}{}",
                        if grid { String::new() } else { format!(" (vector {v})") }
                    ),
                    single: Some(Cmp::text(s, se)),
                    batched: None,
                    output: None,
                });
                continue;
            }
            let mut first_err = None;
            let mut matched = None;
            for &k in &cands {
                match cmp.event(se, &b.g.events[k]) {
                    Ok(()) => {
                        matched = Some(k);
                        break;
                    }
                    Err(f) => {
                        first_err.get_or_insert((k, f));
                    }
                }
            }
            if let Some(k) = matched {
                if let Some(&(prev_s, prev_b)) = last.get(&(p, want)) {
                    if prev_b > k {
                        findings.push(Finding {
                            check: CheckKind::Outputs,
                            vectors: cmp.vectors(),
                            message: "two stores to one output place happen in the opposite order"
                                .to_string(),
                            single: Some(format!(
                                "{} then {}",
                                Cmp::text(s, &s.g.events[prev_s]),
                                Cmp::text(s, se)
                            )),
                            batched: Some(format!(
                                "{} then {}",
                                Cmp::text(b, &b.g.events[k]),
                                Cmp::text(b, &b.g.events[prev_b])
                            )),
                            output: None,
                        });
                    }
                }
                last.insert((p, want), (si, k));
            }
            match (matched, first_err) {
                (Some(k), _) => used[k] = true,
                (None, Some((k, f))) => {
                    let f = *f;
                    used[k] = true;
                    findings.push(f);
                }
                (None, None) => {}
            }
        }
    }
    for (k, e) in b.g.events.iter().enumerate().filter(|(k, _)| !used[*k]) {
        let _ = k;
        let (p, c) = event_key(b.g, names, e);
        let buf = p.map_or_else(|| "memory".to_string(), |p| format!("`{}`", names.str(p)));
        findings.push(Finding {
            check: CheckKind::Outputs,
            vectors: Vec::new(),
            message: format!("extra output: writes {buf} at offset {c}, which is no vector's output in the single kernel"),
            single: None,
            batched: Some(Cmp::text(b, e)),
            output: None,
        });
    }
    Outcome { findings, slices }
}
