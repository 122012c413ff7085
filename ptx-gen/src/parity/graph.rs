//! The value graph one kernel is evaluated into: hash-consed nodes, so that a value
//! computed twice (by any register names) is one node, integer index arithmetic kept as
//! flat affine forms, and constants folded.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

/// A small, fast hasher for integer-keyed maps (FxHash's mixing step).
#[derive(Default, Clone, Copy)]
pub(crate) struct Fx(u64);

const FX_K: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl Fx {
    #[inline]
    fn mix(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(FX_K);
    }
}

impl Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.mix(u64::from_le_bytes(w));
        }
        for &b in chunks.remainder() {
            self.mix(u64::from(b));
        }
    }
    fn write_u8(&mut self, x: u8) {
        self.mix(u64::from(x));
    }
    fn write_u32(&mut self, x: u32) {
        self.mix(u64::from(x));
    }
    fn write_u64(&mut self, x: u64) {
        self.mix(x);
    }
    fn write_usize(&mut self, x: usize) {
        self.mix(x as u64);
    }
    fn write_i64(&mut self, x: i64) {
        self.mix(x as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

pub(crate) type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<Fx>>;

/// A string interned for the pair being compared: both kernels share one table, so equal
/// ids mean equal text.
pub(crate) type Sym = u32;

#[derive(Default, Clone)]
pub(crate) struct Names {
    map: FxMap<String, Sym>,
    strs: Vec<String>,
}

impl Names {
    pub(crate) fn id(&mut self, s: &str) -> Sym {
        if let Some(&k) = self.map.get(s) {
            return k;
        }
        let k = self.strs.len() as Sym;
        self.strs.push(s.to_string());
        self.map.insert(s.to_string(), k);
        k
    }

    pub(crate) fn str(&self, k: Sym) -> &str {
        &self.strs[k as usize]
    }
}

pub(crate) type NodeId = u32;

/// A short list stored inline (most operations have at most four operands, most address
/// forms at most four terms), so that building and interning nodes rarely allocates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum List<T, const N: usize = 4> {
    Inline(u8, [T; N]),
    Heap(Box<[T]>),
}

/// The terms of an affine form (most have one or two: kept small, for a small `Node`).
pub(crate) type Terms = List<(NodeId, i64), 2>;

/// Hashes the elements only (the unused slots of an inline list are always the default,
/// and a list of up to four is always inline, so equal lists hash equally).
impl<T: Hash, const N: usize> Hash for List<T, N> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        let s: &[T] = match self {
            List::Inline(n, a) => &a[..*n as usize],
            List::Heap(b) => b,
        };
        h.write_usize(s.len());
        for x in s {
            x.hash(h);
        }
    }
}

impl<T: Copy + Default, const N: usize> List<T, N> {
    pub(crate) fn from_slice(s: &[T]) -> List<T, N> {
        if s.len() <= N {
            let mut a = [T::default(); N];
            for (x, y) in a.iter_mut().zip(s) {
                *x = *y;
            }
            List::Inline(s.len() as u8, a)
        } else {
            List::Heap(s.into())
        }
    }
}

impl<T, const N: usize> std::ops::Deref for List<T, N> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match self {
            List::Inline(n, a) => &a[..*n as usize],
            List::Heap(b) => b,
        }
    }
}

/// No node (an unset register or a patched-later field).
pub(crate) const NONE: NodeId = u32::MAX;

/// Memory state spaces that are threaded through the graph as chains of stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Space {
    Shared,
    Local,
}

