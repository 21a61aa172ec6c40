//! `tunec completions SHELL`: shell completion scripts, generated from the clap definition of the
//! command line, so that they never fall behind it (`man.rs` does the same for man pages).
//!
//! The completion scripts are clap_complete's static scripts for bash, zsh and fish (subcommands,
//! flags, enumerated values, diagnostic codes for `explain`, file names), with one addition of our
//! own: the value of an option whose value name is `NODE` (`run --until`) completes to the node
//! names of the pipeline file on the command line. The shell runs the words typed so far as a
//! command with `TUNEC_COMPLETE_NODES=1` set; `cli.rs` sees it before parsing and hands the words to
//! [`nodes`], which finds the file with the same clap definition (so options and their values are
//! skipped exactly as when the command runs), parses it, and prints one node name per line. It prints nothing when the file is missing or does not
//! parse: a completion must never write errors into the user's terminal.

use clap::builder::{PossibleValue, StringValueParser, TypedValueParser};
use clap::{Args, Command, ValueEnum};
use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tunec_compiler::diagnostics::{Code, FileId};
use tunec_compiler::syntax::{ast, parse_file};

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub(crate) enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// The variable that makes `tunec WORDS...` print the node names of the pipeline file in WORDS
/// instead of running: what the completion scripts call. An environment variable rather than a
/// hidden flag, because clap_complete lists hidden flags too.
pub(crate) const NODES_VAR: &str = "TUNEC_COMPLETE_NODES";

/// The arguments of `tunec completions`.
#[derive(Args, Debug)]
pub(crate) struct CompletionsArgs {
    /// The shell to print the completion script of.
    shell: Shell,
}

/// `tunec completions SHELL`.
pub(crate) fn completions(args: &CompletionsArgs, cmd: Command) -> ExitCode {
    out_raw!("{}", script(args.shell, cmd));
    ExitCode::SUCCESS
}

/// What `tunec WORDS...` does when [`NODES_VAR`] is set: prints the node names of the pipeline file
/// among `words` (the whole command line, program name first), one a line, and succeeds.
pub(crate) fn nodes(words: &[String], cmd: Command) -> ExitCode {
    let names = pipeline_file(words, cmd).map(|file| node_names(&file)).unwrap_or_default();
    let mut out = std::io::stdout().lock();
    for name in names {
        let _ = writeln!(out, "{name}");
    }
    ExitCode::SUCCESS
}

/// The completion script of `shell`: clap_complete's, with the node names added.
fn script(shell: Shell, mut cmd: Command) -> String {
    let options = node_options(&cmd);
    let name = cmd.get_name().to_owned();
    let mut out = Vec::new();
    match shell {
        Shell::Bash => clap_complete::generate(clap_complete::Shell::Bash, &mut cmd, &name, &mut out),
        Shell::Zsh => clap_complete::generate(clap_complete::Shell::Zsh, &mut cmd, &name, &mut out),
        Shell::Fish => clap_complete::generate(clap_complete::Shell::Fish, &mut cmd, &name, &mut out),
    }
    let generated = String::from_utf8_lossy(&out).into_owned();
    match shell {
        Shell::Bash => format!("{generated}\n{}", bash_nodes(&name, &options)),
        Shell::Zsh => zsh_nodes(&name, &generated),
        Shell::Fish => format!("{generated}\n{}{}", fish_nodes(&name, &options), fish_positional_values(&name, &cmd)),
    }
}

/// The options that take a node name, as (subcommand, long flag): those whose value is named `NODE`.
fn node_options(cmd: &Command) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for sub in cmd.get_subcommands() {
        for arg in sub.get_arguments() {
            let names_a_node = arg.get_value_names().is_some_and(|names| names.iter().any(|n| n.as_str() == "NODE"));
            if let (true, Some(long)) = (names_a_node, arg.get_long()) {
                out.push((sub.get_name().to_owned(), long.to_owned()));
            }
        }
    }
    out
}

/// bash: a function that answers for the node options and hands everything else to clap's `_tunec`.
/// `COMP_WORDS` splits `--until=x` at `=`, so the words passed to tunec are the line's own, split at
/// blanks.
fn bash_nodes(name: &str, options: &[(String, String)]) -> String {
    let cases: String = options.iter().map(|(sub, long)| format!("        \"{sub} --{long}\") ;;\n")).collect();
    format!(
        r#"# Node names for {flags}: the words typed so far, run with {var} set, print the node
# names of the pipeline file among them.
_{name}_with_nodes() {{
    local cur="$2" option="$3"
    if [[ "$option" == "=" && $COMP_CWORD -ge 2 ]]; then
        option="${{COMP_WORDS[COMP_CWORD-2]}}"
    fi
    local -a words
    read -r -a words <<< "${{COMP_LINE:0:COMP_POINT}}"
    [[ "${{COMP_LINE:0:COMP_POINT}}" =~ [[:space:]]$ ]] || unset 'words[${{#words[@]}}-1]'
    case "${{words[1]-}} $option" in
{cases}        *) _{name} "$@"; return ;;
    esac
    local IFS=$'\n'
    COMPREPLY=($(compgen -W "$({var}=1 "${{words[@]}}" 2>/dev/null)" -- "$cur"))
}}
complete -F _{name}_with_nodes -o nosort -o bashdefault -o default {name}
"#,
        flags = flag_list(options),
        var = NODES_VAR,
    )
}

