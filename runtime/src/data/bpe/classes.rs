//! The Unicode character classes that the split patterns test, taken from `regex-syntax`.
//!
//! `tokenizers` runs its split regexes with fancy-regex, which hands every class (`\s`, `\p{L}`,
//! `\p{Lu}`, ...) to `regex-syntax`. The tables here are built from the same crate by parsing the
//! same class expressions, so a character belongs to a class here exactly when the regex engine
//! would say so, whatever Unicode version that crate carries. Each character gets one byte of
//! flags: a table for the Basic Multilingual Plane, and a range search for the planes above it.

use std::sync::OnceLock;

use regex_syntax::hir::{Class, HirKind};

/// `\p{L}`.
pub(super) const LETTER: u8 = 1;
/// `\p{N}`.
pub(super) const NUMBER: u8 = 1 << 1;
/// `\s` (the White_Space property).
pub(super) const SPACE: u8 = 1 << 2;
/// `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]`: what can start a word in the cased patterns (o200k).
pub(super) const UPPERISH: u8 = 1 << 3;
/// `[\p{Ll}\p{Lm}\p{Lo}\p{M}]`: what continues a word in the cased patterns.
pub(super) const LOWERISH: u8 = 1 << 4;
/// `\p{M}`.
pub(super) const MARK: u8 = 1 << 5;
/// `\p{P}`.
pub(super) const PUNCT: u8 = 1 << 6;
/// `\p{S}`.
pub(super) const SYMBOL: u8 = 1 << 7;

/// The class expressions, in the order of the flag bits.
const EXPRESSIONS: [&str; 8] = [
    r"\p{L}",
    r"\p{N}",
    r"\s",
    r"[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]",
    r"[\p{Ll}\p{Lm}\p{Lo}\p{M}]",
    r"\p{M}",
    r"\p{P}",
    r"\p{S}",
];

/// The letters of the contractions `'s|'t|'re|'ve|'m|'ll|'d`, matched case-insensitively.
const CONTRACTION_LETTERS: [char; 8] = ['s', 't', 'r', 'e', 'v', 'm', 'l', 'd'];

/// The flags of every character, and the case-insensitive forms of the contraction letters.
pub(super) struct Classes {
    bmp: Box<[u8]>,
    /// Per flag bit, the sorted ranges above U+FFFF.
    astral: Vec<Vec<(u32, u32)>>,
    /// Per contraction letter, every character that `(?i:x)` matches.
    folds: Vec<(char, Vec<char>)>,
}

/// The tables, built once per process.
pub(super) fn classes() -> &'static Classes {
    static CLASSES: OnceLock<Classes> = OnceLock::new();
    CLASSES.get_or_init(Classes::build)
}

/// The ranges of a class expression, as `regex-syntax` parses it.
fn ranges(expression: &str) -> Vec<(u32, u32)> {
    let hir = regex_syntax::ParserBuilder::new()
        .build()
        .parse(expression)
        .expect("the class expressions are valid regex syntax");
    match hir.kind() {
        HirKind::Class(Class::Unicode(class)) => {
            class.ranges().iter().map(|r| (u32::from(r.start()), u32::from(r.end()))).collect()
        }
        HirKind::Literal(literal) => std::str::from_utf8(&literal.0)
            .expect("a literal of a str pattern is UTF-8")
            .chars()
            .map(|c| (u32::from(c), u32::from(c)))
            .collect(),
        other => panic!("{expression} parses to {other:?}, not a class"),
    }
}

impl Classes {
    fn build() -> Classes {
        let mut bmp = vec![0u8; 0x10000].into_boxed_slice();
        let mut astral = Vec::with_capacity(EXPRESSIONS.len());
        for (bit, expression) in EXPRESSIONS.iter().enumerate() {
            let flag = 1u8 << bit;
            let ranges = ranges(expression);
            for &(start, end) in &ranges {
                for c in start..=end.min(0xFFFF) {
                    bmp[c as usize] |= flag;
                }
            }
            astral.push(
                ranges
                    .into_iter()
                    .filter(|&(_, end)| end > 0xFFFF)
                    .map(|(start, end)| (start.max(0x10000), end))
                    .collect(),
            );
        }
        let folds = CONTRACTION_LETTERS
            .iter()
            .map(|&letter| {
                let chars = ranges(&format!("(?i:{letter})"))
                    .into_iter()
                    .flat_map(|(start, end)| (start..=end).filter_map(char::from_u32))
                    .collect();
                (letter, chars)
            })
            .collect();
        Classes { bmp, astral, folds }
    }

    /// The flags of `c`.
    #[inline]
    pub(super) fn of(&self, c: char) -> u8 {
        let code = u32::from(c);
        match self.bmp.get(code as usize) {
            Some(&flags) => flags,
            None => self.astral_flags(code),
        }
    }

    fn astral_flags(&self, code: u32) -> u8 {
        let mut flags = 0;
        for (bit, ranges) in self.astral.iter().enumerate() {
            let i = ranges.partition_point(|&(_, end)| end < code);
            if ranges.get(i).is_some_and(|&(start, _)| start <= code) {
                flags |= 1 << bit;
            }
        }
        flags
    }

    /// Whether `c` matches the contraction letter `letter` case-insensitively (`(?i:s)` also
    /// matches `S` and `ſ`).
    #[inline]
    pub(super) fn folds_to(&self, c: char, letter: char) -> bool {
        if c.is_ascii() {
            return c.eq_ignore_ascii_case(&letter);
        }
        self.folds.iter().any(|(l, chars)| *l == letter && chars.contains(&c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_agree_with_the_regex_engine() {
        let classes = classes();
        for (bit, expression) in EXPRESSIONS.iter().enumerate() {
            let regex = fancy_regex::Regex::new(&format!("^{expression}$")).expect("regex");
            // Every BMP character, and a sample of the planes above it.
            for code in (0..0x10000u32).chain((0x10000..0x110000).step_by(97)) {
                let Some(c) = char::from_u32(code) else { continue };
                let mut buf = [0u8; 4];
                assert_eq!(
                    classes.of(c) & (1 << bit) != 0,
                    regex.is_match(c.encode_utf8(&mut buf)).expect("matches"),
                    "{expression} on U+{code:04X}"
                );
            }
        }
    }

    #[test]
    fn contraction_letters_fold_like_the_regex_engine() {
        let classes = classes();
        assert!(classes.folds_to('ſ', 's') && classes.folds_to('S', 's') && !classes.folds_to('t', 's'));
        for letter in CONTRACTION_LETTERS {
            let regex = fancy_regex::Regex::new(&format!("^(?i:{letter})$")).expect("regex");
            for code in 0..0x20000u32 {
                let Some(c) = char::from_u32(code) else { continue };
                let mut buf = [0u8; 4];
                assert_eq!(
                    classes.folds_to(c, letter),
                    regex.is_match(c.encode_utf8(&mut buf)).expect("matches"),
                    "{letter} U+{code:04X}"
                );
            }
        }
    }
}
