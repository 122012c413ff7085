//! `KernelBuilder`: writes a kernel as typed IR, checking every operand type and target
//! feature as the instruction is added. A mismatch is recorded and `finish` returns it as
//! an error, so a generator never produces silently-wrong PTX.

use crate::ast::{StateSpace, Type, TypeClass};
use crate::target::{Feature, Target};

use super::instr::*;
use super::reg::{Bank, Reg, Sreg, Value};
use super::{IrError, Kernel, Param, PerfDirective, SharedVar};

/// The member mask of a full warp.
const FULL_MASK: u64 = 0xffff_ffff;

/// Builds one `.entry` kernel.
pub struct KernelBuilder {
    name: String,
    target: Target,
    comments: Vec<String>,
    params: Vec<Param>,
    shared: Vec<SharedVar>,
    directives: Vec<PerfDirective>,
    body: Vec<Instr>,
    counts: [u32; Bank::ALL.len()],
    labels: u32,
    placed: Vec<Label>,
    used_labels: Vec<Label>,
    errors: Vec<IrError>,
    next_guard: Option<(Reg, bool)>,
    next_dst: Option<Reg>,
    /// Whether the generator placed the grid dependency wait itself.
    waited: bool,
}

/// `"{what} {k}"`, an operand's name in error messages (without formatting for the
/// usual 0..4).
fn nth_name(what: &'static str, k: usize) -> std::borrow::Cow<'static, str> {
    const NAMES: [[&str; 4]; 3] = [
        [
            "destination 0",
            "destination 1",
            "destination 2",
            "destination 3",
        ],
        ["source 0", "source 1", "source 2", "source 3"],
        ["part 0", "part 1", "part 2", "part 3"],
    ];
    let row = match what {
        "destination" => 0,
        "source" => 1,
        _ => 2,
    };
    match NAMES[row].get(k) {
        Some(n) if NAMES[row][0].starts_with(what) => std::borrow::Cow::Borrowed(n),
        _ => std::borrow::Cow::Owned(format!("{what} {k}")),
    }
}

fn bank_slot(b: Bank) -> usize {
    Bank::ALL.iter().position(|x| *x == b).unwrap_or(0)
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' || c == '$' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

/// Whether an integer immediate fits an instruction type of `bits`, read as either signed
/// or unsigned (PTX immediates carry no signedness of their own).
fn int_fits(v: i128, bits: u32) -> bool {
    if bits >= 64 {
        return v >= i64::MIN as i128 && v <= u64::MAX as i128;
    }
    let lo = -(1i128 << (bits - 1));
    let hi = (1i128 << bits) - 1;
    v >= lo && v <= hi
}

impl KernelBuilder {
    /// A new kernel. `name` must be a PTX identifier.
    pub fn new(name: &str, target: Target) -> KernelBuilder {
        let mut b = KernelBuilder {
            name: name.to_string(),
            target,
            comments: Vec::new(),
            params: Vec::new(),
            shared: Vec::new(),
            directives: Vec::new(),
            body: Vec::new(),
            counts: [0; Bank::ALL.len()],
            labels: 0,
            placed: Vec::new(),
            used_labels: Vec::new(),
            errors: Vec::new(),
            next_guard: None,
            next_dst: None,
            waited: false,
        };
        if !is_ident(name) {
            b.fail(format!("kernel name `{name}` is not a PTX identifier"));
        }
        b
    }

    pub fn target(&self) -> Target {
        self.target
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn fail(&mut self, message: String) {
        self.errors.push(IrError::Invalid {
            kernel: self.name.clone(),
            message,
        });
    }

    fn mismatch(&mut self, instr: &str, operand: &str, expected: Type, found: String) {
        self.errors.push(IrError::TypeMismatch {
            kernel: self.name.clone(),
            instr: instr.to_string(),
            operand: operand.to_string(),
            expected: expected.name().to_string(),
            found,
        });
    }

    fn require(&mut self, feature: Feature) {
        if !self.target.allows(feature) {
            self.errors.push(IrError::Unsupported {
                kernel: self.name.clone(),
                feature: feature.describe().to_string(),
                target: self.target.to_string(),
            });
        }
    }

    // ---- kernel-level declarations -------------------------------------------------

    /// A comment printed above the kernel (the spec it was generated from).
    pub fn header_comment(&mut self, text: &str) {
        self.comments.push(text.to_string());
    }

    /// A kernel parameter of type `ty`, read with [`Self::load_param`] or [`Self::global_ptr`].
    pub fn param(&mut self, ty: Type, name: &str) -> Param {
        if !is_ident(name) {
            self.fail(format!("parameter name `{name}` is not a PTX identifier"));
        }
        if self.params.iter().any(|p| p.name == name) {
            self.fail(format!("parameter `{name}` declared twice"));
        }
        if ty == Type::Pred || ty == Type::B128 {
            self.fail(format!("parameter `{name}` cannot have type {ty}"));
        }
        let p = Param {
            name: name.to_string(),
            ty,
        };
        self.params.push(p.clone());
        p
    }

    /// A statically sized shared array of `len` elements of `ty`, aligned to `align` bytes.
    pub fn shared(&mut self, name: &str, ty: Type, len: u32, align: u32) -> SharedVar {
        if !is_ident(name) {
            self.fail(format!("shared variable `{name}` is not a PTX identifier"));
        }
        if !align.is_power_of_two() || align < ty.bytes() {
            self.fail(format!(
                "shared variable `{name}`: alignment {align} must be a power of two >= {}",
                ty.bytes()
            ));
        }
        let v = SharedVar {
            name: name.to_string(),
            ty,
            len,
            align,
        };
        self.shared.push(v.clone());
        v
    }

    /// `.maxntid x, 1, 1`: the most threads per block the kernel is launched with.
    pub fn max_threads(&mut self, x: u32) {
        self.directives.push(PerfDirective::MaxNtid(x));
    }

    /// `.reqntid x, 1, 1`: the exact block size.
    pub fn required_threads(&mut self, x: u32) {
        self.directives.push(PerfDirective::ReqNtid(x));
    }

    /// `.minnctapersm n`.
    pub fn min_blocks_per_sm(&mut self, n: u32) {
        self.directives.push(PerfDirective::MinNctaPerSm(n));
    }

    // ---- registers and the next instruction's guard/destination ---------------------

    /// A fresh register of type `ty`.
    pub fn reg(&mut self, ty: Type) -> Reg {
        if ty == Type::B128 {
            self.fail("128-bit registers are not supported".into());
        }
        let slot = bank_slot(Bank::of(ty));
        let index = self.counts[slot];
        self.counts[slot] += 1;
        Reg { ty, index }
    }

    /// Guards the next instruction with `@pred`.
    pub fn when(&mut self, pred: Reg) -> &mut Self {
        self.set_guard(pred, false)
    }

    /// Guards the next instruction with `@!pred`.
    pub fn unless(&mut self, pred: Reg) -> &mut Self {
        self.set_guard(pred, true)
    }

    fn set_guard(&mut self, pred: Reg, negated: bool) -> &mut Self {
        if pred.ty != Type::Pred {
            self.mismatch("guard", "predicate", Type::Pred, pred.ty.name().into());
        }
        if self.next_guard.is_some() {
            self.fail("two guards for one instruction".into());
        }
        self.next_guard = Some((pred, negated));
        self
    }

    /// Makes the next value-producing instruction write `dst` instead of a fresh register
    /// (loop-carried accumulators).
    pub fn to(&mut self, dst: Reg) -> &mut Self {
        if self.next_dst.is_some() {
            self.fail("two destinations for one instruction".into());
        }
        self.next_dst = Some(dst);
        self
    }

    fn push(&mut self, op: Op) {
        if self.next_dst.take().is_some() {
            self.fail(format!(
                "`to(..)` given for an instruction without a result: {op:?}"
            ));
        }
        let guard = self.next_guard.take();
        self.body.push(Instr { guard, op });
    }

    /// The destination of a value-producing instruction of type `ty`.
    fn dst(&mut self, instr: &str, ty: Type) -> Reg {
        match self.next_dst.take() {
            Some(d) => {
                if !d.ty.fits(ty) {
                    self.mismatch(instr, "destination", ty, d.ty.name().into());
                }
                d
            }
            None => self.reg(ty),
        }
    }

    fn push_value(&mut self, op: Op) {
        let guard = self.next_guard.take();
        self.body.push(Instr { guard, op });
    }

    fn check(&mut self, instr: &str, operand: &str, v: Value, ty: Type) {
        match v {
            Value::Reg(r) => {
                if !r.ty.fits(ty) {
                    self.mismatch(instr, operand, ty, r.ty.name().into());
                }
            }
            Value::Int(i) => self.check_int(instr, operand, i as i128, ty),
            Value::UInt(u) | Value::Hex(u) => self.check_int(instr, operand, u as i128, ty),
            Value::F32(_) => {
                if !matches!(ty, Type::F32 | Type::B32) {
                    self.mismatch(instr, operand, ty, "f32 immediate".into());
                }
            }
            Value::F64(_) => {
                if !matches!(ty, Type::F64 | Type::B64) {
                    self.mismatch(instr, operand, ty, "f64 immediate".into());
                }
            }
        }
    }

    fn check_int(&mut self, instr: &str, operand: &str, v: i128, ty: Type) {
        match ty.class() {
            TypeClass::Bits | TypeClass::Unsigned | TypeClass::Signed => {
                if !int_fits(v, ty.bits()) {
                    self.mismatch(instr, operand, ty, format!("immediate {v} out of range"));
                }
            }
            _ => self.mismatch(instr, operand, ty, format!("integer immediate {v}")),
        }
    }

    fn check_reg(&mut self, instr: &str, operand: &str, r: Reg, ty: Type) {
        self.check(instr, operand, Value::Reg(r), ty);
    }

    // ---- data movement ---------------------------------------------------------------

    /// `mov.ty d, src`.
    pub fn mov(&mut self, ty: Type, src: impl Into<Value>) -> Reg {
        let src = src.into();
        self.check("mov", "source", src, ty);
        let dst = self.dst("mov", ty);
        self.push_value(Op::Mov { ty, dst, src });
        dst
    }

    /// Reads a special register (`%tid.x`, ...).
    pub fn special(&mut self, sreg: Sreg) -> Reg {
        let dst = self.dst("mov", sreg.ty());
        self.push_value(Op::MovSpecial { dst, sreg });
        dst
    }

    /// Loads a scalar kernel parameter.
    pub fn load_param(&mut self, p: &Param) -> Reg {
        if !self.params.contains(p) {
            self.fail(format!(
                "parameter `{}` is not a parameter of this kernel",
                p.name
            ));
        }
        let dst = self.dst("ld.param", p.ty);
        self.push_value(Op::Ld {
            space: StateSpace::Param,
            hints: Vec::new(),
            ty: p.ty,
            dst: vec![dst],
            addr: Addr {
                base: Base::Var(p.name.clone()),
                offset: 0,
            },
            policy: None,
        });
        dst
    }

    /// Loads a pointer parameter and converts it to a global address.
    pub fn global_ptr(&mut self, p: &Param) -> Reg {
        if p.ty != Type::U64 {
            self.mismatch("ld.param (pointer)", &p.name, Type::U64, p.ty.name().into());
        }
        let generic = self.load_param(p);
        let dst = self.reg(Type::U64);
        self.push(Op::CvtaToGlobal { dst, src: generic });
        dst
    }

    /// The 32-bit shared-window address of a shared variable.
    pub fn shared_base(&mut self, v: &SharedVar) -> Reg {
        if !self.shared.contains(v) {
            self.fail(format!(
                "shared variable `{}` is not declared in this kernel",
                v.name
            ));
        }
        let dst = self.dst("mov", Type::U32);
        self.push_value(Op::MovSymbol {
            ty: Type::U32,
            dst,
            symbol: v.name.clone(),
        });
        dst
    }

    /// `mov.b32 d, {a, b}` and friends: packs equal-sized parts into one register of `ty`.
    pub fn pack(&mut self, ty: Type, parts: &[Reg]) -> Reg {
        let n = parts.len() as u32;
        if n < 2 || ty.bits() % n != 0 || !matches!(ty.class(), TypeClass::Bits) {
            self.fail(format!("cannot pack {n} parts into {ty}"));
        } else {
            let part_bits = ty.bits() / n;
            for (k, p) in parts.iter().enumerate() {
                if p.ty.bits() != part_bits {
                    let name = nth_name("part", k);
                    self.mismatch(
                        "mov (pack)",
                        &name,
                        ty,
                        format!("{}-bit {}", p.ty.bits(), p.ty.name()),
                    );
                }
            }
        }
        let dst = self.dst("mov (pack)", ty);
        self.push_value(Op::Pack {
            ty,
            dst,
            parts: parts.to_vec(),
        });
        dst
    }

    /// `mov.b32 {a, b}, src`: splits a register into `part_ty` pieces, lowest first.
    pub fn unpack(&mut self, ty: Type, src: Reg, part_ty: Type) -> Vec<Reg> {
        self.check_reg("mov (unpack)", "source", src, ty);
        let n = (ty.bits() / part_ty.bits().max(1)) as usize;
        if n < 2 || ty.bits() % part_ty.bits() != 0 || ty.class() != TypeClass::Bits {
            self.fail(format!("cannot unpack {ty} into {part_ty}"));
        }
        let parts: Vec<Reg> = (0..n.max(2)).map(|_| self.reg(part_ty)).collect();
        self.push(Op::Unpack {
            ty,
            parts: parts.clone(),
            src,
        });
        parts
    }

    // ---- memory ------------------------------------------------------------------------

    fn check_addr(&mut self, instr: &str, space: StateSpace, addr: &Addr) {
        if let Base::Reg(r) = addr.base {
            let ok = match space {
                StateSpace::Shared | StateSpace::Local => {
                    r.ty.is_int() || r.ty.class() == TypeClass::Bits
                }
                _ => r.ty.bits() == 64 && (r.ty.is_int() || r.ty.class() == TypeClass::Bits),
            } && (r.ty.bits() == 32 || r.ty.bits() == 64);
            if !ok {
                self.mismatch(instr, "address", Type::U64, r.ty.name().into());
            }
        }
    }

    fn check_hints(&mut self, hints: &[CacheHint], load: bool, space: StateSpace) {
        for h in hints {
            match h {
                CacheHint::NonCoherent => {
                    if !load || space != StateSpace::Global {
                        self.fail("`.nc` is only for global loads".into());
                    }
                }
                CacheHint::L1NoAllocate | CacheHint::L1EvictFirst | CacheHint::L1EvictLast => {
                    self.require(Feature::L1EvictionPriority)
                }
                CacheHint::Streaming | CacheHint::CacheGlobal => {}
            }
        }
    }

    fn check_data_reg(&mut self, instr: &str, operand: &str, r: Reg, ty: Type) {
        // ld/st/cvt may use integer registers wider than the instruction type (PTX ISA).
        let widened = (ty.is_int() || ty.class() == TypeClass::Bits)
            && (r.ty.is_int() || r.ty.class() == TypeClass::Bits)
            && r.ty.bits() > ty.bits();
        if !widened {
            self.check_reg(instr, operand, r, ty);
        }
    }

    /// A creates an L2 cache policy (`createpolicy.fractional`) for `.L2::cache_hint`.
    pub fn l2_policy(&mut self, evict: L2Evict) -> Reg {
        self.require(Feature::CachePolicy);
        let dst = self.reg(Type::B64);
        self.push(Op::CreatePolicy { evict, dst });
        dst
    }

    /// `ld.space{.hints}{.L2::cache_hint}{.vN}.ty` of `width` (1, 2 or 4) elements into
    /// fresh registers (or the `to(..)` register when `width` is 1).
    pub fn load(
        &mut self,
        space: StateSpace,
        ty: Type,
        width: usize,
        addr: Addr,
        hints: &[CacheHint],
        policy: Option<Reg>,
    ) -> Vec<Reg> {
        let dst: Vec<Reg> = if width == 1 {
            vec![self.dst("ld", ty)]
        } else {
            (0..width).map(|_| self.reg(ty)).collect()
        };
        self.load_to(space, ty, &dst, addr, hints, policy);
        dst
    }

    /// Like [`Self::load`], into existing registers (a guarded load keeps their old values
    /// where the guard is false). Integer registers wider than `ty` are allowed, as in PTX.
    pub fn load_to(
        &mut self,
        space: StateSpace,
        ty: Type,
        dst: &[Reg],
        addr: Addr,
        hints: &[CacheHint],
        policy: Option<Reg>,
    ) {
        let width = dst.len();
        if ![1, 2, 4].contains(&width) || ty.bits() * width as u32 > 128 {
            self.fail(format!("ld of {width} x {ty} is not a PTX vector load"));
        }
        self.check_addr("ld", space, &addr);
        self.check_hints(hints, true, space);
        if let Some(p) = policy {
            self.require(Feature::CachePolicy);
            self.check_reg("ld", "cache policy", p, Type::B64);
        }
        for (k, r) in dst.iter().enumerate() {
            let name = nth_name("destination", k);
            self.check_data_reg("ld", &name, *r, ty);
        }
        self.push_value(Op::Ld {
            space,
            hints: hints.to_vec(),
            ty,
            dst: dst.to_vec(),
            addr,
            policy,
        });
    }

    /// A scalar global load.
    pub fn ld_global(&mut self, ty: Type, addr: Addr) -> Reg {
        self.load(StateSpace::Global, ty, 1, addr, &[], None)[0]
    }

    /// A scalar shared load.
    pub fn ld_shared(&mut self, ty: Type, addr: Addr) -> Reg {
        self.load(StateSpace::Shared, ty, 1, addr, &[], None)[0]
    }

    /// `st.space{.hints}{.vN}.ty [addr], src`.
    pub fn store(
        &mut self,
        space: StateSpace,
        ty: Type,
        addr: Addr,
        src: &[Value],
        hints: &[CacheHint],
        policy: Option<Reg>,
    ) {
        let width = src.len();
        if ![1, 2, 4].contains(&width) || ty.bits() * width as u32 > 128 {
            self.fail(format!("st of {width} x {ty} is not a PTX vector store"));
        }
        self.check_addr("st", space, &addr);
        self.check_hints(hints, false, space);
        for (k, v) in src.iter().enumerate() {
            let name = nth_name("source", k);
            match v {
                Value::Reg(r) => self.check_data_reg("st", &name, *r, ty),
                _ => self.check("st", &name, *v, ty),
            }
        }
        if let Some(p) = policy {
            self.require(Feature::CachePolicy);
            self.check_reg("st", "cache policy", p, Type::B64);
        }
        self.push(Op::St {
            space,
            hints: hints.to_vec(),
            ty,
            src: src.to_vec(),
            addr,
            policy,
        });
    }

    /// A scalar global store.
    pub fn st_global(&mut self, ty: Type, addr: Addr, src: impl Into<Value>) {
        self.store(StateSpace::Global, ty, addr, &[src.into()], &[], None);
    }

    /// A scalar shared store.
    pub fn st_shared(&mut self, ty: Type, addr: Addr, src: impl Into<Value>) {
        self.store(StateSpace::Shared, ty, addr, &[src.into()], &[], None);
    }

    /// `atom.space.op.ty d, [addr], b{, c}` (c only for `cas`).
    pub fn atom(
        &mut self,
        space: StateSpace,
        op: AtomOp,
        ty: Type,
        addr: Addr,
        b: impl Into<Value>,
        c: Option<Value>,
    ) -> Reg {
        let b = b.into();
        self.check_addr("atom", space, &addr);
        self.check("atom", "operand b", b, ty);
        if (op == AtomOp::Cas) != c.is_some() {
            self.fail("atom: a third operand exactly for cas".into());
        }
        if let Some(c) = c {
            self.check("atom", "operand c", c, ty);
        }
        let dst = self.dst("atom", ty);
        self.push_value(Op::Atom {
            space,
            op,
            ty,
            dst,
            addr,
            b,
            c,
        });
        dst
    }

    /// `red.space.op.ty [addr], b`.
    pub fn red(
        &mut self,
        space: StateSpace,
        op: AtomOp,
        ty: Type,
        addr: Addr,
        b: impl Into<Value>,
    ) {
        let b = b.into();
        self.check_addr("red", space, &addr);
        self.check("red", "operand", b, ty);
        if matches!(op, AtomOp::Exch | AtomOp::Cas) {
            self.fail(format!("red has no {op:?}"));
        }
        self.push(Op::Red {
            space,
            op,
            ty,
            addr,
            b,
        });
    }

    // ---- arithmetic --------------------------------------------------------------------

    /// A two-operand instruction (`add`, `mul`, `min`, `shl`, ...).
    pub fn bin(
        &mut self,
        op: BinOp,
        ty: Type,
        mode: FMode,
        a: impl Into<Value>,
        b: impl Into<Value>,
    ) -> Reg {
        let (a, b) = (a.into(), b.into());
        // The variant's name in lower case (error messages).
        let name = if op == BinOp::MulHi {
            "mulhi"
        } else {
            op.opcode()
        };
        let shift = matches!(op, BinOp::Shl | BinOp::Shr);
        let allowed: &[TypeClass] = match op {
            BinOp::And | BinOp::Or | BinOp::Xor => &[TypeClass::Bits, TypeClass::Pred],
            BinOp::Shl => &[TypeClass::Bits],
            BinOp::Shr => &[TypeClass::Bits, TypeClass::Unsigned, TypeClass::Signed],
            BinOp::MulHi | BinOp::Rem => &[TypeClass::Unsigned, TypeClass::Signed],
            _ => &[TypeClass::Unsigned, TypeClass::Signed, TypeClass::Float],
        };
        if !allowed.contains(&ty.class())
            || (ty.bits() == 8 && ty != Type::Pred)
            || ty == Type::B128
        {
            self.fail(format!("{name} is not defined for {ty}"));
        }
        if !ty.is_float() && (mode.approx || mode.ftz || mode.round.is_some()) {
            self.fail(format!(
                "{name}.{}: float modes on an integer instruction",
                ty.name()
            ));
        }
        if ty.is_float() && matches!(op, BinOp::Div) && ty == Type::F32 && mode == FMode::NONE {
            self.fail("div.f32 needs .approx, .full or a rounding mode".into());
        }
        self.check(name, "a", a, ty);
        let bty = if shift { Type::U32 } else { ty };
        self.check(name, "b", b, bty);
        let dst = self.dst(name, ty);
        self.push_value(Op::Bin {
            op,
            ty,
            mode,
            dst,
            a,
            b,
        });
        dst
    }

    pub fn add(&mut self, ty: Type, a: impl Into<Value>, b: impl Into<Value>) -> Reg {
        self.bin(BinOp::Add, ty, FMode::NONE, a, b)
    }

    pub fn sub(&mut self, ty: Type, a: impl Into<Value>, b: impl Into<Value>) -> Reg {
        self.bin(BinOp::Sub, ty, FMode::NONE, a, b)
    }

    /// `mul.lo` for integers, `mul` for floats.
    pub fn mul(&mut self, ty: Type, a: impl Into<Value>, b: impl Into<Value>) -> Reg {
        self.bin(BinOp::Mul, ty, FMode::NONE, a, b)
    }

    pub fn min(&mut self, ty: Type, a: impl Into<Value>, b: impl Into<Value>) -> Reg {
        self.bin(BinOp::Min, ty, FMode::NONE, a, b)
    }

    pub fn max(&mut self, ty: Type, a: impl Into<Value>, b: impl Into<Value>) -> Reg {
        self.bin(BinOp::Max, ty, FMode::NONE, a, b)
    }

    pub fn and(&mut self, ty: Type, a: impl Into<Value>, b: impl Into<Value>) -> Reg {
        self.bin(BinOp::And, ty, FMode::NONE, a, b)
    }

    pub fn or(&mut self, ty: Type, a: impl Into<Value>, b: impl Into<Value>) -> Reg {
        self.bin(BinOp::Or, ty, FMode::NONE, a, b)
    }

    pub fn shl(&mut self, ty: Type, a: impl Into<Value>, b: impl Into<Value>) -> Reg {
        self.bin(BinOp::Shl, ty, FMode::NONE, a, b)
    }

    pub fn shr(&mut self, ty: Type, a: impl Into<Value>, b: impl Into<Value>) -> Reg {
        self.bin(BinOp::Shr, ty, FMode::NONE, a, b)
    }

    /// `mul.wide.{u32,s32}`: the full 64-bit product.
    pub fn mul_wide(&mut self, ty: Type, a: impl Into<Value>, b: impl Into<Value>) -> Reg {
        let (a, b) = (a.into(), b.into());
        if !matches!(ty, Type::U32 | Type::S32 | Type::U16 | Type::S16) {
            self.fail(format!("mul.wide is not defined for {ty}"));
        }
        self.check("mul.wide", "a", a, ty);
        self.check("mul.wide", "b", b, ty);
        let wide = match ty {
            Type::U32 => Type::U64,
            Type::S32 => Type::S64,
            Type::U16 => Type::U32,
            _ => Type::S32,
        };
        let dst = self.dst("mul.wide", wide);
        self.push_value(Op::MulWide { ty, dst, a, b });
        dst
    }

    /// `mad.wide.{u32,s32}`: a * b + c with a 64-bit c and result.
    pub fn mad_wide(
        &mut self,
        ty: Type,
        a: impl Into<Value>,
        b: impl Into<Value>,
        c: impl Into<Value>,
    ) -> Reg {
        let (a, b, c) = (a.into(), b.into(), c.into());
        if !matches!(ty, Type::U32 | Type::S32) {
            self.fail(format!("mad.wide is not defined for {ty}"));
        }
        let wide = if ty == Type::U32 {
            Type::U64
        } else {
            Type::S64
        };
        self.check("mad.wide", "a", a, ty);
        self.check("mad.wide", "b", b, ty);
        self.check("mad.wide", "c", c, wide);
        let dst = self.dst("mad.wide", wide);
        self.push_value(Op::MadWide { ty, dst, a, b, c });
        dst
    }

    /// A one-operand instruction; special functions need their approximation mode in `mode`.
    pub fn un(&mut self, op: UnOp, ty: Type, mode: FMode, a: impl Into<Value>) -> Reg {
        let a = a.into();
        // The variant's name in lower case (error messages).
        let name = op.opcode();
        let special = matches!(
            op,
            UnOp::Rcp
                | UnOp::Rsqrt
                | UnOp::Sqrt
                | UnOp::Ex2
                | UnOp::Lg2
                | UnOp::Sin
                | UnOp::Cos
                | UnOp::Tanh
        );
        if special && !ty.is_float() {
            self.fail(format!("{name} is not defined for {ty}"));
        }
        if special && !mode.approx && mode.round.is_none() {
            self.fail(format!(
                "{name}.{} needs .approx or a rounding mode",
                ty.name()
            ));
        }
        if matches!(
            op,
            UnOp::Ex2 | UnOp::Lg2 | UnOp::Sin | UnOp::Cos | UnOp::Tanh | UnOp::Rsqrt
        ) && !mode.approx
        {
            self.fail(format!("{name} exists only as .approx"));
        }
        if op == UnOp::Tanh {
            self.require(Feature::TanhApprox);
        }
        let allowed: &[TypeClass] = match op {
            UnOp::Not => &[TypeClass::Bits, TypeClass::Pred],
            UnOp::Popc | UnOp::Clz | UnOp::Brev => &[TypeClass::Bits],
            UnOp::Neg | UnOp::Abs => &[TypeClass::Signed, TypeClass::Float],
            _ => &[TypeClass::Float],
        };
        if !allowed.contains(&ty.class()) || (ty.bits() == 8 && ty != Type::Pred) {
            self.fail(format!("{name} is not defined for {ty}"));
        }
        self.check(name, "a", a, ty);
        let dst_ty = if matches!(op, UnOp::Popc | UnOp::Clz) {
            Type::U32
        } else {
            ty
        };
        let dst = self.dst(name, dst_ty);
        self.push_value(Op::Un {
            op,
            ty,
            mode,
            dst,
            a,
        });
        dst
    }

    /// d = a * b + c: `fma.rn` for floats (pass the rounding in `mode`), `mad.lo` for integers.
    pub fn mad(
        &mut self,
        ty: Type,
        mode: FMode,
        a: impl Into<Value>,
        b: impl Into<Value>,
        c: impl Into<Value>,
    ) -> Reg {
        let (a, b, c) = (a.into(), b.into(), c.into());
        if ty.is_float() && mode.round.is_none() {
            self.fail(format!("fma.{} needs a rounding mode", ty.name()));
        }
        if !ty.is_int() && !ty.is_float() {
            self.fail(format!("mad/fma is not defined for {ty}"));
        }
        self.check("mad", "a", a, ty);
        self.check("mad", "b", b, ty);
        self.check("mad", "c", c, ty);
        let dst = self.dst("mad", ty);
        self.push_value(Op::Mad {
            ty,
            mode,
            dst,
            a,
            b,
            c,
        });
        dst
    }

    /// `fma.rn.f32 d, a, b, c`.
    pub fn fma(&mut self, a: impl Into<Value>, b: impl Into<Value>, c: impl Into<Value>) -> Reg {
        self.mad(Type::F32, FMode::rn(), a, b, c)
    }

    /// `dp4a.atype.btype d, a, b, c`: c + the dot product of the four bytes of a and b.
    pub fn dp4a(
        &mut self,
        a_ty: Type,
        b_ty: Type,
        a: impl Into<Value>,
        b: impl Into<Value>,
        c: impl Into<Value>,
    ) -> Reg {
        self.require(Feature::Dp4a);
        let (a, b, c) = (a.into(), b.into(), c.into());
        for t in [a_ty, b_ty] {
            if !matches!(t, Type::U32 | Type::S32) {
                self.fail(format!("dp4a operand type {t} must be .u32 or .s32"));
            }
        }
        self.check("dp4a", "a", a, a_ty);
        self.check("dp4a", "b", b, b_ty);
        let acc = if a_ty == Type::U32 && b_ty == Type::U32 {
            Type::U32
        } else {
            Type::S32
        };
        self.check("dp4a", "c", c, acc);
        let dst = self.dst("dp4a", acc);
        self.push_value(Op::Dp4a {
            a_ty,
            b_ty,
            dst,
            a,
            b,
            c,
        });
        dst
    }

    /// `prmt.b32{.mode} d, a, b, sel`: byte permute.
    pub fn prmt(
        &mut self,
        mode: Option<PrmtMode>,
        a: impl Into<Value>,
        b: impl Into<Value>,
        sel: impl Into<Value>,
    ) -> Reg {
        let (a, b, sel) = (a.into(), b.into(), sel.into());
        self.check("prmt", "a", a, Type::B32);
        self.check("prmt", "b", b, Type::B32);
        self.check("prmt", "selector", sel, Type::B32);
        let dst = self.dst("prmt", Type::B32);
        self.push_value(Op::Prmt {
            mode,
            dst,
            a,
            b,
            sel,
        });
        dst
    }

    /// `bfe.ty d, a, pos, len`: extract a bit field (sign-extended for signed types).
    pub fn bfe(
        &mut self,
        ty: Type,
        a: impl Into<Value>,
        pos: impl Into<Value>,
        len: impl Into<Value>,
    ) -> Reg {
        let (a, pos, len) = (a.into(), pos.into(), len.into());
        if !matches!(ty, Type::U32 | Type::S32 | Type::U64 | Type::S64) {
            self.fail(format!("bfe is not defined for {ty}"));
        }
        self.check("bfe", "a", a, ty);
        self.check("bfe", "pos", pos, Type::U32);
        self.check("bfe", "len", len, Type::U32);
        let dst = self.dst("bfe", ty);
        self.push_value(Op::Bfe {
            ty,
            dst,
            a,
            pos,
            len,
        });
        dst
    }

    /// `bfi.ty d, a, b, pos, len`: insert the low `len` bits of a into b at `pos`.
    pub fn bfi(
        &mut self,
        ty: Type,
        a: impl Into<Value>,
        b: impl Into<Value>,
        pos: impl Into<Value>,
        len: impl Into<Value>,
    ) -> Reg {
        let (a, b, pos, len) = (a.into(), b.into(), pos.into(), len.into());
        if !matches!(ty, Type::B32 | Type::B64) {
            self.fail(format!("bfi is not defined for {ty}"));
        }
        self.check("bfi", "a", a, ty);
        self.check("bfi", "b", b, ty);
        self.check("bfi", "pos", pos, Type::U32);
        self.check("bfi", "len", len, Type::U32);
        let dst = self.dst("bfi", ty);
        self.push_value(Op::Bfi {
            ty,
            dst,
            a,
            b,
            pos,
            len,
        });
        dst
    }

    /// `lop3.b32 d, a, b, c, lut`: any 3-input logic function.
    pub fn lop3(
        &mut self,
        a: impl Into<Value>,
        b: impl Into<Value>,
        c: impl Into<Value>,
        lut: u8,
    ) -> Reg {
        let (a, b, c) = (a.into(), b.into(), c.into());
        self.check("lop3", "a", a, Type::B32);
        self.check("lop3", "b", b, Type::B32);
        self.check("lop3", "c", c, Type::B32);
        let dst = self.dst("lop3", Type::B32);
        self.push_value(Op::Lop3 { dst, a, b, c, lut });
        dst
    }

    /// `cvt{.mode}.dst.src`. Float <-> integer and narrowing float conversions need a rounding
    /// mode (integer rounding `.rni`.. for float -> int); the builder enforces PTX's rules.
    pub fn cvt(&mut self, dst_ty: Type, src_ty: Type, mode: FMode, src: impl Into<Value>) -> Reg {
        let src = src.into();
        if dst_ty == Type::Pred || src_ty == Type::Pred {
            self.fail("cvt of a predicate".into());
        }
        if matches!(dst_ty, Type::F16x2 | Type::Bf16x2) {
            self.fail("use cvt_pack for f16x2/bf16x2 results".into());
        }
        if matches!(dst_ty, Type::Bf16) || matches!(src_ty, Type::Bf16) {
            self.require(Feature::Bf16);
        }
        let needs_int_round = dst_ty.is_int() && src_ty.is_float();
        let needs_float_round = dst_ty.is_float()
            && (src_ty.is_int() || (src_ty.is_float() && dst_ty.bits() < src_ty.bits()));
        match mode.round {
            Some(r) if needs_int_round && !r.is_integer() => self.fail(format!(
                "cvt.{}.{} needs an integer rounding mode (.rni, .rzi, ...)",
                dst_ty.name(),
                src_ty.name()
            )),
            Some(r)
                if !needs_int_round
                    && r.is_integer()
                    && !(dst_ty.is_float() && src_ty.is_float()) =>
            {
                self.fail(format!(
                    "cvt.{}.{} takes no integer rounding mode",
                    dst_ty.name(),
                    src_ty.name()
                ))
            }
            None if needs_int_round || needs_float_round => self.fail(format!(
                "cvt.{}.{} needs a rounding mode",
                dst_ty.name(),
                src_ty.name()
            )),
            Some(_)
                if !needs_int_round
                    && !needs_float_round
                    && (!dst_ty.is_float() || src_ty != dst_ty) =>
            {
                self.fail(format!(
                    "cvt.{}.{} takes no rounding mode",
                    dst_ty.name(),
                    src_ty.name()
                ))
            }
            _ => {}
        }
        match src {
            Value::Reg(r) => self.check_data_reg("cvt", "source", r, src_ty),
            v => self.check("cvt", "source", v, src_ty),
        }
        let dst = self.dst("cvt", dst_ty);
        self.push_value(Op::Cvt {
            dst_ty,
            src_ty,
            mode,
            dst,
            src,
        });
        dst
    }

    /// `cvt.rn.f16x2.f32 d, hi, lo` (sm_80+).
    pub fn cvt_pack(&mut self, dst_ty: Type, hi: impl Into<Value>, lo: impl Into<Value>) -> Reg {
        let (hi, lo) = (hi.into(), lo.into());
        self.require(Feature::CvtPackF16x2);
        if !matches!(dst_ty, Type::F16x2 | Type::Bf16x2) {
            self.fail(format!("cvt_pack produces f16x2 or bf16x2, not {dst_ty}"));
        }
        self.check("cvt (pack)", "hi", hi, Type::F32);
        self.check("cvt (pack)", "lo", lo, Type::F32);
        let dst = self.dst("cvt (pack)", dst_ty);
        self.push_value(Op::CvtPack {
            dst_ty,
            mode: FMode::rn(),
            dst,
            hi,
            lo,
        });
        dst
    }

    /// `setp.cmp.ty p, a, b`.
    pub fn setp(&mut self, cmp: Cmp, ty: Type, a: impl Into<Value>, b: impl Into<Value>) -> Reg {
        let (a, b) = (a.into(), b.into());
        if cmp.float_only() && !ty.is_float() {
            self.fail(format!("setp.{cmp:?} is only for floats"));
        }
        if cmp.int_only() && !ty.is_int() && ty.class() != TypeClass::Bits {
            self.fail(format!("setp.{cmp:?} is only for integers"));
        }
        if ty.class() == TypeClass::Bits && !matches!(cmp, Cmp::Eq | Cmp::Ne) {
            self.fail(format!("setp.{cmp:?} on bit type {ty}: only eq/ne"));
        }
        self.check("setp", "a", a, ty);
        self.check("setp", "b", b, ty);
        let dst = self.dst("setp", Type::Pred);
        self.push_value(Op::Setp { cmp, ty, dst, a, b });
        dst
    }

    /// `selp.ty d, a, b, p`: d = p ? a : b.
    pub fn selp(&mut self, ty: Type, a: impl Into<Value>, b: impl Into<Value>, pred: Reg) -> Reg {
        let (a, b) = (a.into(), b.into());
        self.check("selp", "a", a, ty);
        self.check("selp", "b", b, ty);
        self.check_reg("selp", "predicate", pred, Type::Pred);
        let dst = self.dst("selp", ty);
        self.push_value(Op::Selp {
            ty,
            dst,
            a,
            b,
            pred,
        });
        dst
    }

    /// `shfl.sync.mode.b32 d, a, b, c, mask` over the full warp; `c` is the clamp/segment
    /// value (31 for up-to-full-warp shuffles down/bfly/idx, 0 for up).
    pub fn shfl(
        &mut self,
        mode: ShflMode,
        a: impl Into<Value>,
        b: impl Into<Value>,
        c: impl Into<Value>,
        mask: impl Into<Value>,
    ) -> Reg {
        self.require(Feature::ShflSync);
        let (a, b, c, mask) = (a.into(), b.into(), c.into(), mask.into());
        self.check("shfl.sync", "a", a, Type::B32);
        self.check("shfl.sync", "b", b, Type::B32);
        self.check("shfl.sync", "c", c, Type::B32);
        self.check("shfl.sync", "membermask", mask, Type::B32);
        let dst_ty = match a {
            Value::Reg(r) => r.ty,
            Value::F32(_) => Type::F32,
            _ => Type::B32,
        };
        let dst = self.dst("shfl.sync", dst_ty);
        self.push_value(Op::Shfl {
            mode,
            dst,
            pred_out: None,
            a,
            b,
            c,
            mask,
        });
        dst
    }

    /// A full-warp butterfly shuffle: the value of lane `lane ^ lane_mask`.
    pub fn shfl_xor(&mut self, a: Reg, lane_mask: u32) -> Reg {
        self.shfl(ShflMode::Bfly, a, lane_mask, 31u32, Value::Hex(FULL_MASK))
    }

    /// A full-warp shuffle reading lane `src_lane`'s `a` (`shfl.sync.idx`).
    pub fn shfl_idx(&mut self, a: Reg, src_lane: u32) -> Reg {
        self.shfl(ShflMode::Idx, a, src_lane, 31u32, Value::Hex(FULL_MASK))
    }

    /// A full-warp shuffle down by `delta`.
    pub fn shfl_down(&mut self, a: Reg, delta: u32) -> Reg {
        self.shfl(ShflMode::Down, a, delta, 31u32, Value::Hex(FULL_MASK))
    }

    /// `bar.sync id`: all threads of the block.
    pub fn bar_sync(&mut self, id: u32) {
        if id > 15 {
            self.fail(format!("barrier id {id} > 15"));
        }
        self.push(Op::BarSync { id });
    }

    /// `bar.warp.sync mask`.
    pub fn bar_warp_sync(&mut self, mask: impl Into<Value>) {
        let mask = mask.into();
        self.check("bar.warp.sync", "membermask", mask, Type::B32);
        self.push(Op::BarWarpSync { mask });
    }

    // ---- control flow ------------------------------------------------------------------

    /// A new label, unique in this kernel; place it with [`Self::place`].
    pub fn label(&mut self, hint: &str) -> Label {
        let n = self.labels;
        self.labels += 1;
        let hint: String = hint
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        Label(format!("$L{n}_{hint}"))
    }

    /// Places a label here.
    pub fn place(&mut self, l: &Label) {
        if self.placed.contains(l) {
            self.fail(format!("label {} placed twice", l.0));
        }
        if self.next_guard.is_some() || self.next_dst.is_some() {
            self.fail(format!("guard or destination pending at label {}", l.0));
        }
        self.placed.push(l.clone());
        self.body.push(Instr {
            guard: None,
            op: Op::Label(l.clone()),
        });
    }

    /// `bra target` (guard it with [`Self::when`]/[`Self::unless`]).
    pub fn bra(&mut self, target: &Label) {
        self.used_labels.push(target.clone());
        self.push(Op::Bra {
            target: target.clone(),
            uni: false,
        });
    }

    /// `bra.uni target`: the caller asserts all threads of the warp take it together.
    pub fn bra_uni(&mut self, target: &Label) {
        self.used_labels.push(target.clone());
        self.push(Op::Bra {
            target: target.clone(),
            uni: true,
        });
    }

    pub fn ret(&mut self) {
        self.push(Op::Ret);
    }

    pub fn exit(&mut self) {
        self.push(Op::Exit);
    }

    /// Returns early from the kernel where `pred` holds.
    pub fn return_if(&mut self, pred: Reg) {
        self.when(pred).ret();
    }

    /// Runs `body` only where `pred` holds.
    pub fn if_then(&mut self, pred: Reg, body: impl FnOnce(&mut Self)) {
        let end = self.label("endif");
        self.unless(pred).bra(&end);
        body(self);
        self.place(&end);
    }

    /// Runs `then` where `pred` holds and `otherwise` elsewhere.
    pub fn if_else(
        &mut self,
        pred: Reg,
        then: impl FnOnce(&mut Self),
        otherwise: impl FnOnce(&mut Self),
    ) {
        let else_l = self.label("else");
        let end = self.label("endif");
        self.unless(pred).bra(&else_l);
        then(self);
        self.bra(&end);
        self.place(&else_l);
        otherwise(self);
        self.place(&end);
    }

    /// `for (i = start; i < end; i += step) body(i)` with `ty` a 32- or 64-bit integer type.
    /// The test is at the top, so zero iterations are handled.
    pub fn for_range(
        &mut self,
        ty: Type,
        start: impl Into<Value>,
        end: impl Into<Value>,
        step: i64,
        body: impl FnOnce(&mut Self, Reg),
    ) {
        let (start, end) = (start.into(), end.into());
        if !ty.is_int() {
            self.fail(format!("loop counter of type {ty}"));
        }
        if step <= 0 {
            self.fail(format!("loop step {step} must be positive"));
        }
        let i = self.mov(ty, start);
        let head = self.label("loop");
        let exit = self.label("loop_end");
        self.place(&head);
        let done = self.setp(Cmp::Ge, ty, i, end);
        self.when(done).bra(&exit);
        body(self, i);
        self.to(i).add(ty, i, step);
        self.bra(&head);
        self.place(&exit);
    }

    /// Emits `body` once per value of the static range `0..n` (a loop unrolled at generation time).
    pub fn unrolled(&mut self, n: u32, mut body: impl FnMut(&mut Self, u32)) {
        for k in 0..n {
            body(self, k);
        }
    }

    /// A comment line in the body.
    pub fn comment(&mut self, text: &str) {
        self.body.push(Instr {
            guard: None,
            op: Op::Comment(text.to_string()),
        });
    }

    /// Marks where the kernel starts depending on the grids before it in the stream
    /// (`griddepcontrol.wait`, on targets with programmatic dependent launch; nothing
    /// elsewhere). Everything before it may only read memory that no kernel writes (weights,
    /// tables): under a programmatic launch it runs while the previous kernel still does.
    /// A kernel that never calls this waits before its first instruction.
    pub fn grid_dependency_wait(&mut self) {
        if self.waited {
            self.fail("the grid dependency wait was placed twice".into());
            return;
        }
        if self.next_guard.is_some() {
            self.fail("the grid dependency wait cannot be guarded".into());
        }
        self.waited = true;
        if self.target.allows(Feature::GridDependency) {
            self.push(Op::GridDepWait);
        }
    }

    /// Validates the kernel and returns it. Appends `ret` when the body does not already end
    /// in an unconditional `ret`/`exit`.
    pub fn finish(mut self) -> Result<Kernel, IrError> {
        if self.next_guard.is_some() || self.next_dst.is_some() {
            self.fail("a guard or destination was set but no instruction followed".into());
        }
        for l in self.used_labels.clone() {
            if !self.placed.contains(&l) {
                self.fail(format!("branch to label {} that was never placed", l.0));
            }
        }
        let ends = matches!(
            self.body
                .iter()
                .rev()
                .find(|i| !matches!(i.op, Op::Comment(_))),
            Some(Instr {
                guard: None,
                op: Op::Ret | Op::Exit | Op::Bra { .. }
            })
        );
        if !ends {
            self.body.push(Instr {
                guard: None,
                op: Op::Ret,
            });
        }
        if self.target.allows(Feature::GridDependency) && !self.waited {
            // Programmatic dependent launch: this kernel may be launched while its predecessor
            // finishes; it waits for it before anything else. No kernel triggers its successor
            // early (`griddepcontrol.launch_dependents`): the implicit trigger, as each block
            // exits, measured faster on an H100 than a trigger at the start (successors' blocks
            // then sat resident and waiting; docs/performance.md).
            self.body.insert(
                0,
                Instr {
                    guard: None,
                    op: Op::GridDepWait,
                },
            );
        }
        if let Some(e) = self.errors.into_iter().next() {
            return Err(e);
        }
        Ok(Kernel {
            name: self.name,
            target: self.target,
            comments: self.comments,
            params: self.params,
            shared: self.shared,
            directives: self.directives,
            body: self.body,
            reg_counts: Bank::ALL
                .iter()
                .map(|b| (*b, self.counts[bank_slot(*b)]))
                .collect(),
        })
    }

    /// All errors recorded so far (for tests of the checks themselves).
    pub fn errors(&self) -> &[IrError] {
        &self.errors
    }
}
