//! What the command line gives a shell: completion scripts (bash driven for real, the way bash
//! calls a completion function), the node names behind `--until`, man pages, and the version line.

mod support;

use std::path::Path;
use std::process::Command;
use support::{root, tunec_with, Run};

fn tunec(args: &[&str]) -> Run {
    tunec_with(args, |_| {})
}

/// Loads `tunec completions bash` into a bash that has no other completion loaded, then for each
/// case sets COMP_WORDS and COMP_CWORD (split as bash splits them: `=` is a word of its own),
/// COMP_LINE and COMP_POINT, calls the function that `complete -p tunec` names, and prints
/// `case<TAB>candidates` with the candidates sorted.
fn bash_complete(cases: &[&[&str]]) -> Vec<(String, Vec<String>)> {
    let script = tunec(&["completions", "bash"]);
    assert_eq!(script.code, 0, "{}", script.stderr);
    let binary = env!("CARGO_BIN_EXE_tunec");
    let mut driver = String::from(
        r#"
set -u
source "$SCRIPT"
spec="$(complete -p tunec)"
[[ "$spec" =~ -F\ ([^ ]+) ]] || { echo "no completion function in: $spec" >&2; exit 3; }
fn="${BASH_REMATCH[1]}"
complete_words() {
    local label="$1"; shift
    COMP_WORDS=("$@")
    COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
    COMP_LINE="${COMP_WORDS[*]}"
    COMP_LINE="${COMP_LINE// = /=}"
    COMP_POINT=${#COMP_LINE}
    COMPREPLY=()
    local prev=""
    (( COMP_CWORD > 0 )) && prev="${COMP_WORDS[COMP_CWORD-1]}"
    "$fn" "${COMP_WORDS[0]}" "${COMP_WORDS[COMP_CWORD]}" "$prev"
    printf '%s\t%s\n' "$label" "$(printf '%s\n' "${COMPREPLY[@]}" | sort | tr '\n' ' ')"
}
"#,
    );
    for (i, words) in cases.iter().enumerate() {
        let quoted: Vec<String> = words
            .iter()
            .map(|w| if *w == "tunec" { format!("'{binary}'") } else { format!("'{}'", w.replace('\'', "'\\''")) })
            .collect();
        driver.push_str(&format!("complete_words {i} {}\n", quoted.join(" ")));
    }
    let dir = std::env::temp_dir().join(format!("tunec-bash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let script_path = dir.join("tunec.bash");
    std::fs::write(&script_path, &script.stdout).expect("write the script");
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &driver])
        .env("SCRIPT", &script_path)
        .current_dir(root())
        .output()
        .expect("bash runs");
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "bash failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
        .lines()
        .map(|line| {
            let (label, candidates) = line.split_once('\t').expect("label and candidates");
            let i: usize = label.parse().expect("case number");
            (cases[i].join(" "), candidates.split_whitespace().map(str::to_owned).collect())
        })
        .collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn bash_completes_subcommands_flags_values_codes_and_node_names() {
    let medreason = "examples/medreason/medreason.tune";
    let nodes = ["convo", "llama", "merged", "parts", "raw", "report", "sft"];
    let results = bash_complete(&[
        &["tunec", "ch"],
        &["tunec", "run", "--un"],
        &["tunec", "check", "--format", ""],
        &["tunec", "explain", "fsdp_ql"],
        &["tunec", "completions", ""],
        &["tunec", "run", medreason, "--until", ""],
        &["tunec", "run", medreason, "--until", "s"],
        &["tunec", "run", "--set", "lr", "=", "1e-4", "--python", "/usr/bin/python3", medreason, "--until", "pa"],
        &["tunec", "run", "--until", "=", ""],
        &["tunec", "run", medreason, "--until", "=", "me"],
        &["tunec", "run", "tests/cases/syntax.tune", "--until", ""],
        &["tunec", "run", "no/such/file.tune", "--until", ""],
    ]);
    let expected: Vec<Vec<&str>> = vec![
        vec!["check"],
        vec!["--until"],
        vec!["human", "json"],
        vec!["fsdp_qlora_storage"],
        vec!["--help", "-h", "bash", "fish", "zsh"],
        nodes.to_vec(),
        vec!["sft"],
        vec!["parts"],
        // `--until=` with no file on the line: nothing to offer, and nothing printed.
        vec![],
        vec!["merged"],
        // A file that does not parse, or does not exist: no candidates and no error output.
        vec![],
        vec![],
    ];
    for ((line, got), want) in results.iter().zip(&expected) {
        assert_eq!(&strs(got), want, "completing `{line}`");
    }
    assert_eq!(results.len(), expected.len());
}

#[test]
fn the_node_names_come_from_the_file_that_clap_finds_on_the_line() {
    let names = |args: &[&str]| {
        tunec_with(args, |c| {
            c.env("TUNEC_COMPLETE_NODES", "1");
        })
    };
    // Options with values before the file, `--` before it, and the option being completed after it.
    let run = names(&["run", "--python", "examples/medreason/medreason.tune", "--", "examples/tiny-local/tiny.tune"]);
    assert_eq!(run.code, 0);
    assert_eq!(run.stderr, "");
    let tiny: Vec<&str> = run.stdout.lines().collect();
    let text = std::fs::read_to_string(root().join("examples/tiny-local/tiny.tune")).expect("tiny.tune");
    assert!(!tiny.is_empty() && tiny.iter().all(|n| text.contains(&format!(" {n} ="))), "{tiny:?}");
    let run = names(&["run", "examples/medreason/medreason.tune", "--until"]);
    assert_eq!(run.stdout, "llama\nraw\nconvo\nparts\nsft\nmerged\nreport\n");
    // The variable makes tunec answer instead of running anything, even a command that would fail.
    let run = names(&["run", "no/such/file.tune", "--until"]);
    assert_eq!((run.code, run.stdout.as_str(), run.stderr.as_str()), (0, "", ""));
}

#[test]
fn zsh_and_fish_scripts_ask_tunec_for_node_names() {
    let zsh = tunec(&["completions", "zsh"]).stdout;
    assert!(zsh.starts_with("#compdef tunec"), "{}", &zsh[..zsh.len().min(200)]);
    assert!(zsh.contains(":NODE:_tunec_nodes'"), "the `--until` value is completed by _tunec_nodes");
    assert!(!zsh.contains(":NODE:_default'"), "no NODE value is left to file completion");
    let defined = zsh.find("_tunec_nodes() {").expect("_tunec_nodes is defined");
    let dispatched = zsh.rfind("compdef _tunec tunec").expect("the script registers itself");
    assert!(defined < dispatched, "the function is defined before the completion can run");
    assert!(zsh.contains("TUNEC_COMPLETE_NODES=1"));
    assert!(zsh.contains("fsdp_qlora_storage"), "explain's codes complete");

    let fish = tunec(&["completions", "fish"]).stdout;
    assert!(
        fish.contains("complete -c tunec -n \"__fish_tunec_using_subcommand run\" -l until -x -a \"(__tunec_nodes)\"")
    );
    assert!(fish.contains("function __tunec_nodes\n    env TUNEC_COMPLETE_NODES=1 (commandline -opc)"));
    assert!(
        fish.contains("complete -c tunec -n \"__fish_tunec_using_subcommand explain\" -f -a fsdp_qlora_storage -d '")
    );
    // Every subcommand is offered in each shell.
    for sub in subcommands() {
        assert!(zsh.contains(&format!("'{sub}:")), "zsh lacks `{sub}`");
        assert!(fish.contains(&format!("-a \"{sub}\"")), "fish lacks `{sub}`");
    }
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let run = tunec(&["completions", "tcsh"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("possible values: bash, zsh, fish"), "{}", run.stderr);
}

/// The subcommands `tunec --help` lists.
fn subcommands() -> Vec<String> {
    let help = tunec(&["--help"]).stdout;
    let commands = help.split("Commands:").nth(1).expect("a Commands: section");
    let commands = commands.split("\n\n").next().expect("the list");
    commands
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn man_pages_cover_every_subcommand() {
    let page = tunec(&["man"]);
    assert_eq!(page.code, 0, "{}", page.stderr);
    assert!(page.stdout.contains(".TH tunec 1"), "{}", &page.stdout[..page.stdout.len().min(300)]);
    let subs = subcommands();
    assert!(subs.len() >= 12, "{subs:?}");
    for sub in &subs {
        assert!(page.stdout.contains(&format!("tunec\\-{}(1)", sub.replace('-', "\\-"))), "tunec.1 lacks `{sub}`");
    }

    let dir = std::env::temp_dir().join(format!("tunec-man-{}", std::process::id()));
    let run = tunec(&["man", "--output", dir.to_str().expect("utf-8 temp dir")]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mut written: Vec<String> = std::fs::read_dir(&dir)
        .expect("the folder was created")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    let mut expected: Vec<String> = subs.iter().map(|s| format!("tunec-{s}.1")).collect();
    expected.push("tunec.1".into());
    expected.sort();
    assert_eq!(written, expected);
    let run_page = std::fs::read_to_string(dir.join("tunec-run.1")).expect("tunec-run.1");
    assert!(run_page.contains("\\-\\-until") && run_page.contains("NODE"), "{run_page}");
    let _ = std::fs::remove_dir_all(&dir);

    let run = tunec(&["man", "--output", "Cargo.toml/pages"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("cannot write the man pages to `Cargo.toml/pages`"), "{}", run.stderr);
}

#[test]
fn the_version_names_the_commit_it_was_built_from() {
    let run = tunec(&["--version"]);
    assert_eq!(run.code, 0);
    let line = run.stdout.trim_end();
    let rest = line.strip_prefix(&format!("tunec {} (", env!("CARGO_PKG_VERSION"))).unwrap_or_else(|| panic!("{line}"));
    let inside = rest.strip_suffix(", debug build)").unwrap_or_else(|| panic!("a test build is a debug build: {line}"));
    let head = Command::new("git").args(["rev-parse", "HEAD"]).current_dir(root()).output().ok();
    match head.filter(|o| o.status.success()) {
        Some(out) => {
            let head = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            let (hash, date) = inside.split_once(' ').unwrap_or_else(|| panic!("hash and date: {line}"));
            assert_eq!(hash.len(), 12, "{line}");
            assert!(head.starts_with(hash), "built from {hash}, HEAD is {head}");
            let day = Command::new("git").args(["log", "-1", "--format=%cs"]).current_dir(root()).output();
            assert_eq!(date, String::from_utf8_lossy(&day.expect("git log").stdout).trim());
        }
        None => assert!(
            inside == "unknown commit" || std::env::var_os("TUNEC_COMMIT").is_some(),
            "no git here, so no commit: {line}"
        ),
    }
    assert!(Path::new(env!("CARGO_BIN_EXE_tunec")).exists());
}
