//! Direct printing of the typed IR: the exact text `emit::print_module(&module.lower())`
//! produces, written into one pre-sized `String` without building the syntactic tree (no
//! `String` per register name, opcode and modifier). [`Module::lower`] stays the reference:
//! the tests below print every sample kernel both ways and compare the bytes.

use crate::ast::{StateSpace, Type};

use super::instr::{Addr, BinOp, CacheHint, FMode, Instr, L2Evict, Op};
use super::reg::{Bank, Reg, Value};
use super::{Kernel, Module, PerfDirective};

/// The text being written (bytes of `&str`s and ASCII digits: valid UTF-8).
type Out = Vec<u8>;

trait PushStr {
    fn push_str(&mut self, s: &str);
}

impl PushStr for Vec<u8> {
    #[inline]
    fn push_str(&mut self, s: &str) {
        let b = s.as_bytes();
        // Most pieces are a few bytes (`.u32`, `%r`, `, `): byte by byte beats a call to
        // `memcpy`.
        if b.len() <= 8 {
            for &c in b {
                self.push(c);
            }
        } else {
            self.extend_from_slice(b);
        }
    }
}

/// Decimal digits of `v`.
pub(crate) fn push_u64(out: &mut Out, v: u64) {
    // Register numbers and most immediates are small.
    if v < 10 {
        out.push(b'0' + v as u8);
        return;
    }
    if v < 100 {
        out.push(b'0' + (v / 10) as u8);
        out.push(b'0' + (v % 10) as u8);
        return;
    }
    if v < 1000 {
        out.push(b'0' + (v / 100) as u8);
        out.push(b'0' + (v / 10 % 10) as u8);
        out.push(b'0' + (v % 10) as u8);
        return;
    }
    push_u64_long(out, v);
}

fn push_u64_long(out: &mut Out, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

pub(crate) fn push_i64(out: &mut Out, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    push_u64(out, v.unsigned_abs());
}

/// Hex digits of `v`: `width` digits with leading zeros (at least), upper or lower case.
fn push_hex(out: &mut Out, v: u64, width: usize, upper: bool) {
    let digits: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    let mut buf = [0u8; 16];
    let mut i = buf.len();
    let mut x = v;
    loop {
        i -= 1;
        buf[i] = digits[(x & 15) as usize];
        x >>= 4;
        if x == 0 {
            break;
        }
    }
    while buf.len() - i < width {
        i -= 1;
        buf[i] = b'0';
    }
    out.extend_from_slice(&buf[i..]);
}

fn push_reg(out: &mut Out, r: Reg) {
    out.push_str(Bank::of(r.ty).prefix());
    push_u64(out, u64::from(r.index));
}

fn push_value(out: &mut Out, v: Value) {
    match v {
        Value::Reg(r) => push_reg(out, r),
        Value::Int(i) => push_i64(out, i),
        Value::UInt(u) => push_u64(out, u),
        Value::Hex(u) => {
            out.push_str("0x");
            push_hex(out, u, 0, false);
        }
        Value::F32(bits) => {
            out.push_str("0f");
            push_hex(out, u64::from(bits), 8, true);
        }
        Value::F64(bits) => {
            out.push_str("0d");
            push_hex(out, bits, 16, true);
        }
    }
}

fn push_addr(out: &mut Out, a: &Addr) {
    out.push(b'[');
    match &a.base {
        super::instr::Base::Reg(r) => push_reg(out, *r),
        super::instr::Base::Var(s) => out.push_str(s),
    }
    if a.offset != 0 {
        out.push(b'+');
        push_i64(out, a.offset);
    }
    out.push(b']');
}

fn push_regs(out: &mut Out, rs: &[Reg]) {
    if rs.len() == 1 {
        push_reg(out, rs[0]);
    } else {
        out.push(b'{');
        for (k, r) in rs.iter().enumerate() {
            if k > 0 {
                out.push_str(", ");
            }
            push_reg(out, *r);
        }
        out.push(b'}');
    }
}

fn push_values(out: &mut Out, vs: &[Value]) {
    if vs.len() == 1 {
        push_value(out, vs[0]);
    } else {
        out.push(b'{');
        for (k, v) in vs.iter().enumerate() {
            if k > 0 {
                out.push_str(", ");
            }
            push_value(out, *v);
        }
        out.push(b'}');
    }
}

fn push_mod(out: &mut Out, m: &str) {
    out.push(b'.');
    out.push_str(m);
}

fn push_ty(out: &mut Out, ty: Type) {
    push_mod(out, ty.name());
}

fn push_fmode(out: &mut Out, mode: FMode) {
    if let Some(r) = mode.round {
        push_mod(out, r.modifier());
    }
    if mode.approx {
        out.push_str(".approx");
    }
    if mode.full {
        out.push_str(".full");
    }
    if mode.ftz {
        out.push_str(".ftz");
    }
    if mode.sat {
        out.push_str(".sat");
    }
}

fn push_mem_mods(
    out: &mut Out,
    space: StateSpace,
    hints: &[CacheHint],
    width: usize,
    policy: bool,
    ty: Type,
) {
    push_mod(out, space.name());
    for h in hints {
        push_mod(out, h.modifier());
    }
    if policy {
        out.push_str(".L2::cache_hint");
    }
    if width > 1 {
        out.push_str(".v");
        push_u64(out, width as u64);
    }
    push_ty(out, ty);
}

/// Operand separator: `" "` before the first operand, `", "` before the others.
struct Ops<'o> {
    out: &'o mut Out,
    first: bool,
}

