//! Token-level pieces shared by every part of the parser: the nom error type, whitespace
//! and comments between tokens, identifiers, modifier words, unsigned integers, and the
//! raw text of directives the tree keeps unparsed.
//!
//! Every function here slices only at positions it found by ASCII search or by
//! `char_indices`, so no input can make it slice inside a UTF-8 character.

use std::borrow::Cow;

use nom::error::{ErrorKind, ParseError as NomParseError};
use nom::IResult;

use crate::ast::Comment;

/// The deepest nesting of `{}` blocks, initializer lists and operand lists the parser
/// accepts. Real PTX nests two or three levels; the bound keeps recursion off the end of
/// the stack on hostile input.
pub(crate) const MAX_NESTING: usize = 64;

/// The parser's nom error: the input where parsing stopped and what the grammar wanted
/// there. `at` is always a suffix of the whole text, which is how `parse_module` turns it
/// into a line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PErr<'a> {
    pub at: &'a str,
    pub expected: Cow<'static, str>,
}

pub(crate) type PResult<'a, O> = IResult<&'a str, O, PErr<'a>>;

impl<'a> NomParseError<&'a str> for PErr<'a> {
    fn from_error_kind(input: &'a str, kind: ErrorKind) -> Self {
        let expected = match kind {
            ErrorKind::Digit | ErrorKind::HexDigit => "a number",
            ErrorKind::Eof => "end of input",
            _ => "valid PTX",
        };
        PErr {
            at: input,
            expected: Cow::Borrowed(expected),
        }
    }

    fn append(_: &'a str, _: ErrorKind, other: Self) -> Self {
        other
    }

    fn from_char(input: &'a str, c: char) -> Self {
        PErr {
            at: input,
            expected: Cow::Owned(format!("`{c}`")),
        }
    }

    /// Of two failed alternatives, the one that got further says more.
    fn or(self, other: Self) -> Self {
        if other.at.len() <= self.at.len() {
            other
        } else {
            self
        }
    }
}

/// A recoverable error: an enclosing alternative may still match.
pub(crate) fn fail<'a, O>(at: &'a str, expected: impl Into<Cow<'static, str>>) -> PResult<'a, O> {
    Err(nom::Err::Error(PErr {
        at,
        expected: expected.into(),
    }))
}

/// An error no alternative can repair (an integer too large, nesting too deep).
pub(crate) fn failure<'a, O>(
    at: &'a str,
    expected: impl Into<Cow<'static, str>>,
) -> PResult<'a, O> {
    Err(nom::Err::Failure(PErr {
        at,
        expected: expected.into(),
    }))
}

/// Whitespace that does not end a line.
pub(crate) fn is_hspace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\x0b' | '\x0c')
}

fn is_space(c: char) -> bool {
    c == '\n' || is_hspace(c)
}

pub(crate) fn skip_hspace(i: &str) -> &str {
    i.trim_start_matches(is_hspace)
}

/// Skips whitespace, newlines included, and comments: what may stand between two tokens
/// of one statement. Comments skipped here are recovered by [`comments_in`].
pub(crate) fn sp(i: &str) -> PResult<'_, ()> {
    let mut rest = i;
    loop {
        rest = rest.trim_start_matches(is_space);
        if let Some(body) = rest.strip_prefix("//") {
            rest = match body.find('\n') {
                Some(end) => &body[end..],
                None => "",
            };
        } else if let Some(body) = rest.strip_prefix("/*") {
            match body.find("*/") {
                Some(end) => rest = &body[end + 2..],
                None => return failure(rest, "`*/` closing this comment"),
            }
        } else {
            return Ok((rest, ()));
        }
    }
}

/// `// text` up to the end of the line (a `\r` before the newline is dropped).
pub(crate) fn line_comment(i: &str) -> PResult<'_, Comment> {
    let Some(body) = i.strip_prefix("//") else {
        return fail(i, "`//`");
    };
    let end = body.find('\n').unwrap_or(body.len());
    let text = &body[..end];
    let text = text.strip_suffix('\r').unwrap_or(text);
    Ok((&body[end..], Comment::Line(text.to_string())))
}

/// `/* text */`, possibly over several lines.
pub(crate) fn block_comment(i: &str) -> PResult<'_, Comment> {
    let Some(body) = i.strip_prefix("/*") else {
        return fail(i, "`/*`");
    };
    match body.find("*/") {
        Some(end) => Ok((&body[end + 2..], Comment::Block(body[..end].to_string()))),
        None => failure(i, "`*/` closing this comment"),
    }
}

