//! The parser: pest pairs in, `ast` out.
//!
//! `build_*` functions take one pest pair of the rule they are named after and return the AST node.
//! Literal errors (an integer past `i64`, an unknown escape) do not stop the walk: they are
//! collected, so a file with three bad literals gets three diagnostics. A syntax error stops
//! parsing (pest cannot recover), and is reported with the tokens that were expected, in words.
//! Nesting is capped before pest runs, so that no input can exhaust the stack.

use super::ast::*;
use super::literal;
use crate::diagnostics::{Code, Diagnostic, FileId, Label};
use pest::iterators::Pair;
use pest::Parser;
use pest_derive::Parser;

#[derive(Parser)]
#[grammar = "syntax/tune.pest"]
struct TuneParser;

/// Brackets, braces and parentheses may nest this deep; deeper input is rejected.
const MAX_NESTING: usize = 64;

/// Parses a whole `.tune` file.
pub fn parse_file(text: &str, file: FileId) -> Result<File, Vec<Diagnostic>> {
    check_nesting(text, file)?;
    let mut pairs = TuneParser::parse(Rule::file, text).map_err(|err| vec![syntax_error(&err, text, file)])?;
    let mut ctx = Ctx { file, errors: Vec::new() };
    let mut out = File { pipelines: Vec::new(), defaults: Vec::new() };
    if let Some(root) = pairs.next() {
        for pair in root.into_inner() {
            match pair.as_rule() {
                Rule::pipeline => out.pipelines.push(ctx.build_pipeline(pair)),
                Rule::defaults => out.defaults.push(ctx.build_defaults(pair)),
                _ => {}
            }
        }
    }
    if ctx.errors.is_empty() {
        Ok(out)
    } else {
        Err(ctx.errors)
    }
}

/// Parses a single value, as given to `--set name=value`.
pub fn parse_value(text: &str, file: FileId) -> Result<Value, Vec<Diagnostic>> {
    check_nesting(text, file)?;
    let mut pairs = TuneParser::parse(Rule::value_only, text).map_err(|err| vec![syntax_error(&err, text, file)])?;
    let mut ctx = Ctx { file, errors: Vec::new() };
    let value = pairs
        .next()
        .and_then(|root| root.into_inner().find(|p| p.as_rule() == Rule::value))
        .map(|pair| ctx.build_value(pair));
    match value {
        Some(value) if ctx.errors.is_empty() => Ok(value),
        _ => Err(ctx.errors),
    }
}

fn check_nesting(text: &str, file: FileId) -> Result<(), Vec<Diagnostic>> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        // Strings and comments are skipped; an unterminated one is pest's to report.
        if let Some(opaque) = super::opaque::opaque_at(bytes, i) {
            i = opaque.end;
            continue;
        }
        match bytes[i] {
            b'[' | b'{' | b'(' => {
                depth += 1;
                if depth > MAX_NESTING {
                    let span = Span::new(i, i + 1);
                    return Err(vec![Diagnostic::new(
                        Code::Syntax,
                        file,
                        format!("brackets nest more than {MAX_NESTING} levels deep"),
                        Label::new(span, "too deep"),
                    )
                    .with_help("flatten the value; no pipeline needs this much nesting")]);
                }
            }
            b']' | b'}' | b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

fn rule_name(rule: Rule) -> &'static str {
    match rule {
        Rule::EOI => "end of file",
        Rule::pipeline | Rule::kw_pipeline => "`pipeline`",
        Rule::item | Rule::top_item => "a declaration",
        Rule::target | Rule::kw_target => "`target`",
        Rule::param | Rule::kw_param => "`param`",
        Rule::defaults | Rule::kw_defaults => "`defaults`",
        Rule::defaults_path => "a node kind (`train`, `train.method.lora`)",
        Rule::node | Rule::node_kind => "a node (`model`, `dataset`, `chat`, `split`, `train`, `merge`, `evaluate`)",
        Rule::setting | Rule::field => "a field (`name = value`)",
        Rule::call => "a call (`name(...)`)",
        Rule::arg | Rule::named_arg => "an argument",
        Rule::record => "`{`",
        Rule::value | Rule::value_only => "a value",
        Rule::times | Rule::kw_x => "`x`",
        Rule::question => "`?`",
        Rule::list => "a list",
        Rule::variant => "a variant",
        Rule::path => "a name",
        Rule::boolean => "`true` or `false`",
        Rule::int => "an integer",
        Rule::float => "a number",
        Rule::money => "an amount (`$150`)",
        Rule::size | Rule::size_unit => "a size (`40GiB`)",
        Rule::duration | Rule::duration_unit => "a duration (`5h`)",
        Rule::string | Rule::plain_string | Rule::triple_string => "a string",
        Rule::plain_inner | Rule::triple_inner | Rule::escape => "a string character",
        Rule::ident | Rule::key => "a name",
        Rule::eq => "`=`",
        Rule::colon => "`:`",
        Rule::lbrace => "`{`",
        Rule::rbrace => "`}`",
        Rule::lparen => "`(`",
        Rule::rparen => "`)`",
        Rule::lbracket => "`[`",
        Rule::rbracket => "`]`",
        Rule::comma => "`,`",
        Rule::dot => "`.`",
        _ => "a token",
    }
}