impl Ops<'_> {
    fn sep(&mut self) -> &mut Out {
        self.out.push_str(if self.first { " " } else { ", " });
        self.first = false;
        self.out
    }
    fn reg(&mut self, r: Reg) {
        push_reg(self.sep(), r);
    }
    fn val(&mut self, v: Value) {
        push_value(self.sep(), v);
    }
    fn addr(&mut self, a: &Addr) {
        push_addr(self.sep(), a);
    }
    fn text(&mut self, s: &str) {
        self.sep().push_str(s);
    }
}

impl Instr {
    /// One body line as `print_statement` writes the lowered statement at depth 1.
    pub(crate) fn print(&self, out: &mut Out) {
        match &self.op {
            Op::Comment(text) => {
                out.push_str("\t// ");
                out.push_str(text);
                out.push(b'\n');
                return;
            }
            Op::Label(l) => {
                out.push_str(l.name());
                out.push_str(":\n");
                return;
            }
            _ => {}
        }
        out.push(b'\t');
        if let Some((p, negated)) = self.guard {
            out.push(b'@');
            if negated {
                out.push(b'!');
            }
            push_reg(out, p);
            out.push(b' ');
        }
        self.print_body(out);
        out.push_str(";\n");
    }

    fn print_body(&self, out: &mut Out) {
        macro_rules! ops {
            () => {
                Ops { out, first: true }
            };
        }
        match &self.op {
            Op::Comment(_) | Op::Label(_) => {}
            Op::Mov { ty, dst, src } => {
                out.push_str("mov");
                push_ty(out, *ty);
                let mut o = ops!();
                o.reg(*dst);
                o.val(*src);
            }
            Op::MovSpecial { dst, sreg } => {
                out.push_str("mov");
                push_ty(out, sreg.ty());
                let mut o = ops!();
                o.reg(*dst);
                o.text(sreg.name());
            }
            Op::MovSymbol { ty, dst, symbol } => {
                out.push_str("mov");
                push_ty(out, *ty);
                let mut o = ops!();
                o.reg(*dst);
                o.text(symbol);
            }
            Op::Pack { ty, dst, parts } => {
                out.push_str("mov");
                push_ty(out, *ty);
                let mut o = ops!();
                o.reg(*dst);
                push_regs(o.sep(), parts);
            }
            Op::Unpack { ty, parts, src } => {
                out.push_str("mov");
                push_ty(out, *ty);
                let mut o = ops!();
                push_regs(o.sep(), parts);
                o.reg(*src);
            }
            Op::Ld {
                space,
                hints,
                ty,
                dst,
                addr,
                policy,
            } => {
                out.push_str("ld");
                push_mem_mods(out, *space, hints, dst.len(), policy.is_some(), *ty);
                let mut o = ops!();
                push_regs(o.sep(), dst);
                o.addr(addr);
                if let Some(p) = policy {
                    o.reg(*p);
                }
            }
            Op::St {
                space,
                hints,
                ty,
                src,
                addr,
                policy,
            } => {
                out.push_str("st");
                push_mem_mods(out, *space, hints, src.len(), policy.is_some(), *ty);
                let mut o = ops!();
                o.addr(addr);
                push_values(o.sep(), src);
                if let Some(p) = policy {
                    o.reg(*p);
                }
            }
            Op::CreatePolicy { evict, dst } => {
                out.push_str("createpolicy.fractional.");
                out.push_str(match evict {
                    L2Evict::First => "L2::evict_first",
                    L2Evict::Last => "L2::evict_last",
                    L2Evict::Normal => "L2::evict_normal",
                });
                out.push_str(".b64");
                let mut o = ops!();
                o.reg(*dst);
                o.val(Value::F32(1.0f32.to_bits()));
            }
            Op::CvtaToGlobal { dst, src } => {
                out.push_str("cvta.to.global.u64");
                let mut o = ops!();
                o.reg(*dst);
                o.reg(*src);
            }
            Op::Bin {
                op,
                ty,
                mode,
                dst,
                a,
                b,
            } => {
                out.push_str(op.opcode());
                match op {
                    BinOp::Mul if ty.is_int() => out.push_str(".lo"),
                    BinOp::MulHi => out.push_str(".hi"),
                    _ => {}
                }
                push_fmode(out, *mode);
                push_ty(out, *ty);
                let mut o = ops!();
                o.reg(*dst);
                o.val(*a);
                o.val(*b);
            }
            Op::MulWide { ty, dst, a, b } => {
                out.push_str("mul.wide");
                push_ty(out, *ty);
                let mut o = ops!();
                o.reg(*dst);
                o.val(*a);
                o.val(*b);
            }
            Op::Un {
                op,
                ty,
                mode,
                dst,
                a,
            } => {
                out.push_str(op.opcode());
                push_fmode(out, *mode);
                push_ty(out, *ty);
                let mut o = ops!();
                o.reg(*dst);
                o.val(*a);
            }
            Op::Mad {
                ty,
                mode,
                dst,
                a,
                b,
                c,
            } => {
                if ty.is_float() {
                    out.push_str("fma");
                } else {
                    out.push_str("mad.lo");
                }
                push_fmode(out, *mode);
                push_ty(out, *ty);
                let mut o = ops!();
                o.reg(*dst);
                o.val(*a);
                o.val(*b);
                o.val(*c);
            }
            Op::MadWide { ty, dst, a, b, c } => {
                out.push_str("mad.wide");
                push_ty(out, *ty);
                let mut o = ops!();
                o.reg(*dst);
                o.val(*a);
                o.val(*b);
                o.val(*c);
            }
            Op::Dp4a {
                a_ty,
                b_ty,
                dst,
                a,
                b,
                c,
            } => {
                out.push_str("dp4a");
                push_ty(out, *a_ty);
                push_ty(out, *b_ty);
                let mut o = ops!();
                o.reg(*dst);
                o.val(*a);
                o.val(*b);
                o.val(*c);
            }
            Op::Prmt {
                mode,
                dst,
                a,
                b,
                sel,
            } => {
                out.push_str("prmt.b32");
                if let Some(md) = mode {
                    push_mod(out, md.modifier());
                }
                let mut o = ops!();
                o.reg(*dst);
                o.val(*a);
                o.val(*b);
                o.val(*sel);
            }
            Op::Bfe {
                ty,
                dst,
                a,
                pos,
                len,
            } => {
                out.push_str("bfe");
                push_ty(out, *ty);
                let mut o = ops!();
                o.reg(*dst);
                o.val(*a);
                o.val(*pos);
                o.val(*len);
            }
            Op::Bfi {
                ty,
                dst,
                a,
                b,
                pos,
                len,
            } => {
                out.push_str("bfi");
                push_ty(out, *ty);
                let mut o = ops!();
                o.reg(*dst);
                o.val(*a);
                o.val(*b);
                o.val(*pos);
                o.val(*len);
            }
            Op::Lop3 { dst, a, b, c, lut } => {
                out.push_str("lop3.b32");
                let mut o = ops!();
                o.reg(*dst);
                o.val(*a);
                o.val(*b);
                o.val(*c);
                o.val(Value::UInt(u64::from(*lut)));
            }
            Op::Cvt {
                dst_ty,
                src_ty,
                mode,
                dst,
                src,
            } => {
                out.push_str("cvt");
                push_fmode(out, *mode);
                push_ty(out, *dst_ty);
                push_ty(out, *src_ty);
                let mut o = ops!();
                o.reg(*dst);
                o.val(*src);
            }
            Op::CvtPack {
                dst_ty,
                mode,
                dst,
                hi,
                lo,
            } => {
                out.push_str("cvt");
                push_fmode(out, *mode);
                push_ty(out, *dst_ty);
                out.push_str(".f32");
                let mut o = ops!();
                o.reg(*dst);
                o.val(*hi);
                o.val(*lo);
            }
            Op::Setp { cmp, ty, dst, a, b } => {
                out.push_str("setp");
                push_mod(out, cmp.modifier());
                push_ty(out, *ty);
                let mut o = ops!();
                o.reg(*dst);
                o.val(*a);
                o.val(*b);
            }
            Op::Selp {
                ty,
                dst,
                a,
                b,
                pred,
            } => {
                out.push_str("selp");
                push_ty(out, *ty);
                let mut o = ops!();
                o.reg(*dst);
                o.val(*a);
                o.val(*b);
                o.reg(*pred);
            }
            Op::Shfl {
                mode,
                dst,
                pred_out,
                a,
                b,
                c,
                mask,
            } => {
                out.push_str("shfl.sync");
                push_mod(out, mode.modifier());
                out.push_str(".b32");
                let mut o = ops!();
                o.reg(*dst);
                if let Some(p) = pred_out {
                    o.out.push(b'|');
                    push_reg(o.out, *p);
                }
                o.val(*a);
                o.val(*b);
                o.val(*c);
                o.val(*mask);
            }
            Op::BarSync { id } => {
                out.push_str("bar.sync");
                ops!().val(Value::UInt(u64::from(*id)));
            }
            Op::BarWarpSync { mask } => {
                out.push_str("bar.warp.sync");
                ops!().val(*mask);
            }
            Op::GridDepWait => out.push_str("griddepcontrol.wait"),
            Op::Atom {
                space,
                op,
                ty,
                dst,
                addr,
                b,
                c,
            } => {
                out.push_str("atom");
                push_mod(out, space.name());
                push_mod(out, op.modifier());
                push_ty(out, *ty);
                let mut o = ops!();
                o.reg(*dst);
                o.addr(addr);
                o.val(*b);
                if let Some(c) = c {
                    o.val(*c);
                }
            }
            Op::Red {
                space,
                op,
                ty,
                addr,
                b,
            } => {
                out.push_str("red");
                push_mod(out, space.name());
                push_mod(out, op.modifier());
                push_ty(out, *ty);
                let mut o = ops!();
                o.addr(addr);
                o.val(*b);
            }
            Op::Bra { target, uni } => {
                out.push_str(if *uni { "bra.uni" } else { "bra" });
                ops!().text(target.name());
            }
            Op::Ret => out.push_str("ret"),
            Op::Exit => out.push_str("exit"),
        }
    }
}