/// The comments inside the text of one statement (between its tokens), in order. Only
/// for spans without string literals: instructions, declarations, labels, function
/// headers.
pub(crate) fn comments_in(span: &str) -> Vec<Comment> {
    let mut out = Vec::new();
    let mut rest = span;
    while let Some(p) = rest.find('/') {
        let at = &rest[p..];
        if at.starts_with("//") {
            match line_comment(at) {
                Ok((r, c)) => {
                    out.push(c);
                    rest = r;
                }
                Err(_) => break,
            }
        } else if at.starts_with("/*") {
            match block_comment(at) {
                Ok((r, c)) => {
                    out.push(c);
                    rest = r;
                }
                Err(_) => break,
            }
        } else {
            rest = &at[1..];
        }
    }
    out
}

/// The part of `start` that a parser consumed to arrive at `rest`.
pub(crate) fn consumed<'a>(start: &'a str, rest: &'a str) -> &'a str {
    let len = start.len().saturating_sub(rest.len());
    start.get(..len).unwrap_or("")
}

pub(crate) fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || matches!(c, '_' | '$' | '%')
}

pub(crate) fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '$')
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// A PTX identifier: `[a-zA-Z_$%][a-zA-Z0-9_$]*` (`_` alone is the sink `_`).
pub(crate) fn ident(i: &str) -> PResult<'_, &str> {
    match i.chars().next() {
        Some(c) if is_ident_start(c) => {
            let len = 1 + i[1..].find(|c| !is_ident_char(c)).unwrap_or(i.len() - 1);
            if c == '%' && len == 1 {
                return fail(i, "a register name after `%`");
            }
            Ok((&i[len..], &i[..len]))
        }
        _ => fail(i, "an identifier"),
    }
}

/// An identifier that may name a register component: `%tid.x`, `%ctaid.y`, `%v1.w`.
pub(crate) fn name_with_component(i: &str) -> PResult<'_, &str> {
    let start = i;
    let (rest, name) = ident(i)?;
    if !name.starts_with('%') {
        return Ok((rest, name));
    }
    if let Some(after) = rest.strip_prefix('.') {
        let len = after.find(|c| !is_word_char(c)).unwrap_or(after.len());
        if len > 0 {
            let rest = &after[len..];
            return Ok((rest, consumed(start, rest)));
        }
    }
    Ok((rest, name))
}

/// `[a-zA-Z0-9_]+`: directive names, target options, pointer attributes.
pub(crate) fn word(i: &str) -> PResult<'_, &str> {
    let len = i.find(|c| !is_word_char(c)).unwrap_or(i.len());
    if len == 0 {
        return fail(i, "a word");
    }
    Ok((&i[len..], &i[..len]))
}

/// `.name`: a directive or modifier name after its dot.
pub(crate) fn dot_word(i: &str) -> PResult<'_, &str> {
    let Some(rest) = i.strip_prefix('.') else {
        return fail(i, "`.`");
    };
    word(rest)
}

/// The name of the directive at `i` without consuming it (`None` if `i` is not `.name`).
pub(crate) fn peek_dot_word(i: &str) -> Option<&str> {
    dot_word(i).ok().map(|(_, w)| w)
}

/// An instruction modifier: `[a-zA-Z0-9_]+` joined by `::` (`L1::no_allocate`,
/// `shared::cta`, `L2::256B`).
pub(crate) fn modifier(i: &str) -> PResult<'_, &str> {
    let start = i;
    let (mut rest, _) = word(i)?;
    while let Some(after) = rest.strip_prefix("::") {
        match word(after) {
            Ok((r, _)) => rest = r,
            Err(_) => return fail(after, "a word after `::`"),
        }
    }
    Ok((rest, consumed(start, rest)))
}

/// A number written with any PTX radix prefix, as (magnitude, radix), without sign or `U`.
/// Leaves `0f`/`0d` float bit patterns to the operand parser.
pub(crate) fn unsigned(i: &str) -> PResult<'_, (u64, crate::ast::Radix)> {
    use crate::ast::Radix;
    let (digits_at, radix, base) = if let Some(r) = strip_prefix2(i, "0x", "0X") {
        (r, Radix::Hex, 16)
    } else if let Some(r) = strip_prefix2(i, "0b", "0B") {
        (r, Radix::Binary, 2)
    } else if i.len() > 1 && i.starts_with('0') && i[1..].starts_with(|c: char| c.is_ascii_digit())
    {
        (&i[1..], Radix::Octal, 8)
    } else {
        (i, Radix::Dec, 10)
    };
    let len = digits_at
        .find(|c: char| !c.is_digit(base))
        .unwrap_or(digits_at.len());
    let digits = &digits_at[..len];
    if digits.is_empty() {
        return fail(i, radix_text(radix));
    }
    match u64::from_str_radix(digits, base) {
        Ok(v) => Ok((&digits_at[len..], (v, radix))),
        Err(_) => failure(i, "an integer that fits in 64 bits"),
    }
}

