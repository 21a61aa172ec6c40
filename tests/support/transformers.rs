//! The reference side of the parity suites: `TUNEC_TEST_PYTHON` (the training image's
//! transformers) asked one JSON request and answering one JSON document, offline.

use std::ffi::OsStr;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

/// Runs `python` with `args`, offline, the request as JSON on its stdin; its JSON answer, which
/// must come from the training image's transformers.
pub(crate) fn ask_python(python: &Path, args: &[&OsStr], request: &Value) -> Value {
    let mut child = Command::new(python)
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .env("TRANSFORMERS_OFFLINE", "1")
        .env("HF_HUB_DISABLE_TELEMETRY", "1")
        .env("TOKENIZERS_PARALLELISM", "false")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run TUNEC_TEST_PYTHON={}: {e}", python.display()));
    child.stdin.take().expect("stdin").write_all(request.to_string().as_bytes()).expect("write the request");
    let output = child.wait_with_output().expect("python runs");
    assert!(
        output.status.success(),
        "the transformers side failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let reply: Value = serde_json::from_slice(&output.stdout).expect("python answers JSON");
    assert_eq!(reply["transformers"], "4.56.2", "TUNEC_TEST_PYTHON must have the training image's transformers");
    reply
}
