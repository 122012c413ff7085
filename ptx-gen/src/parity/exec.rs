//! Symbolic evaluation of one entry into a [`Graph`].
//!
//! Evaluation walks the control-flow graph with a register file of graph nodes and a path
//! condition. A branch whose predicate folds to a constant is simply followed, so loops
//! with a constant trip count (a batching loop over M vectors, an unrolled tile loop) are
//! unrolled. A branch on a runtime predicate evaluates both sides up to the branch's
//! immediate post-dominator and merges the register files there with `Gate` nodes. A loop
//! whose exit test is not constant is summarised once: every register it writes enters as
//! a `Mu` node, the body is evaluated once, and the values on the back edge and at the
//! exit are recorded. Shared and local memory are chains of stores and barriers held in two
//! extra register slots; stores to global memory are the kernel's outputs (`Event`s).

use crate::ast::Type;

use super::cfg::{Base, Cmp, FoldOp, LInstr, LOp, Mem, Opc, Program, Shape};
use super::graph::{wrap, FxMap, Graph, List, LoopSummary, Names, Node, NodeId, Space, Sym, NONE};

/// Instructions evaluated per kernel before giving up (a fully unrolled K = 14336 GEMV
/// with 16 vectors evaluates about 30 000).
const MAX_STEPS: u64 = 8_000_000;
/// Iterations of a constant-trip loop before it is summarised instead.
const MAX_ITERS: u32 = 1 << 16;
/// Branches and loops nested in one another (evaluation recurses on each).
const MAX_DEPTH: u32 = 256;

#[derive(Clone)]
struct State {
    env: Vec<NodeId>,
    pc: NodeId,
}

enum Arrival {
    /// Reached the join at this nesting level.
    Stop(usize, State),
    /// Reached the header of the loop being evaluated.
    Back(State),
    /// Left the loop being evaluated.
    Exit(State),
    Ret,
}

#[derive(Clone)]
struct Ctx {
    stops: Vec<usize>,
    lp: Option<usize>,
}

/// One evaluated entry.
pub(crate) struct Evaluated<'a> {
    pub prog: Program<'a>,
    pub g: Graph,
}

struct Exec<'p, 'a, 'n> {
    p: &'p Program<'a>,
    g: Graph,
    names: &'n mut Names,
    subst: FxMap<Sym, i64>,
    vec_key: Sym,
    /// Scratch operand list, reused.
    args: Vec<NodeId>,
    steps: u64,
    depth: u32,
    err: Option<String>,
}

/// Evaluates `prog`; `subst` replaces special registers by constants (`%ctaid.y` = 0 in a
/// single kernel launched with one block along y).
pub(crate) fn evaluate<'a>(
    prog: Program<'a>,
    names: &mut Names,
    subst: &[(Sym, i64)],
) -> Result<Evaluated<'a>, String> {
    let vec_key = names.id("{vector}");
    let mut ex = Exec {
        p: &prog,
        g: Graph::new(),
        names,
        subst: subst.iter().copied().collect(),
        vec_key,
        args: Vec::new(),
        steps: 0,
        depth: 0,
        err: None,
    };
    ex.g.reserve(prog.code.len() * 2);
    let mut env = vec![NONE; prog.nslots()];
    env[prog.shared_slot as usize] = ex.g.mk(Node::MemInit(Space::Shared));
    env[prog.local_slot as usize] = ex.g.mk(Node::MemInit(Space::Local));
    let pc = ex.g.boolean(true);
    let mut out = Vec::new();
    if !prog.blocks.is_empty() {
        ex.run_region(
            0,
            State { env, pc },
            &Ctx {
                stops: Vec::new(),
                lp: None,
            },
            &mut out,
            false,
        );
    }
    if let Some(e) = ex.err {
        return Err(e);
    }
    let g = ex.g;
    Ok(Evaluated { prog, g })
}

fn int_ty(t: Option<Type>) -> Option<(u32, bool)> {
    let t = t?;
    (t.is_int() || t.class() == crate::ast::TypeClass::Bits)
        .then(|| (t.bits(), t.class() == crate::ast::TypeClass::Signed))
}