fn radix_text(radix: crate::ast::Radix) -> &'static str {
    use crate::ast::Radix;
    match radix {
        Radix::Dec => "a decimal integer",
        Radix::Hex => "hexadecimal digits after `0x`",
        Radix::Octal => "octal digits after `0`",
        Radix::Binary => "binary digits after `0b`",
    }
}

pub(crate) fn strip_prefix2<'a>(i: &'a str, a: &str, b: &str) -> Option<&'a str> {
    i.strip_prefix(a).or_else(|| i.strip_prefix(b))
}

/// An unsigned integer that must fit in `u32` (alignments, ranges, versions).
pub(crate) fn u32_value(i: &str) -> PResult<'_, u32> {
    let (rest, (v, _)) = unsigned(i)?;
    match u32::try_from(v) {
        Ok(v) => Ok((rest, v)),
        Err(_) => failure(i, "an integer that fits in 32 bits"),
    }
}

/// An unsigned integer (array sizes, performance directive values).
pub(crate) fn u64_value(i: &str) -> PResult<'_, u64> {
    unsigned(i).map(|(rest, (v, _))| (rest, v))
}

/// `open item, item, ... close` with whitespace and comments anywhere between; may be empty.
/// Ends right after `close`.
pub(crate) fn delimited_list<'a, O>(
    i: &'a str,
    open: char,
    close: char,
    mut item: impl FnMut(&'a str) -> PResult<'a, O>,
) -> PResult<'a, Vec<O>> {
    let Some(rest) = i.strip_prefix(open) else {
        return fail(i, format!("`{open}`"));
    };
    let mut out = Vec::new();
    let (mut rest, ()) = sp(rest)?;
    if let Some(r) = rest.strip_prefix(close) {
        return Ok((r, out));
    }
    loop {
        let (r, x) = item(rest)?;
        out.push(x);
        let (r, ()) = sp(r)?;
        if let Some(r) = r.strip_prefix(',') {
            rest = sp(r)?.0;
        } else if let Some(r) = r.strip_prefix(close) {
            return Ok((r, out));
        } else {
            return fail(r, format!("`,` or `{close}`"));
        }
    }
}

/// `item, item, ...` (at least one), ending right after the last item so that the
/// whitespace after it, a newline perhaps, stays for the caller.
pub(crate) fn comma_list<'a, O>(
    i: &'a str,
    mut item: impl FnMut(&'a str) -> PResult<'a, O>,
) -> PResult<'a, Vec<O>> {
    let (mut rest, first) = item(i)?;
    let mut out = vec![first];
    loop {
        let (ahead, ()) = sp(rest)?;
        let Some(after_comma) = ahead.strip_prefix(',') else {
            return Ok((rest, out));
        };
        let (r, x) = item(sp(after_comma)?.0)?;
        out.push(x);
        rest = r;
    }
}

/// A `"..."` string literal with `\` escapes; returns the rest after the closing quote.
fn skip_string(i: &str) -> PResult<'_, ()> {
    let Some(body) = i.strip_prefix('"') else {
        return fail(i, "`\"`");
    };
    let mut escaped = false;
    for (k, c) in body.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Ok((&body[k + 1..], ())),
            '\n' => break,
            _ => {}
        }
    }
    failure(i, "`\"` closing this string")
}

/// Where the raw text of a directive stopped.
enum RawStop {
    Semicolon,
    /// End of line, a comment, end of input, or a `}` that closes an enclosing block.
    Line,
}

