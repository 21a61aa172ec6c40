//! An open document: its text, and the conversion between LSP positions and byte offsets.
//!
//! LSP positions are a line and a column counted in UTF-16 code units (the protocol's default
//! encoding, which this server always uses). The compiler works in byte offsets. `LineIndex` maps
//! between the two; a position past the end of its line clamps to the line's end, and a line past
//! the end of the text clamps to the end of the text, so no client position can slice outside the
//! text or inside a character. Lines end at `\n` (a `\r` before it stays part of the line, which is
//! what CRLF clients count too).

use lsp_types::{Position, Range, TextDocumentContentChangeEvent};
use tunec_compiler::syntax::ast::Span;

/// Line starts of one text (the compiler's index), with UTF-16 columns.
pub struct LineIndex(tunec_compiler::diagnostics::LineIndex);

impl LineIndex {
    pub fn new(text: &str) -> Self {
        LineIndex(tunec_compiler::diagnostics::LineIndex::new(text))
    }

    /// The byte offset of an LSP position, clamped into the text and onto a character boundary.
    pub fn offset(&self, text: &str, position: Position) -> usize {
        let Some((start, end)) = self.0.line_range(text, position.line as usize) else { return text.len() };
        let mut units = 0u32;
        for (i, ch) in text[start..end].char_indices() {
            if units >= position.character {
                return start + i;
            }
            units += u32::try_from(ch.len_utf16()).unwrap_or(2);
        }
        end
    }

    /// The LSP position of a byte offset (clamped into the text).
    pub fn position(&self, text: &str, offset: usize) -> Position {
        let (line, start, offset) = self.0.locate(text, offset);
        let character: usize = text[start..offset].chars().map(char::len_utf16).sum();
        Position {
            line: u32::try_from(line).unwrap_or(u32::MAX),
            character: u32::try_from(character).unwrap_or(u32::MAX),
        }
    }

    pub fn range(&self, text: &str, span: Span) -> Range {
        Range { start: self.position(text, span.start as usize), end: self.position(text, span.end as usize) }
    }
}

/// The text of an open document and its version.
pub struct Document {
    pub text: String,
    pub version: i32,
    pub index: LineIndex,
}

impl Document {
    pub fn new(text: String, version: i32) -> Self {
        let index = LineIndex::new(&text);
        Document { text, version, index }
    }

    /// Applies the changes of one `didChange`, in order: a change with a range replaces that
    /// range, one without replaces the whole text.
    pub fn apply(&mut self, changes: Vec<TextDocumentContentChangeEvent>, version: i32) {
        for change in changes {
            match change.range {
                Some(range) => {
                    let start = self.index.offset(&self.text, range.start);
                    let end = self.index.offset(&self.text, range.end).max(start);
                    self.text.replace_range(start..end, &change.text);
                }
                None => self.text = change.text,
            }
            self.index = LineIndex::new(&self.text);
        }
        self.version = version;
    }

    pub fn offset(&self, position: Position) -> usize {
        self.index.offset(&self.text, position)
    }

    pub fn range(&self, span: Span) -> Range {
        self.index.range(&self.text, span)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(line: u32, character: u32) -> Position {
        Position { line, character }
    }

    #[test]
    fn columns_count_utf16_code_units() {
        // `é` is one UTF-16 unit and two bytes; `😀` is two units and four bytes.
        let text = "a = \"é😀x\"\nb";
        let index = LineIndex::new(text);
        assert_eq!(index.offset(text, pos(0, 5)), 5, "before é");
        assert_eq!(index.offset(text, pos(0, 6)), 7, "after é");
        assert_eq!(index.offset(text, pos(0, 8)), 11, "after 😀");
        assert_eq!(index.offset(text, pos(0, 7)), 11, "inside 😀 clamps to a boundary");
        assert_eq!(index.position(text, 11), pos(0, 8));
        assert_eq!(index.position(text, 14), pos(1, 0));
    }

    #[test]
    fn positions_out_of_range_clamp() {
        let text = "ab\ncd";
        let index = LineIndex::new(text);
        assert_eq!(index.offset(text, pos(0, 99)), 2, "past the end of the line");
        assert_eq!(index.offset(text, pos(9, 0)), text.len(), "past the last line");
        assert_eq!(index.position(text, 999), pos(1, 2));
    }

    #[test]
    fn incremental_changes_apply_in_order() {
        let mut doc = Document::new("pipeline p {\n  budget = $1\n}\n".to_owned(), 1);
        let change = |sl, sc, el, ec, text: &str| TextDocumentContentChangeEvent {
            range: Some(Range { start: pos(sl, sc), end: pos(el, ec) }),
            range_length: None,
            text: text.to_owned(),
        };
        doc.apply(vec![change(1, 12, 1, 13, "150"), change(1, 2, 1, 2, "// é\n  ")], 2);
        assert_eq!(doc.text, "pipeline p {\n  // é\n  budget = $150\n}\n");
        assert_eq!(doc.version, 2);
        doc.apply(vec![TextDocumentContentChangeEvent { range: None, range_length: None, text: "x".into() }], 3);
        assert_eq!(doc.text, "x");
    }
}
