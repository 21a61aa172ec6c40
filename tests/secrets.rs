//! The promise that what `env()` reads stays in the environment: with marker values in
//! `HF_TOKEN`, `TUNEC_SAGEMAKER_ROLE` and `TUNEC_BUCKET`, no command prints one and no run writes
//! one.
//!
//! - `check` (text and JSON), `plan` (text and JSON), `graph` (DOT and Mermaid) and `status` on the
//!   reference pipeline print none of the three. `iam-policy` names the bucket and the role, which
//!   are what its policies are about, and never the token.
//! - A SageMaker pipeline run `--until parts` on this machine (its data step; the MedReason-shaped
//!   rows and the real Llama 3.1 tokenizer from `TUNEC_FIXTURES`), once to success and once to a
//!   failure (a bad row under `on_bad_row = fail`), writes none of them under `.tunec/`, and none
//!   is in what it, `status` (text and JSON) and `plan` print.
//!
//! The SageMaker jobs themselves are covered by `tests/sagemaker.rs` (the role is in no journal)
//! and the Hub token by `tests/hub.rs` (sent to the endpoint only, in no file under `.tunec/`).

#[path = "support/medreason.rs"]
mod medreason;
mod support;

use support::Run;

const TOKEN: &str = "hf_MarkerTokenValue0123456789abcdef";
const ROLE: &str = "arn:aws:iam::210987654321:role/MarkerRoleName";
const BUCKET: &str = "s3://marker-bucket-name/marker-prefix";

/// The markers, as they would appear in any output (the bucket also without its scheme, as in an
/// ARN, and the role by its name alone).
const MARKERS: [&str; 5] = [TOKEN, ROLE, "MarkerRoleName", "marker-bucket-name", "marker-prefix"];

fn tunec(args: &[&str]) -> Run {
    support::tunec_with(args, |command| {
        command.env("HF_TOKEN", TOKEN).env("TUNEC_SAGEMAKER_ROLE", ROLE).env("TUNEC_BUCKET", BUCKET);
    })
}

/// Fails naming the marker and where it was found.
fn assert_no_marker(text: &str, markers: &[&str], where_: &str) {
    for marker in markers {
        assert!(!text.contains(marker), "{where_} holds `{marker}`:\n{text}");
    }
}

#[test]
fn no_command_prints_an_environment_value() {
    let file = "examples/medreason/medreason.tune";
    for args in [
        vec!["check", file],
        vec!["check", file, "--format", "json"],
        vec!["plan", file],
        vec!["plan", file, "--format", "json"],
        vec!["graph", file],
        vec!["graph", file, "--format", "mermaid"],
        vec!["status", file],
        vec!["status", file, "--format", "json"],
    ] {
        let run = tunec(&args);
        assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
        assert_no_marker(&format!("{}{}", run.stdout, run.stderr), &MARKERS, &format!("`tunec {}`", args.join(" ")));
    }
    // The plan still says which variables it reads.
    let plan = tunec(&["plan", file]);
    assert!(plan.stdout.contains("reads at run time: HF_TOKEN, TUNEC_BUCKET, TUNEC_SAGEMAKER_ROLE"), "{}", plan.stdout);

    let policy = tunec(&["iam-policy", file]);
    assert_eq!(policy.code, 0, "{}", policy.stderr);
    assert_no_marker(&format!("{}{}", policy.stdout, policy.stderr), &[TOKEN], "`tunec iam-policy`");
    assert!(policy.stdout.contains("arn:aws:s3:::marker-bucket-name/marker-prefix/medreason/"), "{}", policy.stdout);
}

#[test]
fn a_run_writes_no_environment_value_whether_it_succeeds_or_fails() {
    let dir = std::env::temp_dir().join(format!("tunec-secrets-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    medreason::model_and_rows(&dir);
    let pipeline = medreason::pipeline(&medreason::Shape {
        target: "  target sagemaker {\n    region = \"us-east-1\"\n    role   = env(\"TUNEC_SAGEMAKER_ROLE\")\n    bucket = env(\"TUNEC_BUCKET\")\n  }",
        seq_len: 160,
        overflow: "drop",
        instance: "ml.g5.2xlarge",
        train_extra: "",
        after_train: "",
    });
    let file = dir.join("p.tune").display().to_string();
    let scan = |what: &str, printed: &[&Run]| {
        for run in printed {
            assert_no_marker(&format!("{}{}", run.stdout, run.stderr), &MARKERS, &format!("what {what} printed"));
        }
        for path in support::files_under(&dir.join(".tunec")) {
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_no_marker(&String::from_utf8_lossy(&bytes), &MARKERS, &format!("{} ({what})", path.display()));
        }
    };

    std::fs::write(&file, &pipeline).expect("write");
    let run = tunec(&["run", &file, "--until", "parts", "--progress", "plain"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let (status, status_json, plan) = (
        tunec(&["status", &file]),
        tunec(&["status", &file, "--format", "json"]),
        tunec(&["plan", &file, "--format", "json"]),
    );
    assert!(status.stdout.contains("succeeded"), "{}", status.stdout);
    scan("a run that succeeded", &[&run, &status, &status_json, &plan]);

    // A bad row stops the data step: the failure's message and record hold no value either.
    std::fs::write(&file, pipeline.replace("on_bad_row = skip", "on_bad_row = fail")).expect("write");
    let failed = tunec(&["run", &file, "--until", "parts", "--progress", "plain"]);
    assert_eq!(failed.code, 1, "{}{}", failed.stdout, failed.stderr);
    let status = tunec(&["status", &file, "--format", "json"]);
    assert!(status.stdout.contains("\"failed\""), "{}", status.stdout);
    scan("a run that failed", &[&failed, &status]);
    let _ = std::fs::remove_dir_all(&dir);
}