fn syntax_error(err: &pest::error::Error<Rule>, text: &str, file: FileId) -> Diagnostic {
    use pest::error::{ErrorVariant, InputLocation};
    let (start, end) = match err.location {
        InputLocation::Pos(pos) => (pos, pos),
        InputLocation::Span((s, e)) => (s, e),
    };
    let found = text[start.min(text.len())..].chars().next();
    let end = if end > start { end } else { start + found.map_or(0, char::len_utf8) };
    let expected = match &err.variant {
        ErrorVariant::ParsingError { positives, .. } => {
            let mut names: Vec<&str> = positives.iter().map(|r| rule_name(*r)).collect();
            names.sort_unstable();
            names.dedup();
            // `x N` may follow any value; it is only worth naming when nothing else fits.
            if names.len() > 1 {
                names.retain(|n| *n != "`x`");
            }
            names
        }
        ErrorVariant::CustomError { .. } => Vec::new(),
    };
    let message = match expected.as_slice() {
        [] => "syntax error".to_owned(),
        [one] => format!("expected {one}"),
        [init @ .., last] => format!("expected {} or {last}", init.join(", ")),
    };
    let label = match found {
        None => "the file ends here".to_owned(),
        Some('\n') => "unexpected end of line".to_owned(),
        Some(c) => format!("unexpected `{c}`"),
    };
    let help = if found == Some('"') || text[..start.min(text.len())].matches('"').count() % 2 == 1 {
        "strings are written in double quotes and end on the same line; use `\"\"\"` for multi-line text"
    } else if expected.contains(&"`=`") {
        "a node is declared `kind name = function(...)`, a field `name = value`"
    } else if expected.iter().any(|e| e.starts_with("a field")) {
        "fields are written `name = value`, separated by spaces, newlines or commas"
    } else if found.is_none() {
        "a `{`, `[` or `(` is not closed"
    } else {
        "see docs/GRAMMAR.md for the syntax"
    };
    Diagnostic::new(Code::Syntax, file, message, Label::new(Span::new(start, end.min(text.len()).max(start)), label))
        .with_help(help)
}

struct Ctx {
    file: FileId,
    errors: Vec<Diagnostic>,
}

/// The span of a pair, from its first to its last token. pest's own span of a rule that ends in
/// an optional part (`value = { term ~ times? }`, `node = { ... ~ record? }`) also covers the
/// whitespace and comments it skipped looking for that part; the AST's spans never do.
fn span_of(pair: &Pair<'_, Rule>) -> Span {
    let s = pair.as_span();
    if matches!(pair.as_rule(), Rule::string | Rule::plain_string | Rule::triple_string) {
        // Compound-atomic: no trivia inside, and the last inner pair stops before the quotes.
        return Span::new(s.start(), s.end());
    }
    let end = pair.clone().into_inner().last().map_or(s.end(), |last| span_of(&last).end as usize);
    Span::new(s.start(), end.min(s.end()))
}

