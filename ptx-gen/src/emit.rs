//! PTX text out: the only place in the project that produces PTX text.
//!
//! Generated kernels are printed straight from the IR (`ir::Module::print`, in
//! `ir/print.rs`) into one pre-sized buffer; that printer writes exactly the bytes of
//! [`print_module`] applied to the lowered tree, which test builds check on every kernel
//! they emit.
//!
//! The typed IR (`crate::ir`) lowers to the syntactic tree (`crate::ast`), and
//! [`print_module`] prints that tree in one canonical layout: one statement per line, a
//! tab of indentation per nesting level, labels at column 0, one space between an
//! opcode and its operands, float immediates as their exact bits. Nothing here iterates
//! a hash map, so the same tree always gives the same bytes. The parser reads this
//! layout back to the same tree, so print(parse(text)) == text for everything we emit.

use std::fmt::Write;

use crate::ast::{
    AddrBase, Address, Comment, DeclSuffix, Declarator, FnKind, Function, Initializer, Instruction,
    IntLit, Item, Module, Operand, ParamDecl, Radix, Statement, VarDecl,
};

/// Prints a syntactic module in the canonical layout.
pub fn print_module(m: &Module) -> String {
    let mut out = String::new();
    for item in &m.items {
        print_item(&mut out, item);
    }
    out
}

fn print_item(out: &mut String, item: &Item) {
    match item {
        Item::Blank => {}
        Item::Comment(c) => print_comment(out, c),
        Item::Version { major, minor } => {
            let _ = write!(out, ".version {major}.{minor}");
        }
        Item::Target(opts) => {
            out.push_str(".target ");
            out.push_str(&opts.join(", "));
        }
        Item::AddressSize(n) => {
            let _ = write!(out, ".address_size {n}");
        }
        Item::Var(v) => {
            print_decl(out, v);
            out.push(';');
        }
        Item::Function(f) => print_function(out, f),
        Item::Directive {
            name,
            args,
            semicolon,
        } => print_directive(out, name, args, *semicolon),
    }
    out.push('\n');
}

fn print_comment(out: &mut String, c: &Comment) {
    match c {
        Comment::Line(t) => {
            out.push_str("//");
            out.push_str(t);
        }
        Comment::Block(t) => {
            out.push_str("/*");
            out.push_str(t);
            out.push_str("*/");
        }
    }
}

fn print_directive(out: &mut String, name: &str, args: &str, semicolon: bool) {
    out.push('.');
    out.push_str(name);
    if !args.is_empty() {
        out.push(' ');
        out.push_str(args);
    }
    if semicolon {
        out.push(';');
    }
}

fn print_function(out: &mut String, f: &Function) {
    if let Some(l) = f.linkage {
        out.push_str(l.as_str());
        out.push(' ');
    }
    out.push_str(match f.kind {
        FnKind::Entry => ".entry ",
        FnKind::Func => ".func ",
    });
    if let Some(rets) = &f.returns {
        out.push('(');
        for (i, p) in rets.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            print_param(out, p);
        }
        out.push_str(") ");
    }
    out.push_str(&f.name);
    out.push('(');
    if !f.params.is_empty() {
        out.push('\n');
        for (i, p) in f.params.iter().enumerate() {
            out.push('\t');
            print_param(out, p);
            if i + 1 < f.params.len() {
                out.push(',');
            }
            out.push('\n');
        }
    }
    out.push(')');
    for d in &f.directives {
        out.push('\n');
        out.push('.');
        out.push_str(&d.name);
        if !d.values.is_empty() {
            out.push(' ');
            let vals: Vec<String> = d.values.iter().map(|v| v.to_string()).collect();
            out.push_str(&vals.join(", "));
        }
    }
    match &f.body {
        None => out.push(';'),
        Some(body) => {
            out.push_str("\n{\n");
            print_statements(out, body, 1);
            out.push('}');
        }
    }
}

fn print_param(out: &mut String, p: &ParamDecl) {
    out.push('.');
    out.push_str(p.space.name());
    if let Some(a) = p.align {
        let _ = write!(out, " .align {a}");
    }
    let _ = write!(out, " {}", p.ty);
    for a in &p.ptr_attrs {
        out.push_str(" .");
        out.push_str(a);
    }
    out.push(' ');
    out.push_str(&p.name);
    if let Some(dim) = p.array {
        print_dim(out, dim);
    }
}

fn print_dim(out: &mut String, dim: Option<u64>) {
    match dim {
        Some(n) => {
            let _ = write!(out, "[{n}]");
        }
        None => out.push_str("[]"),
    }
}

fn print_statements(out: &mut String, stmts: &[Statement], depth: usize) {
    for s in stmts {
        print_statement(out, s, depth);
    }
}

fn indent(out: &mut String, depth: usize) {
    for _ in 0..depth {
        out.push('\t');
    }
}