impl<'p, 'a, 'n> Exec<'p, 'a, 'n> {
    fn fail(&mut self, k: usize, what: &str) {
        if self.err.is_none() {
            let at = self.p.src.get(k).map(|i| i.text()).unwrap_or_default();
            self.err = Some(format!("`{at}`: {what}"));
        }
    }

    fn read(&mut self, st: &mut State, r: u32) -> NodeId {
        let v = st.env[r as usize];
        if v != NONE {
            return v;
        }
        let u = self.g.mk(Node::Undef(r));
        st.env[r as usize] = u;
        u
    }

    fn write(&mut self, st: &mut State, r: u32, v: NodeId, guard: Option<NodeId>) {
        let v = match guard {
            Some(gd) => {
                let old = self.read(st, r);
                self.g.gate(gd, v, old)
            }
            None => v,
        };
        st.env[r as usize] = v;
    }

    fn val(&mut self, st: &mut State, op: &LOp) -> NodeId {
        let p = self.p;
        match op {
            LOp::Reg(r) => self.read(st, *r),
            LOp::Special(s) => {
                if let Some(&v) = self.subst.get(s) {
                    return self.g.int(v);
                }
                let name = self.names.str(*s);
                if name.starts_with("%clock") || name.starts_with("%globaltimer") || name == "%smid"
                {
                    self.g.unique(*s, Vec::new())
                } else {
                    self.g.mk(Node::Special(*s))
                }
            }
            LOp::Sym(s) => self.g.mk(Node::Addr(*s)),
            LOp::Int(v) => self.g.int(*v),
            LOp::F32(b) => self.g.mk(Node::F32(*b)),
            LOp::F64(b) => self.g.mk(Node::F64(*b)),
            LOp::Float(s) => self.g.mk(Node::Float(*s)),
            LOp::Vec(items) => {
                let args = p.span(*items).iter().map(|o| self.val(st, o)).collect();
                self.g.op(self.vec_key, args)
            }
            LOp::Addr { base, off } => {
                let b = match *base {
                    Base::Reg(r) => self.read(st, r),
                    Base::Special(s) => self.val(st, &LOp::Special(s)),
                    Base::Sym(s) => self.g.mk(Node::Addr(s)),
                    Base::None => self.g.int(0),
                };
                match self.g.affine(&[(b, 1)], *off) {
                    Some(n) => n,
                    None => {
                        let o = self.g.int(*off);
                        self.g.op(self.vec_key, vec![b, o])
                    }
                }
            }
            LOp::Not(inner) => {
                let v = self.val(st, &p.arena[*inner as usize]);
                self.g.not(v)
            }
            LOp::Pair(..) | LOp::Sink | LOp::Unsupported => {
                self.err
                    .get_or_insert_with(|| "unsupported operand".to_string());
                self.g.int(0)
            }
        }
    }

    /// Writes `v` to the destination operand (a vector destination gets `Proj`s).
    fn write_dest(&mut self, st: &mut State, dest: Option<&LOp>, v: NodeId, guard: Option<NodeId>) {
        let p = self.p;
        match dest {
            Some(LOp::Reg(r)) => self.write(st, *r, v, guard),
            Some(LOp::Vec(items)) => {
                for (k, it) in p.span(*items).iter().enumerate() {
                    if let LOp::Reg(r) = it {
                        let p = self.g.mk(Node::Proj(v, k as u32));
                        self.write(st, *r, p, guard);
                    }
                }
            }
            Some(LOp::Pair(a, b)) => {
                let pa = self.g.mk(Node::Proj(v, 0));
                let pb = self.g.mk(Node::Proj(v, 1));
                self.write(st, *a, pa, guard);
                self.write(st, *b, pb, guard);
            }
            _ => {}
        }
    }

    fn chain_slot(&self, mem: Mem) -> Option<u32> {
        match mem {
            Mem::Shared => Some(self.p.shared_slot),
            Mem::Local => Some(self.p.local_slot),
            _ => None,
        }
    }