/// zsh: clap's `_arguments` spec completes a `NODE` value with `_default`; it is pointed at a
/// function that asks tunec instead.
fn zsh_nodes(name: &str, generated: &str) -> String {
    let function = format!(
        r#"
(( $+functions[_{name}_nodes] )) ||
_{name}_nodes() {{
    local -a line nodes
    # The line as typed up to the cursor: `words` lacks the command once `_arguments` has moved
    # into the subcommand.
    line=(${{(Q)${{(z)LBUFFER}}}})
    nodes=(${{(f)"$({var}=1 $line 2>/dev/null)"}})
    compadd -a nodes
}}
"#,
        var = NODES_VAR,
    );
    let replaced = generated.replace(":NODE:_default'", &format!(":NODE:_{name}_nodes'"));
    // The function must be defined before the script's last line runs the completion.
    match replaced.rfind("\nif [ \"$funcstack[1]\" = \"_") {
        Some(at) => format!("{}{function}{}", &replaced[..at], &replaced[at..]),
        None => format!("{replaced}{function}"),
    }
}

/// fish: one more `complete` line per node option, whose candidates come from tunec.
fn fish_nodes(name: &str, options: &[(String, String)]) -> String {
    let mut out = format!(
        "# Node names for {}: the words typed so far, run with {NODES_VAR} set.\n\
         function __{name}_nodes\n    env {NODES_VAR}=1 (commandline -opc) 2>/dev/null\nend\n",
        flag_list(options)
    );
    for (sub, long) in options {
        out.push_str(&format!(
            "complete -c {name} -n \"__fish_{name}_using_subcommand {sub}\" -l {long} -x -a \"(__{name}_nodes)\"\n"
        ));
    }
    out
}

/// fish: clap_complete's fish script completes no positional values, so the possible values of
/// positional arguments (the codes of `explain`) get a `complete` line each.
fn fish_positional_values(name: &str, cmd: &Command) -> String {
    let mut out = String::new();
    for sub in cmd.get_subcommands() {
        for arg in sub.get_positionals().filter(|a| !a.is_hide_set()) {
            for value in arg.get_possible_values().iter().filter(|v| !v.is_hide_set()) {
                let help = value.get_help().map(|h| h.to_string().replace('\\', "\\\\").replace('\'', "\\'"));
                out.push_str(&format!(
                    "complete -c {name} -n \"__fish_{name}_using_subcommand {}\" -f -a {}{}\n",
                    sub.get_name(),
                    value.get_name(),
                    help.map(|h| format!(" -d '{h}'")).unwrap_or_default()
                ));
            }
        }
    }
    out
}

fn flag_list(options: &[(String, String)]) -> String {
    options.iter().map(|(sub, long)| format!("`{sub} --{long}`")).collect::<Vec<_>>().join(", ")
}

/// The pipeline file of a command line, found by clap itself: `words` starts with the program name
/// and may end with the option whose value is being completed, which is dropped first.
fn pipeline_file(words: &[String], cmd: Command) -> Option<PathBuf> {
    let mut words = words.to_vec();
    while words.last().is_some_and(|w| w.starts_with('-')) {
        words.pop();
    }
    let matches = cmd.ignore_errors(true).try_get_matches_from(words).ok()?;
    let (_, sub) = matches.subcommand()?;
    sub.try_get_one::<PathBuf>("file").ok().flatten().cloned()
}

/// The node names of every pipeline in the file, in the order they are written; none when the file
/// cannot be read or does not parse.
fn node_names(file: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(file) else { return Vec::new() };
    let Ok(parsed) = parse_file(&text, FileId(0)) else { return Vec::new() };
    parsed
        .pipelines
        .iter()
        .flat_map(|p| &p.items)
        .filter_map(|item| match item {
            ast::Item::Node(node) => Some(node.name.name.clone()),
            _ => None,
        })
        .collect()
}

/// The value parser of `explain`'s code: any text is accepted (`explain` itself answers an unknown
/// code, and full codes such as `tunec::check::x` are valid too), and the short names of the
/// diagnostic codes are offered as its possible values, which the completion scripts list.
#[derive(Clone, Debug)]
pub(crate) struct CodeNames;

impl TypedValueParser for CodeNames {
    type Value = String;

    fn parse_ref(&self, cmd: &Command, arg: Option<&clap::Arg>, value: &OsStr) -> Result<String, clap::Error> {
        StringValueParser::new().parse_ref(cmd, arg, value)
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(Code::ALL.iter().map(|c| PossibleValue::new(c.name()).help(c.summary()))))
    }
}
