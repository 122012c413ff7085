//! A fast path through the parser for what we emit: labels and plainly written
//! instructions, byte by byte.
//!
//! Two users: [`parse_entry`] reads a module holding one `.entry` for parity and produces
//! no syntactic tree for the body (labels and instructions come back as slices of the
//! text: opcode-and-modifiers key, guard, operands, in flat arrays, so parsing allocates
//! a few vectors per kernel instead of several strings per instruction); and
//! [`statement_tree`] gives `body::block_body` the tree of one such statement without the
//! general statement parser.
//!
//! It is exact by construction, never an approximation of [`super::parse_module`]:
//! - the module up to the body's `{` is parsed by the real parser (as a prototype);
//! - inside the body, a statement is taken by the fast path only when it has the tight
//!   shape below, for which the real grammar provably reads the same tokens; any other
//!   statement (declarations, directives, comments between tokens, odd spacing, octal or
//!   float literals, `!p` operands, nested blocks, ...) is handed to the real statement
//!   parser at the same position, and what it returns is kept as a tree;
//! - anything the fast path cannot finish (an error anywhere, a second function, text
//!   after the closing `}`) returns `None`, and the caller parses the text with
//!   [`super::parse_module`] instead, which also gives the error to report.
//!
//! Fast shapes: `name:` (a label), and `[@[!]pred ]opcode[.mod]*[ op[, op]*];` where each
//! operand is a name (`%r1`, `%tid.x`, `smem`, `_`), a decimal or `0x` integer (`-`, `U`
//! allowed), a `0f`/`0d` float, `name|name`, `{item, item, ...}` of names and numbers, or
//! `[name]`, `[name+int]`, `[name-int]`, `[int]`, all written without extra whitespace.

use crate::ast::{
    AddrBase, Address, FnKind, Function, Guard, Instruction, IntLit, Item, Operand, Radix,
    Statement, VarDecl,
};

use super::body::statement;
use super::lex::{block_comment, line_comment, skip_hspace};

