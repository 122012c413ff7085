//! PTX text -> `ast::Module` (nom).
//!
//! Reads the canonical layout of `emit::print_module` back to the same tree, so that
//! print(parse(text)) == text for everything we print, and reads real `nvcc -ptx` output:
//! free-form whitespace, `//` and `/* */` comments between any two tokens, statements split
//! over lines.
//!
//! Layout rules (what the tree keeps of the text):
//! - a line holding only whitespace is one `Blank`;
//! - a comment where an item or statement could start is a `Comment`, also when it trails
//!   a statement on the same line; a comment between the tokens of one statement becomes a
//!   `Comment` right after it (before it, for a function header);
//! - directives the tree does not model (`.file`, `.loc`, `.pragma`, `.section { ... }`)
//!   keep their arguments as raw text.
//!
//! Speed: labels and instructions written the plain way `emit` writes them (single
//! spaces, `, ` between operands, decimal, `0x` and `0f`/`0d` literals) are read by a
//! byte-level fast path (`fast`) that builds the same tree the statement parser builds;
//! every other statement goes through the statement parser. `fast` also reads a whole
//! one-entry module for parity without building a tree for its body.
//!
//! Robustness: the parser never panics. It slices only at positions found by ASCII search,
//! rejects integers that do not fit, and bounds every recursion (blocks, initializer lists,
//! operand lists) at 64 levels, so hostile input gets a [`ParseError`], not a crash.

pub(crate) mod body;
mod decl;
pub(crate) mod fast;
mod function;
mod layout;
mod lex;
mod operand;

use crate::ast::{Item, Module, StateSpace};

use decl::{linkage_from_name, var_decl};
use lex::{
    comma_list, comments_in, consumed, dot_word, fail, peek_dot_word, raw_args, sp, u32_value,
    word, PErr, PResult,
};

/// Why a text is not PTX we can read: where (1-based line and column, in characters) and
/// what the grammar expected there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: expected {expected}, found {found}")]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub expected: String,
    /// A short snippet of the text at that position, or `end of input`.
    pub found: String,
}

impl ParseError {
    fn new(text: &str, err: PErr<'_>) -> ParseError {
        let offset = text.len().saturating_sub(err.at.len());
        let before = text.get(..offset).unwrap_or(text);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |p| p + 1);
        let column = before.get(line_start..).map_or(0, |l| l.chars().count()) + 1;
        ParseError {
            line,
            column,
            expected: err.expected.into_owned(),
            found: snippet(err.at),
        }
    }
}

/// Up to 24 characters of the rest of the line, quoted.
fn snippet(at: &str) -> String {
    if at.is_empty() {
        return "end of input".into();
    }
    let line: String = at.chars().take_while(|&c| c != '\n').take(24).collect();
    if line.trim().is_empty() {
        return "end of line".into();
    }
    format!("`{line}`")
}

/// Parses a whole PTX module.
pub fn parse_module(text: &str) -> Result<Module, ParseError> {
    match layout::lines(text, true, item) {
        Ok(("", items)) => Ok(Module { items }),
        Ok((rest, _)) => Err(ParseError::new(
            text,
            PErr {
                at: rest,
                expected: "a module directive (this `}` closes nothing)".into(),
            },
        )),
        Err(nom::Err::Error(e) | nom::Err::Failure(e)) => Err(ParseError::new(text, e)),
        Err(nom::Err::Incomplete(_)) => Err(ParseError::new(
            text,
            PErr {
                at: "",
                expected: "more input".into(),
            },
        )),
    }
}

/// One module-scope item, then the comments written between its tokens (before it, for a
/// function header; raw directives keep theirs in their text).
fn item(i: &str) -> PResult<'_, Vec<Item>> {
    let (rest, mut items) = item_only(i)?;
    let simple = matches!(
        items.last(),
        Some(Item::Version { .. } | Item::Target(_) | Item::AddressSize(_))
    );
    if simple {
        items.extend(
            comments_in(consumed(i, rest))
                .into_iter()
                .map(Item::Comment),
        );
    }
    Ok((rest, items))
}

fn item_only(i: &str) -> PResult<'_, Vec<Item>> {
    let Some(name) = peek_dot_word(i) else {
        return fail(
            i,
            "a module directive (.version, .target, .entry, .func, .global, ...)",
        );
    };
    let (after, _) = dot_word(i)?;
    match name {
        "version" => {
            let (r, ()) = sp(after)?;
            let (r, major) = u32_value(r)?;
            let Some(r) = r.strip_prefix('.') else {
                return fail(r, "`.` in `.version MAJOR.MINOR`");
            };
            let (r, minor) = u32_value(r)?;
            Ok((r, vec![Item::Version { major, minor }]))
        }
        "target" => {
            let (r, ()) = sp(after)?;
            let (r, opts) = comma_list(r, word)?;
            let opts = opts.into_iter().map(String::from).collect();
            Ok((r, vec![Item::Target(opts)]))
        }
        "address_size" => {
            let (r, ()) = sp(after)?;
            let (r, n) = u32_value(r)?;
            Ok((r, vec![Item::AddressSize(n)]))
        }
        "entry" | "func" => function_item(i, i, None),
        _ => {
            if let Some(linkage) = linkage_from_name(name) {
                let (at, ()) = sp(after)?;
                return match peek_dot_word(at) {
                    Some("entry" | "func") => function_item(i, at, Some(linkage)),
                    _ => var_item(i, at, Some(linkage)),
                };
            }
            if StateSpace::from_name(name).is_some() {
                return var_item(i, i, None);
            }
            let (r, (args, semicolon)) = raw_args(after, name)?;
            let d = Item::Directive {
                name: name.into(),
                args,
                semicolon,
            };
            Ok((r, vec![d]))
        }
    }
}

fn function_item<'a>(
    start: &'a str,
    at: &'a str,
    linkage: Option<crate::ast::Linkage>,
) -> PResult<'a, Vec<Item>> {
    let (rest, (f, comments)) = function::function(start, at, linkage)?;
    let mut out: Vec<Item> = comments.into_iter().map(Item::Comment).collect();
    out.push(Item::Function(f));
    Ok((rest, out))
}

fn var_item<'a>(
    start: &'a str,
    at: &'a str,
    linkage: Option<crate::ast::Linkage>,
) -> PResult<'a, Vec<Item>> {
    let (rest, v) = var_decl(at, linkage)?;
    let mut out = vec![Item::Var(v)];
    out.extend(
        comments_in(consumed(start, rest))
            .into_iter()
            .map(Item::Comment),
    );
    Ok((rest, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_line_column_and_expectation() {
        let err = parse_module(".version 7.0\n.target sm_80\nfoo bar;\n").unwrap_err();
        assert_eq!((err.line, err.column), (3, 1));
        assert!(err.expected.contains("module directive"), "{err}");
        assert_eq!(err.found, "`foo bar;`");

        let err = parse_module(".entry k()\n{\n\tadd.s32 %r1, %r2 %r3;\n}\n").unwrap_err();
        assert_eq!((err.line, err.column), (3, 19), "{err}");
        assert!(err.expected.contains("`,` or `;`"), "{err}");

        let err = parse_module(".entry k()\n{\n\tret;\n").unwrap_err();
        assert_eq!(err.found, "end of input", "{err}");
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let err = parse_module("// é\n.entry é").unwrap_err();
        assert_eq!((err.line, err.column), (2, 8), "{err}");
    }
}
