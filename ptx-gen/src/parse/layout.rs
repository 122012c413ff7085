//! The line-oriented loop shared by module items and body statements.
//!
//! PTX is free-form, but the tree keeps two things that live on lines: blank lines (one
//! `Blank` per line holding only whitespace) and comments that stand where an item or a
//! statement could (one `Comment` each, also when they trail a statement on its line).
//! Everything else is handed to the caller's element parser, which ends right after its
//! last token so that the newline after it is seen here.

use crate::ast::{Comment, Item, Statement};

use super::lex::{block_comment, fail, line_comment, skip_hspace, PResult};

/// What the loop itself produces.
pub(crate) trait LineElement: Sized {
    fn blank() -> Self;
    fn comment(c: Comment) -> Self;
}

impl LineElement for Item {
    fn blank() -> Self {
        Item::Blank
    }
    fn comment(c: Comment) -> Self {
        Item::Comment(c)
    }
}

impl LineElement for Statement {
    fn blank() -> Self {
        Statement::Blank
    }
    fn comment(c: Comment) -> Self {
        Statement::Comment(c)
    }
}

/// Parses elements until the end of input or a `}` (left for the caller). `at_line_start`
/// says whether the first line began at `i` (true for a whole text, false right after a
/// `{`, whose own line is not blank).
pub(crate) fn lines<'a, T: LineElement>(
    i: &'a str,
    at_line_start: bool,
    mut element: impl FnMut(&'a str) -> PResult<'a, Vec<T>>,
) -> PResult<'a, Vec<T>> {
    lines_into(i, at_line_start, |s, out| {
        let (r, mut parsed) = element(s)?;
        out.append(&mut parsed);
        Ok((r, ()))
    })
}

/// [`lines`] with an element parser that appends what it read to the output itself (no
/// vector per element).
pub(crate) fn lines_into<'a, T: LineElement>(
    i: &'a str,
    mut at_line_start: bool,
    mut element: impl FnMut(&'a str, &mut Vec<T>) -> PResult<'a, ()>,
) -> PResult<'a, Vec<T>> {
    let mut out = Vec::new();
    let mut rest = i;
    loop {
        rest = skip_hspace(rest);
        if rest.is_empty() || rest.starts_with('}') {
            return Ok((rest, out));
        }
        if let Some(r) = rest.strip_prefix('\n') {
            if at_line_start {
                out.push(T::blank());
            }
            at_line_start = true;
            rest = r;
            continue;
        }
        let r = if rest.starts_with("//") {
            let (r, c) = line_comment(rest)?;
            out.push(T::comment(c));
            r
        } else if rest.starts_with("/*") {
            let (r, c) = block_comment(rest)?;
            out.push(T::comment(c));
            r
        } else {
            element(rest, &mut out)?.0
        };
        if r.len() >= rest.len() {
            // An element parser that consumed nothing would loop forever.
            return fail(rest, "a directive or statement");
        }
        at_line_start = false;
        rest = r;
    }
}
