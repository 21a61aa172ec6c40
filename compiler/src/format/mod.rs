//! The formatter: `.tune` text in, the same program in its one canonical layout out.
//!
//! `format` parses the text (a file that does not parse is returned as its diagnostics, never
//! guessed at), recovers the comments by position (`trivia.rs`, since the grammar drops them),
//! and prints the AST again. Literal tokens (strings, numbers, units) are copied from the source
//! byte for byte, so `10_000`, `1h30m` and a triple-quoted string keep their spelling and their
//! value; everything between tokens is decided here. The layout:
//!
//! - two spaces of indentation per level, lines of at most [`WIDTH`] characters where the
//!   grammar lets a line break (a long string is never split);
//! - pipeline items, node bodies, `target` and `defaults` blocks: one item or field per line,
//!   without commas;
//! - calls, lists, records and variants inside values: on one line, comma-separated, when they fit
//!   and hold no comment; otherwise one element per line, with trailing commas in calls and lists;
//! - the `=` of consecutive one-line fields is aligned (a blank line, a comment line or a
//!   multi-line field ends the group), as `terraform fmt` aligns attributes;
//! - blank lines between items and fields are kept, at most one in a row, and dropped right after
//!   an opening and before a closing brace;
//! - an empty node body or target block (`{}`) is dropped, since it means the same as none.
//!
//! **Comments.** Every comment is printed exactly once, in its original order. Each sequence of
//! elements (items, fields, arguments, list values) is a list of *slots*: before an element, the
//! comments not yet printed that start before it are printed on their own lines (leading
//! comments); after an element, those on the same line as its end are kept at the end of that line
//! (trailing comments), and so are those inside it that no nested slot took, such as one between a
//! key and its `=`. Comments before a closing bracket stay inside it. A container that holds a
//! comment is always broken over lines, so a `//` comment never swallows code.
//!
//! The result is idempotent (`format(format(x)) == format(x)`) and check-equivalent: it parses to
//! the same AST modulo spans and gets the same diagnostics modulo spans. `compiler/tests/format.rs`
//! tests both on every fixture and on generated input. Column widths count Unicode scalar values,
//! not display cells; that only matters for strings with wide characters, which are never broken.

mod trivia;

use crate::diagnostics::{Diagnostic, FileId};
use crate::syntax::ast::{Arg, Call, Defaults, Field, File, Item, Node, Pipeline, Span, Target, Value, ValueKind};
use crate::syntax::parse_file;
use trivia::Comment;

/// The line width the layout aims for.
pub const WIDTH: usize = 100;

const INDENT: &str = "  ";

/// Formats a whole `.tune` text. The diagnostics of a text that does not parse point into
/// `FileId(0)`.
pub fn format(text: &str) -> Result<String, Vec<Diagnostic>> {
    let file = parse_file(text, FileId(0))?;
    let mut printer = Printer { text, comments: trivia::comments(text), next: 0, out: String::new() };
    printer.file(&file);
    Ok(printer.out)
}