/// One value of the kernel.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Node {
    /// An integer immediate or folded constant (two's complement bits, mathematical value
    /// for index arithmetic).
    Int(i64),
    F32(u32),
    F64(u64),
    /// A decimal float literal as written.
    Float(Sym),
    Bool(bool),
    /// The value of a kernel parameter (`ld.param [name]`).
    Param(Sym),
    /// The address of a variable, parameter or label named as an operand.
    Addr(Sym),
    /// A special register (`%tid.x`).
    Special(Sym),
    /// A register read before any write reaches it (the register's id).
    Undef(u32),
    /// An operation: `key` is the opcode and modifiers (`add.rn.f32`), `args` its sources
    /// in order (immediates are nodes too).
    Op {
        key: Sym,
        args: List<NodeId>,
    },
    /// A side-effecting value that is never merged with another (`atom`, `%clock`).
    Unique {
        key: Sym,
        args: List<NodeId>,
        ordinal: u32,
    },
    /// Result `k` of a multi-result node (vector loads, unpacking moves).
    Proj(NodeId, u32),
    /// `Σ coef·term + c`: integer index/address arithmetic (add, sub, mul/shl by a
    /// constant, mad with a constant, mul.wide/mad.wide/cvt zero-extension), with terms
    /// sorted by id and never themselves affine.
    Affine {
        terms: Terms,
        c: i64,
    },
    /// `cond ? a : b`: a register merged where two paths meet, or written under a guard.
    Gate(NodeId, NodeId, NodeId),
    Not(NodeId),
    And(NodeId, NodeId),
    Or(NodeId, NodeId),
    /// The state of a memory space before the kernel writes it.
    MemInit(Space),
    /// A store to a chained space: the state after it.
    MemStore {
        prev: NodeId,
        key: Sym,
        addr: NodeId,
        vals: List<NodeId>,
        pc: NodeId,
    },
    /// A CTA barrier (`key` is its text): the state after it.
    MemBarrier {
        prev: NodeId,
        key: Sym,
    },
    /// "An iteration of summarised loop `l` runs": a path-condition literal.
    Loop(u32),
    /// Register `slot` of summarised loop `l` at the start of an iteration.
    Mu(u32, u32),
    /// A value after summarised loop `l` has exited.
    Exit(u32, NodeId),
}

/// A loop whose trip count is not a constant, summarised once: per register it writes,
/// its value entering the loop and after one iteration; the path conditions of the back
/// edge and of the exit.
#[derive(Debug, Default, Clone)]
pub(crate) struct LoopSummary {
    pub init: Vec<NodeId>,
    pub next: Vec<NodeId>,
    pub cont: NodeId,
    pub exit: NodeId,
    /// This loop's `Loop` node.
    pub node: NodeId,
}

/// A store, reduction or atomic to global (or generic) memory: an output.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub instr: u32,
    pub key: Sym,
    pub addr: NodeId,
    pub vals: Vec<NodeId>,
    pub pc: NodeId,
}

/// The evaluated kernel.
pub(crate) struct Graph {
    pub nodes: Vec<Node>,
    /// The instruction that first produced each node (`u32::MAX`: none).
    pub origin: Vec<u32>,
    /// Hash of a node -> the last node with that hash; `chain` links earlier ones.
    intern: FxMap<u64, NodeId>,
    chain: Vec<NodeId>,
    pub loops: Vec<LoopSummary>,
    pub events: Vec<Event>,
    /// For affine nodes built by an instruction: the operands it combined (with their
    /// coefficients), to point findings at the instruction that introduced a difference.
    pub parts: FxMap<NodeId, Terms>,
    uniques: u32,
    scratch: Vec<(NodeId, i64)>,
    /// The instruction being evaluated (origin of the nodes it creates).
    pub at: u32,
}