/// One operand of a fast-parsed instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FOp<'t> {
    /// A register or special register (starts with `%`) or another name.
    Name(&'t str),
    /// An integer as written (sign, magnitude, radix, `U`).
    Int(IntLit),
    F32(u32),
    F64(u64),
    /// `{...}`: items at `start..start + len` of the operand array.
    Vec(u32, u32),
    /// `[base+offset]` (`None`: an absolute address).
    Addr(Option<&'t str>, i64),
    /// `%r|%p`.
    Pair(&'t str, &'t str),
}

/// A fast-parsed instruction.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FInstr<'t> {
    /// The statement's text, from its first character (the guard's `@`) through its `;`.
    pub text: &'t str,
    /// `(negated, predicate)`.
    pub guard: Option<(bool, &'t str)>,
    /// Opcode and modifiers as written: `ld.global.nc.v4.u32`.
    pub key: &'t str,
    /// Operands at `start..start + len` of the operand array.
    pub ops: (u32, u32),
}

/// What the body holds, as far as parity reads it: labels and instructions in order
/// (nested blocks flattened).
#[derive(Debug, Clone, Copy)]
pub(crate) enum LStmt<'t> {
    Label(&'t str),
    /// A label read by the real parser: index into [`LeanEntry::owned_labels`].
    OwnedLabel(u32),
    Instr(FInstr<'t>),
    /// An instruction read by the real parser: index into [`LeanEntry::owned`].
    Owned(u32),
}

/// The one entry of a module, its body fast-parsed.
#[derive(Debug)]
pub(crate) struct LeanEntry<'t> {
    /// The header as the real parser reads it (parameters, directives); `body` is `None`.
    pub func: Function,
    pub stmts: Vec<LStmt<'t>>,
    pub ops: Vec<FOp<'t>>,
    pub owned: Vec<Instruction>,
    pub owned_labels: Vec<String>,
    /// The body's variable declarations (`.shared`, `.local`, `.reg`), in order.
    pub decls: Vec<VarDecl>,
}

/// Parses a module holding exactly one `.entry` with a body, or returns `None` (the caller
/// then uses the real parser).
pub(crate) fn parse_entry(text: &str) -> Option<LeanEntry<'_>> {
    let pos = text.find("\n{\n")?;
    let prefix = &text[..pos + 1];
    let mut proto = String::with_capacity(prefix.len() + 1);
    proto.push_str(prefix);
    proto.push(';');
    let module = super::parse_module(&proto).ok()?;
    if module.functions().count() != 1 {
        return None;
    }
    let func = match module.items.into_iter().last() {
        Some(Item::Function(f)) if f.kind == FnKind::Entry && f.body.is_none() => f,
        _ => return None,
    };
    let body = &text[pos + 3..];
    let estimate = body.len() / 32;
    let mut e = LeanEntry {
        func,
        stmts: Vec::with_capacity(estimate),
        ops: Vec::with_capacity(estimate * 3),
        owned: Vec::new(),
        owned_labels: Vec::new(),
        decls: Vec::new(),
    };
    let mut top: Vec<FOp<'_>> = Vec::with_capacity(8);
    let mut rest = body;
    loop {
        rest = skip_hspace(rest);
        // End of input before the `}`: the real parser reports it.
        let &c = rest.as_bytes().first()?;
        match c {
            b'}' => break,
            b'\n' => {
                rest = &rest[1..];
                continue;
            }
            b'/' if rest.starts_with("//") => {
                rest = line_comment(rest).ok()?.0;
                continue;
            }
            b'/' if rest.starts_with("/*") => {
                rest = block_comment(rest).ok()?.0;
                continue;
            }
            _ => {}
        }
        if let Some((r, s)) = fast_statement(rest, &mut e.ops, &mut top) {
            e.stmts.push(s);
            rest = r;
            continue;
        }
        let (r, stmts) = statement(rest, 1).ok()?;
        if r.len() >= rest.len() {
            return None;
        }
        keep(&mut e, stmts);
        rest = r;
    }
    // After the closing `}`: nothing but whitespace.
    let after = &rest[1..];
    if !after
        .bytes()
        .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'\x0b' | b'\x0c'))
    {
        return None;
    }
    Some(e)
}

/// Reusable buffers of [`statement_tree`].
#[derive(Default)]
pub(crate) struct Scratch<'t> {
    ops: Vec<FOp<'t>>,
    top: Vec<FOp<'t>>,
}

/// A label or an instruction of the fast shape at `i`, as the tree `body::statement`
/// makes of it, with the text after it; `None` for anything else.
pub(crate) fn statement_tree<'t>(
    i: &'t str,
    scratch: &mut Scratch<'t>,
) -> Option<(&'t str, Statement)> {
    #[cfg(test)]
    if NO_FAST_TREE.with(|c| c.get()) {
        return None;
    }
    scratch.ops.clear();
    let (rest, st) = fast_statement(i, &mut scratch.ops, &mut scratch.top)?;
    let st = match st {
        LStmt::Label(l) => Statement::Label(l.to_string()),
        LStmt::Instr(fi) => Statement::Instr(tree(&fi, &scratch.ops)),
        LStmt::OwnedLabel(_) | LStmt::Owned(_) => return None,
    };
    Some((rest, st))
}

#[cfg(test)]
thread_local! {
    /// Turns [`statement_tree`] off (tests compare the parser with and without it).
    pub(crate) static NO_FAST_TREE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The tree of a fast-parsed instruction.
fn tree(fi: &FInstr<'_>, ops: &[FOp<'_>]) -> Instruction {
    let mut parts = fi.key.split('.');
    let opcode = parts.next().unwrap_or_default().to_string();
    let mods = parts.map(str::to_string).collect();
    let (start, len) = (fi.ops.0 as usize, fi.ops.1 as usize);
    let operands = ops[start..start + len]
        .iter()
        .map(|o| operand_tree(o, ops))
        .collect();
    Instruction {
        guard: fi.guard.map(|(negated, pred)| Guard {
            negated,
            pred: pred.to_string(),
        }),
        opcode,
        mods,
        operands,
    }
}

