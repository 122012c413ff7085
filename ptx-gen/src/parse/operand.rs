//! Instruction operands and the literals they may hold.
//!
//! Numbers keep what the tree needs to print them back: an integer keeps its radix, sign
//! and `U` suffix, a `0f`/`0d` float keeps its exact bits, a decimal float its text.

use crate::ast::{AddrBase, Address, IntLit, Operand};

use super::lex::{
    consumed, delimited_list, fail, failure, is_ident_char, is_ident_start, name_with_component,
    sp, strip_prefix2, unsigned, PResult, MAX_NESTING,
};

/// One operand: a register, a symbol, a literal, `{vector}`, `[address]`, `!operand`,
/// `%p|%q`, or a `(tuple)`. `depth` counts the lists and `!` around it.
pub(crate) fn operand(i: &str, depth: usize) -> PResult<'_, Operand> {
    if depth > MAX_NESTING {
        return failure(i, "operands nested at most 64 deep");
    }
    match i.chars().next() {
        Some('!') => {
            let (rest, ()) = sp(&i[1..])?;
            let (rest, inner) = operand(rest, depth + 1)?;
            Ok((rest, Operand::Not(Box::new(inner))))
        }
        Some('{') => delimited_list(i, '{', '}', |x| operand(x, depth + 1))
            .map(|(rest, items)| (rest, Operand::Vector(items))),
        Some('(') => delimited_list(i, '(', ')', |x| operand(x, depth + 1))
            .map(|(rest, items)| (rest, Operand::Tuple(items))),
        Some('[') => address(i).map(|(rest, a)| (rest, Operand::Address(a))),
        Some(c) if c == '-' || c.is_ascii_digit() => number(i),
        Some(c) if is_ident_start(c) => named(i),
        _ => fail(i, "an operand"),
    }
}

/// A register (`%r1`, `%tid.x`), a symbol (`$L__BB0_2`, `smem`, `_`), or a pair `%r5|%p3`.
fn named(i: &str) -> PResult<'_, Operand> {
    let (rest, name) = name_with_component(i)?;
    let (ahead, ()) = sp(rest)?;
    if let Some(after_bar) = ahead.strip_prefix('|') {
        let (r, ()) = sp(after_bar)?;
        return match name_with_component(r) {
            Ok((r, second)) => Ok((r, Operand::PredPair(name.into(), second.into()))),
            Err(_) => fail(r, "a predicate register after `|`"),
        };
    }
    let op = if name.starts_with('%') {
        Operand::Reg(name.into())
    } else {
        Operand::Symbol(name.into())
    };
    Ok((rest, op))
}

/// A numeric literal: an integer in any radix with optional `-` and `U`, `0f` + 8 or
/// `0d` + 16 hex digits, or a decimal float (`1.5`, `-2e-3`). A `-` before `0f`/`0d`
/// flips the sign bit, which is what negating the constant means.
pub(crate) fn number(i: &str) -> PResult<'_, Operand> {
    let (negative, body) = match i.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, i),
    };
    if !body.starts_with(|c: char| c.is_ascii_digit()) {
        return fail(i, "a number");
    }
    if let Some(hex) = strip_prefix2(body, "0f", "0F") {
        let (rest, bits) = hex_bits(hex, 8, "exactly 8 hex digits after `0f`")?;
        let sign = if negative { 1 << 31 } else { 0 };
        // Exactly 8 hex digits: the cast keeps every bit.
        let bits = bits as u32 ^ sign;
        return end_of_number(rest, Operand::F32(bits));
    }
    if let Some(hex) = strip_prefix2(body, "0d", "0D") {
        let (rest, bits) = hex_bits(hex, 16, "exactly 16 hex digits after `0d`")?;
        let sign = if negative { 1 << 63 } else { 0 };
        return end_of_number(rest, Operand::F64(bits ^ sign));
    }
    let int_len = body
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(body.len());
    let after_int = &body[int_len..];
    let decimal_float = after_int.starts_with('.')
        || (after_int.starts_with(['e', 'E'])
            && after_int[1..].starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '+'));
    if decimal_float {
        let (rest, ()) = float_tail(after_int)?;
        return end_of_number(rest, Operand::FloatDec(consumed(i, rest).to_string()));
    }
    let (rest, (magnitude, radix)) = unsigned(body)?;
    let (rest, unsigned_suffix) = match rest.strip_prefix(['U', 'u']) {
        Some(r) => (r, true),
        None => (rest, false),
    };
    let lit = IntLit {
        negative,
        magnitude,
        radix,
        unsigned_suffix,
    };
    end_of_number(rest, Operand::Int(lit))
}

/// The fraction and exponent of a decimal float, starting at `.` or `e`.
fn float_tail(i: &str) -> PResult<'_, ()> {
    let digits_end = |s: &str| s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let mut rest = i;
    if let Some(frac) = rest.strip_prefix('.') {
        rest = &frac[digits_end(frac)..];
    }
    if let Some(exp) = rest.strip_prefix(['e', 'E']) {
        let exp = exp.strip_prefix(['+', '-']).unwrap_or(exp);
        let n = digits_end(exp);
        if n == 0 {
            return fail(exp, "exponent digits");
        }
        rest = &exp[n..];
    }
    Ok((rest, ()))
}