/// The children of a pair without punctuation.
fn children(pair: Pair<'_, Rule>) -> impl Iterator<Item = Pair<'_, Rule>> {
    pair.into_inner().filter(|p| {
        !matches!(
            p.as_rule(),
            Rule::eq
                | Rule::colon
                | Rule::lbrace
                | Rule::rbrace
                | Rule::lparen
                | Rule::rparen
                | Rule::lbracket
                | Rule::rbracket
                | Rule::comma
                | Rule::dot
        )
    })
}

fn ident(pair: Pair<'_, Rule>) -> Ident {
    Ident { name: pair.as_str().to_owned(), span: span_of(&pair) }
}

impl Ctx {
    fn literal_error(&mut self, span: Span, message: String) {
        let help = if message.contains("escape") || message.contains("backslash") || message.contains("unicode") {
            "the escapes are \\n \\t \\r \\0 \\\" \\\\ and \\u{...}; write `\\\\` for a backslash"
        } else if message.contains("duration") {
            "durations are at most a few thousand years; write e.g. `5h` or `28d`"
        } else {
            "integers are 64-bit (at most 9223372036854775807); sizes and amounts must be finite"
        };
        self.errors.push(
            Diagnostic::new(Code::BadLiteral, self.file, message, Label::new(span, "cannot be represented"))
                .with_help(help),
        );
    }

    fn build_pipeline(&mut self, pair: Pair<'_, Rule>) -> Pipeline {
        let span = span_of(&pair);
        let mut inner = children(pair);
        inner.next(); // kw_pipeline
        let name = inner.next().map(ident).unwrap_or_else(|| Ident { name: String::new(), span });
        let items = inner.map(|item| self.build_item(item)).collect();
        Pipeline { name, items, span }
    }

    fn build_item(&mut self, pair: Pair<'_, Rule>) -> Item {
        let span = span_of(&pair);
        match pair.as_rule() {
            Rule::target => {
                let mut inner = children(pair).skip(1);
                let kind = inner.next().map(ident).unwrap_or_else(|| Ident { name: String::new(), span });
                let fields = inner.next().map(|r| self.build_record(r)).unwrap_or_default();
                Item::Target(Target { kind, fields, span })
            }
            Rule::param => {
                let mut inner = children(pair).skip(1);
                let name = inner.next().map(ident).unwrap_or_else(|| Ident { name: String::new(), span });
                let value = self.build_value_or_empty(inner.next(), span);
                Item::Param(Param { name, value, span })
            }
            Rule::defaults => Item::Defaults(self.build_defaults(pair)),
            Rule::node => Item::Node(self.build_node(pair)),
            _ => {
                // Rule::setting wraps a single field.
                let field = children(pair).next().map(|f| self.build_field(f));
                Item::Setting(field.unwrap_or_else(|| Field {
                    key: Ident { name: String::new(), span },
                    value: Value { kind: ValueKind::Record(Vec::new()), span },
                    span,
                }))
            }
        }
    }

    fn build_defaults(&mut self, pair: Pair<'_, Rule>) -> Defaults {
        let span = span_of(&pair);
        let mut inner = children(pair).skip(1);
        let path = inner
            .next()
            .map(|p| children(p).map(|seg| Ident { name: seg.as_str().to_owned(), span: span_of(&seg) }).collect())
            .unwrap_or_default();
        let fields = inner.next().map(|r| self.build_record(r)).unwrap_or_default();
        Defaults { path, fields, span }
    }

    fn build_node(&mut self, pair: Pair<'_, Rule>) -> Node {
        let span = span_of(&pair);
        let mut inner = children(pair);
        let kind_pair = inner.next();
        let kind_span = kind_pair.as_ref().map_or(span, span_of);
        let kind = kind_pair.and_then(|p| NodeKind::from_keyword(p.as_str())).unwrap_or(NodeKind::Model);
        let name = inner.next().map(ident).unwrap_or_else(|| Ident { name: String::new(), span });
        let call = match inner.next() {
            Some(call) => self.build_call(call),
            None => Call { func: Ident { name: String::new(), span }, args: Vec::new(), span },
        };
        let body = inner.next().map(|r| self.build_record(r)).unwrap_or_default();
        Node { kind, kind_span, name, call, body, span }
    }

    fn build_call(&mut self, pair: Pair<'_, Rule>) -> Call {
        let span = span_of(&pair);
        let mut inner = children(pair);
        let func = inner.next().map(ident).unwrap_or_else(|| Ident { name: String::new(), span });
        let args = inner
            .map(|arg| {
                let arg = children(arg).next();
                match arg {
                    Some(a) if a.as_rule() == Rule::named_arg => {
                        let a_span = span_of(&a);
                        let mut parts = children(a);
                        let name = parts.next().map(ident);
                        let value = self.build_value_or_empty(parts.next(), a_span);
                        Arg { name, value }
                    }
                    Some(a) => Arg { name: None, value: self.build_value(a) },
                    None => Arg { name: None, value: Value { kind: ValueKind::List(Vec::new()), span } },
                }
            })
            .collect();
        Call { func, args, span }
    }

    fn build_record(&mut self, pair: Pair<'_, Rule>) -> Vec<Field> {
        children(pair).map(|f| self.build_field(f)).collect()
    }

    fn build_field(&mut self, pair: Pair<'_, Rule>) -> Field {
        let span = span_of(&pair);
        let mut inner = children(pair);
        let key = inner.next().map(ident).unwrap_or_else(|| Ident { name: String::new(), span });
        let value = self.build_value_or_empty(inner.next(), span);
        Field { key, value, span }
    }

    fn build_value_or_empty(&mut self, pair: Option<Pair<'_, Rule>>, span: Span) -> Value {
        match pair {
            Some(p) => self.build_value(p),
            None => Value { kind: ValueKind::List(Vec::new()), span },
        }
    }

    /// Builds a `value` (term with an optional `x N` or `?`) or a bare term.
    fn build_value(&mut self, pair: Pair<'_, Rule>) -> Value {
        if pair.as_rule() != Rule::value {
            return self.build_term(pair);
        }
        let span = span_of(&pair);
        let mut inner = children(pair);
        let term = match inner.next() {
            Some(t) => self.build_term(t),
            None => return Value { kind: ValueKind::List(Vec::new()), span },
        };
        match inner.next() {
            Some(question) if question.as_rule() == Rule::question => {
                Value { kind: ValueKind::Optional(Box::new(term)), span }
            }
            Some(times) => {
                let count_pair = children(times).nth(1);
                let count_span = count_pair.as_ref().map_or(span, span_of);
                let count = match count_pair.map(|p| literal::parse_int(p.as_str())) {
                    Some(Ok(n)) => n,
                    Some(Err(msg)) => {
                        self.literal_error(count_span, msg);
                        0
                    }
                    None => 0,
                };
                Value { kind: ValueKind::Times { value: Box::new(term), count, count_span }, span }
            }
            None => term,
        }
    }

    fn build_term(&mut self, pair: Pair<'_, Rule>) -> Value {
        let span = span_of(&pair);
        let text = pair.as_str();
        let kind = match pair.as_rule() {
            Rule::int => self.number(span, literal::parse_int(text), ValueKind::Int, 0),
            Rule::float => self.number(span, literal::parse_float(text), ValueKind::Float, 0.0),
            Rule::money => self.number(span, literal::parse_money(text), ValueKind::Money, 0.0),
            Rule::size => self.number(span, literal::parse_size(text), ValueKind::Size, 0),
            Rule::duration => self.number(span, literal::parse_duration(text), ValueKind::Duration, 0),
            Rule::boolean => ValueKind::Bool(text == "true"),
            Rule::string => {
                let inner = children(pair).next();
                let (triple, raw) = match &inner {
                    Some(p) if p.as_rule() == Rule::triple_string => (true, p.as_str()),
                    Some(p) => (false, p.as_str()),
                    None => (false, "\"\""),
                };
                let quotes = if triple { 3 } else { 1 };
                let raw = raw.get(quotes..raw.len().saturating_sub(quotes)).unwrap_or("");
                match literal::decode_string(raw, triple) {
                    Ok(s) => ValueKind::Str(s),
                    Err(msg) => {
                        self.literal_error(span, msg);
                        ValueKind::Str(String::new())
                    }
                }
            }
            Rule::list => ValueKind::List(children(pair).map(|v| self.build_value(v)).collect()),
            Rule::record => ValueKind::Record(self.build_record(pair)),
            Rule::variant => {
                let mut inner = children(pair);
                let name = inner.next().map(ident).unwrap_or_else(|| Ident { name: String::new(), span });
                let fields = inner.next().map(|r| self.build_record(r)).unwrap_or_default();
                ValueKind::Variant { name, fields }
            }
            Rule::call => ValueKind::Call(self.build_call(pair)),
            Rule::path => ValueKind::Path(children(pair).map(ident).collect()),
            Rule::value => return self.build_value(pair),
            _ => ValueKind::List(Vec::new()),
        };
        Value { kind, span }
    }

    fn number<T, E: Into<String>>(
        &mut self,
        span: Span,
        parsed: Result<T, E>,
        wrap: impl Fn(T) -> ValueKind,
        zero: T,
    ) -> ValueKind {
        match parsed {
            Ok(v) => wrap(v),
            Err(msg) => {
                self.literal_error(span, msg.into());
                wrap(zero)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> File {
        parse_file(text, FileId(0)).expect("parses")
    }

    #[test]
    fn parses_nodes_fields_and_values() {
        let file = parse(
            r#"pipeline p {
                budget = $150
                param lr = 2e-4
                model llama = hf_model("meta-llama/Llama-3.1-8B-Instruct")
                train sft = sft(llama, data = parts.train) {
                  method = qlora { r = 32, alpha = 64 }
                  compute = "ml.p4d.24xlarge" x 2
                  epochs = 2  max_runtime = 5h  disk = 40GiB
                  targets = [q_proj, v_proj]
                }
            }"#,
        );
        let p = &file.pipelines[0];
        assert_eq!(p.name.name, "p");
        assert_eq!(p.items.len(), 4);
        let Item::Node(node) = &p.items[3] else { panic!("node expected") };
        assert_eq!(node.kind, NodeKind::Train);
        assert_eq!(node.call.func.name, "sft");
        assert_eq!(node.call.args.len(), 2);
        assert_eq!(node.body.len(), 6);
        assert!(matches!(node.body[1].value.kind, ValueKind::Times { count: 2, .. }));
        assert!(matches!(node.body[3].value.kind, ValueKind::Duration(18_000)));
        assert!(matches!(node.body[4].value.kind, ValueKind::Size(s) if s == 40 << 30));
    }

    #[test]
    fn node_keywords_are_also_field_names() {
        let file = parse("pipeline p { split s = split(c, train = 0.9, test = 0.1) }");
        let Item::Node(node) = &file.pipelines[0].items[0] else { panic!("node expected") };
        assert_eq!(node.call.args[1].name.as_ref().map(|i| i.name.as_str()), Some("train"));
    }

    #[test]
    fn syntax_errors_name_what_was_expected() {
        let err = parse_file("pipeline p { model m = }", FileId(0)).unwrap_err();
        assert_eq!(err.len(), 1);
        assert_eq!(err[0].code, Code::Syntax);
        assert_eq!(err[0].message, "expected a name");
        assert_eq!(err[0].primary.span, Span::new(23, 24));
    }

    #[test]
    fn literal_errors_are_all_reported() {
        let err = parse_file("pipeline p { a = 99999999999999999999  b = \"\\q\" }", FileId(0)).unwrap_err();
        assert_eq!(err.len(), 2);
        assert!(err.iter().all(|d| d.code == Code::BadLiteral));
    }

    #[test]
    fn deep_nesting_is_rejected_not_overflowed() {
        let text = format!("pipeline p {{ a = {}{} }}", "[".repeat(10_000), "]".repeat(10_000));
        let err = parse_file(&text, FileId(0)).unwrap_err();
        assert!(err[0].message.contains("nest"));
    }

    #[test]
    fn spans_end_at_the_last_token() {
        let text = "pipeline p { budget = $1  // c\n\n  model m = f()  /* d */\n  param n = 2 \n}";
        let file = parse(text);
        let ends: Vec<&str> = file.pipelines[0]
            .items
            .iter()
            .map(|item| match item {
                Item::Setting(f) => &text[f.span.range()],
                Item::Node(n) => &text[n.span.range()],
                Item::Param(p) => &text[p.span.range()],
                _ => "",
            })
            .collect();
        assert_eq!(ends, ["budget = $1", "model m = f()", "param n = 2"]);
    }

    #[test]
    fn comments_are_skipped() {
        let file = parse("// head\npipeline p { /* inline */ budget = $1 // tail\n }");
        assert_eq!(file.pipelines[0].items.len(), 1);
    }
}
