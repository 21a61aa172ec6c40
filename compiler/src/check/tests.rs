//! Checker semantics that fixtures do not show well: where field values come from (pipeline,
//! user defaults, prelude), parameter substitution, and the typed program's shape.

use super::{NoFiles, NodeType, Origin, Override, Val};
use crate::driver::check;

const PIPELINE: &str = r#"
pipeline p {
  param rank = 8
  defaults train { epochs = 3 }
  defaults train.method.lora { alpha = 99 }
  model llama = hf_model("meta-llama/Llama-3.1-8B-Instruct")
  dataset raw = file("data.jsonl") { columns = { q: string, a: string } }
  chat convo = chat_template(raw, tokenizer = llama) {
    system = """
      You answer briefly.
        Indented line.
      """
    user = "{q}"
    assistant = "{a}"
    seq_len = 512
  }
  split parts = split(convo, train = 0.8, test = 0.2)
  train sft = sft(llama, data = parts.train) { method = lora { r = rank } }
  merge merged = merge(sft)
  evaluate report = evaluate(merged, parts.test)
}
"#;

#[test]
fn values_come_from_the_pipeline_then_user_defaults_then_the_prelude() {
    let checked = check("p.tune", PIPELINE, &[], &NoFiles);
    assert!(checked.diagnostics.is_empty(), "{:?}", checked.diagnostics);
    let program = checked.program.expect("a program");
    let sft = program.node("sft").expect("sft");
    assert_eq!(sft.fields.int("method.r"), Some(8), "the parameter is substituted");
    assert_eq!(sft.fields.int("epochs"), Some(3), "user defaults override the prelude");
    assert!(matches!(sft.fields.get("epochs").map(|f| f.origin), Some(Origin::Default(id)) if id == checked.main));
    assert_eq!(sft.fields.float("method.alpha"), Some(99.0), "variant defaults from the pipeline");
    assert_eq!(sft.fields.float("method.dropout"), Some(0.05), "variant defaults from the prelude");
    assert_eq!(sft.fields.word("precision"), Some("bf16"));
    assert!(matches!(sft.fields.get("precision").map(|f| f.origin), Some(Origin::Default(id)) if id != checked.main));
    assert_eq!(sft.ty, NodeType::Adapter { base: "llama".into() });
    assert_eq!(program.node("merged").map(|n| n.ty.clone()), Some(NodeType::Model { base: "llama".into() }));
    assert_eq!(program.model_facts("parts").map(|m| m.id.as_str()), Some("meta-llama/Llama-3.1-8B-Instruct"));
    let convo = program.node("convo").expect("convo");
    assert_eq!(convo.fields.str("system"), Some("You answer briefly.\n  Indented line."));
    let order: Vec<&str> = program.order.iter().map(|&i| program.nodes[i].name.as_str()).collect();
    assert_eq!(order, ["llama", "raw", "convo", "parts", "sft", "merged", "report"]);
}

#[test]
fn set_overrides_replace_parameters() {
    let overrides = [Override { name: "rank".into(), value: "64".into() }];
    let checked = check("p.tune", PIPELINE, &overrides, &NoFiles);
    assert!(checked.diagnostics.is_empty(), "{:?}", checked.diagnostics);
    let program = checked.program.expect("a program");
    assert_eq!(program.node("sft").and_then(|n| n.fields.int("method.r")), Some(64));
    let param = &program.params[0];
    assert!(param.overridden);
    assert_eq!(param.value, Val::Int(64));
}

#[test]
fn errors_do_not_hide_other_errors() {
    let broken = PIPELINE
        .replace("seq_len = 512", "seq_len = 0")
        .replace("train = 0.8", "train = 0.9")
        .replace("method = lora { r = rank }", "method = lora { r = rank }\n    optimizer = adam");
    let checked = check("p.tune", &broken, &[], &NoFiles);
    let codes: Vec<&str> = checked.diagnostics.iter().map(|d| d.code.name()).collect();
    assert_eq!(codes, ["value_range", "split_fractions", "unknown_value"], "{codes:?}");
    assert!(checked.program.is_some(), "editors still get the typed nodes");
}