/// One element of a sequence: what a slot holds.
#[derive(Clone, Copy)]
enum Elem<'a> {
    Pipeline(&'a Pipeline),
    Defaults(&'a Defaults),
    Item(&'a Item),
    Field(&'a Field),
    Arg(&'a Arg),
    Value(&'a Value),
}

impl<'a> Elem<'a> {
    fn span(self) -> Span {
        match self {
            Elem::Pipeline(p) => p.span,
            Elem::Defaults(d) => d.span,
            Elem::Item(item) => match item {
                Item::Target(t) => t.span,
                Item::Param(p) => p.span,
                Item::Defaults(d) => d.span,
                Item::Node(n) => n.span,
                Item::Setting(f) => f.span,
            },
            Elem::Field(f) => f.span,
            Elem::Arg(a) => a.name.as_ref().map_or(a.value.span, |n| n.span.cover(a.value.span)),
            Elem::Value(v) => v.span,
        }
    }

    /// The field, when this element is one (a field or a pipeline setting).
    fn field(self) -> Option<&'a Field> {
        match self {
            Elem::Field(f) | Elem::Item(Item::Setting(f)) => Some(f),
            _ => None,
        }
    }
}

struct Printer<'a> {
    text: &'a str,
    comments: Vec<Comment>,
    /// The first comment not printed yet.
    next: usize,
    out: String,
}

impl Printer<'_> {
    fn file(&mut self, file: &File) {
        let mut elems: Vec<Elem<'_>> = file.pipelines.iter().map(Elem::Pipeline).collect();
        elems.extend(file.defaults.iter().map(Elem::Defaults));
        elems.sort_by_key(|e| e.span().start);
        self.seq(&elems, self.text.len(), 0, false);
        if !self.out.is_empty() {
            self.out.push('\n');
        }
    }

    // Output helpers.

    /// Ends the current line (without trailing blanks) and indents the next one. At the very
    /// start of the output it does nothing, so the file starts with its first token.
    fn line(&mut self, indent: usize) {
        if self.out.is_empty() {
            return;
        }
        self.trim_end();
        self.out.push('\n');
        for _ in 0..indent {
            self.out.push_str(INDENT);
        }
    }

    fn blank_line(&mut self) {
        if !self.out.is_empty() {
            self.trim_end();
            self.out.push('\n');
        }
    }

    fn trim_end(&mut self) {
        let len = self.out.trim_end_matches([' ', '\t']).len();
        self.out.truncate(len);
    }

    /// The column the next character goes to, in characters.
    fn col(&self) -> usize {
        let start = self.out.rfind('\n').map_or(0, |i| i + 1);
        self.out[start..].chars().count()
    }

    fn src(&self, span: Span) -> &str {
        self.text.get(span.range()).unwrap_or("")
    }

    // Comments.

    fn comment_text(&self, c: Comment) -> &str {
        let text = self.src(c.span);
        if c.block {
            text
        } else {
            text.trim_end()
        }
    }

    fn has_comment(&self, start: u32, end: u32) -> bool {
        let i = self.comments.partition_point(|c| c.span.start < start);
        self.comments.get(i).is_some_and(|c| c.span.start < end)
    }

    /// Whether `text[from..to]` holds an empty line, comments aside.
    fn blank_between(&self, from: u32, to: u32) -> bool {
        let mut newlines = 0;
        let mut pos = from as usize;
        let to = (to as usize).min(self.text.len());
        let bytes = self.text.as_bytes();
        while pos < to {
            if let Some(c) = self.comments.iter().find(|c| c.span.start as usize == pos) {
                newlines = 0;
                pos = c.span.end as usize;
                continue;
            }
            match bytes[pos] {
                b'\n' => {
                    newlines += 1;
                    if newlines >= 2 {
                        return true;
                    }
                }
                b' ' | b'\t' | b'\r' => {}
                _ => newlines = 0,
            }
            pos += 1;
        }
        false
    }

    /// Prints the comments that start before `pos` on lines of their own; returns where the last
    /// one ended.
    fn own_line_comments(&mut self, pos: u32, indent: usize, mut prev_end: Option<u32>) -> Option<u32> {
        while let Some(&c) = self.comments.get(self.next).filter(|c| c.span.start < pos) {
            if prev_end.is_some_and(|end| self.blank_between(end, c.span.start)) {
                self.blank_line();
            }
            self.line(indent);
            let text = self.comment_text(c).to_owned();
            self.out.push_str(&text);
            self.next += 1;
            prev_end = Some(c.span.end);
        }
        prev_end
    }

    /// Prints, at the end of the current line, the comments inside the element that ended at
    /// `end` that no slot took, and those on the same line after it (before `limit`). Once a `//`
    /// comment has ended the line, the rest go on lines of their own, at `indent`.
    fn trailing_comments(&mut self, mut end: u32, limit: u32, indent: usize) -> u32 {
        let elem_end = end;
        let mut after_line_comment = false;
        while let Some(&c) = self.comments.get(self.next) {
            let inside = c.span.start < elem_end;
            let same_line = c.span.start < limit
                && !self.text.get(end as usize..c.span.start as usize).is_some_and(|gap| gap.contains('\n'));
            if !inside && !same_line {
                break;
            }
            let text = self.comment_text(c).to_owned();
            if after_line_comment {
                self.line(indent);
            } else {
                self.out.push(' ');
            }
            self.out.push_str(&text);
            after_line_comment |= !c.block;
            self.next += 1;
            end = end.max(c.span.end);
        }
        end
    }

    // Sequences.

    /// Prints `elems` one per line at `indent`, with their comments, and the comments left before
    /// `close` (the offset of the closing bracket, or the end of the file). The caller prints the
    /// brackets.
    fn seq(&mut self, elems: &[Elem<'_>], close: usize, indent: usize, comma: bool) {
        let close = u32::try_from(close).unwrap_or(u32::MAX);
        let pads = self.alignment(elems, indent, comma);
        let mut prev_end: Option<u32> = None;
        for (i, elem) in elems.iter().enumerate() {
            let span = elem.span();
            prev_end = self.own_line_comments(span.start, indent, prev_end);
            if prev_end.is_some_and(|end| self.blank_between(end, span.start)) {
                self.blank_line();
            }
            self.line(indent);
            self.elem(*elem, indent, pads[i], usize::from(comma));
            if comma {
                self.out.push(',');
            }
            let limit = elems.get(i + 1).map_or(close, |e| e.span().start);
            prev_end = Some(self.trailing_comments(span.end, limit, indent));
        }
        self.own_line_comments(close, indent, prev_end);
    }

    /// The padding after each field's key that aligns the `=` of consecutive one-line fields.
    fn alignment(&self, elems: &[Elem<'_>], indent: usize, comma: bool) -> Vec<usize> {
        let suffix = usize::from(comma);
        let alignable: Vec<Option<usize>> = elems
            .iter()
            .map(|e| {
                let field = e.field()?;
                let key = field.key.name.chars().count();
                let col = indent * INDENT.len() + key + 3;
                (self.separator(field) == " = " && self.one_line(&field.value, col, suffix)).then_some(key)
            })
            .collect();
        let mut pads = vec![0; elems.len()];
        let mut group_start = 0;
        for i in 0..=elems.len() {
            let joins = i < elems.len()
                && i > group_start
                && alignable[i].is_some()
                && alignable[i - 1].is_some()
                && !self.separated(elems[i - 1].span(), elems[i].span().start);
            if !joins {
                let group = group_start..i;
                let width = group.clone().filter_map(|j| alignable[j]).max().unwrap_or(0);
                for j in group {
                    pads[j] = alignable[j].map_or(0, |key| width - key);
                }
                group_start = i;
            }
        }
        pads
    }

    /// Whether a blank line or a comment on a line of its own will lie between the element
    /// spanning `prev` and the one starting at `start`. The comments that `trailing_comments` puts
    /// at the end of the first element's line do not count; the ones it puts on lines of their own
    /// (after a `//` comment) do.
    fn separated(&self, prev: Span, start: u32) -> bool {
        let first = self.comments.partition_point(|c| c.span.start < prev.start);
        let mut line_end = prev.end;
        let mut after_line_comment = false;
        for c in self.comments[first..].iter().take_while(|c| c.span.start < start) {
            let own_line = c.span.start >= prev.end
                && self.text.get(line_end as usize..c.span.start as usize).is_some_and(|gap| gap.contains('\n'));
            if own_line || after_line_comment {
                return true;
            }
            after_line_comment = !c.block;
            line_end = line_end.max(c.span.end);
        }
        self.blank_between(line_end, start)
    }

    fn elem(&mut self, elem: Elem<'_>, indent: usize, pad: usize, suffix: usize) {
        match elem {
            Elem::Pipeline(p) => self.pipeline(p, indent),
            Elem::Defaults(d) => self.defaults(d, indent),
            Elem::Item(item) => self.item(item, indent, pad),
            Elem::Field(f) => self.field(f, indent, pad, suffix),
            Elem::Arg(a) => {
                if let Some(name) = &a.name {
                    self.out.push_str(&name.name);
                    self.out.push_str(" = ");
                }
                self.value(&a.value, indent, self.col(), suffix);
            }
            Elem::Value(v) => self.value(v, indent, self.col(), suffix),
        }
    }

    // Items.

    fn pipeline(&mut self, p: &Pipeline, indent: usize) {
        self.out.push_str("pipeline ");
        self.out.push_str(&p.name.name);
        let elems: Vec<Elem<'_>> = p.items.iter().map(Elem::Item).collect();
        self.block(&elems, p.name.span.end, p.span, indent, true);
    }

    /// ` { elems }` after a header that ends at `header_end`, for a construct spanning `span`
    /// whose last character is the closing brace. Without elements and comments it prints ` {}`
    /// when `keep_empty`, and nothing otherwise.
    fn block(&mut self, elems: &[Elem<'_>], header_end: u32, span: Span, indent: usize, keep_empty: bool) {
        let has_brace = span.end > header_end;
        if elems.is_empty() && !(has_brace && self.has_comment(header_end, span.end)) {
            if keep_empty {
                self.out.push_str(" {}");
            }
            return;
        }
        self.out.push_str(" {");
        self.seq(elems, span.end.saturating_sub(1) as usize, indent + 1, false);
        self.line(indent);
        self.out.push('}');
    }

    fn defaults(&mut self, d: &Defaults, indent: usize) {
        self.out.push_str("defaults ");
        let path: Vec<&str> = d.path.iter().map(|seg| seg.name.as_str()).collect();
        self.out.push_str(&path.join("."));
        let header_end = d.path.last().map_or(d.span.start, |seg| seg.span.end);
        let elems: Vec<Elem<'_>> = d.fields.iter().map(Elem::Field).collect();
        self.block(&elems, header_end, d.span, indent, true);
    }

    fn item(&mut self, item: &Item, indent: usize, pad: usize) {
        match item {
            Item::Target(t) => self.target(t, indent),
            Item::Param(p) => {
                self.out.push_str("param ");
                self.out.push_str(&p.name.name);
                self.out.push_str(" = ");
                self.value(&p.value, indent, self.col(), 0);
            }
            Item::Defaults(d) => self.defaults(d, indent),
            Item::Node(n) => self.node(n, indent),
            Item::Setting(f) => self.field(f, indent, pad, 0),
        }
    }

    fn target(&mut self, t: &Target, indent: usize) {
        self.out.push_str("target ");
        self.out.push_str(&t.kind.name);
        let elems: Vec<Elem<'_>> = t.fields.iter().map(Elem::Field).collect();
        self.block(&elems, t.kind.span.end, t.span, indent, false);
    }

    fn node(&mut self, n: &Node, indent: usize) {
        self.out.push_str(n.kind.as_str());
        self.out.push(' ');
        self.out.push_str(&n.name.name);
        self.out.push_str(" = ");
        let has_body = !n.body.is_empty() || self.has_comment(n.call.span.end, n.span.end);
        self.call(&n.call, indent, self.col(), if has_body { 2 } else { 0 });
        let elems: Vec<Elem<'_>> = n.body.iter().map(Elem::Field).collect();
        self.block(&elems, n.call.span.end, n.span, indent, false);
    }

    /// `key = value` or `key: value`, as the source wrote it.
    fn separator(&self, field: &Field) -> &'static str {
        let mut pos = field.key.span.end as usize;
        let bytes = self.text.as_bytes();
        while pos < bytes.len() {
            if let Some(c) = self.comments.iter().find(|c| c.span.start as usize == pos) {
                pos = c.span.end as usize;
                continue;
            }
            match bytes[pos] {
                b':' => return ": ",
                b'=' => return " = ",
                _ => pos += 1,
            }
        }
        " = "
    }

    fn field(&mut self, f: &Field, indent: usize, pad: usize, suffix: usize) {
        let col = self.col() + f.key.name.chars().count() + self.separator(f).len();
        self.out.push_str(&f.key.name);
        for _ in 0..pad {
            self.out.push(' ');
        }
        self.out.push_str(self.separator(f));
        self.value(&f.value, indent, col, suffix);
    }

    // Values.

    /// Whether the value can be laid out over several lines: it holds a call, list, record or
    /// variant with something in it.
    fn breakable(&self, v: &Value) -> bool {
        match &v.kind {
            ValueKind::Call(call) => !call.args.is_empty() || self.has_comment(v.span.start, v.span.end),
            ValueKind::List(items) => !items.is_empty() || self.has_comment(v.span.start, v.span.end),
            ValueKind::Record(fields) | ValueKind::Variant { fields, .. } => {
                !fields.is_empty() || self.has_comment(v.span.start, v.span.end)
            }
            ValueKind::Times { value, .. } | ValueKind::Optional(value) => self.breakable(value),
            _ => false,
        }
    }

    /// Whether the value goes on one line when it starts at column `col` and `suffix` characters
    /// follow it.
    fn one_line(&self, v: &Value, col: usize, suffix: usize) -> bool {
        if !self.breakable(v) {
            return !self.flat(v).contains('\n');
        }
        self.fits(v, col, suffix)
    }

    fn fits(&self, v: &Value, col: usize, suffix: usize) -> bool {
        if self.has_comment(v.span.start, v.span.end) {
            return false;
        }
        let flat = self.flat(v);
        !flat.contains('\n') && col + flat.chars().count() + suffix <= WIDTH
    }

    /// Prints a value whose layout is decided as if it started at column `col` (a field's value is
    /// decided before its key is padded for alignment, so that alignment never changes a layout).
    fn value(&mut self, v: &Value, indent: usize, col: usize, suffix: usize) {
        if let ValueKind::Call(call) = &v.kind {
            return self.call(call, indent, col, suffix);
        }
        if !self.breakable(v) || self.fits(v, col, suffix) {
            let flat = self.flat(v);
            self.out.push_str(&flat);
            return;
        }
        let close = v.span.end.saturating_sub(1) as usize;
        match &v.kind {
            ValueKind::List(items) => {
                self.out.push('[');
                let elems: Vec<Elem<'_>> = items.iter().map(Elem::Value).collect();
                self.seq(&elems, close, indent + 1, true);
                self.line(indent);
                self.out.push(']');
            }
            ValueKind::Record(fields) => {
                self.out.push('{');
                let elems: Vec<Elem<'_>> = fields.iter().map(Elem::Field).collect();
                self.seq(&elems, close, indent + 1, false);
                self.line(indent);
                self.out.push('}');
            }
            ValueKind::Variant { name, fields } => {
                self.out.push_str(&name.name);
                self.out.push_str(" {");
                let elems: Vec<Elem<'_>> = fields.iter().map(Elem::Field).collect();
                self.seq(&elems, close, indent + 1, false);
                self.line(indent);
                self.out.push('}');
            }
            ValueKind::Times { value, count_span, .. } => {
                let count = self.src(*count_span).to_owned();
                self.value(value, indent, col, suffix + 3 + count.chars().count());
                self.out.push_str(" x ");
                self.out.push_str(&count);
            }
            ValueKind::Optional(value) => {
                self.value(value, indent, col, suffix + 1);
                self.out.push('?');
            }
            _ => {
                let flat = self.flat(v);
                self.out.push_str(&flat);
            }
        }
    }

    fn call(&mut self, call: &Call, indent: usize, col: usize, suffix: usize) {
        let has_comment = self.has_comment(call.span.start, call.span.end);
        let flat = self.flat_call(call);
        let fits = !has_comment && !flat.contains('\n') && col + flat.chars().count() + suffix <= WIDTH;
        if fits || (call.args.is_empty() && !has_comment) {
            self.out.push_str(&flat);
            return;
        }
        self.out.push_str(&call.func.name);
        self.out.push('(');
        let elems: Vec<Elem<'_>> = call.args.iter().map(Elem::Arg).collect();
        self.seq(&elems, call.span.end.saturating_sub(1) as usize, indent + 1, true);
        self.line(indent);
        self.out.push(')');
    }

    /// The value on one line, comments aside.
    fn flat(&self, v: &Value) -> String {
        match &v.kind {
            ValueKind::Path(segments) => segments.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join("."),
            ValueKind::Call(call) => self.flat_call(call),
            ValueKind::List(items) => {
                format!("[{}]", items.iter().map(|item| self.flat(item)).collect::<Vec<_>>().join(", "))
            }
            ValueKind::Record(fields) => self.flat_record(fields),
            ValueKind::Variant { name, fields } => format!("{} {}", name.name, self.flat_record(fields)),
            ValueKind::Times { value, count_span, .. } => format!("{} x {}", self.flat(value), self.src(*count_span)),
            ValueKind::Optional(value) => format!("{}?", self.flat(value)),
            ValueKind::Str(_)
            | ValueKind::Int(_)
            | ValueKind::Float(_)
            | ValueKind::Bool(_)
            | ValueKind::Duration(_)
            | ValueKind::Size(_)
            | ValueKind::Money(_) => self.src(v.span).to_owned(),
        }
    }

    fn flat_call(&self, call: &Call) -> String {
        let args: Vec<String> = call
            .args
            .iter()
            .map(|a| match &a.name {
                Some(name) => format!("{} = {}", name.name, self.flat(&a.value)),
                None => self.flat(&a.value),
            })
            .collect();
        format!("{}({})", call.func.name, args.join(", "))
    }

    fn flat_record(&self, fields: &[Field]) -> String {
        if fields.is_empty() {
            return "{}".to_owned();
        }
        let fields: Vec<String> =
            fields.iter().map(|f| format!("{}{}{}", f.key.name, self.separator(f), self.flat(&f.value))).collect();
        format!("{{ {} }}", fields.join(", "))
    }
}

#[cfg(test)]
mod tests;