fn operand_tree(o: &FOp<'_>, ops: &[FOp<'_>]) -> Operand {
    let named = |n: &str| {
        if n.starts_with('%') {
            Operand::Reg(n.to_string())
        } else {
            Operand::Symbol(n.to_string())
        }
    };
    match *o {
        FOp::Name(n) => named(n),
        FOp::Int(lit) => Operand::Int(lit),
        FOp::F32(b) => Operand::F32(b),
        FOp::F64(b) => Operand::F64(b),
        FOp::Vec(start, len) => Operand::Vector(
            ops[start as usize..(start + len) as usize]
                .iter()
                .map(|x| operand_tree(x, ops))
                .collect(),
        ),
        FOp::Addr(base, offset) => Operand::Address(Address {
            base: base.map(|n| {
                if n.starts_with('%') {
                    AddrBase::Reg(n.to_string())
                } else {
                    AddrBase::Symbol(n.to_string())
                }
            }),
            offset,
        }),
        FOp::Pair(a, b) => Operand::PredPair(a.to_string(), b.to_string()),
    }
}

/// Keeps the labels and instructions of statements the real parser read.
fn keep(e: &mut LeanEntry<'_>, stmts: Vec<Statement>) {
    for s in stmts {
        match s {
            Statement::Label(l) => {
                e.stmts.push(LStmt::OwnedLabel(e.owned_labels.len() as u32));
                e.owned_labels.push(l);
            }
            Statement::Instr(i) => {
                e.stmts.push(LStmt::Owned(e.owned.len() as u32));
                e.owned.push(i);
            }
            Statement::Block(inner) => keep(e, inner),
            Statement::Decl(d) => e.decls.push(d),
            _ => {}
        }
    }
}

/// Character classes of ASCII bytes (one table load per test).
const IDENT_START: u8 = 1;
const IDENT: u8 = 2;
const WORD: u8 = 4;

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        let alpha = b.is_ascii_alphabetic();
        let alnum = b.is_ascii_alphanumeric();
        let mut k = 0;
        if alpha || b == b'_' || b == b'$' || b == b'%' {
            k |= IDENT_START;
        }
        if alnum || b == b'_' || b == b'$' {
            k |= IDENT;
        }
        if alnum || b == b'_' {
            k |= WORD;
        }
        t[c] = k;
        c += 1;
    }
    t
};

#[inline]
fn is_ident_start(b: u8) -> bool {
    CLASS[b as usize] & IDENT_START != 0
}

#[inline]
fn is_ident_char(b: u8) -> bool {
    CLASS[b as usize] & IDENT != 0
}

#[inline]
fn is_word_char(b: u8) -> bool {
    CLASS[b as usize] & WORD != 0
}

#[inline]
fn count(s: &[u8], from: usize, f: impl Fn(u8) -> bool) -> usize {
    let mut k = from;
    while k < s.len() && f(s[k]) {
        k += 1;
    }
    k - from
}

/// `lex::ident`: the length of the identifier at the start of `s` (0: none).
fn ident_len(s: &[u8]) -> usize {
    match s.first() {
        Some(&c) if is_ident_start(c) => {
            let len = 1 + count(s, 1, is_ident_char);
            if c == b'%' && len == 1 {
                0
            } else {
                len
            }
        }
        _ => 0,
    }
}

/// `lex::name_with_component`: an identifier, and for a `%` name a `.component`.
fn name_len(s: &[u8]) -> usize {
    let len = ident_len(s);
    if len == 0 || s[0] != b'%' || s.get(len) != Some(&b'.') {
        return len;
    }
    let comp = count(s, len + 1, is_word_char);
    if comp > 0 {
        len + 1 + comp
    } else {
        len
    }
}