impl Graph {
    /// Structural shapes of every node: a hash of the operation, immediates and operand
    /// shapes, blind to register names and to the constants of affine forms (so equal for
    /// the same computation of two vectors). Used only to explain differences.
    pub(crate) fn shapes(&self) -> Vec<u64> {
        let mut sh = vec![0u64; self.nodes.len()];
        for (k, n) in self.nodes.iter().enumerate() {
            let mut h = Fx::default();
            let at = |x: &NodeId| sh.get(*x as usize).copied().unwrap_or(0);
            std::mem::discriminant(n).hash(&mut h);
            match n {
                Node::Int(v) => v.hash(&mut h),
                Node::F32(b) => b.hash(&mut h),
                Node::F64(b) => b.hash(&mut h),
                Node::Float(s) | Node::Param(s) | Node::Addr(s) | Node::Special(s) => {
                    s.hash(&mut h)
                }
                Node::Bool(b) => b.hash(&mut h),
                Node::Op { key, args } | Node::Unique { key, args, .. } => {
                    key.hash(&mut h);
                    args.iter().for_each(|a| at(a).hash(&mut h));
                }
                Node::Proj(a, i) => (at(a), i).hash(&mut h),
                Node::Affine { terms, .. } => {
                    let mut t: Vec<(u64, i64)> = terms.iter().map(|(x, c)| (at(x), *c)).collect();
                    t.sort_unstable();
                    t.hash(&mut h);
                }
                Node::Gate(c, a, b) => (at(c), at(a), at(b)).hash(&mut h),
                Node::Not(a) | Node::Exit(_, a) => at(a).hash(&mut h),
                Node::And(a, b) | Node::Or(a, b) => (at(a), at(b)).hash(&mut h),
                Node::MemStore {
                    prev,
                    key,
                    addr,
                    vals,
                    pc,
                } => {
                    (at(prev), key, at(addr), at(pc)).hash(&mut h);
                    vals.iter().for_each(|a| at(a).hash(&mut h));
                }
                Node::MemBarrier { prev, key } => (at(prev), key).hash(&mut h),
                Node::MemInit(_) | Node::Undef(_) | Node::Loop(_) | Node::Mu(..) => {}
            }
            sh[k] = h.finish();
        }
        sh
    }

    /// The operands of a node, in order, as far as explanations care.
    pub(crate) fn operands(&self, n: NodeId) -> Vec<NodeId> {
        match self.node(n) {
            Node::Op { args, .. } | Node::Unique { args, .. } => args.to_vec(),
            Node::Proj(a, _) | Node::Not(a) | Node::Exit(_, a) => vec![*a],
            Node::And(a, b) | Node::Or(a, b) => vec![*a, *b],
            Node::Gate(c, a, b) => vec![*c, *a, *b],
            Node::MemStore {
                prev,
                addr,
                vals,
                pc,
                ..
            } => {
                let mut v = vec![*prev, *addr];
                v.extend(vals.iter());
                v.push(*pc);
                v
            }
            Node::MemBarrier { prev, .. } => vec![*prev],
            _ => Vec::new(),
        }
    }

    pub(crate) fn new() -> Graph {
        Graph {
            nodes: Vec::new(),
            origin: Vec::new(),
            intern: FxMap::default(),
            chain: Vec::new(),
            loops: Vec::new(),
            events: Vec::new(),
            parts: FxMap::default(),
            uniques: 0,
            scratch: Vec::new(),
            at: u32::MAX,
        }
    }

    pub(crate) fn node(&self, n: NodeId) -> &Node {
        &self.nodes[n as usize]
    }

    /// A point to roll back to with [`Self::truncate`].
    pub(crate) fn mark(&self) -> (usize, usize, usize) {
        (self.nodes.len(), self.loops.len(), self.events.len())
    }

    /// Forgets every node, loop and event created since `mark` (an abandoned attempt to
    /// unroll a loop), so that later nodes are not attributed to its instructions.
    pub(crate) fn truncate(&mut self, mark: (usize, usize, usize)) {
        for k in (mark.0..self.nodes.len()).rev() {
            let mut h = Fx::default();
            self.nodes[k].hash(&mut h);
            let h = h.finish();
            let prev = self.chain[k];
            if prev == NONE {
                self.intern.remove(&h);
            } else {
                self.intern.insert(h, prev);
            }
            self.parts.remove(&(k as NodeId));
        }
        self.nodes.truncate(mark.0);
        self.origin.truncate(mark.0);
        self.chain.truncate(mark.0);
        self.loops.truncate(mark.1);
        self.events.truncate(mark.2);
    }