/// Exactly `n` hex digits (no more may follow).
fn hex_bits<'a>(i: &'a str, n: usize, what: &'static str) -> PResult<'a, u64> {
    let len = i.find(|c: char| !c.is_ascii_hexdigit()).unwrap_or(i.len());
    if len != n {
        return fail(i, what);
    }
    match u64::from_str_radix(&i[..n], 16) {
        Ok(v) => Ok((&i[n..], v)),
        Err(_) => fail(i, what),
    }
}

/// A number must not run into a name or another number (`12ab`, `1.5.3`).
fn end_of_number(rest: &str, op: Operand) -> PResult<'_, Operand> {
    match rest.chars().next() {
        Some(c) if is_ident_char(c) || c == '.' => fail(rest, "the end of the number"),
        _ => Ok((rest, op)),
    }
}

/// An integer literal (sign allowed), e.g. an address offset.
pub(crate) fn int_lit(i: &str) -> PResult<'_, IntLit> {
    match number(i) {
        Ok((rest, Operand::Int(lit))) => Ok((rest, lit)),
        Ok(_) => fail(i, "an integer"),
        Err(nom::Err::Error(_)) => fail(i, "an integer"),
        Err(e) => Err(e),
    }
}

fn offset_value(at: &str, v: i128) -> PResult<'_, i64> {
    match i64::try_from(v) {
        Ok(v) => Ok((at, v)),
        Err(_) => failure(at, "an address offset that fits in 64 bits"),
    }
}

/// `[%rd1]`, `[%rd1+16]`, `[%rd1+-16]`, `[%rd1-16]`, `[name+4]`, `[1024]`.
fn address(i: &str) -> PResult<'_, Address> {
    let Some(rest) = i.strip_prefix('[') else {
        return fail(i, "`[`");
    };
    let (rest, ()) = sp(rest)?;
    let (rest, base, offset) = if rest.starts_with(is_ident_start) {
        let (after_name, name) = name_with_component(rest)?;
        let base = if name.starts_with('%') {
            AddrBase::Reg(name.into())
        } else {
            AddrBase::Symbol(name.into())
        };
        let (ahead, ()) = sp(after_name)?;
        if let Some(r) = ahead.strip_prefix('+') {
            let (r, ()) = sp(r)?;
            let (r, lit) = int_lit(r)?;
            let (r, off) = offset_value(r, lit.value())?;
            (r, Some(base), off)
        } else if let Some(r) = ahead.strip_prefix('-') {
            let (r, ()) = sp(r)?;
            let (r, lit) = int_lit(r)?;
            let (r, off) = offset_value(r, -lit.value())?;
            (r, Some(base), off)
        } else {
            (after_name, Some(base), 0)
        }
    } else {
        let (r, lit) = int_lit(rest)?;
        let (r, off) = offset_value(r, lit.value())?;
        (r, None, off)
    };
    let (rest, ()) = sp(rest)?;
    match rest.strip_prefix(']') {
        Some(r) => Ok((r, Address { base, offset })),
        None => fail(rest, "`]` or `+offset`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ast::Radix;

    fn op(s: &str) -> Operand {
        let (rest, o) = operand(s, 0).unwrap();
        assert_eq!(rest, "", "{s}");
        o
    }

    #[test]
    fn literals() {
        assert_eq!(op("0f3F800000"), Operand::F32(0x3F80_0000));
        assert_eq!(op("-0f3F800000"), Operand::F32(0xBF80_0000));
        assert_eq!(
            op("0D3FF0000000000000"),
            Operand::F64(0x3FF0_0000_0000_0000)
        );
        assert_eq!(op("-1.5e-3"), Operand::FloatDec("-1.5e-3".into()));
        assert_eq!(
            op("0xffU"),
            Operand::Int(IntLit {
                negative: false,
                magnitude: 255,
                radix: Radix::Hex,
                unsigned_suffix: true
            })
        );
        assert_eq!(op("-1"), Operand::Int(IntLit::dec(-1)));
        assert!(operand("0f3F80", 0).is_err());
        assert!(operand("12ab", 0).is_err());
    }

    #[test]
    fn addresses() {
        let addr = |base: Option<AddrBase>, offset| Operand::Address(Address { base, offset });
        let rd = || Some(AddrBase::Reg("%rd1".into()));
        assert_eq!(op("[%rd1]"), addr(rd(), 0));
        assert_eq!(op("[%rd1+16]"), addr(rd(), 16));
        assert_eq!(op("[%rd1+-16]"), addr(rd(), -16));
        assert_eq!(op("[ %rd1 - 16 ]"), addr(rd(), -16));
        assert_eq!(
            op("[param0+0]"),
            addr(Some(AddrBase::Symbol("param0".into())), 0)
        );
        assert_eq!(op("[1024]"), addr(None, 1024));
        assert!(operand("[%rd1+99999999999999999999]", 0).is_err());
    }

    #[test]
    fn compound_operands() {
        assert_eq!(op("%r5|%p3"), Operand::PredPair("%r5".into(), "%p3".into()));
        assert_eq!(
            op("{%r1, _}"),
            Operand::Vector(vec![
                Operand::Reg("%r1".into()),
                Operand::Symbol("_".into())
            ])
        );
        assert_eq!(
            op("!%p1"),
            Operand::Not(Box::new(Operand::Reg("%p1".into())))
        );
        assert_eq!(op("()"), Operand::Tuple(vec![]));
        let deep = "!".repeat(1000) + "%p";
        assert!(matches!(operand(&deep, 0), Err(nom::Err::Failure(_))));
    }
}