impl Kernel {
    /// The function as `print_function` writes the lowered tree (no trailing newline).
    fn print(&self, out: &mut Out) {
        out.push_str(".visible .entry ");
        out.push_str(&self.name);
        out.push(b'(');
        if !self.params.is_empty() {
            out.push(b'\n');
            for (i, p) in self.params.iter().enumerate() {
                out.push_str("\t.param ");
                push_ty(out, p.ty);
                out.push(b' ');
                out.push_str(&p.name);
                if i + 1 < self.params.len() {
                    out.push(b',');
                }
                out.push(b'\n');
            }
        }
        out.push(b')');
        for d in &self.directives {
            let (name, x, dims) = match *d {
                PerfDirective::MaxNtid(x) => ("\n.maxntid ", x, true),
                PerfDirective::ReqNtid(x) => ("\n.reqntid ", x, true),
                PerfDirective::MinNctaPerSm(n) => ("\n.minnctapersm ", n, false),
            };
            out.push_str(name);
            push_u64(out, u64::from(x));
            if dims {
                out.push_str(", 1, 1");
            }
        }
        out.push_str("\n{\n");
        for (bank, n) in &self.reg_counts {
            if *n > 0 {
                out.push_str("\t.reg ");
                push_ty(out, bank.decl_type());
                out.push(b' ');
                out.push_str(bank.prefix());
                out.push(b'<');
                push_u64(out, u64::from(*n));
                out.push_str(">;\n");
            }
        }
        for v in &self.shared {
            out.push_str("\t.shared .align ");
            push_u64(out, u64::from(v.align));
            out.push(b' ');
            push_ty(out, v.ty);
            out.push(b' ');
            out.push_str(&v.name);
            out.push(b'[');
            push_u64(out, u64::from(v.len));
            out.push_str("];\n");
        }
        out.push(b'\n');
        for i in &self.body {
            i.print(out);
        }
        out.push(b'}');
    }
}