/// A label or an instruction of the fast shape, with the text after it.
fn fast_statement<'t>(
    i: &'t str,
    ops: &mut Vec<FOp<'t>>,
    top: &mut Vec<FOp<'t>>,
) -> Option<(&'t str, LStmt<'t>)> {
    let s = i.as_bytes();
    let first = *s.first()?;
    if first != b'@' {
        // `statement` reads `ident :` (not `::`) as a label before trying an instruction.
        let n = ident_len(s);
        if n == 0 {
            return None;
        }
        if s.get(n) == Some(&b':') {
            return (s.get(n + 1) != Some(&b':')).then(|| (&i[n + 1..], LStmt::Label(&i[..n])));
        }
        if !first.is_ascii_alphabetic() {
            return None;
        }
    }
    let mark = ops.len();
    let r = fast_instruction(i, ops, top);
    if r.is_none() {
        ops.truncate(mark);
    }
    r
}

fn fast_instruction<'t>(
    i: &'t str,
    ops: &mut Vec<FOp<'t>>,
    top: &mut Vec<FOp<'t>>,
) -> Option<(&'t str, LStmt<'t>)> {
    let s = i.as_bytes();
    let mut p = 0;
    let guard = if s[0] == b'@' {
        p = 1;
        let negated = s.get(1) == Some(&b'!');
        if negated {
            p = 2;
        }
        let n = name_len(&s[p..]);
        if n == 0 || s.get(p + n) != Some(&b' ') {
            return None;
        }
        let pred = &i[p..p + n];
        p += n + 1;
        Some((negated, pred))
    } else {
        None
    };
    // Opcode: a word that starts with a letter.
    let key_start = p;
    if !s.get(p)?.is_ascii_alphabetic() {
        return None;
    }
    p += count(s, p, is_word_char);
    // Modifiers: `.word(::word)*`.
    while s.get(p) == Some(&b'.') {
        p += 1;
        let w = count(s, p, is_word_char);
        if w == 0 {
            return None;
        }
        p += w;
        while s.get(p) == Some(&b':') && s.get(p + 1) == Some(&b':') {
            let w = count(s, p + 2, is_word_char);
            if w == 0 {
                return None;
            }
            p += 2 + w;
        }
    }
    let key = &i[key_start..p];
    top.clear();
    match s.get(p) {
        Some(b';') => {}
        Some(b' ') => {
            p += 1;
            loop {
                p = operand(i, p, ops, top)?;
                match s.get(p) {
                    Some(b',') if s.get(p + 1) == Some(&b' ') => p += 2,
                    Some(b';') => break,
                    _ => return None,
                }
            }
        }
        _ => return None,
    }
    let start = ops.len() as u32;
    for &x in top.iter() {
        ops.push(x);
    }
    let instr = FInstr {
        text: &i[..p + 1],
        guard,
        key,
        ops: (start, top.len() as u32),
    };
    Some((&i[p + 1..], LStmt::Instr(instr)))
}

/// One top-level operand at `p`; returns the position after it.
fn operand<'t>(
    i: &'t str,
    p: usize,
    ops: &mut Vec<FOp<'t>>,
    top: &mut Vec<FOp<'t>>,
) -> Option<usize> {
    let s = i.as_bytes();
    match *s.get(p)? {
        b'{' => {
            let start = ops.len() as u32;
            let mut q = p + 1;
            loop {
                let (x, r) = scalar(i, q)?;
                ops.push(x);
                q = r;
                match s.get(q) {
                    Some(b',') if s.get(q + 1) == Some(&b' ') => q += 2,
                    Some(b'}') => break,
                    _ => return None,
                }
            }
            top.push(FOp::Vec(start, ops.len() as u32 - start));
            Some(q + 1)
        }
        b'[' => {
            let q = p + 1;
            let n = name_len(&s[q..]);
            let (base, mut q, off) = if n > 0 {
                let base = &i[q..q + n];
                let q = q + n;
                match s.get(q) {
                    Some(b'+') => {
                        let (v, r) = int(s, q + 1)?;
                        (Some(base), r, v.value())
                    }
                    Some(b'-') => {
                        let (v, r) = int(s, q + 1)?;
                        (Some(base), r, -v.value())
                    }
                    _ => (Some(base), q, 0),
                }
            } else {
                let (v, r) = int(s, q)?;
                (None, r, v.value())
            };
            if s.get(q) != Some(&b']') {
                return None;
            }
            q += 1;
            top.push(FOp::Addr(base, i64::try_from(off).ok()?));
            Some(q)
        }
        _ => {
            let (x, q) = scalar(i, p)?;
            if let FOp::Name(a) = x {
                if s.get(q) == Some(&b'|') {
                    let n = name_len(&s[q + 1..]);
                    if n == 0 {
                        return None;
                    }
                    top.push(FOp::Pair(a, &i[q + 1..q + 1 + n]));
                    return Some(q + 1 + n);
                }
            }
            top.push(x);
            Some(q)
        }
    }
}

