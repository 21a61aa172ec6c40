//! The parts of `.tune` text that brackets inside do not count: string literals (plain and
//! triple-quoted, with escapes) and comments (`// ...` and `/* ... */`).
//!
//! Two byte scanners look at text without parsing it, and must agree on where these end: the
//! parser's pre-check of bracket depth (which guards pest's recursion) and the language server's
//! completion, which finds the brackets open around the cursor in text that may not parse.

/// A string or comment that starts at some index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opaque {
    /// The index just past it (at most the text's length).
    pub end: usize,
    /// A string literal (not a comment).
    pub string: bool,
    /// It ends before the text does: a closing quote or `*/`, or, for a plain string, the end of
    /// its line; a line comment is always closed.
    pub closed: bool,
}

/// The string or comment that starts at `bytes[i]`, if one does.
pub fn opaque_at(bytes: &[u8], i: usize) -> Option<Opaque> {
    let rest = bytes.get(i..)?;
    if rest.starts_with(b"//") {
        let end = rest.iter().position(|b| *b == b'\n').map_or(bytes.len(), |n| i + n);
        return Some(Opaque { end, string: false, closed: true });
    }
    if rest.starts_with(b"/*") {
        return Some(match rest[2..].windows(2).position(|w| w == b"*/") {
            Some(n) => Opaque { end: i + 2 + n + 2, string: false, closed: true },
            None => Opaque { end: bytes.len(), string: false, closed: false },
        });
    }
    if rest.first() != Some(&b'"') {
        return None;
    }
    let triple = rest.starts_with(b"\"\"\"");
    let mut j = i + if triple { 3 } else { 1 };
    while j < bytes.len() {
        if bytes[j] == b'\\' {
            j += 2;
            continue;
        }
        if triple && bytes[j..].starts_with(b"\"\"\"") {
            return Some(Opaque { end: j + 3, string: true, closed: true });
        }
        if !triple && (bytes[j] == b'"' || bytes[j] == b'\n') {
            return Some(Opaque { end: j + 1, string: true, closed: true });
        }
        j += 1;
    }
    Some(Opaque { end: bytes.len(), string: true, closed: false })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str, i: usize) -> Option<Opaque> {
        opaque_at(text.as_bytes(), i)
    }

    #[test]
    fn strings_and_comments_end_where_the_grammar_ends_them() {
        assert_eq!(at(r#"x = "a{\"b" }"#, 4), Some(Opaque { end: 11, string: true, closed: true }));
        assert_eq!(at("\"\"\"a \" { \"\"\" }", 0), Some(Opaque { end: 12, string: true, closed: true }));
        assert_eq!(at("\"open {\nnext", 0), Some(Opaque { end: 8, string: true, closed: true }), "a line ends it");
        assert_eq!(at("\"open {", 0), Some(Opaque { end: 7, string: true, closed: false }));
        assert_eq!(at("// { (\nx", 0), Some(Opaque { end: 6, string: false, closed: true }));
        assert_eq!(at("/* { */ x", 0), Some(Opaque { end: 7, string: false, closed: true }));
        assert_eq!(at("/* {", 0), Some(Opaque { end: 4, string: false, closed: false }));
        assert_eq!(at("{ x", 0), None);
        assert_eq!(at("\"\\", 0), Some(Opaque { end: 2, string: true, closed: false }), "an escape at the end");
        assert_eq!(at("x", 5), None);
    }
}