    pub(crate) fn reserve(&mut self, n: usize) {
        self.nodes.reserve(n);
        self.origin.reserve(n);
        self.chain.reserve(n);
        self.intern.reserve(n);
    }

    pub(crate) fn mk(&mut self, n: Node) -> NodeId {
        let mut h = Fx::default();
        n.hash(&mut h);
        let h = h.finish();
        let k = self.nodes.len() as NodeId;
        // One probe of the table: the chain of nodes with this hash, or a new entry.
        let head = match self.intern.entry(h) {
            Entry::Occupied(mut e) => {
                let head = *e.get();
                let mut j = head;
                while j != NONE {
                    if self.nodes[j as usize] == n {
                        return j;
                    }
                    j = self.chain[j as usize];
                }
                e.insert(k);
                head
            }
            Entry::Vacant(e) => {
                e.insert(k);
                NONE
            }
        };
        self.nodes.push(n);
        self.origin.push(self.at);
        self.chain.push(head);
        k
    }

    pub(crate) fn int(&mut self, v: i64) -> NodeId {
        self.mk(Node::Int(v))
    }

    pub(crate) fn boolean(&mut self, b: bool) -> NodeId {
        self.mk(Node::Bool(b))
    }

    pub(crate) fn as_int(&self, n: NodeId) -> Option<i64> {
        match self.node(n) {
            Node::Int(v) => Some(*v),
            _ => None,
        }
    }