    /// A store-like effect: a chained store, or an output event.
    fn effect(
        &mut self,
        k: usize,
        st: &mut State,
        i: &LInstr,
        addr: NodeId,
        vals: Vec<NodeId>,
        guard: Option<NodeId>,
    ) {
        let pc = match guard {
            Some(gd) => self.g.and(st.pc, gd),
            None => st.pc,
        };
        match self.chain_slot(i.mem) {
            Some(slot) => {
                let prev = self.read(st, slot);
                let n = self.g.mk(Node::MemStore {
                    prev,
                    key: i.key,
                    addr,
                    vals: List::from_slice(&vals),
                    pc,
                });
                st.env[slot as usize] = n;
            }
            None => self.g.events.push(super::graph::Event {
                instr: k as u32,
                key: i.key,
                addr,
                vals,
                pc,
            }),
        }
    }

    fn flat_vals(&mut self, st: &mut State, ops: &[LOp]) -> Vec<NodeId> {
        let p = self.p;
        let mut out = Vec::new();
        for o in ops {
            match o {
                LOp::Vec(items) => {
                    for it in p.span(*items) {
                        let v = self.val(st, it);
                        out.push(v);
                    }
                }
                _ => {
                    let v = self.val(st, o);
                    out.push(v);
                }
            }
        }
        out
    }

    fn step(&mut self, k: usize, st: &mut State) {
        let p = self.p;
        let i = &p.code[k];
        self.g.at = k as u32;
        let guard = match i.guard {
            Some((neg, r)) => {
                let v = self.read(st, r);
                Some(if neg { self.g.not(v) } else { v })
            }
            None => None,
        };
        if guard.is_some_and(|gd| self.g.as_bool(gd) == Some(false)) {
            return;
        }
        let guard = guard.filter(|&gd| self.g.as_bool(gd) != Some(true));
        let ops = p.ops(i);
        let dest = ops.first();
        match i.opc {
            Opc::Nop | Opc::Bra | Opc::Ret => {}
            Opc::Call => self.fail(k, "calls are not analysed"),
            Opc::Ld => {
                let addr_op = ops.get(1);
                if i.mem == Mem::Param {
                    if let Some(LOp::Addr {
                        base: Base::Sym(s),
                        off: 0,
                    }) = addr_op
                    {
                        let v = self.g.mk(Node::Param(*s));
                        self.write_dest(st, dest, v, guard);
                        return;
                    }
                }
                let Some(addr_op) = addr_op else {
                    return self.fail(k, "load without an address");
                };
                let addr = self.val(st, addr_op);
                let args = match self.chain_slot(i.mem) {
                    Some(slot) => {
                        let m = self.read(st, slot);
                        List::from_slice(&[addr, m])
                    }
                    None => List::from_slice(&[addr]),
                };
                let v = self.g.mk(Node::Op { key: i.key, args });
                self.write_dest(st, dest, v, guard);
            }
            Opc::St | Opc::Red => {
                let Some(a) = ops.first() else {
                    return self.fail(k, "store without an address");
                };
                let addr = self.val(st, a);
                let vals = self.flat_vals(st, &ops[1..]);
                self.effect(k, st, i, addr, vals, guard);
            }
            Opc::Atom => {
                let (Some(a), Some(rest)) = (ops.get(1), ops.get(2..)) else {
                    return self.fail(k, "atomic without an address");
                };
                let addr = self.val(st, a);
                let vals = self.flat_vals(st, rest);
                let mut args = vec![addr];
                args.extend(vals.iter().copied());
                if let Some(slot) = self.chain_slot(i.mem) {
                    let m = self.read(st, slot);
                    args.push(m);
                }
                let v = self.g.unique(i.key, args);
                self.write_dest(st, dest, v, guard);
                self.effect(k, st, i, addr, vals, guard);
            }
            Opc::Bar => {
                let key = self.names.id(&self.p.src[k].unguarded_text());
                let slot = self.p.shared_slot;
                let prev = self.read(st, slot);
                let n = self.g.mk(Node::MemBarrier { prev, key });
                st.env[slot as usize] = n;
                if i.red {
                    let args = self.flat_vals(st, &ops[1..]);
                    let v = self.g.unique(i.key, args);
                    self.write_dest(st, dest, v, guard);
                }
            }
            Opc::Mov => {
                let Some(src) = ops.get(1) else {
                    return self.fail(k, "mov without a source");
                };
                let s = self.val(st, src);
                let v = if matches!(dest, Some(LOp::Vec(_))) || matches!(src, LOp::Vec(_)) {
                    self.g.op(i.key, vec![s])
                } else {
                    s
                };
                self.write_dest(st, dest, v, guard);
            }
            _ => {
                let v = self.compute(k, st, i);
                self.write_dest(st, dest, v, guard);
            }
        }
    }

