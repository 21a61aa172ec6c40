//! Trivia: the comments of a `.tune` text, recovered by position.
//!
//! The grammar makes comments silent, so the AST has none. The formatter gets them back here with
//! a small scanner that knows just enough of the lexical structure to tell a comment from the
//! inside of a string: plain and triple-quoted strings (with their escapes) are skipped, `//` runs
//! to the end of the line, `/*` to the first `*/`. On a text that parsed, this finds exactly the
//! comments pest skipped, because no other token can contain `"` or `/`. On a text that did not
//! parse the answer is a best effort, and the formatter never asks for it.

use crate::syntax::ast::Span;

/// One comment, with its delimiters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Comment {
    pub(crate) span: Span,
    /// `/* ... */` rather than `// ...`.
    pub(crate) block: bool,
}

/// Every comment of `text`, in order.
pub(crate) fn comments(text: &str) -> Vec<Comment> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => i = string_end(bytes, i),
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                let end = bytes[i..].iter().position(|&b| b == b'\n').map_or(bytes.len(), |n| i + n);
                out.push(Comment { span: Span::new(i, end), block: false });
                i = end;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let end = text[i + 2..].find("*/").map_or(bytes.len(), |n| i + 2 + n + 2);
                out.push(Comment { span: Span::new(i, end), block: true });
                i = end;
            }
            _ => i += 1,
        }
    }
    out
}

/// The offset just past the string that starts at `start` (or the end of the text).
fn string_end(bytes: &[u8], start: usize) -> usize {
    let triple = bytes[start..].starts_with(b"\"\"\"");
    let mut i = start + if triple { 3 } else { 1 };
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            i += 2;
            continue;
        }
        if triple && bytes[i..].starts_with(b"\"\"\"") {
            return i + 3;
        }
        if !triple && bytes[i] == b'"' {
            return i + 1;
        }
        if !triple && bytes[i] == b'\n' {
            return i;
        }
        i += 1;
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(text: &str) -> Vec<&str> {
        comments(text).iter().map(|c| &text[c.span.range()]).collect()
    }

    #[test]
    fn finds_line_and_block_comments() {
        assert_eq!(texts("// a\nx = 1 /* b */ y = 2 // c"), ["// a", "/* b */", "// c"]);
    }

    #[test]
    fn skips_strings_and_their_escapes() {
        assert_eq!(texts(r#"a = "// no" b = "\" /* no" // yes"#), ["// yes"]);
        assert_eq!(texts("a = \"\"\"\n// no \\\"\"\" \"\"\" /* yes */"), ["/* yes */"]);
    }

    #[test]
    fn block_comments_do_not_nest_and_may_be_unterminated() {
        assert_eq!(texts("/* a /* b */ c */"), ["/* a /* b */"]);
        assert_eq!(texts("x /* open"), ["/* open"]);
    }

    #[test]
    fn comment_text_may_hold_any_character() {
        assert_eq!(texts("// é \"\n/* ✓ */"), ["// é \"", "/* ✓ */"]);
    }
}