/// A name or a number.
fn scalar(i: &str, p: usize) -> Option<(FOp<'_>, usize)> {
    let s = i.as_bytes();
    let c = *s.get(p)?;
    if c == b'-' || c.is_ascii_digit() {
        return number(s, p);
    }
    let n = name_len(&s[p..]);
    if n == 0 {
        return None;
    }
    Some((FOp::Name(&i[p..p + n]), p + n))
}

fn hex_digit(b: u8) -> Option<u64> {
    (b as char).to_digit(16).map(u64::from)
}

/// `operand::number` restricted to integers (decimal, `0x`), `0f` and `0d` floats.
fn number(s: &[u8], p: usize) -> Option<(FOp<'static>, usize)> {
    let negative = s[p] == b'-';
    let b = if negative { p + 1 } else { p };
    if !s.get(b)?.is_ascii_digit() {
        return None;
    }
    if s[b] == b'0' && matches!(s.get(b + 1), Some(b'f' | b'F' | b'd' | b'D')) {
        let (n, f32) = if matches!(s[b + 1], b'f' | b'F') {
            (8, true)
        } else {
            (16, false)
        };
        let digits = count(s, b + 2, |x| x.is_ascii_hexdigit());
        if digits != n {
            return None;
        }
        let mut v = 0u64;
        for &x in &s[b + 2..b + 2 + n] {
            v = v << 4 | hex_digit(x)?;
        }
        let end = b + 2 + n;
        return Some(if f32 {
            let sign = if negative { 1u32 << 31 } else { 0 };
            (FOp::F32(v as u32 ^ sign), end)
        } else {
            let sign = if negative { 1u64 << 63 } else { 0 };
            (FOp::F64(v ^ sign), end)
        });
    }
    let (v, end) = int(s, p)?;
    Some((FOp::Int(v), end))
}

/// A decimal or `0x` integer with optional `-` and `U`; `None` for anything else (octal,
/// binary, floats, out of range), which the real parser then reads.
fn int(s: &[u8], p: usize) -> Option<(IntLit, usize)> {
    let negative = s.get(p) == Some(&b'-');
    let b = if negative { p + 1 } else { p };
    if !s.get(b)?.is_ascii_digit() {
        return None;
    }
    let hex = s[b] == b'0' && matches!(s.get(b + 1), Some(b'x' | b'X'));
    let (mag, mut q) = if hex {
        let n = count(s, b + 2, |x| x.is_ascii_hexdigit());
        if n == 0 {
            return None;
        }
        let mut v = 0u64;
        for &x in &s[b + 2..b + 2 + n] {
            v = v.checked_mul(16)?.checked_add(hex_digit(x)?)?;
        }
        (v, b + 2 + n)
    } else {
        let n = count(s, b, |x| x.is_ascii_digit());
        // A leading 0 followed by digits is octal; `.`/`e` make a decimal float; `b` a
        // binary literal (all left to the real parser).
        if s[b] == b'0' && n > 1 {
            return None;
        }
        if matches!(s.get(b + n), Some(b'.' | b'e' | b'E' | b'b' | b'B')) {
            return None;
        }
        let mut v = 0u64;
        for &x in &s[b..b + n] {
            v = v.checked_mul(10)?.checked_add(u64::from(x - b'0'))?;
        }
        (v, b + n)
    };
    let unsigned_suffix = matches!(s.get(q), Some(b'U' | b'u'));
    if unsigned_suffix {
        q += 1;
    }
    // `end_of_number`: no name or `.` may follow.
    if s.get(q).is_some_and(|&x| is_ident_char(x) || x == b'.') {
        return None;
    }
    let lit = IntLit {
        negative,
        magnitude: mag,
        radix: if hex { Radix::Hex } else { Radix::Dec },
        unsigned_suffix,
    };
    Some((lit, q))
}