    pub(crate) fn as_bool(&self, n: NodeId) -> Option<bool> {
        match self.node(n) {
            Node::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub(crate) fn op(&mut self, key: Sym, args: Vec<NodeId>) -> NodeId {
        self.mk(Node::Op {
            key,
            args: List::from_slice(&args),
        })
    }

    pub(crate) fn unique(&mut self, key: Sym, args: Vec<NodeId>) -> NodeId {
        self.uniques += 1;
        let ordinal = self.uniques;
        self.mk(Node::Unique {
            key,
            args: List::from_slice(&args),
            ordinal,
        })
    }

    pub(crate) fn not(&mut self, a: NodeId) -> NodeId {
        match *self.node(a) {
            Node::Bool(b) => self.boolean(!b),
            Node::Not(x) => x,
            _ => self.mk(Node::Not(a)),
        }
    }

    pub(crate) fn and(&mut self, a: NodeId, b: NodeId) -> NodeId {
        match (self.as_bool(a), self.as_bool(b)) {
            (Some(true), _) => b,
            (_, Some(true)) => a,
            (Some(false), _) | (_, Some(false)) => self.boolean(false),
            _ if a == b => a,
            _ => self.mk(Node::And(a, b)),
        }
    }

    pub(crate) fn or(&mut self, a: NodeId, b: NodeId) -> NodeId {
        match (self.as_bool(a), self.as_bool(b)) {
            (Some(false), _) => b,
            (_, Some(false)) => a,
            (Some(true), _) | (_, Some(true)) => self.boolean(true),
            _ if a == b => a,
            _ => self.mk(Node::Or(a, b)),
        }
    }

    /// `cond ? a : b`.
    pub(crate) fn gate(&mut self, cond: NodeId, a: NodeId, b: NodeId) -> NodeId {
        if a == b {
            return a;
        }
        match self.as_bool(cond) {
            Some(true) => a,
            Some(false) => b,
            None => self.mk(Node::Gate(cond, a, b)),
        }
    }

    /// The terms and constant of `n` seen as an affine form.
    pub(crate) fn linear(&self, n: NodeId) -> (Terms, i64) {
        match self.node(n) {
            Node::Affine { terms, c } => (terms.clone(), *c),
            Node::Int(v) => (List::from_slice(&[]), *v),
            _ => (List::from_slice(&[(n, 1)]), 0),
        }
    }

    /// `Σ coef·term + c` normalised: nested forms flattened, constants folded, equal
    /// terms combined, zero terms dropped; `None` on overflow.
    pub(crate) fn affine(&mut self, parts: &[(NodeId, i64)], c: i64) -> Option<NodeId> {
        let mut terms = std::mem::take(&mut self.scratch);
        terms.clear();
        let r = self.affine_into(parts, c, &mut terms);
        self.scratch = terms;
        r
    }

    /// [`Self::affine`], remembering which operands built the form.
    pub(crate) fn affine_of(&mut self, parts: &[(NodeId, i64)], c: i64) -> Option<NodeId> {
        let n = self.affine(parts, c)?;
        if matches!(self.node(n), Node::Affine { .. }) && !self.parts.contains_key(&n) {
            let p: Vec<(NodeId, i64)> = parts
                .iter()
                .copied()
                .filter(|&(x, _)| self.as_int(x).is_none())
                .collect();
            self.parts.insert(n, List::from_slice(&p));
        }
        Some(n)
    }

    fn affine_into(
        &mut self,
        parts: &[(NodeId, i64)],
        c: i64,
        terms: &mut Vec<(NodeId, i64)>,
    ) -> Option<NodeId> {
        let mut c = c;
        for &(n, k) in parts {
            match self.node(n) {
                Node::Int(v) => c = c.checked_add(v.checked_mul(k)?)?,
                Node::Affine {
                    terms: inner,
                    c: ic,
                } => {
                    c = c.checked_add(ic.checked_mul(k)?)?;
                    for &(t, tk) in inner.iter() {
                        terms.push((t, tk.checked_mul(k)?));
                    }
                }
                _ => terms.push((n, k)),
            }
        }
        // Most forms have one or two terms: order those without a call into `sort`
        // (the same order the sort gives: it is stable for short slices).
        match terms.len() {
            0 | 1 => {}
            2 => {
                if terms[1].0 < terms[0].0 {
                    terms.swap(0, 1);
                }
            }
            _ => terms.sort_unstable_by_key(|t| t.0),
        }
        let mut w = 0;
        for r in 0..terms.len() {
            if w > 0 && terms[w - 1].0 == terms[r].0 {
                terms[w - 1].1 = terms[w - 1].1.checked_add(terms[r].1)?;
            } else {
                terms[w] = terms[r];
                w += 1;
            }
        }
        terms.truncate(w);
        terms.retain(|t| t.1 != 0);
        let out = &terms[..];
        Some(match (out, c) {
            ([], c) => self.int(c),
            ([(t, 1)], 0) => *t,
            _ => self.mk(Node::Affine {
                terms: List::from_slice(out),
                c,
            }),
        })
    }
}

/// Integer semantics of constant folding at a bit width.
pub(crate) fn wrap(v: i64, bits: u32, signed: bool) -> i64 {
    if bits >= 64 {
        return v;
    }
    let m = (1i64 << bits) - 1;
    let u = v & m;
    if signed && u >> (bits - 1) & 1 == 1 {
        u - (1i64 << bits)
    } else {
        u
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affine_forms_flatten_and_fold() {
        let mut g = Graph::new();
        let a = g.mk(Node::Special(0));
        let b = g.mk(Node::Special(1));
        let x = g.affine(&[(a, 4), (b, 1)], 8).unwrap();
        let y = g.affine(&[(x, 2), (a, -8)], 1).unwrap();
        let (terms, c) = g.linear(y);
        assert_eq!((&terms[..], c), (&[(b, 2)][..], 17));
        let z = g.affine(&[(x, 1), (a, -4), (b, -1)], -8).unwrap();
        assert_eq!(g.as_int(z), Some(0));
        let same = g.affine(&[(a, 1)], 0).unwrap();
        assert_eq!(same, a);
    }

    #[test]
    fn wrap_follows_width_and_sign() {
        assert_eq!(wrap(-1, 32, false), 0xFFFF_FFFF);
        assert_eq!(wrap(0xFFFF_FFFF, 32, true), -1);
        assert_eq!(wrap(5, 32, true), 5);
    }
}