    /// The value of an arithmetic, logic, conversion or other instruction.
    fn compute(&mut self, k: usize, st: &mut State, i: &LInstr) -> NodeId {
        let p = self.p;
        let ops = p.ops(i);
        if !matches!(
            ops.first(),
            Some(LOp::Reg(_) | LOp::Vec(_) | LOp::Pair(..)) | None
        ) {
            self.fail(k, "instruction with an effect that is not analysed");
            return self.g.int(0);
        }
        let mut args: Vec<NodeId> = std::mem::take(&mut self.args);
        args.clear();
        for o in ops.iter().skip(1) {
            let v = self.val(st, o);
            args.push(v);
        }
        let ity = int_ty(i.ty);
        let v = match self.affine(i, &args, ity) {
            Some(v) => v,
            None => match self.fold(i, &args, ity) {
                Some(v) => v,
                None => self.g.mk(Node::Op {
                    key: i.key,
                    args: List::from_slice(&args),
                }),
            },
        };
        self.args = args;
        v
    }

    /// Integer index arithmetic as affine forms.
    fn affine(&mut self, i: &LInstr, a: &[NodeId], ity: Option<(u32, bool)>) -> Option<NodeId> {
        let (_, signed) = ity?;
        let c = |x: NodeId| self.g.as_int(x);
        match (i.opc, i.shape, a) {
            (Opc::Add, Shape::Plain, [x, y]) => self.g.affine_of(&[(*x, 1), (*y, 1)], 0),
            (Opc::Sub, Shape::Plain, [x, y]) => self.g.affine_of(&[(*x, 1), (*y, -1)], 0),
            (Opc::Neg, Shape::Plain, [x]) => self.g.affine_of(&[(*x, -1)], 0),
            (Opc::Mul, Shape::Lo | Shape::Wide, [x, y]) => {
                if i.shape == Shape::Wide && signed {
                    return None;
                }
                match (c(*x), c(*y)) {
                    (_, Some(m)) => self.g.affine_of(&[(*x, m)], 0),
                    (Some(m), _) => self.g.affine_of(&[(*y, m)], 0),
                    _ => None,
                }
            }
            (Opc::Mad, Shape::Lo | Shape::Wide, [x, y, z]) => {
                if i.shape == Shape::Wide && signed {
                    return None;
                }
                match (c(*x), c(*y)) {
                    (_, Some(m)) => self.g.affine_of(&[(*x, m), (*z, 1)], 0),
                    (Some(m), _) => self.g.affine_of(&[(*y, m), (*z, 1)], 0),
                    _ => None,
                }
            }
            (Opc::Shl, Shape::Plain, [x, y]) => match c(*y) {
                Some(s) if (0..62).contains(&s) => self.g.affine_of(&[(*x, 1i64 << s)], 0),
                _ => None,
            },
            (Opc::Cvt, Shape::Plain, [x]) => {
                // Zero-extension (and same-width reinterpretation) of unsigned indices.
                match (i.ty_first, i.ty) {
                    (Some(d), Some(s))
                        if d.bits() >= s.bits()
                            && !matches!(s.class(), crate::ast::TypeClass::Signed)
                            && d.is_int() =>
                    {
                        match c(*x) {
                            Some(v) => Some(self.g.int(wrap(v, s.bits(), false))),
                            None => Some(*x),
                        }
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// Constant folding of integer and predicate logic, comparisons and selects.
    fn fold(&mut self, i: &LInstr, a: &[NodeId], ity: Option<(u32, bool)>) -> Option<NodeId> {
        let op = i.fop;
        if i.opc == Opc::Selp {
            let b = self.g.as_bool(*a.get(2)?)?;
            return Some(if b { a[0] } else { a[1] });
        }
        if i.ty == Some(Type::Pred) {
            let bs: Option<Vec<bool>> = a.iter().map(|&x| self.g.as_bool(x)).collect();
            let bs = bs?;
            let r = match (op, bs.as_slice()) {
                (FoldOp::And, [x, y]) => x & y,
                (FoldOp::Or, [x, y]) => x | y,
                (FoldOp::Xor, [x, y]) => x ^ y,
                (FoldOp::Not, [x]) => !x,
                _ => return None,
            };
            return Some(self.g.boolean(r));
        }
        let (bits, signed) = ity?;
        let vs: Option<Vec<i64>> = a.iter().map(|&x| self.g.as_int(x)).collect();
        let vs = vs?;
        let u = |v: i64| wrap(v, bits, false);
        let s = |v: i64| wrap(v, bits, true);
        let norm = |v: i64| wrap(v, bits, signed);
        if i.opc == Opc::Setp {
            let [x, y] = vs.as_slice() else { return None };
            let Shape::Cmp(cmp) = i.shape else {
                return None;
            };
            let (sx, sy) = if signed {
                (s(*x), s(*y))
            } else {
                (u(*x), u(*y))
            };
            let (ux, uy) = (u(*x), u(*y));
            let r = match cmp {
                Cmp::Eq => ux == uy,
                Cmp::Ne => ux != uy,
                Cmp::Lt => sx < sy,
                Cmp::Le => sx <= sy,
                Cmp::Gt => sx > sy,
                Cmp::Ge => sx >= sy,
                Cmp::Lo => ux < uy,
                Cmp::Ls => ux <= uy,
                Cmp::Hi => ux > uy,
                Cmp::Hs => ux >= uy,
            };
            return Some(self.g.boolean(r));
        }
        if i.shape != Shape::Plain {
            return None;
        }
        let r = match (op, vs.as_slice()) {
            (FoldOp::And, [x, y]) => norm(x & y),
            (FoldOp::Or, [x, y]) => norm(x | y),
            (FoldOp::Xor, [x, y]) => norm(x ^ y),
            (FoldOp::Not, [x]) => norm(!x),
            (FoldOp::Shr, [x, y]) if (0..64).contains(y) => {
                if signed {
                    norm(s(*x) >> (*y).min(bits as i64 - 1))
                } else if *y >= bits as i64 {
                    0
                } else {
                    norm(((u(*x) as u64) >> y) as i64)
                }
            }
            (FoldOp::Min, [x, y]) => norm(if signed {
                s(*x).min(s(*y))
            } else {
                u(*x).min(u(*y))
            }),
            (FoldOp::Max, [x, y]) => norm(if signed {
                s(*x).max(s(*y))
            } else {
                u(*x).max(u(*y))
            }),
            (FoldOp::Rem, [x, y]) if u(*y) != 0 => norm(if signed {
                s(*x).checked_rem(s(*y))?
            } else {
                u(*x) % u(*y)
            }),
            (FoldOp::Div, [x, y]) if u(*y) != 0 => norm(if signed {
                s(*x).checked_div(s(*y))?
            } else {
                u(*x) / u(*y)
            }),
            _ => return None,
        };
        Some(self.g.int(r))
    }

    fn guard_of(&mut self, st: &mut State, i: &LInstr) -> Option<NodeId> {
        let (neg, r) = i.guard?;
        let v = self.read(st, r);
        Some(if neg { self.g.not(v) } else { v })
    }

    /// Merges two register files: `cond ? a : b`.
    fn merge(&mut self, cond: NodeId, a: State, b: State) -> State {
        let mut env = a.env;
        for (k, (x, y)) in env.iter_mut().zip(b.env.iter()).enumerate() {
            if *x != *y {
                let xa = if *x == NONE {
                    self.g.mk(Node::Undef(k as u32))
                } else {
                    *x
                };
                let yb = if *y == NONE {
                    self.g.mk(Node::Undef(k as u32))
                } else {
                    *y
                };
                *x = self.g.gate(cond, xa, yb);
            }
        }
        let pc = self.g.or(a.pc, b.pc);
        State { env, pc }
    }

    /// Merges states that arrived at one point by different paths, each gated by its own
    /// path condition.
    fn merge_all(&mut self, mut states: Vec<State>) -> Option<State> {
        let mut acc = states.pop()?;
        while let Some(s) = states.pop() {
            let c = s.pc;
            acc = self.merge(c, s, acc);
        }
        Some(acc)
    }

    /// Evaluates from `start` until control reaches a stop of `ctx`, leaves or re-enters
    /// the loop of `ctx`, or returns; `entry` is true only for the loop driver's own entry
    /// into a loop's header (anywhere else, reaching the header is the back edge).
    fn run_region(
        &mut self,
        start: usize,
        st: State,
        ctx: &Ctx,
        out: &mut Vec<Arrival>,
        entry: bool,
    ) {
        if self.depth >= MAX_DEPTH {
            self.err.get_or_insert_with(|| {
                format!("branches and loops nested more than {MAX_DEPTH} deep")
            });
            return;
        }
        self.depth += 1;
        self.region(start, st, ctx, out, entry);
        self.depth -= 1;
    }

    fn region(&mut self, start: usize, st: State, ctx: &Ctx, out: &mut Vec<Arrival>, entry: bool) {
        let p = self.p;
        let exit = p.exit();
        let mut block = start;
        let mut st = st;
        let mut first = entry;
        loop {
            if self.err.is_some() {
                return;
            }
            if block == exit {
                out.push(Arrival::Ret);
                return;
            }
            if let Some(l) = ctx.lp {
                let info = &p.loops[l];
                if block == info.header && !first {
                    out.push(Arrival::Back(st));
                    return;
                }
                if !info.body[block] {
                    out.push(Arrival::Exit(st));
                    return;
                }
            }
            if let Some(level) = ctx.stops.iter().rposition(|&s| s == block) {
                out.push(Arrival::Stop(level, st));
                return;
            }
            if let Some(l) = p.header_of[block] {
                if !(first && ctx.lp == Some(l)) {
                    match self.run_loop(l, st, out) {
                        Some(s) => {
                            st = s;
                            block = p.loops[l].exit.unwrap_or(exit);
                            first = false;
                            continue;
                        }
                        None => return,
                    }
                }
            }
            first = false;
            let (s, e) = p.blocks[block];
            let last = &p.code[e - 1];
            let transfer = matches!(last.opc, Opc::Bra | Opc::Ret);
            let body_end = if transfer { e - 1 } else { e };
            self.steps += (e - s) as u64;
            if self.steps > MAX_STEPS {
                self.err = Some(format!("more than {MAX_STEPS} instructions to evaluate; the kernel is too large to analyse"));
                return;
            }
            for k in s..body_end {
                self.step(k, &mut st);
            }
            if !transfer {
                block += 1;
                continue;
            }
            self.g.at = (e - 1) as u32;
            let gd = self.guard_of(&mut st, last);
            let known = gd.map(|x| self.g.as_bool(x));
            match (last.opc, gd, known) {
                (Opc::Ret, None, _) | (Opc::Ret, _, Some(Some(true))) => {
                    out.push(Arrival::Ret);
                    return;
                }
                (Opc::Ret, _, Some(Some(false))) => block += 1,
                (Opc::Ret, Some(x), _) => {
                    let nx = self.g.not(x);
                    st.pc = self.g.and(st.pc, nx);
                    block += 1;
                }
                (_, None, _) | (_, _, Some(Some(true))) => block = p.target[block].unwrap_or(exit),
                (_, _, Some(Some(false))) => block += 1,
                (_, Some(x), _) => {
                    let taken = p.target[block].unwrap_or(exit);
                    let join = p.ipdom[block];
                    let pc0 = st.pc;
                    let mut t = st.clone();
                    t.pc = self.g.and(pc0, x);
                    let nx = self.g.not(x);
                    let mut f = st;
                    f.pc = self.g.and(pc0, nx);
                    let mut sub = ctx.clone();
                    sub.stops.push(join);
                    let level = sub.stops.len() - 1;
                    let mut arr = Vec::new();
                    self.run_region(taken, t, &sub, &mut arr, false);
                    let split = arr.len();
                    self.run_region(block + 1, f, &sub, &mut arr, false);
                    let (mut ts, mut fs) = (Vec::new(), Vec::new());
                    for (n, a) in arr.into_iter().enumerate() {
                        match a {
                            Arrival::Stop(l, s) if l == level => {
                                if n < split {
                                    ts.push(s)
                                } else {
                                    fs.push(s)
                                }
                            }
                            other => out.push(other),
                        }
                    }
                    let (tp, fp) = (self.g.and(pc0, x), self.g.and(pc0, nx));
                    let t = self.merge_all(ts);
                    let f = self.merge_all(fs);
                    st = match (t, f) {
                        (Some(t), Some(f)) => {
                            let whole = t.pc == tp && f.pc == fp;
                            self.g.at = (e - 1) as u32;
                            let mut m = self.merge(x, t, f);
                            if whole {
                                m.pc = pc0;
                            }
                            m
                        }
                        (Some(s), None) | (None, Some(s)) => s,
                        (None, None) => return,
                    };
                    block = join;
                }
            }
            if block >= exit {
                out.push(Arrival::Ret);
                return;
            }
        }
    }

    /// Evaluates loop `l` entered with `st`: unrolled while its exit test folds to a
    /// constant, summarised otherwise. Returns the state at the loop's exit.
    fn run_loop(&mut self, l: usize, st: State, out: &mut Vec<Arrival>) -> Option<State> {
        let p = self.p;
        let header = p.loops[l].header;
        let mark = self.g.mark();
        let entry = st.clone();
        let sub = Ctx {
            stops: Vec::new(),
            lp: Some(l),
        };
        let mut st = st;
        let mut iters = 0;
        loop {
            let mut arr = Vec::new();
            self.run_region(header, st, &sub, &mut arr, true);
            if self.err.is_some() {
                return None;
            }
            let (mut backs, mut exits) = (Vec::new(), Vec::new());
            for a in arr {
                match a {
                    Arrival::Back(s) => backs.push(s),
                    Arrival::Exit(s) => exits.push(s),
                    Arrival::Ret => {}
                    other @ Arrival::Stop(..) => out.push(other),
                }
            }
            match (backs.len(), exits.is_empty()) {
                (1, true) if iters < MAX_ITERS => {
                    st = backs.pop()?;
                    iters += 1;
                }
                (0, _) => return self.merge_all(exits),
                _ => break,
            }
        }
        self.g.truncate(mark);
        self.summarise(l, entry)
    }

    fn summarise(&mut self, l: usize, entry: State) -> Option<State> {
        let p = self.p;
        let info = &p.loops[l];
        let id = self.g.loops.len() as u32;
        let origin = p.blocks[info.header].0 as u32;
        self.g.loops.push(LoopSummary {
            cont: NONE,
            exit: NONE,
            ..Default::default()
        });
        self.g.at = origin;
        let mut st = entry.clone();
        for (slot, &r) in info.defs.iter().enumerate() {
            let init = self.read(&mut st, r);
            self.g.loops[id as usize].init.push(init);
            st.env[r as usize] = self.g.mk(Node::Mu(id, slot as u32));
        }
        let inside = self.g.mk(Node::Loop(id));
        self.g.loops[id as usize].node = inside;
        st.pc = self.g.and(entry.pc, inside);
        let mut arr = Vec::new();
        self.run_region(
            info.header,
            st,
            &Ctx {
                stops: Vec::new(),
                lp: Some(l),
            },
            &mut arr,
            true,
        );
        let (mut backs, mut exits) = (Vec::new(), Vec::new());
        for a in arr {
            match a {
                Arrival::Back(s) => backs.push(s),
                Arrival::Exit(s) => exits.push(s),
                _ => {}
            }
        }
        let back = self.merge_all(backs);
        let ex = self.merge_all(exits);
        let falsity = self.g.boolean(false);
        let summary = &mut self.g.loops[id as usize];
        summary.cont = back.as_ref().map_or(falsity, |b| b.pc);
        summary.exit = ex.as_ref().map_or(falsity, |x| x.pc);
        summary.next = info
            .defs
            .iter()
            .map(|&r| back.as_ref().map_or(NONE, |b| b.env[r as usize]))
            .collect();
        for (slot, n) in summary.next.iter_mut().enumerate() {
            if *n == NONE {
                *n = summary.init[slot];
            }
        }
        let mut ex = ex?;
        self.g.at = origin;
        for &r in &info.defs {
            let v = ex.env[r as usize];
            let v = if v == NONE {
                self.g.mk(Node::Undef(r))
            } else {
                v
            };
            ex.env[r as usize] = self.g.mk(Node::Exit(id, v));
        }
        ex.pc = entry.pc;
        Some(ex)
    }
}
