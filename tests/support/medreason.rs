//! The inputs of the tests that run MedReason-shaped pipelines: a `local_model("model")` directory
//! with the real Llama 3.1 tokenizer (`TUNEC_FIXTURES`, fetched by `.ci/fixtures.sh`), Llama 3.1
//! Instruct's chat template and a tiny config, `tests/data/medreason.jsonl` (31 records, two of
//! them bad), and the pipeline itself from `tests/data/medreason-p.tune.in`.

use crate::support::root;
use std::path::{Path, PathBuf};

/// Writes `model/` and `medreason.jsonl` into `dir` (created if needed).
pub(crate) fn model_and_rows(dir: &Path) {
    let fixtures = match std::env::var_os("TUNEC_FIXTURES") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("llama3_1"),
        _ => panic!(
            "TUNEC_FIXTURES is not set: these tests tokenize with the real Llama 3.1 tokenizer (.ci/fixtures.sh)"
        ),
    };
    std::fs::create_dir_all(dir.join("model")).expect("mkdir");
    for file in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(fixtures.join(file), dir.join("model").join(file))
            .unwrap_or_else(|e| panic!("cannot copy {file} from {} (run .ci/fixtures.sh): {e}", fixtures.display()));
    }
    let config = std::fs::read_to_string(root().join("tests/cases/models/tiny/config.json")).expect("config.json");
    std::fs::write(dir.join("model/config.json"), config.replace("\"vocab_size\": 512", "\"vocab_size\": 128256"))
        .expect("write");
    std::fs::copy(root().join("tests/data/llama3_1_instruct.jinja"), dir.join("model/chat_template.jinja"))
        .expect("copy");
    std::fs::copy(root().join("tests/data/medreason.jsonl"), dir.join("medreason.jsonl")).expect("copy");
}

/// The parts of `tests/data/medreason-p.tune.in` a test chooses.
pub(crate) struct Shape<'a> {
    /// The target block, indented, or empty for the local target.
    pub(crate) target: &'a str,
    pub(crate) seq_len: u32,
    pub(crate) overflow: &'a str,
    pub(crate) instance: &'a str,
    /// More fields of the train node, indented.
    pub(crate) train_extra: &'a str,
    /// Nodes after the train node, indented.
    pub(crate) after_train: &'a str,
}

/// The pipeline text of `shape`.
pub(crate) fn pipeline(shape: &Shape) -> String {
    let template =
        std::fs::read_to_string(root().join("tests/data/medreason-p.tune.in")).expect("tests/data/medreason-p.tune.in");
    template
        .replace("@TARGET@", shape.target)
        .replace("@SEQ_LEN@", &shape.seq_len.to_string())
        .replace("@OVERFLOW@", shape.overflow)
        .replace("@INSTANCE@", shape.instance)
        .replace("@TRAIN_EXTRA@", shape.train_extra)
        .replace("@AFTER_TRAIN@", shape.after_train)
}
