//! What the tests that run examples/tiny-local share: the Python with the entry scripts' packages
//! and a fresh copy of the example's committed files.

use crate::support::root;
use std::path::Path;

/// The Python with the entry scripts' packages (`.ci/run` exports it); the end-to-end test fails
/// without it rather than passing without having run anything.
pub(crate) fn test_python() -> String {
    match std::env::var("TUNEC_TEST_PYTHON") {
        Ok(python) if !python.is_empty() => python,
        _ => panic!(
            "TUNEC_TEST_PYTHON is not set: the end-to-end run needs a Python with torch and the packages of \
             stdlib/python/requirements.txt (.ci/run creates the venv and exports it)"
        ),
    }
}

/// Every file of examples/tiny-local that is committed, copied to a fresh folder.
#[allow(dead_code)] // not every test binary copies the example
pub(crate) fn copy_tiny_local(dir: &Path) {
    let example = root().join("examples/tiny-local");
    std::fs::create_dir_all(dir.join("model")).expect("mkdir");
    for file in ["tiny.tune", "data.jsonl", "make_model.py"] {
        std::fs::copy(example.join(file), dir.join(file)).expect("copy");
    }
    for file in ["config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"] {
        std::fs::copy(example.join("model").join(file), dir.join("model").join(file)).expect("copy");
    }
}