fn print_statement(out: &mut String, s: &Statement, depth: usize) {
    match s {
        Statement::Blank => {}
        Statement::Comment(c) => {
            indent(out, depth);
            print_comment(out, c);
        }
        Statement::Decl(v) => {
            indent(out, depth);
            print_decl(out, v);
            out.push(';');
        }
        Statement::Label(l) => {
            out.push_str(l);
            out.push(':');
        }
        Statement::Instr(i) => {
            indent(out, depth);
            print_instruction(out, i);
        }
        Statement::Block(inner) => {
            indent(out, depth);
            out.push_str("{\n");
            print_statements(out, inner, depth + 1);
            indent(out, depth);
            out.push('}');
        }
        Statement::Directive {
            name,
            args,
            semicolon,
        } => {
            indent(out, depth);
            print_directive(out, name, args, *semicolon);
        }
    }
    out.push('\n');
}

/// Prints one instruction without indentation or newline: `@!%p1 add.s32 %r1, %r2, 4;`.
pub fn print_instruction(out: &mut String, i: &Instruction) {
    if let Some(g) = &i.guard {
        out.push('@');
        if g.negated {
            out.push('!');
        }
        out.push_str(&g.pred);
        out.push(' ');
    }
    out.push_str(&i.opcode);
    for m in &i.mods {
        out.push('.');
        out.push_str(m);
    }
    for (k, op) in i.operands.iter().enumerate() {
        out.push_str(if k == 0 { " " } else { ", " });
        print_operand(out, op);
    }
    out.push(';');
}

/// The text of one instruction (for findings and diagnostics).
pub fn instruction_text(i: &Instruction) -> String {
    let mut s = String::new();
    print_instruction(&mut s, i);
    s
}

fn print_decl(out: &mut String, v: &VarDecl) {
    if let Some(l) = v.linkage {
        out.push_str(l.as_str());
        out.push(' ');
    }
    out.push('.');
    out.push_str(v.space.name());
    if let Some(a) = v.align {
        let _ = write!(out, " .align {a}");
    }
    if let Some(n) = v.vector {
        let _ = write!(out, " .v{n}");
    }
    let _ = write!(out, " {} ", v.ty);
    for (k, d) in v.names.iter().enumerate() {
        if k > 0 {
            out.push_str(", ");
        }
        print_declarator(out, d);
    }
    if let Some(init) = &v.init {
        out.push_str(" = ");
        print_init(out, init);
    }
}

fn print_declarator(out: &mut String, d: &Declarator) {
    out.push_str(&d.name);
    match &d.suffix {
        DeclSuffix::None => {}
        DeclSuffix::Range(n) => {
            let _ = write!(out, "<{n}>");
        }
        DeclSuffix::Array(dims) => {
            for dim in dims {
                print_dim(out, *dim);
            }
        }
    }
}

fn print_init(out: &mut String, init: &Initializer) {
    match init {
        Initializer::Scalar(op) => print_operand(out, op),
        Initializer::List(items) => {
            out.push('{');
            for (k, it) in items.iter().enumerate() {
                if k > 0 {
                    out.push_str(", ");
                }
                print_init(out, it);
            }
            out.push('}');
        }
    }
}

/// Prints one operand.
pub fn print_operand(out: &mut String, op: &Operand) {
    match op {
        Operand::Reg(s) | Operand::Symbol(s) => out.push_str(s),
        Operand::Int(lit) => print_int(out, lit),
        Operand::F32(bits) => {
            let _ = write!(out, "0f{bits:08X}");
        }
        Operand::F64(bits) => {
            let _ = write!(out, "0d{bits:016X}");
        }
        Operand::FloatDec(s) => out.push_str(s),
        Operand::Vector(items) => {
            out.push('{');
            for (k, it) in items.iter().enumerate() {
                if k > 0 {
                    out.push_str(", ");
                }
                print_operand(out, it);
            }
            out.push('}');
        }
        Operand::Address(a) => print_address(out, a),
        Operand::Not(inner) => {
            out.push('!');
            print_operand(out, inner);
        }
        Operand::PredPair(a, b) => {
            out.push_str(a);
            out.push('|');
            out.push_str(b);
        }
        Operand::Tuple(items) => {
            out.push('(');
            for (k, it) in items.iter().enumerate() {
                if k > 0 {
                    out.push_str(", ");
                }
                print_operand(out, it);
            }
            out.push(')');
        }
    }
}

fn print_int(out: &mut String, lit: &IntLit) {
    if lit.negative {
        out.push('-');
    }
    let _ = match lit.radix {
        Radix::Dec => write!(out, "{}", lit.magnitude),
        Radix::Hex => write!(out, "0x{:x}", lit.magnitude),
        Radix::Octal => write!(out, "0{:o}", lit.magnitude),
        Radix::Binary => write!(out, "0b{:b}", lit.magnitude),
    };
    if lit.unsigned_suffix {
        out.push('U');
    }
}

fn print_address(out: &mut String, a: &Address) {
    out.push('[');
    match &a.base {
        Some(base) => {
            out.push_str(match base {
                AddrBase::Reg(s) | AddrBase::Symbol(s) => s,
            });
            if a.offset != 0 {
                let _ = write!(out, "+{}", a.offset);
            }
        }
        None => {
            let _ = write!(out, "{}", a.offset);
        }
    }
    out.push(']');
}

/// Prints an IR module: the same bytes as printing its lowered tree
/// (`print_module(&module.lower())`), written directly from the IR.
pub fn emit_module(module: &crate::ir::Module) -> String {
    let text = module.print();
    #[cfg(test)]
    assert_eq!(
        text,
        print_module(&module.lower()),
        "direct printing differs"
    );
    text
}
