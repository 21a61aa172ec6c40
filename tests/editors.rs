//! The VS Code extension in `editors/vscode/` is data the Rust build never reads, so these checks
//! keep it honest: every JSON file parses, the language id and grammar scope agree between
//! `package.json`, the grammar and the client, and the grammar knows every keyword and node kind
//! the compiler does.

use serde_json::Value;
use std::path::{Path, PathBuf};
use tunec_compiler::syntax::ast::NodeKind;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join("editors/vscode").join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn json(path: &str) -> Value {
    serde_json::from_str(&read(path)).unwrap_or_else(|e| panic!("{path} is not valid JSON: {e}"))
}

#[test]
fn the_language_id_and_scope_agree_everywhere() {
    let package = json("package.json");
    let language = &package["contributes"]["languages"][0];
    assert_eq!(language["id"], "tune");
    assert_eq!(language["extensions"][0], ".tune");
    assert_eq!(language["configuration"], "./language-configuration.json");
    let grammar_entry = &package["contributes"]["grammars"][0];
    assert_eq!(grammar_entry["language"], language["id"]);
    let grammar_path = grammar_entry["path"].as_str().expect("a grammar path");
    let grammar = json(grammar_path.trim_start_matches("./"));
    assert_eq!(grammar["scopeName"], grammar_entry["scopeName"]);
    assert!(grammar["scopeName"].as_str().expect("scope").ends_with(".tune"));
    assert_eq!(package["main"], "./extension.js");
    assert_eq!(package["version"], env!("CARGO_PKG_VERSION"), "the extension's version is tunec's");
    assert!(package["dependencies"]["vscode-languageclient"].is_string());

    let client = read("extension.js");
    assert!(client.contains("language: 'tune'"), "the client selects the `tune` language");
    assert!(client.contains("args: ['lsp']"), "the client runs `tunec lsp`");
    assert!(
        client.contains("getConfiguration('tunec')")
            && package["contributes"]["configuration"]["properties"]["tunec.path"].is_object()
    );
}

#[test]
fn the_grammar_knows_the_languages_words() {
    let grammar = read("syntaxes/tune.tmLanguage.json");
    for kind in NodeKind::ALL {
        assert!(grammar.contains(kind.as_str()), "the grammar lacks the node kind `{kind}`");
    }
    for word in [
        "pipeline",
        "target",
        "param",
        "defaults",
        "true",
        "false",
        "env",
        "KiB",
        "GiB",
        "comment.block",
        "comment.line",
    ] {
        assert!(grammar.contains(word), "the grammar lacks `{word}`");
    }
}

#[test]
fn the_language_configuration_matches_the_grammar_of_comments() {
    let config = json("language-configuration.json");
    assert_eq!(config["comments"]["lineComment"], "//");
    assert_eq!(config["comments"]["blockComment"], serde_json::json!(["/*", "*/"]));
    assert_eq!(config["brackets"].as_array().map(Vec::len), Some(3));
}