#[cfg(test)]
mod tests {
    use super::*;

    type Reading = (Option<(bool, String)>, String, Vec<Operand>);

    /// The real parser's reading of one instruction: guard, key and operands.
    fn real(text: &str) -> Option<Reading> {
        let (rest, i) = super::super::body::instruction(text).ok()?;
        assert_eq!(rest, "");
        let mut key = i.opcode.clone();
        for m in &i.mods {
            key.push('.');
            key.push_str(m);
        }
        Some((i.guard.map(|g| (g.negated, g.pred)), key, i.operands))
    }

    fn same(f: &FOp<'_>, ops: &[FOp<'_>], o: &Operand) -> bool {
        match (f, o) {
            (FOp::Name(n), Operand::Reg(r)) => n.starts_with('%') && n == r,
            (FOp::Name(n), Operand::Symbol(r)) => !n.starts_with('%') && n == r,
            (FOp::Int(v), Operand::Int(l)) => v == l,
            (FOp::F32(a), Operand::F32(b)) => a == b,
            (FOp::F64(a), Operand::F64(b)) => a == b,
            (FOp::Vec(s, n), Operand::Vector(items)) => {
                *n as usize == items.len()
                    && items
                        .iter()
                        .zip(&ops[*s as usize..(*s + *n) as usize])
                        .all(|(o, f)| same(f, ops, o))
            }
            (FOp::Addr(b, off), Operand::Address(a)) => {
                *off == a.offset
                    && match (b, &a.base) {
                        (None, None) => true,
                        (Some(n), Some(AddrBase::Reg(r))) => n.starts_with('%') && n == r,
                        (Some(n), Some(AddrBase::Symbol(r))) => !n.starts_with('%') && n == r,
                        _ => false,
                    }
            }
            (FOp::Pair(a, b), Operand::PredPair(x, y)) => a == x && b == y,
            _ => false,
        }
    }

    /// Every statement the fast path takes reads exactly as the real parser reads it.
    fn check(text: &str) {
        let mut ops = Vec::new();
        let mut top = Vec::new();
        let Some((rest, st)) = fast_statement(text, &mut ops, &mut top) else {
            return;
        };
        let consumed = &text[..text.len() - rest.len()];
        let (r2, real_stmts) = statement(text, 1).expect("the real parser accepts it");
        assert_eq!(r2, rest, "{text}: consumed");
        match (st, &real_stmts[..]) {
            (LStmt::Label(l), [Statement::Label(m)]) => assert_eq!(l, m),
            (LStmt::Instr(fi), [Statement::Instr(_)]) => {
                assert_eq!(fi.text, consumed);
                let (g, key, operands) = real(fi.text).expect("instruction");
                assert_eq!(fi.guard.map(|(n, p)| (n, p.to_string())), g, "{text}");
                assert_eq!(fi.key, key, "{text}");
                let mine = &ops[fi.ops.0 as usize..(fi.ops.0 + fi.ops.1) as usize];
                assert_eq!(mine.len(), operands.len(), "{text}");
                for (f, o) in mine.iter().zip(&operands) {
                    assert!(same(f, &ops, o), "{text}: {f:?} vs {o:?}");
                }
            }
            (s, r) => panic!("{text}: fast {s:?}, real {r:?}"),
        }
    }

    #[test]
    fn character_classes_are_the_lexers() {
        for b in 0..=255u8 {
            let c = b as char;
            assert_eq!(
                is_ident_start(b),
                super::super::lex::is_ident_start(c),
                "{b}"
            );
            assert_eq!(is_ident_char(b), super::super::lex::is_ident_char(c), "{b}");
            assert_eq!(
                is_word_char(b),
                c.is_ascii_alphanumeric() || c == '_',
                "{b}"
            );
        }
    }

    #[test]
    fn fast_statements_read_like_the_real_parser() {
        let cases = [
            "$L0_loop:\n",
            "L1:: x",
            "done: ret;",
            "ret;\n",
            "@%p1 bra $L3_end;\n",
            "@!%p12 ret;",
            "ld.global.nc.L1::no_allocate.v4.u32 {%r1, %r2, %r3, %r4}, [%rd2+16];",
            "ld.param.u64 %rd1, [x_ptr];",
            "st.shared.f32 [%r7+-4], %f1;",
            "st.global.v2.f32 [%rd3], {%f1, 0f3F800000};",
            "ld.shared.u32 %r1, [1024];",
            "ld.shared.u32 %r1, [smem-8];",
            "mov.u32 %r1, %tid.x;",
            "mov.b32 %r1, 0xffffffff;",
            "mov.b32 %r1, 0XFFu;",
            "mov.f64 %fd1, 0d3FF0000000000000;",
            "mov.f32 %f1, -0f3F800000;",
            "add.s32 %r1, %r2, -17;",
            "add.s64 %rd1, %rd2, 18446744073709551615;",
            "add.s64 %rd1, %rd2, -18446744073709551615;",
            "add.s64 %rd1, %rd2, 18446744073709551616;",
            "shfl.sync.bfly.b32 %r2|%p3, %r1, 16, 31, -1;",
            "mov.u32 %r1, 017;",
            "mov.u32 %r1, 0b101;",
            "mov.f32 %f1, 1.5;",
            "mov.f32 %f1, 1e5;",
            "mov.u32 %r1, 12ab;",
            "mov.u32 %r1, 0x;",
            "add.s32 %r1 , %r2;",
            "add.s32  %r1, %r2;",
            "add.s32 %r1,%r2;",
            "add.f32%r1, %r2, %r3;",
            "ret$x;",
            "abc :",
            "mov.b32 %r1, {};",
            "mov.b32 {%h1, _}, %r1;",
            "setp.lt.u32 %p1, %r1, %r2; // trailing",
            "bar.sync 0;",
            "ld.global.u32 %r1, [%rd1+99999999999999999999];",
            "ld.global.u32 %r1, [%rd1+9223372036854775808];",
            "ld.global.u32 %r1, [%rd1-9223372036854775808];",
            "@ %p1 ret;",
            "@%p1  ret;",
            "mov.u32 %r1, %r;",
            "call.uni (retval0), f, (param0);",
            "selp.b32 %r1, 1, 0, !%p1;",
        ];
        for c in cases {
            check(c);
        }
    }

    /// The real parser alone (no fast path for statements).
    fn reference(text: &str) -> Result<crate::ast::Module, super::super::ParseError> {
        NO_FAST_TREE.with(|c| c.set(true));
        let r = super::super::parse_module(text);
        NO_FAST_TREE.with(|c| c.set(false));
        r
    }

    /// Where the fast path takes a text, the real parser takes it too and reads the same
    /// header, labels and instructions.
    fn agree(text: &str) -> bool {
        let Some(e) = parse_entry(text) else {
            return false;
        };
        let m = reference(text).expect("the real parser accepts it");
        let f = {
            let mut fs = m.functions();
            let f = fs.next().expect("one function");
            assert!(fs.next().is_none());
            f
        };
        let mut func = f.clone();
        func.body = None;
        assert_eq!(e.func, func);
        let flat: Vec<&Statement> = f
            .statements()
            .into_iter()
            .filter(|s| matches!(s, Statement::Label(_) | Statement::Instr(_)))
            .collect();
        assert_eq!(flat.len(), e.stmts.len());
        for (s, l) in flat.iter().zip(&e.stmts) {
            match (s, l) {
                (Statement::Label(a), LStmt::Label(b)) => assert_eq!(a, b),
                (Statement::Label(a), LStmt::OwnedLabel(k)) => {
                    assert_eq!(a, &e.owned_labels[*k as usize])
                }
                (Statement::Instr(a), LStmt::Owned(k)) => assert_eq!(a, &e.owned[*k as usize]),
                (Statement::Instr(a), LStmt::Instr(fi)) => {
                    assert_eq!(
                        a.guard.as_ref().map(|g| (g.negated, g.pred.as_str())),
                        fi.guard
                    );
                    let mut key = a.opcode.clone();
                    for m in &a.mods {
                        key.push('.');
                        key.push_str(m);
                    }
                    assert_eq!(key, fi.key);
                    let mine = &e.ops[fi.ops.0 as usize..(fi.ops.0 + fi.ops.1) as usize];
                    assert_eq!(mine.len(), a.operands.len(), "{}", fi.text);
                    for (x, o) in mine.iter().zip(&a.operands) {
                        assert!(same(x, &e.ops, o), "{}: {x:?} vs {o:?}", fi.text);
                    }
                    let (_, again) = super::super::body::instruction(fi.text).unwrap();
                    assert_eq!(&again, a);
                }
                (s, l) => panic!("real {s:?}, fast {l:?}"),
            }
        }
        true
    }

    #[test]
    fn mutated_and_truncated_modules_parse_fast_only_where_the_real_parser_agrees() {
        let target = crate::Target::sm(80);
        let mut texts = Vec::new();
        for spec in crate::kernels::sample_specs().into_iter().step_by(5) {
            if let Ok(k) = crate::kernels::generate(&spec, target) {
                texts.push(k.ptx);
            }
        }
        let bytes: &[u8] = b" \t\n;,{}[]%.-0xfd/*:@!|U_$+e(";
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let (mut fast, mut total) = (0, 0);
        for t in &texts {
            assert!(agree(t));
            assert_eq!(super::super::parse_module(t), reference(t));
            for _ in 0..100 {
                let mut b = t.clone().into_bytes();
                let at = (next() % b.len() as u64) as usize;
                match next() % 4 {
                    0 => b.truncate(at),
                    1 => {
                        b.remove(at);
                    }
                    2 => b.insert(at, bytes[(next() % bytes.len() as u64) as usize]),
                    _ => b[at] = bytes[(next() % bytes.len() as u64) as usize],
                }
                let Ok(m) = String::from_utf8(b) else {
                    continue;
                };
                // `parse_module` (fast statements) reads every mutant, good or bad, exactly
                // as the real statement parser does.
                assert_eq!(super::super::parse_module(&m), reference(&m));
                total += 1;
                fast += usize::from(agree(&m));
            }
        }
        // Most single-byte edits still parse; the fast path takes them.
        assert!(total > 1000 && fast > total / 4, "{fast} of {total}");
    }

    #[test]
    fn a_generated_module_parses_fast_and_the_header_is_the_real_one() {
        let spec = crate::kernels::sample_specs().remove(0);
        let k = crate::kernels::generate(&spec, crate::Target::sm(80)).unwrap();
        let e = parse_entry(&k.ptx).expect("fast path");
        assert!(e.owned.is_empty() && e.owned_labels.is_empty());
        let m = super::super::parse_module(&k.ptx).unwrap();
        let f = m.entries().next().unwrap();
        assert_eq!(e.func.params, f.params);
        assert_eq!(e.func.directives, f.directives);
        assert_eq!(e.func.name, f.name);
        let n = f.instructions().len();
        assert_eq!(
            e.stmts
                .iter()
                .filter(|s| matches!(s, LStmt::Instr(_)))
                .count(),
            n
        );
        // Trailing text, a missing `}` or a second function leave it to the real parser.
        assert!(parse_entry(&format!("{}x", k.ptx)).is_none());
        assert!(parse_entry(k.ptx.trim_end().trim_end_matches('}')).is_none());
        assert!(parse_entry(&format!("{}{}", k.ptx, k.ptx)).is_none());
    }
}
