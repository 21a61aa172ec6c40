//! Syntax: `.tune` text in, an AST with byte spans out.
//!
//! The grammar lives in `tune.pest` (the implementation) and `docs/GRAMMAR.md` (the specification).
//! pest stops at the first syntax error, so parsing reports at most one diagnostic; every stage after
//! parsing reports all of its problems. Literal decoding (string escapes, units, dedent of
//! triple-quoted strings) happens here, so later stages only see typed values.

pub mod ast;
mod literal;
pub mod opaque;
mod parse;

pub use parse::{parse_file, parse_value};