impl Module {
    /// The module's PTX text: byte for byte `emit::print_module(&self.lower())`.
    pub fn print(&self) -> String {
        let body: usize = self.kernels.iter().map(|k| k.body.len()).sum();
        let mut out: Out = Vec::with_capacity(512 + body * 40);
        let comment = |out: &mut Out, c: &str| {
            out.push_str("// ");
            out.push_str(c);
            out.push(b'\n');
        };
        for c in &self.comments {
            comment(&mut out, c);
        }
        out.push_str(".version ");
        push_u64(&mut out, u64::from(self.target.ptx_version.0));
        out.push(b'.');
        push_u64(&mut out, u64::from(self.target.ptx_version.1));
        out.push_str("\n.target sm_");
        push_u64(&mut out, u64::from(self.target.sm));
        out.push_str("\n.address_size 64\n");
        for k in &self.kernels {
            out.push(b'\n');
            for c in &k.comments {
                comment(&mut out, c);
            }
            k.print(&mut out);
            out.push(b'\n');
        }
        String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use crate::kernels::{sample_specs, KernelSpec};
    use crate::target::Target;

    #[test]
    fn direct_printing_equals_printing_the_lowered_tree() {
        // `emit_module` compares both printings in test builds; generate everything.
        let mut n = 0;
        for target in [Target::dp4a_default(), Target::sm(80), Target::sm(90)] {
            let mut specs: Vec<KernelSpec> = sample_specs();
            let batched: Vec<KernelSpec> = specs
                .iter()
                .flat_map(|s| (2..=4).filter_map(move |m| s.batched(m)))
                .collect();
            specs.extend(batched);
            for spec in specs {
                if crate::kernels::generate(&spec, target).is_ok() {
                    n += 1;
                }
            }
        }
        assert!(n > 100, "{n} kernels generated");
    }

    #[test]
    fn numbers_print_like_the_formatter() {
        let mut s = Vec::new();
        for v in [0u64, 1, 9, 10, 99, 100, 999, 1000, 4095, u64::MAX] {
            s.clear();
            super::push_u64(&mut s, v);
            assert_eq!(s, v.to_string().as_bytes());
            s.clear();
            super::push_hex(&mut s, v, 0, false);
            assert_eq!(s, format!("{v:x}").as_bytes());
            s.clear();
            super::push_hex(&mut s, v, 16, true);
            assert_eq!(s, format!("{v:016X}").as_bytes());
        }
        for v in [0i64, -1, i64::MIN, i64::MAX] {
            s.clear();
            super::push_i64(&mut s, v);
            assert_eq!(s, v.to_string().as_bytes());
        }
    }
}