/// Scans raw directive text: strings, `/* */` comments and `{ }` groups are kept whole
/// (a group may span lines and hold `//` comments too); at nesting depth 0 it stops before
/// `;`, a newline, a `//` comment or an unmatched `}`.
fn scan_raw(i: &str) -> PResult<'_, RawStop> {
    let mut rest = i;
    let mut depth = 0usize;
    loop {
        let Some(c) = rest.chars().next() else {
            return if depth == 0 {
                Ok((rest, RawStop::Line))
            } else {
                failure(rest, "`}` closing this directive's group")
            };
        };
        if depth == 0 && (c == ';' || c == '\n' || rest.starts_with("//")) {
            let stop = if c == ';' {
                RawStop::Semicolon
            } else {
                RawStop::Line
            };
            return Ok((rest, stop));
        }
        if c == '"' {
            rest = skip_string(rest)?.0;
        } else if rest.starts_with("//") {
            rest = line_comment(rest)?.0;
        } else if rest.starts_with("/*") {
            rest = block_comment(rest)?.0;
        } else if c == '{' {
            depth += 1;
            rest = &rest[1..];
        } else if c == '}' {
            if depth == 0 {
                return Ok((rest, RawStop::Line));
            }
            depth -= 1;
            rest = &rest[1..];
        } else {
            rest = &rest[c.len_utf8()..];
        }
    }
}

/// The raw arguments of a directive the tree does not model (`.pragma "nounroll";`,
/// `.loc 1 5 3`, `.file 1 "x.cu"`, `.section .debug_str { ... }`), trimmed, and whether
/// a `;` ended it (consumed). A `//` comment after the arguments is left for the caller;
/// `/* */` comments among them stay in the raw text. `.section` also takes a `{ }` group
/// that starts on a later line, the way nvcc writes debug sections.
pub(crate) fn raw_args<'a>(i: &'a str, name: &str) -> PResult<'a, (String, bool)> {
    let start = skip_hspace(i);
    let (mut rest, mut stop) = scan_raw(start)?;
    if name == "section" && matches!(stop, RawStop::Line) {
        let ahead = rest.trim_start_matches(is_space);
        if ahead.starts_with('{') {
            let (r, s) = scan_raw(ahead)?;
            rest = r;
            stop = s;
        }
    }
    let args = consumed(start, rest).trim_end_matches(is_space).to_string();
    match stop {
        RawStop::Semicolon => Ok((&rest[1..], (args, true))),
        RawStop::Line => Ok((rest, (args, false))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sp_skips_comments_of_both_kinds() {
        let (rest, ()) = sp(" /* a */ // b\n\t x").unwrap();
        assert_eq!(rest, "x");
        assert!(sp("/* open").is_err());
    }

    #[test]
    fn comments_in_a_span_come_back_in_order() {
        let got = comments_in("add /* one */ %r1, // two\n %r2");
        assert_eq!(
            got,
            vec![Comment::Block(" one ".into()), Comment::Line(" two".into())]
        );
    }

    #[test]
    fn register_components_and_modifiers() {
        assert_eq!(name_with_component("%tid.x, 1").unwrap(), (", 1", "%tid.x"));
        assert_eq!(name_with_component("foo.x").unwrap(), (".x", "foo"));
        assert_eq!(
            modifier("L1::no_allocate.v4").unwrap(),
            (".v4", "L1::no_allocate")
        );
        assert!(modifier("L1::").is_err());
    }

    #[test]
    fn integers_in_every_radix() {
        use crate::ast::Radix;
        assert_eq!(unsigned("0x1F;").unwrap(), (";", (31, Radix::Hex)));
        assert_eq!(unsigned("017").unwrap(), ("", (15, Radix::Octal)));
        assert_eq!(unsigned("0b101").unwrap(), ("", (5, Radix::Binary)));
        assert_eq!(unsigned("0").unwrap(), ("", (0, Radix::Dec)));
        assert!(unsigned("08").is_err());
        assert!(matches!(
            unsigned("99999999999999999999"),
            Err(nom::Err::Failure(_))
        ));
    }

    #[test]
    fn raw_directive_text() {
        assert_eq!(
            raw_args(" \"nounroll\"; x", "pragma").unwrap(),
            (" x", ("\"nounroll\"".to_string(), true))
        );
        assert_eq!(
            raw_args("\t1 2 3 // c\n", "loc").unwrap(),
            ("// c\n", ("1 2 3".to_string(), false))
        );
        assert_eq!(
            raw_args(" 1 /* a */ 2\n", "loc").unwrap(),
            ("\n", ("1 /* a */ 2".to_string(), false))
        );
        let (rest, (args, semi)) =
            raw_args("\t.debug_str\n\t{\nL:\n.b8 1 // }\n\n\t}\nX", "section").unwrap();
        assert_eq!(rest, "\nX");
        assert_eq!(args, ".debug_str\n\t{\nL:\n.b8 1 // }\n\n\t}");
        assert!(!semi);
    }
}
